"""metrics.jsonl: one JSON object per evaluation point; tables and plots read only these rows.

The whole row schema is declared here, and every row is built here, by one function per kind:
`epoch_row` (after each epoch) and `realloc_row` (after a reallocation between rounds). A row
holds, in this order: every field of `FIELDS` (null where it does not apply), the phases'
`peak_memory_<phase>_bytes` (`lightrnn.core.runtime.PhasePeaks`: train, eval, realloc), the run's
`RUN_EXTRAS`, then `EPOCH_EXTRAS` or the reallocation's `REALLOC_EXTRAS`.

FIELDS: kind ("epoch" | "realloc"), dataset, model, seed, round, epoch, step, lr, train_ppl,
valid_ppl, test_ppl, train_tokens_per_s, eval_tokens_per_s, params, param_bytes,
peak_memory_bytes, wall_s, device, realloc_objective, realloc_lower_bound, realloc_s,
realloc_nll_before, realloc_nll_after, git_rev, config_hash.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import torch

FIELDS: tuple[str, ...] = (
    "kind", "dataset", "model", "seed", "round", "epoch", "step", "lr", "train_ppl", "valid_ppl",
    "test_ppl", "train_tokens_per_s", "eval_tokens_per_s", "params", "param_bytes",
    "peak_memory_bytes", "wall_s", "device", "realloc_objective", "realloc_lower_bound",
    "realloc_s", "realloc_nll_before", "realloc_nll_after", "git_rev", "config_hash",
)
REALLOC_FIELDS: tuple[str, ...] = (
    "realloc_objective", "realloc_lower_bound", "realloc_s", "realloc_nll_before", "realloc_nll_after",
)


# Every row of a run carries these alike (`run_fields`), after FIELDS and the phases' peaks.
RUN_EXTRAS: tuple[str, ...] = ("world_size", "tf32")
# An epoch row's own extra: gradient bytes all-reduced per step (0 in one process).
EPOCH_EXTRAS: tuple[str, ...] = ("allreduce_bytes_per_step",)
# What a reallocation reports beyond REALLOC_FIELDS (LightRNN's `between_rounds` result).
REALLOC_EXTRAS: tuple[str, ...] = (
    "realloc_accumulate_s", "realloc_solve_s", "realloc_bound_s", "realloc_method", "realloc_moved",
    "realloc_tokens", "realloc_nll_predicted", "realloc_keep_bonus", "realloc_columns", "realloc_alternate",
    "realloc_column_gap",
)
PEAK_PHASE_FIELD = "peak_memory_{phase}_bytes"  # one per phase run since the previous row


def undeclared(row: dict[str, Any]) -> list[str]:
    """The keys of `row` this module does not declare (a new field belongs in the tuples above)."""
    declared = set(FIELDS + RUN_EXTRAS + EPOCH_EXTRAS + REALLOC_EXTRAS)
    phase = PEAK_PHASE_FIELD.split("{phase}")
    return [key for key in row if key not in declared and not (key.startswith(phase[0]) and key.endswith(phase[1]))]


def run_fields(
    *, dataset: str, model: str, seed: int, params: int, param_bytes: int, device: str, config_hash: str,
    world_size: int, tf32: bool,
) -> dict[str, Any]:
    """The fields every row of one run shares (its identity, size, code revision and arithmetic)."""
    return {
        "dataset": dataset, "model": model, "seed": seed, "params": params, "param_bytes": param_bytes,
        "device": device, "git_rev": git_rev(), "config_hash": config_hash, "world_size": world_size, "tf32": tf32,
    }


def epoch_row(
    run: dict[str, Any], *, round: int, epoch: int, step: int, lr: float, train: dict[str, float],
    valid: dict[str, float], test: dict[str, float] | None, peaks: dict[str, int], wall_s: float,
    allreduce_bytes_per_step: int,
) -> dict[str, Any]:
    """The row after an epoch: `train`/`valid`/`test` are {"ppl", "tokens_per_s"} (test None when not
    measured), `peaks` `PhasePeaks.row_fields()`, `run` `run_fields(...)`."""
    return make_row(
        kind="epoch", round=round, epoch=epoch, step=step, lr=lr,
        train_ppl=train["ppl"], valid_ppl=valid["ppl"], test_ppl=test["ppl"] if test else None,
        train_tokens_per_s=train["tokens_per_s"], eval_tokens_per_s=valid["tokens_per_s"],
        **peaks, wall_s=wall_s, **run, allreduce_bytes_per_step=allreduce_bytes_per_step,
    )


def realloc_row(
    run: dict[str, Any], *, round: int, epoch: int, step: int, lr: float, valid: dict[str, float],
    peaks: dict[str, int], wall_s: float, realloc: dict[str, Any],
) -> dict[str, Any]:
    """The row after a reallocation; `round` is the round about to start, `realloc` the model's
    `between_rounds` result (REALLOC_FIELDS, then its REALLOC_EXTRAS in the order it gives them)."""
    return make_row(
        kind="realloc", round=round, epoch=epoch, step=step, lr=lr,
        valid_ppl=valid["ppl"], eval_tokens_per_s=valid["tokens_per_s"], **peaks, wall_s=wall_s, **run,
        **{key: realloc.get(key) for key in REALLOC_FIELDS},
        **{key: value for key, value in realloc.items() if key not in REALLOC_FIELDS},
    )


def early_stop(rows: list[dict[str, Any]], patience: int) -> tuple[int | None, int, bool]:
    """(epoch of the best valid ppl, epochs since it, stop now?) over a run's rows in order.

    The best is the row best.pt holds (any row with a valid ppl, a reallocation's included: the
    loop keeps best.pt the same way); epochs since it count epoch rows only. With patience > 0 the
    run stops once `patience` epochs have passed without a lower valid ppl. Training and the report
    both ask this function, so the table's "stopped early" is the loop's decision.
    """
    best, best_epoch, since = float("inf"), None, 0
    for row in rows:
        valid = row.get("valid_ppl")
        if valid is not None and valid < best:
            best, best_epoch, since = valid, row.get("epoch"), 0
        elif row.get("kind") == "epoch":
            since += 1
    return best_epoch, since, patience > 0 and best_epoch is not None and since >= patience


def make_row(**values: Any) -> dict[str, Any]:
    """A row with every schema field (missing ones null) in schema order, then any extras."""
    row = {name: values.pop(name, None) for name in FIELDS}
    row.update(values)
    return {key: _json_number(value) for key, value in row.items()}


def _json_number(value: Any) -> Any:
    # JSON has no NaN/inf; a non-finite number becomes null rather than invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return _json_number(value.item())
    return value


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(nll_sum / tokens): inf, not OverflowError, when the mean nll exceeds ~709.78 nats.

    A mean that large means the model has diverged; callers raise the divergence error on inf.
    """
    try:
        return math.exp(nll_sum / tokens)
    except OverflowError:
        return math.inf


def row_to_line(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=False, allow_nan=False)


def param_stats(model: torch.nn.Module) -> tuple[int, int]:
    """(number of parameters, their bytes in the model's dtype)."""
    params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(params), int(param_bytes)


@functools.lru_cache(maxsize=1)
def git_rev() -> str | None:
    """The project's git commit, with '+dirty' when tracked code differs from it; None outside git.

    Changes under results/ and docs/ and to Markdown files do not count: a benchmark that
    rewrites its committed CSV in results/paper/, or `make docs` refreshing the README, is still
    measuring the committed code.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results",
             ":(exclude)docs", ":(exclude,glob)**/*.md"],
            cwd=root, capture_output=True,
            text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")
