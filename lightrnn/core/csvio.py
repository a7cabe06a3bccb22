"""Tidy CSV files of benchmark rows: written atomically, read back as plain dicts."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from lightrnn.core.fileio import atomic_open

# The CSV files one side writes and the other reads, named once. `make gpu-check` writes
# results/paper/gpu-<gpu>/PAPER_SPEED_SUMMARY (`lightrnn.benchmark.paper_speed`); the verdict's
# speed row and the README's GPU block read it (`lightrnn.report.gpu_speed`).
PAPER_SPEED_SUMMARY = "paper-speed-summary.csv"


def write_csv(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write `rows` (the union of their keys, in first-seen order) to `path` via a temp file + os.replace."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"write_csv: no rows to write to {path}")
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with atomic_open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV with numbers parsed (int, then float; other cells stay strings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it first with `lightrnn bench` (see docs/performance.md)")
    with open(path, newline="", encoding="utf-8") as stream:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(stream)]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            continue
    return text
