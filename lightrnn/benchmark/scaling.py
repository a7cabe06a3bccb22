"""Scale without training: reallocation time and optimality against V, and model sizes.

Reallocation: every solver of `lightrnn.method.reallocate.solve` on the same losses, side by side:
synthetic ones (`lightrnn.benchmark.synthetic_losses`) at the sizes asked, and real ones saved by
training (`realloc_save_losses: true` -> `losses-<round>.npz`). Model sizes use each model's
closed-form `param_count`: nothing is allocated, so the full softmax at V = 10M costs no memory.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn.benchmark.machine import load_average, machine_info, reset_peak_rss
from lightrnn.benchmark.synthetic_losses import synthetic_losses
from lightrnn.core.csvio import read_csv, write_csv
from lightrnn.core.metrics import git_rev
from lightrnn.core.runtime import peak_memory_bytes
from lightrnn.method import assignment, reallocate
from lightrnn.registry import names, param_count

# The paper's configurations (docs/PAPER.md): (name, dataset, V, embed, hidden, layers).
PAPER_CONFIGS: tuple[tuple[str, str, int, int, int, int], ...] = (
    ("ptb-1000", "ptb", 10_000, 1000, 1000, 2),
    ("aclw-fr-1000", "aclw-fr", 136_912, 1000, 1000, 2),
    ("billionw-500", "billionw", 793_471, 500, 500, 2),
    ("billionw-1000", "billionw", 793_471, 1000, 1000, 2),
    ("billionw-1500", "billionw", 793_471, 1500, 1500, 2),
    ("clueweb09-512", "clueweb09", 10_240_000, 512, 512, 2),
)

# Benchmark limits: the dense exact matching up to V = 10,000 on 100 x 100 (about a minute, 2.4
# GB), the sparse one up to 4M edges (V = 27,000 at k = 12; scipy's time grows steeply past it).
BENCH_MAX_EXACT_CELLS = 100_000_000
BENCH_MAX_SPARSE_EDGES = 4_000_000
METHOD_ORDER = ("exact", "sparse", "greedy", "refine", "auction", "auto")


def _peak_rss_mb() -> float:
    return peak_memory_bytes(torch.device("cpu")) / 2**20


def compare_solvers(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    time_limit: float = 60.0,
    max_exact_cells: int = BENCH_MAX_EXACT_CELLS,
    max_sparse_edges: int = BENCH_MAX_SPARSE_EDGES,
    progress=None,
    methods: Sequence[str] = METHOD_ORDER,
) -> list[dict[str, Any]]:
    """Every solver in `methods` on one instance: a row per method (exact and sparse where within the limits).

    Each solve is timed whole (seconds, cpu_s = CPU seconds of all threads) and split into
    solve_s and bound_s. After it, untimed: the per-side (transport) bound of the same table.
    `auto` is the project's default method; where it resolves to a method already run, its row
    repeats that one. Where the exact optimum is known: gap_vs_exact = objective / exact - 1,
    bound_looseness = exact / lower_bound - 1 (how much of `gap` is the bound's, not the
    table's), transport_looseness likewise for the per-side bound alone.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    cells = num_words * num_rows * num_cols
    k = reallocate.SPARSE_CANDIDATES
    edges = num_words * (min(k, num_rows) * min(k, num_cols) + 1)
    exact_options = {"time_limit": time_limit, "max_exact_cells": max_exact_cells}
    naive = assignment.naive_bound(row_loss, col_loss)
    rows_out: dict[str, dict[str, Any]] = {}
    for method in METHOD_ORDER:
        if method not in methods:
            continue
        if method == "exact" and cells > max_exact_cells:
            continue
        if method == "sparse" and edges > max_sparse_edges:
            continue
        # `auto` runs with the library's defaults: it is what training does.
        options = {"time_limit": time_limit} if method == "auto" else exact_options
        resolved = reallocate.resolve_method(method, num_words, num_rows, num_cols, **options)
        if method == "auto" and resolved in rows_out:
            rows_out["auto"] = dict(rows_out[resolved], method="auto", resolved=resolved)
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        allocation = reallocate.solve(row_loss, col_loss, method=method, init=init, **options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        transport = reallocate.lower_bound(row_loss, col_loss, allocation.rows, allocation.cols,
                                           bound_slot_iterations=0, bound_slot_candidates=0)
        rows_out[method] = {
            "method": method, "resolved": resolved, "seconds": round(wall, 2), "cpu_s": round(cpu, 2),
            "solve_s": round(allocation.seconds - allocation.bound_seconds, 2),
            "bound_s": round(allocation.bound_seconds, 2), "objective": allocation.objective,
            "lower_bound": allocation.lower_bound, "transport_bound": min(transport, allocation.objective),
            "naive_bound": naive, "gap": allocation.objective / allocation.lower_bound - 1.0,
            "peak_rss_mb": round(_peak_rss_mb()),
        }
        if progress is not None:
            progress(f"V={num_words} {method}: {wall:.1f}s objective {allocation.objective:.6g} "
                     f"bound {allocation.lower_bound:.6g}")
    rows = [rows_out[m] for m in METHOD_ORDER if m in rows_out]
    greedy = rows_out["greedy"]["objective"] if "greedy" in rows_out else float("nan")
    best_bound = max(row["lower_bound"] for row in rows)
    exact = rows_out["exact"]["objective"] if "exact" in rows_out else None
    for row in rows:
        row["gain_vs_greedy"] = 1.0 - row["objective"] / greedy
        row["best_lower_bound"] = best_bound
        row["gap_vs_best_bound"] = row["objective"] / best_bound - 1.0
        if exact is not None:
            row["exact_objective"] = exact
            row["gap_vs_exact"] = row["objective"] / exact - 1.0
            row["bound_looseness"] = exact / row["lower_bound"] - 1.0
            row["transport_looseness"] = exact / row["transport_bound"] - 1.0
    return rows


def realloc_scaling(
    sizes: Sequence[int],
    out: str | Path,
    time_limit: float = 60.0,
    seed: int = 0,
    losses: Sequence[str | Path] = (),
    append: bool = False,
    max_exact_cells: int = BENCH_MAX_EXACT_CELLS,
    max_sparse_edges: int = BENCH_MAX_SPARSE_EDGES,
    progress=None,
    methods: Sequence[str] = METHOD_ORDER,
) -> list[dict[str, Any]]:
    """`compare_solvers` on synthetic losses at every V in `sizes` and on every file in `losses`.

    Rows (CSV at `out`, atomically; `append` keeps the rows already there): the instance
    (losses = "synthetic" or the file's name, V, R, C, seed, losses_s: seconds to generate or
    load them), the method's numbers (see
    `compare_solvers`), peak RSS of the process (reset at the start; cumulative over the
    instances) and provenance (machine, software, date, git revision, load average).
    `time_limit` caps refine's search per instance (seconds).
    """
    if any(int(v) < 2 for v in sizes):
        raise ValueError(f"realloc sizes must be integers >= 2, got {list(sizes)}")
    if not sizes and not losses:
        raise ValueError("realloc benchmark: nothing to run; give --sizes V... and/or --losses FILE.npz")
    if time_limit <= 0:
        raise ValueError(f"realloc time_limit must be > 0 seconds, got {time_limit}")
    unknown = sorted(set(methods) - set(METHOD_ORDER))
    if unknown or not methods:
        raise ValueError(f"realloc methods: got {unknown or 'none'}; choose from {', '.join(METHOD_ORDER)}")
    from lightrnn.core.loaders import input_file

    for path in losses:
        input_file(path, "--losses", "training writes losses-<round>.npz into its output folder with the config key "
                   "realloc_save_losses: true")
    previous = read_csv(out) if append and Path(out).is_file() else []
    # peak_rss_mb is the process's ru_maxrss: reset it so an earlier benchmark in this process
    # (the throughput run's 7 GB full softmax) does not show up as the solver's memory.
    reset_peak_rss()
    instances: list[tuple[dict[str, Any], Any]] = [
        ({"losses": "synthetic", "seed": int(seed)}, lambda v=int(v): (*synthetic_losses(v, int(seed)), None))
        for v in sizes
    ]
    instances += [({"losses": Path(path).name, "seed": ""}, lambda p=path: reallocate.load_losses(p)) for path in losses]
    rows_out: list[dict[str, Any]] = []
    for source, load in instances:
        started = time.perf_counter()
        row_loss, col_loss, init = load()
        # losses_s: generating (synthetic) or loading (saved) the losses; training's accumulation
        # pass is benchmarked on its own (`lightrnn bench accumulate`).
        head = dict(source, V=row_loss.shape[0], R=row_loss.shape[1], C=col_loss.shape[1],
                    losses_s=round(time.perf_counter() - started, 2))
        head.update(machine_info(torch.device("cpu")), load_average=load_average())
        for row in compare_solvers(row_loss, col_loss, init, time_limit, max_exact_cells, max_sparse_edges, progress,
                                   methods):
            rows_out.append(dict(head, **row))
        del row_loss, col_loss
    write_csv(previous + rows_out, out)
    return rows_out


def model_sizes(
    configs: Sequence[tuple[str, str, int, int, int, int]] = PAPER_CONFIGS, models: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Closed-form parameters and fp32 bytes of every model at every configuration (no allocation).

    Models are at their defaults (class softmax sqrt(V) classes, adaptive softmax cutoffs at
    80% / 95% of a Zipfian mass); `params_over_lightrnn` = params / LightRNN's params there.
    """
    models = list(models or names())
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    revision = git_rev() or "unknown"
    rows = []
    for config_name, dataset, vocab_size, embed_dim, hidden_dim, num_layers in configs:
        counts = {
            name: param_count(name, vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers)
            for name in models
        }
        reference = counts.get("lightrnn")
        for name, params in counts.items():
            rows.append({
                "config": config_name, "dataset": dataset, "vocab_size": vocab_size, "embed_dim": embed_dim,
                "hidden_dim": hidden_dim, "num_layers": num_layers, "model": name, "params": params,
                "param_bytes_fp32": 4 * params,
                "params_over_lightrnn": params / reference if reference else float("nan"),
                "date": date, "git_rev": revision,
            })
    return rows
