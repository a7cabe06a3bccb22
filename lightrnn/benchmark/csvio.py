"""Tidy CSV files of benchmark rows: written atomically, read back as plain dicts."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def readable_mode(path: str | os.PathLike) -> None:
    """Give a file written through `tempfile.mkstemp` (mode 0600) the mode a plain `open` would (0666 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_csv(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write `rows` (the union of their keys, in first-seen order) to `path` via a temp file + os.replace."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"write_csv: no rows to write to {path}")
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        readable_mode(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV with numbers parsed (int, then float; other cells stay strings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it first with `lightrnn bench` (see README, performance)")
    with open(path, newline="", encoding="utf-8") as stream:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(stream)]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            continue
    return text
