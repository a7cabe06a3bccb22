"""Checks before a run allocates anything big: will the model, its optimizer state and the batches fit?

Without them `hidden_dim=10**7` or `batch_size=10**9` die in the allocator (a Linux OOM kill
has no message at all). The model is built on the meta device (no memory, as `lightrnn params`
does) and counted; the estimate is a lower bound: fp32 weights, plus the optimizer's state
when training (Adam: two moments per weight; gradients are not counted, as sparse embedding
gradients are small), the batch arrays, and the LSTM's saved gates. It is compared with what the device has available now: CUDA's free memory
(`torch.cuda.mem_get_info`), or on the CPU MemAvailable from /proc/meminfo, capped by the
address-space limit (`ulimit -v`) when one is set.
"""

from __future__ import annotations

import os
import resource
import sys

import numpy as np
import torch

from lightrnn.batches import check_stream_fits
from lightrnn.errors import NotEnoughMemory, UsageError

FLOAT_BYTES = 4
ID_BYTES = 8  # batches are int64 ids
# Per parameter, beside its own fp32 weight: Adam's two moments (SparseAdam's too); plain SGD keeps none.
OPTIMIZER_FLOATS = {"adam": 2, "sgd": 0}


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate; None when unknown (then nothing is checked)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    available = _meminfo_available()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        room = max(soft - _own_address_space(), 0)
        available = room if available is None else min(available, room)
    return available


def _proc_bytes(path: str, key: str) -> int | None:
    """The `key:` line of a /proc file given in kB, as bytes; None when the file or the line is missing."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _meminfo_available() -> int | None:
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _own_address_space() -> int:
    return _proc_bytes("/proc/self/status", "VmSize") or 0


def count_parameters(config, vocab_size: int, word_counts: np.ndarray | None = None) -> int:
    """Parameters of the model `config` describes, counted on the meta device (nothing allocated)."""
    from lightrnn.models import build_from_config

    try:
        with torch.device("meta"):
            model = build_from_config(config, vocab_size, word_counts)
    except RuntimeError as error:  # "Storage size calculation overflowed": beyond any machine
        raise NotEnoughMemory(
            f"model {config.model} with embed_dim {config.embed_dim}, hidden_dim {config.hidden_dim} and "
            f"{vocab_size} words is too large to allocate on any device ({str(error).splitlines()[0]}); "
            f"lower embed_dim/hidden_dim"
        ) from None
    return int(sum(p.numel() for p in model.parameters()))


def estimate_bytes(config, params: int, batch_size: int, training: bool) -> int:
    """A lower bound of the run's memory: weights (+ optimizer state), batches, saved gates."""
    floats_per_param = 1 + (OPTIMIZER_FLOATS.get(config.optimizer, 0) if training else 0)
    batch = batch_size * (config.bptt + 1) * ID_BYTES * 2  # the numpy window and its tensor
    positions = batch_size * config.bptt
    activations = positions * (config.embed_dim + 4 * config.hidden_dim * config.num_layers) * FLOAT_BYTES
    if not training:
        activations //= config.bptt  # no graph is kept: one step's gates at a time
    return params * floats_per_param * FLOAT_BYTES + batch + activations


def check_fits(
    config, vocab_size: int, word_counts: np.ndarray | None, device: torch.device, *,
    training: bool = True, batch_size: int | None = None, train_tokens: int | None = None,
) -> int:
    """NotEnoughMemory (or ValueError for a too short stream) before building the model; returns the estimate.

    `batch_size` defaults to the config's (training) or eval batch size; `train_tokens`, when
    given, is checked to hold at least one prediction per training row.
    """
    batch_size = batch_size or (config.batch_size if training else config.eval_batch_size)
    if train_tokens is not None:
        check_stream_fits(train_tokens, batch_size)
    params = count_parameters(config, vocab_size, word_counts)
    needed = estimate_bytes(config, params, batch_size, training)
    available = available_memory(device)
    if available is not None and needed > available:
        what = f"weights and {config.optimizer} state" if training and config.optimizer == "adam" else "weights"
        raise NotEnoughMemory(
            f"model {config.model} has {params:,} parameters: its {what} and batches of {batch_size} rows need "
            f"at least {_gib(needed)} but {device} has {_gib(available)} available; lower hidden_dim, embed_dim, "
            f"num_layers or the batch size, or use a device with more memory"
        )
    return needed


def _gib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count < 2**40 else f"{count / 2**40:.1f} TiB"


def require_gpus(count: int, job: str) -> None:
    """Fail at once (UsageError naming the environment and the fix) when a job that asked for
    `count` GPUs runs where torch sees fewer, instead of training for days on the CPU."""
    seen = torch.cuda.device_count()
    if count <= seen:
        return
    raise UsageError(
        f"{job}: the job asked for {count} GPU(s) but torch {torch.__version__} in the environment {sys.prefix} "
        f"sees {seen} CUDA device(s) (CUDA build: {torch.version.cuda or 'none, a CPU-only torch'}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Fix: run the job on a GPU node "
        "with a CUDA build of torch in that environment (with --use-conda, create the envs on a GPU node: "
        "snakemake --use-conda --conda-create-envs-only), or train on the CPU with resources.train.gpu: 0 "
        "(snakemake --set-resources train:gpu=0)"
    )

