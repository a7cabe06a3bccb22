"""The whole benchmark into one folder: what `lightrnn bench all` and the Snakemake rule `bench` run.

    OUT/throughput.csv          one row per (V, model): medians, FLOPs, utilisation, machine
    OUT/throughput-repeats.csv  one row per (V, repeat, model): the raw measurements
    OUT/throughput.{png,pdf}    tokens/s and memory against V
    OUT/sizes.csv               model sizes at the paper's configurations
    OUT/realloc.csv             reallocation time and gap against V (skipped when no sizes)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from lightrnn.benchmark.plot import plot_throughput
from lightrnn.benchmark.scaling import model_sizes, realloc_scaling
from lightrnn.benchmark.throughput import ThroughputSettings, run_throughput
from lightrnn.core.csvio import write_csv


def run_suite(
    out_dir: str | Path,
    settings: ThroughputSettings,
    realloc_sizes: Sequence[int] = (10_000, 100_000),
    realloc_time_limit: float = 60.0,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Path]:
    """Throughput, sizes and reallocation benchmarks into `out_dir`; returns {name: path written}."""
    out_dir = Path(out_dir)
    summary, raw = run_throughput(settings, progress=progress)
    written = {
        "throughput": write_csv(summary, out_dir / "throughput.csv"),
        "throughput_repeats": write_csv(raw, out_dir / "throughput-repeats.csv"),
        "sizes": write_csv(model_sizes(models=settings.models), out_dir / "sizes.csv"),
    }
    png, pdf = plot_throughput(summary, out_dir / "throughput.png")
    written.update(plot_png=png, plot_pdf=pdf)
    if realloc_sizes:
        realloc_scaling(realloc_sizes, out_dir / "realloc.csv", time_limit=realloc_time_limit, seed=settings.seed)
        written["realloc"] = out_dir / "realloc.csv"
    return written
