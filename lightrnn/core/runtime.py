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


# ----- precision ---------------------------------------------------------------------------------
# Decision: every float32 product on a GPU is true IEEE float32. PyTorch lets cuDNN
# (the LSTM) use TF32 by default; that would make "fp32" rows 10-bit-mantissa LSTMs and overstate
# fp32 utilisation against a true-fp32 GEMM peak. `use_fp32_matmul` turns TF32 off for cuBLAS and
# cuDNN; every metrics and benchmark row records the setting in effect as `tf32`.


def use_fp32_matmul() -> None:
    """TF32 off for cuBLAS and cuDNN (a no-op for CPU tensors): float32 means float32 everywhere."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def tf32_enabled() -> bool:
    """Whether float32 GEMMs or cuDNN convolutions/RNNs may run in TF32 now (recorded in rows)."""
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


def run_lstm(lstm: torch.nn.LSTM, inputs: torch.Tensor, state=None):
    """`lstm(inputs, state)`; under autocast in float32 with autocast off, returning float32 output and state.

    Decision: under bf16 autocast the LSTM stays float32 and only the output layers
    (the large V- or sqrt(V)-wide GEMMs) run in bf16. CUDA autocast casts the cuDNN RNN to
    float16 whatever `dtype=` asks for, so a "bf16" LSTM would really be an fp16 LSTM trained
    without a GradScaler (its small gradients underflow). float32 there is numerically safe,
    needs no loss scaling, and keeps the carried state float32 across windows.
    """
    if not _autocast_enabled(inputs.device.type):
        return lstm(inputs, state)
    device_type = inputs.device.type
    with torch.autocast(device_type, enabled=False):
        if state is not None:
            state = tuple(part.float() for part in state)
        return lstm(inputs.float(), state)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument, CUDA's flag only
        return bool(torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled())


class PhasePeaks:
    """Peak memory per phase of a run (train epoch, evaluation, reallocation).

    `with peaks.phase("train"): ...` starts a new CUDA peak window and records the peak of the
    block; a phase entered twice keeps its largest peak. One reset per run would let the first
    phase's peak (e.g. the reallocation's V x (R + C) loss matrices) mask every later one.
    On CPU the process's lifetime peak RSS is what each phase records (it cannot be reset).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peaks: dict[str, int] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        reset_peak_memory(self.device)
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.peaks[name] = max(self.peaks.get(name, 0), peak_memory_bytes(self.device))

    def row_fields(self) -> dict[str, int]:
        """peak_memory_bytes (the largest phase) and peak_memory_<phase>_bytes for the phases since
        the last call, which it then forgets: each row reports the phases that led to it."""
        fields = {"peak_memory_bytes": max(self.peaks.values(), default=0)}
        fields.update({f"peak_memory_{name}_bytes": value for name, value in self.peaks.items()})
        self.peaks = {}
        return fields
