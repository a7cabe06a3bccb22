"""Live training curves: an optional TensorBoard writer fed by the metrics rows.

`train.tensorboard: true` (events in OUT/tensorboard/) or `lightrnn train --tensorboard DIR`
turns it on; it needs the optional `tensorboard` package (`pip install -e ".[tensorboard]"`),
imported only then, so nothing else in the project imports it. The writer sees exactly the rows
appended to metrics.jsonl, at the moment they are appended; metrics.jsonl stays the source of
truth (a resumed run writes its new rows into the same folder; TensorBoard shows every event file).

Scalars, at the row's global step:
  ppl/train, ppl/valid, ppl/test              epoch rows
  speed/train_tokens_per_s, speed/eval_tokens_per_s, lr
  realloc/valid_ppl (valid ppl right after the reallocation), realloc/objective,
  realloc/lower_bound, realloc/seconds, realloc/nll_before, realloc/nll_after   realloc rows
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightrnn.core.errors import UsageError, path_kind

EPOCH_TAGS = {"train_ppl": "ppl/train", "valid_ppl": "ppl/valid", "test_ppl": "ppl/test"}
REALLOC_TAGS = {
    "valid_ppl": "realloc/valid_ppl", "realloc_objective": "realloc/objective",
    "realloc_lower_bound": "realloc/lower_bound", "realloc_s": "realloc/seconds",
    "realloc_nll_before": "realloc/nll_before", "realloc_nll_after": "realloc/nll_after",
}
COMMON_TAGS = {"train_tokens_per_s": "speed/train_tokens_per_s", "eval_tokens_per_s": "speed/eval_tokens_per_s",
               "lr": "lr"}


def _tensorboard_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "train.tensorboard / --tensorboard needs the tensorboard package: pip install -e \".[tensorboard]\" "
            "(or pip install tensorboard), or turn it off"
        ) from None
    return SummaryWriter


def check_curves(out_dir: str | os.PathLike, enabled: bool, log_dir: str | os.PathLike | None) -> None:
    """Refuse, before a run writes anything (its folder, config.yaml, metrics.jsonl), curves it could not write:
    a log folder that is a file or lies under one, or no tensorboard package."""
    if log_dir is None and not enabled:
        return
    what = "--tensorboard" if log_dir is not None else "train.tensorboard: true (OUT/tensorboard)"
    target = Path(log_dir) if log_dir is not None else Path(out_dir) / "tensorboard"
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "" if existing == target else f" (under {existing})"
        raise UsageError(f"{what} {target}: {path_kind(existing)} is in the way of its folder{where}; "
                         "pass a folder path")
    _tensorboard_writer()


class Curves:
    """A callable taking each metrics row (a dict) and writing its numbers as TensorBoard scalars."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        self.writer = _tensorboard_writer()(log_dir=str(self.log_dir))

    def __call__(self, row: dict[str, Any]) -> None:
        tags = dict(COMMON_TAGS)
        tags.update(REALLOC_TAGS if row.get("kind") == "realloc" else EPOCH_TAGS)
        step = int(row.get("step") or 0)
        for field, tag in tags.items():
            value = row.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()  # a row per epoch: the curve is live, not buffered until the end

    def close(self) -> None:
        self.writer.close()


def open_curves(out_dir: Path, enabled: bool, log_dir: str | os.PathLike | None) -> Curves | None:
    """The writer a run asked for: `log_dir` when given, OUT/tensorboard when `enabled`, else None."""
    if log_dir is None and not enabled:
        return None
    return Curves(log_dir if log_dir is not None else out_dir / "tensorboard")
