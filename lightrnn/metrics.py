"""metrics.jsonl: one JSON object per evaluation point; tables and plots read only these rows.

Row schema (docs/DESIGN.md plus kind, lr, train_ppl and the reallocation extras):
kind ("epoch" | "realloc"), dataset, model, seed, round, epoch, step, lr, train_ppl, valid_ppl,
test_ppl, train_tokens_per_s, eval_tokens_per_s, params, param_bytes, peak_memory_bytes,
wall_s, device, realloc_objective, realloc_lower_bound, realloc_s, realloc_nll_before,
realloc_nll_after, git_rev, config_hash. Fields that do not apply to a row are null.
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
