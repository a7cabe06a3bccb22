"""The paper-size GPU throughput, read back for the verdict's speed row and the GPU block of docs/gpu.md.

`make gpu-check` (`lightrnn.gpucheck`) measures LightRNN and the adaptive softmax (the full
softmax where it fits) at V = 793,471 and writes results/paper/gpu-<gpu>/paper-speed-summary.csv:
one row per (size, dtype) with LightRNN's training tokens/s, its ratio to the adaptive softmax, to
the full softmax and to the official example's Titan X figure, with provenance. This module only
reads that file (report/ never imports benchmark/): `find_gpu_dir` picks the newest measured
folder, `load_gpu_speed` parses it, `speed_judgement` states what it says about the 2x claim and
`readme_block` renders the README's table. Without a committed GPU folder everything says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightrnn.core.csvio import PAPER_SPEED_SUMMARY, read_csv
from lightrnn.core.errors import DataError
from lightrnn.report.render import markdown_table, wrap_prose

README_SECTION = "gpu-speed"
SPEEDUP = 2.0  # the paper's claim: LightRNN trains 2x faster (docs/PAPER.md)
TITAN_X_GOAL = 10.0  # the goal: 10x the official Titan X figure at 1500/1500 bf16
COLUMNS = ("embed_dim", "hidden_dim", "batch_size", "dtype", "lightrnn_tokens_per_s", "over_adaptive_softmax")


@dataclass(frozen=True)
class GpuSpeed:
    """One measured folder: where it is and its summary rows (floats NaN where not measured)."""

    folder: Path
    rows: list[dict[str, Any]]

    @property
    def device(self) -> str:
        return str(self.rows[0].get("device") or "?")

    def provenance(self) -> str:
        first = self.rows[0]
        cuda = f", CUDA {first['cuda_version']}" if first.get("cuda_version") else ""
        return (f"`{self.folder.as_posix()}/` ({self.device}, {first.get('date', '?')}, torch "
                f"{first.get('torch_version', '?')}{cuda}, git {str(first.get('git_rev', '?'))[:7]})")

    def measured(self) -> list[dict[str, Any]]:
        """The rows where LightRNN and the adaptive softmax were both measured."""
        return [row for row in self.rows if _finite(row["lightrnn_tokens_per_s"]) and _finite(row["over_adaptive_softmax"])]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def find_gpu_dir(paper_dir: Path | str = "results/paper") -> Path | None:
    """The newest results/paper/gpu-*/ folder holding a summary (by its date column), or None."""
    found = [(str(read_csv(path)[0].get("date", "")), path.parent)
             for path in sorted(Path(paper_dir).glob(f"gpu-*/{PAPER_SPEED_SUMMARY}"))]
    found = [entry for entry in found if entry[0]]
    return max(found)[1] if found else None


def load_gpu_speed(folder: Path | str) -> GpuSpeed:
    """FOLDER/paper-speed-summary.csv, checked: the columns the report uses, numbers where numbers belong."""
    folder = Path(folder)
    path = folder / PAPER_SPEED_SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make gpu-check` on a CUDA machine writes it")
    try:
        rows = read_csv(path)
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path}: not a readable CSV ({error}); rerun `make gpu-check`") from None
    if not rows:
        raise DataError(f"{path}: no rows; rerun `make gpu-check`")
    missing = [column for column in COLUMNS if column not in rows[0]]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} column; rerun `make gpu-check`")
    for index, row in enumerate(rows, start=2):
        for column in ("embed_dim", "hidden_dim", "batch_size"):
            if not isinstance(row[column], int) or row[column] < 1:
                raise DataError(f"{path}, line {index}: {column} must be a positive integer, got {row[column]!r}")
        for column in ("lightrnn_tokens_per_s", "over_adaptive_softmax", "over_full_softmax", "over_titan_x",
                       "titan_x_tokens_per_s"):
            value = row.get(column, math.nan)
            row[column] = math.nan if value in ("", None) else value
            if not isinstance(row[column], (int, float)):
                raise DataError(f"{path}, line {index}: {column} must be a number, got {row[column]!r}")
    return GpuSpeed(folder, rows)


def speed_judgement(gpu: GpuSpeed) -> tuple[str, str, bool | None]:
    """(measured text, verdict text, whether LightRNN is >= 2x the adaptive softmax at every measured
    size and dtype: None when no size measured both models)."""
    measured = gpu.measured()
    if not measured:
        return (f"GPU ({gpu.device}): no size measured both LightRNN and the adaptive softmax",
                "no GPU comparison", None)
    parts = [f"{_setting(row)}: {row['lightrnn_tokens_per_s']:,.0f} tokens/s, {row['over_adaptive_softmax']:.2f}x "
             "the adaptive softmax" + (f", {row['over_titan_x']:.1f}x the official Titan X"
                                       if _finite(row.get("over_titan_x")) else "")
             for row in measured]
    vocab = measured[0].get("vocab_size")
    text = f"GPU ({gpu.device}, V = {vocab:,}): " if isinstance(vocab, int) else f"GPU ({gpu.device}): "
    ratios = [row["over_adaptive_softmax"] for row in measured]
    every = min(ratios) >= SPEEDUP
    verdict = (f"{min(ratios):.2f}x or more against the adaptive softmax at every GPU size measured" if every else
               f"{sum(r >= SPEEDUP for r in ratios)} of {len(ratios)} GPU settings at 2x or more against the "
               f"adaptive softmax (lowest {min(ratios):.2f}x)")
    return text + "; ".join(parts), verdict, every


def _setting(row: dict[str, Any]) -> str:
    return f"{row['embed_dim']}/{row['hidden_dim']} batch {row['batch_size']} {row['dtype']}"


def readme_block(gpu: GpuSpeed | None, command: str) -> str:
    """The GPU throughput block (docs/gpu.md): a provenance sentence and the table, or what to run."""
    if gpu is None:
        return "\n".join(wrap_prose([
            f"Generated by `{command}`: no GPU measurement is committed yet (no "
            "`results/paper/gpu-*/paper-speed-summary.csv`). `make gpu-check` on a CUDA machine writes one; "
            "`lightrnn report readme` then fills this table and the verdict's speed row reads it."]))
    sentence = (f"Generated by `{command}` from {gpu.provenance()}: LightRNN's training tokens/s at the paper's "
                f"One Billion Word sizes, its ratio to the adaptive softmax (the claim: >= {SPEEDUP:g}x) and to "
                f"the official example's Titan X figure (the goal: >= {TITAN_X_GOAL:g}x at 1500/1500 bf16).")
    header = ["setting", "LightRNN tokens/s", "x adaptive softmax", "x full softmax", "Titan X tokens/s", "x Titan X"]
    cells = [[_setting(row), _number(row["lightrnn_tokens_per_s"], ",.0f"), _number(row["over_adaptive_softmax"], ".2f"),
              _number(row["over_full_softmax"], ".2f"), _number(row["titan_x_tokens_per_s"], ",.0f"),
              _number(row["over_titan_x"], ".1f")] for row in gpu.rows]
    return "\n".join([*wrap_prose([sentence]), "", *markdown_table(header, cells, left=1)])


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if _finite(value) else "not measured"
