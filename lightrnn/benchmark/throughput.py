"""Training and evaluation tokens/s and peak memory of every model, measured side by side.

On a shared, noisy machine only ratios measured close together in time mean anything, so:
- every model runs in the same process on the same synthetic stream (Zipfian word ids, the
  distribution the baselines assume for their default word counts: P(id) ~ 1 / (id + 1));
- one discarded pass over the models at the smallest V first (library initialisation);
- measurements are interleaved: repeat r runs the models in an order rotated by r, each model
  built afresh (only one model is alive at a time, so the largest one fits), then warm-up
  steps (not timed: allocator, Adam state, caches), then timed training steps, then timed
  evaluation steps (forward under no_grad, as `lightrnn.training.evaluate` does), each timed over at
  least `timed_steps` steps and `min_seconds` seconds;
- the square-GEMM peak is re-measured before every repeat, so utilisation compares a model with
  the machine as it was at that moment; summaries are medians over repeats.

A training step is the training loop's own function (`lightrnn.training.step.train_step`): forward, mean
NLL, finite check, backward, global gradient-norm clipping, optimizer step, state detached. The
optimizer is Adam (`optimizer="sgd"`: the loop's SGD, for a recipe that trains with it); where a model offers sparse embedding gradients (`sparse_embedding`, the
baselines' V x E table) the bench turns them on and gives those parameters SparseAdam, so the
baselines do not pay a dense V x E Adam update per step: what a careful engineer would do.
LightRNN with per-word terms offers the same option for its per-word tables.

A model entry is a registry name or NAME@LABEL: a labelled copy with options of its own (for
example `lightrnn@words` with `model_options["lightrnn@words"] = {"word_bias": True, ...}`), so
plain LightRNN and a variant are measured in the same run, interleaved, under their own rows.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from lightrnn.benchmark.flops import flops_per_token
from lightrnn.benchmark.machine import (
    PeakMemory,
    gemm_size,
    load_average,
    machine_info,
    matmul_flops_per_s,
    synchronize,
    torch_threads,
)
from lightrnn.core.runtime import autocast_context, use_fp32_matmul
from lightrnn.registry import accepts, build, model_class, names
from lightrnn.training.optim import OPTIMIZERS, Optimizers
from lightrnn.training.step import PHASES, train_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ThroughputSettings:
    """What one throughput run measures; every field is written into each CSV row."""

    vocab_sizes: tuple[int, ...] = (10_000, 100_000, 793_471)
    models: tuple[str, ...] = ("lightrnn", "full_softmax", "class_softmax", "adaptive_softmax")
    embed_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    batch_size: int = 16
    bptt: int = 16
    warmup_steps: int = 1
    timed_steps: int = 2
    min_seconds: float = 1.0
    repeats: int = 3
    threads: int | None = 1
    device: str = "cpu"
    dtype: str = "fp32"
    lr: float = 1e-3
    # The training loop's optimizers: "adam" (Adam, SparseAdam for sparse gradients) or "sgd" (one
    # SGD for all, sparse rows updated in place): what a study's recipe trains with.
    optimizer: str = "adam"
    clip: float = 5.0
    sparse_embedding: bool = True
    seed: int = 0
    # Create the parameters on the device itself (paper-size models: initialising 2B parameters
    # on the CPU and copying them takes longer than the measurement); off: build, then .to(device).
    build_on_device: bool = False
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden_dim", "num_layers", "batch_size", "bptt", "timed_steps", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"throughput: {name} must be >= 1, got {getattr(self, name)}")
        if self.min_seconds < 0:
            raise ValueError(f"throughput: min_seconds must be >= 0, got {self.min_seconds}")
        if self.warmup_steps < 0:
            raise ValueError(f"throughput: warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.vocab_sizes or any(int(v) < 2 for v in self.vocab_sizes):
            raise ValueError(f"throughput: vocab_sizes must be integers >= 2, got {list(self.vocab_sizes)}")
        if not self.models:
            raise ValueError("throughput: models is empty; choose from " + ", ".join(names()))
        for name in self.models:
            model_class(registry_name(name))  # a ValueError naming the registry's models
        for name in self.model_options:
            if name not in self.models:
                raise ValueError(f"throughput: model_options for {name!r}, which is not among models {list(self.models)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"throughput: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"throughput: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.dtype == "bf16" and torch.device(self.device).type != "cuda":
            raise ValueError("throughput: dtype bf16 needs a CUDA device (autocast); use dtype fp32 on CPU")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"throughput: device {self.device!r} asked for but CUDA is not available; use cpu")


def registry_name(entry: str) -> str:
    """The registry model of a bench entry: NAME or NAME@LABEL (a labelled variant) -> NAME."""
    return entry.partition("@")[0]


def zipf_probs(vocab_size: int) -> np.ndarray:
    """[V] float64: P(id) proportional to 1 / (id + 1), id 0 the most frequent word."""
    weights = 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64)
    return weights / weights.sum()


def zipf_stream(vocab_size: int, num_tokens: int, seed: int = 0) -> np.ndarray:
    """[num_tokens] int64 word ids drawn i.i.d. from `zipf_probs(vocab_size)`."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(zipf_probs(vocab_size))
    ids = np.searchsorted(cumulative, rng.random(num_tokens) * cumulative[-1], side="right")
    return np.minimum(ids, vocab_size - 1).astype(np.int64)


def stream_windows(stream: np.ndarray, batch_size: int, bptt: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """Consecutive (tokens, targets) LongTensor [B, T] windows: the stream cut into B rows, read left to right."""
    columns = (len(stream) - 1) // batch_size
    steps = columns // bptt
    if steps < 1:
        raise ValueError(f"stream_windows: {len(stream)} tokens give no [{batch_size}, {bptt}] window")
    rows = torch.as_tensor(stream[: batch_size * columns + 1])
    inputs = rows[:-1].view(batch_size, columns)  # [B, columns]
    targets = rows[1:].view(batch_size, columns)
    return [
        (inputs[:, s * bptt : (s + 1) * bptt].to(device), targets[:, s * bptt : (s + 1) * bptt].to(device))
        for s in range(steps)
    ]


def build_for_bench(name: str, vocab_size: int, settings: ThroughputSettings) -> torch.nn.Module:
    """The registry's model at the bench sizes; sparse embedding gradients wherever the model offers them."""
    options = dict(settings.model_options.get(name, {}))
    if settings.sparse_embedding and accepts(registry_name(name), "sparse_embedding"):
        options.setdefault("sparse_embedding", True)
    return build(
        registry_name(name), vocab_size, embed_dim=settings.embed_dim, hidden_dim=settings.hidden_dim,
        num_layers=settings.num_layers, dropout=settings.dropout, **options,
    )


def make_optimizers(model: torch.nn.Module, lr: float, optimizer: str = "adam") -> Optimizers:
    """The training loop's optimizers (`lightrnn.training.optim.Optimizers`): Adam (+ SparseAdam for
    sparse gradients) or SGD."""
    return Optimizers(model, optimizer, lr)


def _train_steps(model, optimizers, windows, state, settings: ThroughputSettings, device: torch.device):
    """Training steps over `windows` through the training loop's `train_step`; returns the carried state."""
    model.train()
    for tokens, targets in windows:
        _, state = train_step(model, optimizers, tokens, targets, state, settings.clip, settings.dtype == "bf16")
    return state


@torch.no_grad()
def _eval_steps(model, windows, state, settings: ThroughputSettings, device: torch.device):
    """Evaluation forwards over `windows` (no graph), as `lightrnn.training.evaluate` runs them; returns the state."""
    model.eval()
    for tokens, targets in windows:
        with autocast_context(device, settings.dtype == "bf16"):
            output = model(tokens, targets, state)
        output.nll.double().sum().item()  # the evaluation's reduction, and a sync point
        state = output.state
    return state


def _timed(step: Callable[[tuple[Tensor, Tensor], Any], Any], windows, state, settings: ThroughputSettings,
           device: torch.device) -> tuple[int, float]:
    """(steps, seconds): at least `timed_steps` steps and at least `min_seconds`, cycling over `windows`.

    A floor on the time keeps fast models (a few ms per step) from being timed over a slice
    short enough for one scheduler hiccup on a shared machine to dominate it.
    """
    synchronize(device)
    start = time.perf_counter()
    steps = 0
    while steps < settings.timed_steps or time.perf_counter() - start < settings.min_seconds:
        state = step(windows[steps % len(windows)], state)
        steps += 1
        synchronize(device)
    return steps, time.perf_counter() - start


def measure_once(name: str, vocab_size: int, stream: np.ndarray, settings: ThroughputSettings) -> dict[str, Any]:
    """One fresh build of `name`: warm-up, timed training steps, timed evaluation steps, peak memory."""
    device = torch.device(settings.device)
    windows = stream_windows(stream, settings.batch_size, settings.bptt, device)
    needed = settings.warmup_steps + settings.timed_steps
    if len(windows) < needed:
        raise ValueError(f"measure_once: the stream holds {len(windows)} windows, {needed} needed")
    warmup, timed = windows[: settings.warmup_steps], windows[settings.warmup_steps : needed]
    tokens_per_step = settings.batch_size * settings.bptt
    torch.manual_seed(settings.seed)
    with PeakMemory(device) as memory:
        if settings.build_on_device:
            with device:
                model = build_for_bench(name, vocab_size, settings)
        else:
            model = build_for_bench(name, vocab_size, settings).to(device)
        optimizers = make_optimizers(model, settings.lr, settings.optimizer)
        state = _train_steps(model, optimizers, warmup, None, settings, device)
        train_steps, train_s = _timed(
            lambda window, carried: _train_steps(model, optimizers, [window], carried, settings, device),
            timed, state, settings, device,
        )
        eval_state = _eval_steps(model, windows[:1], None, settings, device)  # warm-up of the no-grad path
        eval_steps, eval_s = _timed(
            lambda window, carried: _eval_steps(model, [window], carried, settings, device),
            timed, eval_state, settings, device,
        )
    flops = flops_per_token(model, zipf_probs(vocab_size), settings.bptt)
    params = sum(p.numel() for p in model.parameters())
    result = {
        "train_tokens_per_s": train_steps * tokens_per_step / train_s,
        "eval_tokens_per_s": eval_steps * tokens_per_step / eval_s,
        "train_steps": train_steps,
        "train_s": train_s,
        "eval_steps": eval_steps,
        "eval_s": eval_s,
        "peak_memory_bytes": memory.bytes,
        "memory_method": memory.method,
        "params": params,
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "optimizer": optimizers.label,
        "flops_lstm": flops.lstm,
        "flops_output": flops.output,
        "flops_forward": flops.forward,
        "flops_train": flops.train,
    }
    model = optimizers = state = None  # free before the next model is built
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def run_throughput(
    settings: ThroughputSettings, progress: Callable[[str], None] | None = print
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure every (V, model); returns (summary rows, one per (V, model); raw rows, one per repeat).

    Summary columns: the settings, the machine (`machine_info`), params and bytes, medians of
    train/eval tokens/s over repeats (and min/max), peak memory (median), FLOPs per token,
    the measured GEMM peak (median over the run), utilisation = train tokens/s x train FLOPs
    per token / peak (and the same for evaluation), load averages at start and end.
    """
    device = torch.device(settings.device)
    use_fp32_matmul()  # fp32 means IEEE fp32 here as in training (no TF32): the `tf32` column says so
    config = {k: v for k, v in asdict(settings).items() if k not in ("vocab_sizes", "models", "model_options")}
    raw: list[dict[str, Any]] = []
    peaks: list[float] = []
    load_start = load_average()
    with torch_threads(settings.threads if device.type == "cpu" else None):
        machine = machine_info(device)
        size = gemm_size(settings.hidden_dim)
        # Process warm-up, discarded: the first model built pays one-time library initialisation
        # (thread pools, oneDNN kernels), which is nobody's memory or time.
        smallest = int(min(settings.vocab_sizes))
        warm_stream = zipf_stream(smallest, 2 * settings.batch_size * settings.bptt + settings.batch_size + 1)
        warm_settings = replace(settings, warmup_steps=1, timed_steps=1, min_seconds=0.0)
        for name in settings.models:
            measure_once(name, smallest, warm_stream, warm_settings)
        for vocab_size in settings.vocab_sizes:
            tokens_needed = (settings.warmup_steps + settings.timed_steps) * settings.batch_size * settings.bptt + 1
            stream = zipf_stream(int(vocab_size), tokens_needed + settings.batch_size, seed=settings.seed)
            for repeat in range(settings.repeats):
                peak = matmul_flops_per_s(size, DTYPES[settings.dtype], device)
                peaks.append(peak)
                shift = repeat % len(settings.models)
                order = list(settings.models[shift:]) + list(settings.models[:shift])
                for name in order:
                    measured = measure_once(name, int(vocab_size), stream, settings)
                    raw.append({"vocab_size": int(vocab_size), "model": name, "repeat": repeat,
                                "gemm_flops_per_s": peak, "load_average": load_average(), **measured})
                    if progress is not None:
                        progress(f"V={vocab_size} repeat {repeat} {name}: train {measured['train_tokens_per_s']:.0f} "
                                 f"tok/s, eval {measured['eval_tokens_per_s']:.0f} tok/s, "
                                 f"peak {measured['peak_memory_bytes'] / 2**20:.0f} MiB")
    peak_flops = statistics.median(peaks)
    load_end = load_average()
    summary = []
    for vocab_size in settings.vocab_sizes:
        for name in settings.models:
            runs = [row for row in raw if row["vocab_size"] == int(vocab_size) and row["model"] == name]
            train = [row["train_tokens_per_s"] for row in runs]
            evaluation = [row["eval_tokens_per_s"] for row in runs]
            first = runs[0]
            train_median, eval_median = statistics.median(train), statistics.median(evaluation)
            summary.append({
                "model": name, "vocab_size": int(vocab_size), **config,
                "model_options": json.dumps(settings.model_options.get(name, {}), sort_keys=True),
                "optimizer": first["optimizer"], "params": first["params"], "param_bytes": first["param_bytes"],
                "train_tokens_per_s": train_median, "train_tokens_per_s_min": min(train),
                "train_tokens_per_s_max": max(train), "eval_tokens_per_s": eval_median,
                "eval_tokens_per_s_min": min(evaluation), "eval_tokens_per_s_max": max(evaluation),
                "peak_memory_bytes": int(statistics.median(row["peak_memory_bytes"] for row in runs)),
                "memory_method": first["memory_method"],
                "flops_per_token_lstm": first["flops_lstm"], "flops_per_token_output": first["flops_output"],
                "flops_per_token_forward": first["flops_forward"], "flops_per_token_train": first["flops_train"],
                "gemm_size": size, "peak_flops_per_s": peak_flops, "peak_flops_per_s_max": max(peaks),
                "train_flops_per_s": train_median * first["flops_train"],
                "utilisation": train_median * first["flops_train"] / peak_flops,
                "eval_utilisation": eval_median * first["flops_forward"] / peak_flops,
                "load_average_start": load_start, "load_average_end": load_end, **machine,
            })
    return summary, raw


def measure_phases(name: str, vocab_size: int, stream: np.ndarray, settings: ThroughputSettings) -> dict[str, Any]:
    """One fresh build of `name`: seconds per training step in each of `PHASES` (train_step's own
    marks), over the timed steps after the warm-up, and the sparse gradient rows per step (the
    per-word rows a step updates, with SparseAdam or, factored, with SGD: `RowGradient`; 0 for dense models)."""
    device = torch.device(settings.device)
    windows = stream_windows(stream, settings.batch_size, settings.bptt, device)
    torch.manual_seed(settings.seed)
    model = build_for_bench(name, vocab_size, settings).to(device).train()
    optimizers = make_optimizers(model, settings.lr, settings.optimizer)
    state = _train_steps(model, optimizers, windows[: settings.warmup_steps], None, settings, device)
    timings: dict[str, float] = {}
    steps, rows, values, start = 0, 0, 0, time.perf_counter()
    while steps < settings.timed_steps or time.perf_counter() - start < settings.min_seconds:
        tokens, targets = windows[(settings.warmup_steps + steps) % len(windows)]
        _, state = train_step(model, optimizers, tokens, targets, state, settings.clip, settings.dtype == "bf16",
                              timings=timings)
        sparse = [p.grad for p in model.parameters() if p.grad is not None and p.grad.is_sparse]
        deferred_rows, deferred_values = optimizers.deferred_applied()  # SGD's factored per-word gradient
        rows += sum(grad._nnz() for grad in sparse) + deferred_rows
        values += sum(grad._values().numel() for grad in sparse) + deferred_values
        steps += 1
    model = optimizers = state = None
    gc.collect()
    return {"steps": steps, "sparse_rows_per_step": rows / steps, "sparse_values_per_step": values / steps,
            **{f"{phase}_s": timings.get(phase, 0.0) / steps for phase in PHASES}}


def run_phases(
    settings: ThroughputSettings, progress: Callable[[str], None] | None = print
) -> list[dict[str, Any]]:
    """Where a training step's time goes: one row per (V, model, phase), the median over the
    interleaved repeats of the seconds per step in that phase (`measure_phases`), its share of
    the step, and each phase against the first model's same phase at that V (the baseline)."""
    device = torch.device(settings.device)
    use_fp32_matmul()
    config = {k: v for k, v in asdict(settings).items() if k not in ("vocab_sizes", "models", "model_options")}
    raw: list[dict[str, Any]] = []
    with torch_threads(settings.threads if device.type == "cpu" else None):
        machine = machine_info(device)
        smallest = int(min(settings.vocab_sizes))
        warm_stream = zipf_stream(smallest, 2 * settings.batch_size * settings.bptt + settings.batch_size + 1)
        for name in settings.models:  # library initialisation, discarded
            measure_phases(name, smallest, warm_stream, replace(settings, warmup_steps=1, timed_steps=1, min_seconds=0.0))
        for vocab_size in settings.vocab_sizes:
            tokens_needed = (settings.warmup_steps + settings.timed_steps) * settings.batch_size * settings.bptt + 1
            stream = zipf_stream(int(vocab_size), tokens_needed + settings.batch_size, seed=settings.seed)
            for repeat in range(settings.repeats):
                shift = repeat % len(settings.models)
                for name in list(settings.models[shift:]) + list(settings.models[:shift]):
                    measured = measure_phases(name, int(vocab_size), stream, settings)
                    raw.append({"vocab_size": int(vocab_size), "model": name, **measured})
                    if progress is not None:
                        progress(f"V={vocab_size} repeat {repeat} {name}: " + ", ".join(
                            f"{phase} {measured[phase + '_s'] * 1e3:.1f} ms" for phase in PHASES))
    rows = []
    for vocab_size in settings.vocab_sizes:
        medians = {}
        for name in settings.models:
            runs = [row for row in raw if row["vocab_size"] == int(vocab_size) and row["model"] == name]
            medians[name] = ({phase: statistics.median(row[phase + "_s"] for row in runs) for phase in PHASES},
                             statistics.median(row["sparse_rows_per_step"] for row in runs),
                             statistics.median(row["sparse_values_per_step"] for row in runs))
        baseline = medians[settings.models[0]][0]
        for name in settings.models:
            phases, sparse_rows, sparse_values = medians[name]
            step = sum(phases.values())
            for phase in (*PHASES, "step"):
                seconds = step if phase == "step" else phases[phase]
                base = sum(baseline.values()) if phase == "step" else baseline[phase]
                rows.append({
                    "model": name, "vocab_size": int(vocab_size), "phase": phase, "seconds_per_step": seconds,
                    "share_of_step": seconds / step if step > 0 else 0.0,
                    "over_baseline_s": seconds - base, "baseline": settings.models[0],
                    "sparse_rows_per_step": sparse_rows, "sparse_values_per_step": sparse_values,
                    "model_options": json.dumps(settings.model_options.get(name, {}), sort_keys=True),
                    **config, **machine,
                })
    return rows
