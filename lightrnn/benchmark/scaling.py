"""Scale without training: reallocation time and optimality gap against V, and model sizes.

Reallocation reuses `benchmarks/bench_realloc.py` (its synthetic loss generator and its timing
of greedy vs refine, with the capacity-aware lower bound), so there is one definition of that
benchmark. Model sizes use each model's closed-form `param_count`: nothing is allocated, so
the full softmax at V = 10M costs no memory.
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from lightrnn.benchmark.machine import reset_peak_rss
from lightrnn.metrics import git_rev
from lightrnn.models import names, param_count

REPO_ROOT = Path(__file__).resolve().parents[2]
REALLOC_SCRIPT = REPO_ROOT / "benchmarks" / "bench_realloc.py"

# The paper's configurations (docs/PAPER.md): (name, dataset, V, embed, hidden, layers).
PAPER_CONFIGS: tuple[tuple[str, str, int, int, int, int], ...] = (
    ("ptb-1000", "ptb", 10_000, 1000, 1000, 2),
    ("aclw-fr-1000", "aclw-fr", 136_912, 1000, 1000, 2),
    ("billionw-500", "billionw", 793_471, 500, 500, 2),
    ("billionw-1000", "billionw", 793_471, 1000, 1000, 2),
    ("billionw-1500", "billionw", 793_471, 1500, 1500, 2),
    ("clueweb09-512", "clueweb09", 10_240_000, 512, 512, 2),
)


def _realloc_module() -> ModuleType:
    if not REALLOC_SCRIPT.is_file():
        raise FileNotFoundError(
            f"{REALLOC_SCRIPT} is missing: the reallocation benchmark runs from a source checkout of the repository"
        )
    spec = importlib.util.spec_from_file_location("bench_realloc", REALLOC_SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("bench_realloc", module)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def realloc_scaling(sizes: Sequence[int], out: str | Path, time_limit: float = 60.0, seed: int = 0) -> list[dict[str, Any]]:
    """Run `benchmarks/bench_realloc.py` for every V in `sizes`; its rows are written to `out` (CSV).

    One row per (V, method in greedy/refine): seconds, cpu_s, objective, lower_bound,
    gap = objective / lower_bound - 1, gain_vs_greedy, peak RSS (of the process since this call,
    cumulative over the sizes). `time_limit` caps refine's search per size (seconds).
    """
    if not sizes or any(int(v) < 2 for v in sizes):
        raise ValueError(f"realloc sizes must be integers >= 2, got {list(sizes)}")
    if time_limit <= 0:
        raise ValueError(f"realloc time_limit must be > 0 seconds, got {time_limit}")
    module = _realloc_module()
    # Its peak_rss_mb is the process's ru_maxrss: reset it so an earlier benchmark in this
    # process (the throughput run's 7 GB full softmax) does not show up as the solver's memory.
    reset_peak_rss()
    rows = module.run([int(v) for v in sizes], int(seed), float(time_limit), Path(out))
    return rows


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
