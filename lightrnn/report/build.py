"""`write_report`: every table and figure of a run, from its metrics files, into one folder."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Iterable

from lightrnn.core.fileio import write_text
from lightrnn.report.jobs import jobs_table, read_job_benchmarks
from lightrnn.report.layout import (
    VERDICT_SUMMARY,
    dataset_family,
    paper_figure,
    planned_outputs,
    resolve_aclw_plot_dataset,
)
from lightrnn.report.plots import perplexity_plot, size_speed_chart
from lightrnn.report.render import RENDERERS, Table, to_html
from lightrnn.report.results import Results, load_evals, load_metrics
from lightrnn.report.tables import BUILDERS
from lightrnn.report.verdict import verdict_summary, verdict_table


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def write_report(
    metrics_paths: Iterable[Path | str],
    eval_paths: Iterable[Path | str],
    out_dir: Path | str,
    aclw_plot_dataset: str | None = "auto",
    date: str | None = None,
    bench_dir: Path | str | None = None,
    run: str | None = None,
    benchmarks_dir: Path | str | None = None,
    shared_benchmarks: Iterable[Path | str] = (),
) -> list[Path]:
    """Render tables (OUT/tables/*.{md,tex,csv,html}) and plots (OUT/plots/*.{png,pdf}).

    Writes exactly `layout.planned_outputs(datasets, models, aclw_plot_dataset)` for the
    datasets and models found in the rows, and returns those paths. `date` (ISO, default today
    in UTC) goes into every CSV row and figure footer with the rows' git revision and device.
    The verdict table (tables/verdict.*) reads the speed claim from `bench_dir` (a `lightrnn
    bench` folder; "not run here" without one) and names the run `run` (default: OUT's name).
    """
    rows = load_metrics(metrics_paths)
    evals = load_evals(eval_paths)
    if not rows:
        raise ValueError("write_report: the metrics files hold no rows; train a model first")
    date = date or today()
    out_dir = Path(out_dir)
    datasets = sorted({row["dataset"] for row in rows})
    models = sorted({row["model"] for row in rows})
    written: list[Path] = []

    def write_table(table: Table) -> None:
        for fmt, render in RENDERERS.items():
            path = out_dir / "tables" / f"{table.name}.{fmt}"
            write_text(path, render(table))
            written.append(path)

    results = Results(rows, evals)  # grouped once for every table, figure and the verdict
    verdict = verdict_table(results, date, bench_dir, run or out_dir.resolve().name)
    write_table(verdict)
    written.append(write_text(out_dir / VERDICT_SUMMARY, to_html(verdict_summary(verdict))))
    families = {dataset_family(dataset) for dataset in datasets}
    for name, builder in BUILDERS.items():
        if name.split("-")[0] in ("aclw", "billionw", "benchmarks") and name.split("-")[0] not in families:
            continue
        if name == "reallocation" and "lightrnn" not in models:
            continue
        write_table(builder(results, date))
        if name == "size-speed" and benchmarks_dir is not None:  # what the jobs cost, beside the speed
            write_table(jobs_table(read_job_benchmarks(benchmarks_dir, shared_benchmarks), date))
    aclw_plot_dataset = resolve_aclw_plot_dataset(aclw_plot_dataset, datasets)
    plots = out_dir / "plots"
    if aclw_plot_dataset in datasets and "lightrnn" in models:
        written += perplexity_plot(results, aclw_plot_dataset, plots / paper_figure(aclw_plot_dataset), date)
    for dataset in datasets:
        written += perplexity_plot(results, dataset, plots / f"curves-{dataset}", date, style="curves")
    written += size_speed_chart(results, plots / "size-speed", date)
    expected = {
        out_dir / path for path in planned_outputs(datasets, models, aclw_plot_dataset, benchmarks_dir is not None)
    }
    if set(written) != expected:
        # The Snakefile declares planned_outputs; a difference would be a bug here, not bad input.
        raise RuntimeError(f"write_report wrote {sorted(map(str, set(written) ^ expected))} unlike planned_outputs")
    return written
