"""Where a run executes: device choice, autocast, seeding, peak memory.

Below `train`, `evaluate` and the benchmarks, above nothing of the project's: every layer that
runs tensors asks here, so the rules (which device `auto` means, what bf16 autocasts, how
memory is measured) live once.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; an explicit cuda device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available; use device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return device


def autocast_context(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op otherwise."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (CUDA's too, through torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window on CUDA (the CPU peak RSS cannot be reset from Python)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory: CUDA max allocated since the last reset on GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # ru_maxrss is KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)
