"""Reading metrics files and summarising one training run per (dataset, model).

Tables and plots read only `metrics.jsonl` (one JSON object per evaluation point, written by
`lightrnn.training.train`) and `eval.json` (the exact test perplexity of the best checkpoint, written by
`lightrnn eval`). Nothing here is typed by hand.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lightrnn.core.loaders import load_eval, read_metrics

Row = dict[str, Any]


def load_metrics(paths: Iterable[Path | str]) -> list[Row]:
    """The rows of every metrics.jsonl file, in file order, each checked (`lightrnn.core.loaders.read_metrics`):
    dataset and model named, every number of the schema typed and in range."""
    rows: list[Row] = []
    for path in paths:
        rows.extend(read_metrics(path))
    return rows


def load_evals(paths: Iterable[Path | str]) -> list[Row]:
    """The objects of every eval.json file, each checked (`lightrnn.core.loaders.load_eval`): dataset and
    model named, ppl a finite number >= 1."""
    return [load_eval(path) for path in paths]


def find_results(results_dir: Path | str) -> tuple[list[Path], list[Path]]:
    """metrics.jsonl and eval.json files laid out as RESULTS/<dataset>/<model>/ (sorted)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"--results {results_dir}: no such folder; give the run folder, e.g. results/smoke")
    # <model>.old-<hash>/ folders hold runs a changed config moved aside (kept, not reported).
    metrics = sorted(path for path in results_dir.glob("*/*/metrics.jsonl") if ".old-" not in path.parent.name)
    if not metrics:
        raise ValueError(
            f"--results {results_dir}: no <dataset>/<model>/metrics.jsonl below it; train a model first"
        )
    return metrics, sorted(path for path in results_dir.glob("*/*/eval.json") if ".old-" not in path.parent.name)


@dataclass(frozen=True)
class RunSummary:
    """One (dataset, model) training run reduced to the numbers the tables show."""

    dataset: str
    model: str
    params: int | None
    param_bytes: int | None
    test_ppl: float | None
    ppl_source: str  # "eval.json" (exact, best checkpoint) or "metrics.jsonl"
    best_valid_ppl: float | None
    epochs: int
    train_tokens_per_s: float | None
    eval_tokens_per_s: float | None
    peak_memory_bytes: int | None
    device: str | None
    git_rev: str | None
    config_hash: str | None


def epoch_rows(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.get("kind", "epoch") == "epoch"]


def realloc_rows(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.get("kind") == "realloc"]


def group_runs(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows by (dataset, model), keeping file order inside each run."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row["dataset"], row["model"]), []).append(row)
    return grouped


@dataclass(frozen=True)
class Round:
    """A segment of consecutive epoch rows with the same `round`, and the reallocation that
    followed it (file order; None after the last round or for a model that never reallocates)."""

    index: Any  # the rows' `round`
    epochs: tuple[Row, ...]
    realloc: Row | None = None

    @property
    def last(self) -> Row:
        """The round's last epoch row: its valid and test perplexity are the round's result."""
        return self.epochs[-1]


def split_rounds(run: list[Row]) -> list[Round]:
    """The one place a run's rows are cut into rounds: a new round starts at an epoch row whose
    `round` differs from the previous one's, or after a reallocation row; a reallocation row ends
    the round it follows (one before any epoch has nothing to follow and is left out)."""
    segments: list[tuple[Any, list[Row], list[Row | None]]] = []
    for row in run:
        if row.get("kind", "epoch") == "epoch":
            if not segments or segments[-1][0] != row.get("round") or segments[-1][2][0] is not None:
                segments.append((row.get("round"), [], [None]))
            segments[-1][1].append(row)
        elif row.get("kind") == "realloc" and segments:
            segments[-1][2][0] = row
    return [Round(index, tuple(epochs), realloc[0]) for index, epochs, realloc in segments]


@dataclass(frozen=True)
class Run:
    """One training run (a dataset and a model): its rows in file order and the views every table,
    plot and verdict reads, each computed once."""

    dataset: str
    model: str
    rows: list[Row]

    @functools.cached_property
    def epochs(self) -> list[Row]:
        return epoch_rows(self.rows)

    @functools.cached_property
    def reallocs(self) -> list[Row]:
        return realloc_rows(self.rows)

    @functools.cached_property
    def rounds(self) -> list[Round]:
        return split_rounds(self.rows)

    @functools.cached_property
    def axis(self) -> list[tuple[int, Row]]:
        return epoch_axis(self.rows)


def runs_of(rows: list[Row]) -> dict[tuple[str, str], Run]:
    """The report's run model: rows grouped by (dataset, model) into `Run`s, file order kept."""
    return {(dataset, model): Run(dataset, model, run) for (dataset, model), run in group_runs(rows).items()}


def _median(values: Iterable[Any]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return statistics.median(present) if present else None


def _last(values: Iterable[Any]) -> Any:
    present = [value for value in values if value is not None]
    return present[-1] if present else None


@dataclass(frozen=True)
class Results:
    """What one report reads, grouped once: the metrics rows, the eval.json records, and (computed
    on first use, then kept) the runs and their summaries. Every table, plot and verdict takes it."""

    rows: list[Row]
    evals: list[Row]

    @functools.cached_property
    def runs(self) -> dict[tuple[str, str], Run]:
        return runs_of(self.rows)

    @functools.cached_property
    def summaries(self) -> dict[tuple[str, str], RunSummary]:
        return _summaries(self.runs, self.evals)


def summarize(rows: list[Row], evals: list[Row]) -> dict[tuple[str, str], RunSummary]:
    """One RunSummary per (dataset, model) (`Results(rows, evals).summaries`)."""
    return Results(rows, evals).summaries


def _summaries(runs: dict[tuple[str, str], Run], evals: list[Row]) -> dict[tuple[str, str], RunSummary]:
    """One RunSummary per (dataset, model), from its metrics rows and (if present) its eval.json.

    Test perplexity: eval.json's exact value when there is one; otherwise the test perplexity
    recorded with the best validation perplexity (the checkpoint `best.pt` keeps).
    """
    eval_by_run: dict[tuple[str, str], Row] = {}
    for record in evals:
        key = (record["dataset"], record["model"])
        if key in eval_by_run:
            raise ValueError(f"two eval.json files for dataset {key[0]!r}, model {key[1]!r}; keep one run per pair")
        eval_by_run[key] = record
    summaries = {}
    for key, whole in runs.items():
        run, epochs = whole.rows, whole.epochs
        record = eval_by_run.get(key)
        scored = [row for row in epochs if row.get("valid_ppl") is not None]
        best = min(scored, key=lambda row: row["valid_ppl"]) if scored else None
        if record is not None:
            test_ppl, source = float(record["ppl"]), "eval.json"
        else:
            with_test = [row for row in epochs if row.get("test_ppl") is not None]
            best_tested = min(with_test, key=lambda row: row.get("valid_ppl") or float("inf")) if with_test else None
            test_ppl = float(best_tested["test_ppl"]) if best_tested else None
            source = "metrics.jsonl"
        peaks = [row.get("peak_memory_bytes") for row in run if row.get("peak_memory_bytes") is not None]
        eval_speed = record.get("tokens_per_s") if record else None
        summaries[key] = RunSummary(
            dataset=key[0],
            model=key[1],
            params=_last(row.get("params") for row in run) or (record or {}).get("params"),
            param_bytes=_last(row.get("param_bytes") for row in run),
            test_ppl=test_ppl,
            ppl_source=source,
            best_valid_ppl=float(best["valid_ppl"]) if best else None,
            epochs=len(epochs),
            train_tokens_per_s=_median(row.get("train_tokens_per_s") for row in epochs),
            eval_tokens_per_s=float(eval_speed) if eval_speed else _median(row.get("eval_tokens_per_s") for row in epochs),
            peak_memory_bytes=max(peaks) if peaks else None,
            device=_last(row.get("device") for row in run) or (record or {}).get("device"),
            git_rev=_last(row.get("git_rev") for row in run) or (record or {}).get("git_rev"),
            config_hash=_last(row.get("config_hash") for row in run),
        )
    return summaries


def epoch_axis(run: list[Row]) -> list[tuple[int, Row]]:
    """(epochs completed, row) for every row of one run, in file order.

    Epoch rows count 1, 2, 3, ... across rounds whatever their own `epoch` field holds; a
    reallocation row sits at the number of epochs completed when it ran, so it lines up with
    the end of the round it follows.
    """
    done = 0
    axis = []
    for row in run:
        if row.get("kind", "epoch") == "epoch":
            done += 1
        axis.append((done, row))
    return axis
