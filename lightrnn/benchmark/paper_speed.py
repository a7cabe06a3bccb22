"""Training throughput at the paper's One Billion Word sizes, beside the official Titan X figures.

LightRNN and the adaptive softmax (the strongest baseline) at V = 793,471, at the official
example's 500/500 batch 100, 1000/1000 batch 200 and 1500/1500 batch 200 (2 layers, sequence
length 32), fp32 and bf16; the full softmax too wherever its estimated memory fits the device
(`estimate_bytes`, arithmetic on a meta-device build: nothing is allocated to find out).
Each measurement is `lightrnn.benchmark.throughput.measure_once` (the training loop's own step,
Adam, sparse embedding gradients where offered) with the parameters created on the device.

Everything runs against a deadline (`run_paper_speed(..., deadline=...)`): a measurement starts
only when its predicted time (the slowest finished one of that model, or a first guess) fits in
what is left; the others get a row with status `skipped` and the reason. Measurements go in
order of value: LightRNN and the adaptive softmax (bf16, then fp32, small to large), then the
full softmax.

`write_paper_speed` writes the CSV (one row per model x size x dtype, with device, date, torch
and CUDA versions and git revision) that `make gpu-check` puts in results/paper/gpu-<device>/;
`write_paper_speed` also writes `speed_summary`'s rows (LightRNN's tokens/s and its ratios, per size
and dtype) to paper-speed-summary.csv: what the report reads (`lightrnn.report.gpu_speed`).
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from lightrnn.benchmark.machine import machine_info
from lightrnn.core.csvio import PAPER_SPEED_SUMMARY, read_csv, write_csv

FILE_NAME = "paper-throughput.csv"
BPTT = 32  # the official example's sequence length (docs/PAPER.md)
NUM_LAYERS = 2
# (embed, hidden, batch) of the official speed table's rows the issue compares against.
CONFIGS: tuple[tuple[int, int, int], ...] = ((500, 500, 100), (1000, 1000, 200), (1500, 1500, 200))
MODELS = ("lightrnn", "adaptive_softmax")  # always measured; the full softmax where it fits
FULL = "full_softmax"
# First guesses of one measurement's seconds on an H100-class GPU (build, warm-up, timed train
# and eval); replaced by the slowest measured one of the same model as soon as there is one.
FIRST_GUESS_S = {"lightrnn": 12.0, "adaptive_softmax": 20.0, FULL: 45.0}
# Fraction of the device's free memory a measurement may plan to use.
MEMORY_HEADROOM = 0.85


@dataclass(frozen=True)
class PaperSpeedPlan:
    """What one paper-size run measures (the dry run shrinks every size)."""

    vocab_size: int = 793_471  # One Billion Word (lightrnn.report.paper.BILLIONW_VOCAB; gpucheck passes it)
    configs: tuple[tuple[int, int, int], ...] = CONFIGS
    dtypes: tuple[str, ...] = ("bf16", "fp32")
    models: tuple[str, ...] = MODELS
    full_softmax: bool = True
    bptt: int = BPTT
    num_layers: int = NUM_LAYERS
    device: str = "cuda"
    min_seconds: float = 1.0
    timed_steps: int = 2
    warmup_steps: int = 1


# The official example's 1-GPU tokens/s (GeForce GTX Titan X) by (embed, hidden, batch). benchmark/
# does not import report/ (tests/test_structure.py): the caller passes them, read from
# `lightrnn.report.paper.SPEED` (`lightrnn.gpucheck.titan_x_figures`), never retyped.
TitanX = dict[tuple[int, int, int], float]


def titan_x_tokens_per_s(embed_dim: int, hidden_dim: int, batch_size: int, titan_x: TitanX | None) -> float | None:
    """The Titan X figure at this size from `titan_x`, None where there is none."""
    return (titan_x or {}).get((embed_dim, hidden_dim, batch_size))


def estimate_bytes(name: str, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int,
                   batch_size: int, bptt: int, dtype: str) -> int:
    """Device memory one training step needs, by arithmetic on a meta-device build (nothing allocated).

    16 bytes per parameter (fp32 weights, gradients, two Adam moments; SparseAdam keeps dense
    moments too), plus the widest output layer's activations per token (logits, their
    log-softmax and its gradient: 3 x 4 bytes, bf16 or not: the softmax runs in fp32), plus the
    LSTM's (about 12 fp32 values of width H per layer and token). An estimate to refuse what
    cannot fit, not a measurement: the measured peak is in the CSV beside it.
    """
    from lightrnn.benchmark.throughput import ThroughputSettings, build_for_bench

    settings = ThroughputSettings(vocab_sizes=(vocab_size,), models=(name,), embed_dim=embed_dim,
                                  hidden_dim=hidden_dim, num_layers=num_layers, batch_size=batch_size, bptt=bptt)
    with torch.device("meta"):
        model = build_for_bench(name, vocab_size, settings)
    params = sum(p.numel() for p in model.parameters())
    widest = max((m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)), default=hidden_dim)
    tokens = batch_size * bptt
    del dtype  # same estimate: bf16 halves the logits but the log-softmax and its gradient stay fp32
    return int(16 * params + 12 * tokens * widest + 48 * tokens * hidden_dim * num_layers)


def free_bytes(device: torch.device) -> int:
    """Free memory of the device: CUDA's free bytes, or the host's MemAvailable for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def planned_measurements(plan: PaperSpeedPlan) -> list[tuple[str, int, int, int, str]]:
    """(model, embed, hidden, batch, dtype) in order of value: the main models first, the full softmax last."""
    order = [(name, e, h, b, dtype) for dtype in plan.dtypes for e, h, b in plan.configs for name in plan.models]
    if plan.full_softmax:
        order += [(FULL, e, h, b, dtype) for dtype in plan.dtypes for e, h, b in plan.configs]
    return order


def run_paper_speed(
    plan: PaperSpeedPlan,
    deadline: float = math.inf,
    progress: Callable[[str], None] | None = print,
    first_guess_s: dict[str, float] | None = None,
    titan_x: TitanX | None = None,
) -> list[dict[str, Any]]:
    """Every planned measurement that fits the deadline and the memory; one row per planned one.

    Row status: ok (measured), skipped (reason: budget or memory, with the numbers) or FAIL (the
    error's first line). Columns: provenance (device, date, torch, CUDA, git revision), the
    setting, train/eval tokens/s, peak and estimated memory, params, the Titan X figure at that
    size (official, 1 GPU) and the ratio to it.
    """
    from lightrnn.benchmark.throughput import ThroughputSettings, measure_once, zipf_stream
    from lightrnn.core.runtime import use_fp32_matmul

    device = torch.device(plan.device)
    use_fp32_matmul()
    info = machine_info(device)
    head = {"device": info["device"], "date": info["date"], "torch_version": info["torch_version"],
            "cuda_version": torch.version.cuda or "", "git_rev": info["git_rev"], "tf32": info["tf32"]}
    slowest: dict[str, float] = {}
    guesses = FIRST_GUESS_S if first_guess_s is None else first_guess_s
    rows: list[dict[str, Any]] = []
    streams: dict[int, Any] = {}
    for name, embed, hidden, batch, dtype in planned_measurements(plan):
        titan = titan_x_tokens_per_s(embed, hidden, batch, titan_x)
        row: dict[str, Any] = dict(head, model=name, vocab_size=plan.vocab_size, embed_dim=embed, hidden_dim=hidden,
                                   num_layers=plan.num_layers, batch_size=batch, bptt=plan.bptt, dtype=dtype,
                                   status="", reason="", train_tokens_per_s=float("nan"),
                                   eval_tokens_per_s=float("nan"), peak_memory_bytes=float("nan"),
                                   estimated_bytes=float("nan"),
                                   params=float("nan"), titan_x_tokens_per_s=titan if titan is not None else float("nan"),
                                   over_titan_x=float("nan"), seconds=0.0)
        rows.append(row)
        left = deadline - time.perf_counter()
        guess = slowest.get(name, guesses.get(name, 30.0))
        try:
            row["estimated_bytes"] = estimate_bytes(name, plan.vocab_size, embed, hidden, plan.num_layers, batch,
                                                    plan.bptt, dtype)
        except Exception as error:  # noqa: BLE001 (a model that cannot be built at this size: its row says why)
            row.update(status="FAIL", reason=f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"[:300])
        if row["status"]:
            pass
        elif guess > left:
            row.update(status="skipped", reason=f"budget: {max(0.0, left):.0f} s left, about {guess:.0f} s needed")
        elif row["estimated_bytes"] > MEMORY_HEADROOM * free_bytes(device):
            row.update(status="skipped", reason=f"memory: needs about {row['estimated_bytes'] / 2**30:.1f} GiB, "
                                                f"{free_bytes(device) / 2**30:.1f} GiB free")
        else:
            settings = ThroughputSettings(
                vocab_sizes=(plan.vocab_size,), models=(name,), embed_dim=embed, hidden_dim=hidden,
                num_layers=plan.num_layers, dropout=0.0, batch_size=batch, bptt=plan.bptt,
                warmup_steps=plan.warmup_steps, timed_steps=plan.timed_steps, min_seconds=plan.min_seconds,
                repeats=1, threads=None, device=plan.device, dtype=dtype, build_on_device=True)
            tokens = (plan.warmup_steps + plan.timed_steps) * batch * plan.bptt + batch + 1
            key = tokens
            if key not in streams:
                streams = {key: zipf_stream(plan.vocab_size, tokens)}  # one stream alive at a time
            start = time.perf_counter()
            try:
                measured = measure_once(name, plan.vocab_size, streams[key], settings)
                row.update(status="ok", train_tokens_per_s=measured["train_tokens_per_s"],
                           eval_tokens_per_s=measured["eval_tokens_per_s"],
                           peak_memory_bytes=measured["peak_memory_bytes"], params=measured["params"])
                if titan is not None:
                    row["over_titan_x"] = measured["train_tokens_per_s"] / titan
            except Exception as error:  # noqa: BLE001 (recorded; the other measurements still run)
                traceback.print_exc()
                first = (str(error).strip().splitlines() or [""])[0]
                row.update(status="FAIL", reason=f"{type(error).__name__}: {first}"[:300])
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            row["seconds"] = round(time.perf_counter() - start, 1)
            slowest[name] = max(slowest.get(name, 0.0), row["seconds"])
        if progress is not None:
            progress(f"paper speed {name} {embed}/{hidden} batch {batch} {dtype}: {row['status']} "
                     + (f"train {row['train_tokens_per_s']:.0f} tok/s, peak {row['peak_memory_bytes'] / 2**20:.0f} MiB"
                        if row["status"] == "ok" else row["reason"]))
    return rows


def write_paper_speed(rows: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """OUT_DIR/paper-throughput.csv and, beside it, the summary the report reads
    (OUT_DIR/paper-speed-summary.csv, `speed_summary`'s rows); both atomic. Returns the first."""
    write_csv(speed_summary(rows), Path(out_dir) / PAPER_SPEED_SUMMARY)
    return write_csv(rows, Path(out_dir) / FILE_NAME)


def read_paper_speed(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a paper-throughput.csv, or of the one inside a folder; [] when there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    return read_csv(path) if path.is_file() else []


def find_paper_speed(results_dir: str | Path = "results/paper") -> list[Path]:
    """Every results/paper/gpu-*/paper-throughput.csv, sorted (one per device measured)."""
    return sorted(Path(results_dir).glob(f"gpu-*/{FILE_NAME}"))


def speed_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (size, dtype) measured: LightRNN's tokens/s, its ratio to the adaptive softmax and to the Titan X figure.

    The numbers the verdict's speed row and the README's GPU section need; NaN where a model
    was not measured (skipped or failed).
    """
    measured = {(r["model"], int(r["embed_dim"]), int(r["hidden_dim"]), int(r["batch_size"]), r["dtype"]): r
                for r in rows if r.get("status") == "ok"}
    out = []
    seen = dict.fromkeys((int(r["embed_dim"]), int(r["hidden_dim"]), int(r["batch_size"]), r["dtype"]) for r in rows)
    for embed, hidden, batch, dtype in seen:
        light = measured.get(("lightrnn", embed, hidden, batch, dtype))
        adaptive = measured.get(("adaptive_softmax", embed, hidden, batch, dtype))
        full = measured.get((FULL, embed, hidden, batch, dtype))
        nan = float("nan")
        light_speed = float(light["train_tokens_per_s"]) if light else nan
        # The figure the measuring run wrote beside its rows.
        titan = next((float(r["titan_x_tokens_per_s"]) for r in rows if (int(r["embed_dim"]), int(r["hidden_dim"]),
                      int(r["batch_size"])) == (embed, hidden, batch) and r.get("titan_x_tokens_per_s") == r.get(
                      "titan_x_tokens_per_s") and r.get("titan_x_tokens_per_s") not in ("", None)), None)
        source = light or adaptive or full or {}
        out.append({
            **{key: source.get(key, "") for key in ("device", "date", "torch_version", "cuda_version", "git_rev")},
            "vocab_size": next((int(r["vocab_size"]) for r in rows if "vocab_size" in r), ""),
            "embed_dim": embed, "hidden_dim": hidden,
            "batch_size": batch, "dtype": dtype, "lightrnn_tokens_per_s": light_speed,
            "over_adaptive_softmax": light_speed / float(adaptive["train_tokens_per_s"]) if adaptive else nan,
            "over_full_softmax": light_speed / float(full["train_tokens_per_s"]) if full else nan,
            "titan_x_tokens_per_s": titan if titan is not None else nan,
            "over_titan_x": light_speed / titan if titan else nan,
        })
    return out
