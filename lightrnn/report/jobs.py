"""The jobs table: what every Snakemake job of a run cost, from the rules' `benchmark:` files.

Each rule of the workflow writes `<run>/benchmarks/<rule>/<wildcards>.tsv` (Snakemake measures the
job's wall time, peak resident memory and CPU time for free); the data rules a run shares with
other runs (tiny_archive, fetch, prepare) write `<resources>/benchmarks/<rule>/...` instead, and the
workflow passes the files of this run's corpora (`shared`). This module reads those files and
renders one line per job, so the report shows what a run cost beside its speed table: a project
about speed and memory should not make its users time their own jobs.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from lightrnn.report.layout import dataset_label, model_label
from lightrnn.report.render import Table, format_float

# Snakemake's benchmark columns this table reads (the others: max_vms, max_uss, max_pss, io_*).
COLUMNS = ("s", "max_rss", "mean_load", "cpu_time")
# Rules that run once per (dataset, model), per dataset, or once: the order of the table.
RULE_ORDER = ("tiny_archive", "fetch", "prepare", "encode", "train", "evaluate", "render_report",
              "render_study", "bench")


def _number(value: str | None) -> float | None:
    """A benchmark cell as a float; Snakemake writes 'NA' where it could not measure."""
    try:
        return float(value) if value not in (None, "", "NA", "-") else None
    except ValueError:
        return None


def read_job_benchmarks(folder: Path | str | None, shared: Iterable[Path | str] = ()) -> list[dict[str, Any]]:
    """One record per benchmark file under `folder` (`<rule>/<parts...>.tsv`) and per existing file of
    `shared` (`.../benchmarks/<rule>/<parts...>.tsv`): rule, the wildcard parts of its path, and the
    measured columns (the last repeat when a file has several lines). A file that is not a Snakemake
    benchmark table is named in the error."""
    found: dict[Path, tuple[str, ...]] = {}
    if folder is not None and Path(folder).is_dir():
        for path in sorted(Path(folder).rglob("*.tsv")):
            found[path] = path.relative_to(folder).with_suffix("").parts
    for path in map(Path, shared):
        if path.is_file() and "benchmarks" in path.parts:
            after = len(path.parts) - path.parts[::-1].index("benchmarks")
            found[path] = path.with_suffix("").parts[after:]
    records = []
    for path, (rule, *parts) in found.items():
        with path.open(encoding="utf-8", newline="") as handle:
            lines = list(csv.DictReader(handle, delimiter="\t"))
        if not lines or "s" not in lines[-1]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column); delete it and rerun the job")
        last = lines[-1]
        records.append({"rule": rule, "job": "/".join(parts), **{key: _number(last.get(key)) for key in COLUMNS}})
    order = {rule: index for index, rule in enumerate(RULE_ORDER)}
    return sorted(records, key=lambda r: (order.get(r["rule"], len(order)), r["rule"], r["job"]))


def _job_label(rule: str, job: str) -> str:
    """'ACLW French · LightRNN' for train/evaluate/<dataset>/<model>, the dataset for encode."""
    parts = job.split("/") if job else []
    if rule in ("train", "evaluate") and len(parts) == 2:
        return f"{dataset_label(parts[0])} · {model_label(parts[1])}"
    if rule in ("encode", "prepare") and len(parts) == 1:
        return dataset_label(parts[0])
    if rule in ("fetch", "tiny_archive") and len(parts) == 2:
        return parts[0]  # the corpus (parts[1]: its archive's file name)
    return job or "–"


def jobs_table(records: list[dict[str, Any]], date: str) -> Table:
    """Rule, job, wall time, peak memory, CPU time and mean load of every job that ran."""
    cells, out = [], []
    for record in records:
        rss = record["max_rss"]
        cells.append([
            record["rule"],
            _job_label(record["rule"], record["job"]),
            format_float(record["s"], 1),
            format_float(rss, 0) if rss is not None else "–",
            format_float(record["cpu_time"], 1),
            format_float(record["mean_load"], 0),
        ])
        out.append({**record, "date": date})
    if not cells:
        cells = [["–", "no benchmark file: run the workflow (snakemake) to measure its jobs", "–", "–", "–", "–"]]
    note = ("Measured by Snakemake for each job (the rules' benchmark: files under <run>/benchmarks/): wall "
            "seconds, peak resident memory (MB), CPU seconds and mean CPU load (%). Snakemake samples a job's "
            "processes about once a second, so a job shorter than that shows little memory or CPU. A job that was "
            "up to date in this run keeps the numbers of the run that made it. tiny_archive, fetch and prepare "
            "are shared with other runs (their files under <resources>/benchmarks/). render_report writes this "
            "table, so its own cost is in <run>/benchmarks/render_report.tsv once it ends (here: the previous "
            "render's, when there was one).")
    header = ["Rule", "Job", "Wall s", "Peak RSS MB", "CPU s", "Mean load %"]
    return Table("jobs", "What each job of the run cost", header, cells, out, note=note, left=2)
