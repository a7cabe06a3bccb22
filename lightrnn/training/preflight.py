"""Checks before a run allocates anything big: will the model, its optimizer state and the batches fit?

Without them `hidden_dim=10**7` or `batch_size=10**9` die in the allocator (a Linux OOM kill
has no message at all). The model is built on the meta device (no memory, as `lightrnn params`
does) and counted; the estimate is a lower bound: fp32 weights, plus the optimizer's state
when training (Adam: two moments per weight; gradients are not counted, as sparse embedding
gradients are small), the batch arrays, the LSTM's saved gates, and LightRNN's per-word output
vectors read per position (`word_term_bytes`). It is compared with what the device has available now: CUDA's free memory
(`torch.cuda.mem_get_info`), or on the CPU MemAvailable from /proc/meminfo, capped by the
address-space limit (`ulimit -v`) when one is set.
"""

from __future__ import annotations

import os
import resource
import sys

import numpy as np
import torch

from lightrnn.core.errors import NotEnoughMemory, UsageError
from lightrnn.training.batches import check_stream_fits

FLOAT_BYTES = 4
ID_BYTES = 8  # batches are int64 ids
# Per word: the vocabulary's counts (int64) and, for LightRNN, the table's row and column (int64 each).
TABLE_BYTES_PER_WORD = 24
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


def meta_table(vocab_size: int, grid: tuple[int, int] | None = None):
    """A stand-in word table of `vocab_size` words that allocates nothing (zero-stride arrays).

    For building a model on the meta device only: the buffers it fills are meta tensors, so the
    real table (a permutation of R*C slots: 16 GB at V = 10^9) is never drawn. `grid`: (R, C)
    of a saved table, else the square one.
    """
    from lightrnn.method.word_table import WordTable

    side = WordTable.square_size(vocab_size)
    rows, cols = grid if grid is not None else (side, side)
    table = WordTable.__new__(WordTable)  # no __init__: nothing to check, nothing to allocate
    table.rows = table.cols = np.lib.stride_tricks.as_strided(np.zeros(1, np.int64), (vocab_size,), (0,))
    table.num_rows, table.num_cols = int(rows), int(cols)
    return table


def _saved_grid(path: str) -> tuple[int, int] | None:
    """(R, C) from the header row of a saved table .npy (memory-mapped: the words are not read)."""
    from lightrnn.core.fileio import load_npy

    array = load_npy(path, mmap_mode="r", fix="pass a word table .npy written by WordTable.save")
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        return None
    rows, cols = int(array[0, 0]), int(array[0, 1])
    return (rows, cols) if rows >= 1 and cols >= 1 else None


def meta_options(model: str, vocab_size: int, options: dict) -> dict:
    """`options` with a stand-in table (`meta_table`) for a model that takes one: for meta builds."""
    from lightrnn.registry import accepts

    options = dict(options)
    if accepts(model, "table") and "table" not in options:
        initial = str(options.pop("initial_table", ""))
        options.pop("table_seed", None)
        grid = _saved_grid(initial) if initial.endswith(".npy") else None
        options["table"] = meta_table(vocab_size, grid)
    return options


def count_parameters(config, vocab_size: int, word_counts: np.ndarray | None = None) -> int:
    """Parameters of the model `config` describes, counted on the meta device (nothing allocated,
    the word table included: a stand-in table fills its meta buffers)."""
    from lightrnn.registry import CONFIG_OPTIONS, accepts, build

    options = dict(config.model_options)
    for key, option in CONFIG_OPTIONS.items():
        if accepts(config.model, option):
            options.setdefault(option, getattr(config, key))
    if word_counts is not None and accepts(config.model, "word_counts"):
        options.setdefault("word_counts", word_counts)
    options = meta_options(config.model, vocab_size, options)
    try:
        with torch.device("meta"):
            model = build(config.model, vocab_size, embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
                          num_layers=config.num_layers, dropout=config.dropout, **options)
    except RuntimeError as error:  # "Storage size calculation overflowed": beyond any machine
        raise NotEnoughMemory(
            f"model {config.model} with embed_dim {config.embed_dim}, hidden_dim {config.hidden_dim} and "
            f"{vocab_size} words is too large to allocate on any device ({str(error).splitlines()[0][:200]}); "
            f"lower embed_dim/hidden_dim"
        ) from None
    return int(sum(p.numel() for p in model.parameters()))


def _closed_form(config, vocab_size: int) -> int | None:
    """The model's closed-form parameter count (O(1)), None when it needs what only a build knows."""
    from lightrnn.registry import param_count

    try:
        return int(param_count(config.model, vocab_size, config.embed_dim, config.hidden_dim, config.num_layers))
    except (TypeError, ValueError):
        return None


def word_term_bytes(config, vocab_size: int, positions: int) -> int:
    """LightRNN's per-word output terms: the gradient of the distinct target rows' vectors (at most
    min(positions, R) x C x k floats) and the [positions, C] terms, C = ceil(sqrt V); the dot products
    themselves run in cache-sized chunks (`lightrnn.method.model._RowDot`). 0 for every other model
    or without word_dim."""
    from lightrnn.method.word_table import WordTable

    word_dim = int((getattr(config, "model_options", None) or {}).get("word_dim") or 0)
    if config.model != "lightrnn" or not word_dim:
        return 0
    side = WordTable.square_size(vocab_size)  # R = C
    return (min(positions, side) * side * word_dim + positions * side) * FLOAT_BYTES


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
    available = available_memory(device)
    # Bounds before work: the closed form (no build at all) first, so a vocabulary x dims beyond
    # the device is refused in O(1); then the exact count on the meta device.
    closed = _closed_form(config, vocab_size)
    if closed is not None and available is not None:
        _refuse_if_over(config, closed, vocab_size, batch_size, training, device, available)
    params = count_parameters(config, vocab_size, word_counts)
    needed = _refuse_if_over(config, params, vocab_size, batch_size, training, device, available)
    if training and available is not None:
        # The run also evaluates, with eval_batch_size rows: refused now, not after an epoch of training.
        _refuse_if_over(config, params, vocab_size, config.eval_batch_size, False, device, available)
    return needed


def _refuse_if_over(config, params: int, vocab_size: int, batch_size: int, training: bool, device: torch.device,
                    available: int | None) -> int:
    positions = batch_size * (config.bptt if training else 1)
    needed = (estimate_bytes(config, params, batch_size, training) + TABLE_BYTES_PER_WORD * vocab_size
              + word_term_bytes(config, vocab_size, positions))
    if available is not None and needed > available:
        what = f"weights and {config.optimizer} state" if training and config.optimizer == "adam" else "weights"
        size_key = "the batch size" if training else "the eval batch size (eval_batch_size, --batch-size)"
        raise NotEnoughMemory(
            f"model {config.model} has {params:,} parameters: its {what} and batches of {batch_size} rows need "
            f"at least {_gib(needed)} but {device} has {_gib(available)} available; lower hidden_dim, embed_dim, "
            f"num_layers or {size_key}, or use a device with more memory"
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

