"""A training run's folder: best.pt beside its kept copy, and a run of another config moved aside.

best.pt is a hard link to OUT/checkpoint-best.pt (a copy where links are not supported), so a
best.pt deleted by a workflow manager before a rerun is restored even when nothing is left to
train; only from a kept copy that loads, checks and rebuilds into its model. A checkpoint of another config or other data is moved, with everything beside it, to
OUT/../<name>.old-<hash12>[-N]/ (kept) before a fresh start (`on_config_change="move-aside"`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from lightrnn.core.errors import DataError
from lightrnn.core.fileio import fit_name, write_lines
from lightrnn.core.runlock import LOCK_NAME
from lightrnn.training.checkpoint import load_checkpoint, rebuild_model, vocab_from_payload


def move_aside(out_dir: Path, old_hash: str) -> Path:
    """Move everything in OUT (but the lock) to OUT/../<name>.old-<hash12>[-N]/ and return that folder."""
    base = out_dir.parent / f"{fit_name(out_dir.name, 24)}.old-{old_hash[:12]}"  # 24: the suffix and a -N
    target, number = base, 1
    while target.exists():
        number += 1
        target = base.with_name(f"{base.name}-{number}")
    target.mkdir(parents=True)
    for entry in sorted(out_dir.iterdir()):
        if entry.name != LOCK_NAME:
            entry.rename(target / entry.name)
    # A workflow manager deletes a job's declared outputs before rerunning it: the kept run gets
    # its metrics.jsonl back from the rows its checkpoint holds, and best.pt from its kept copy.
    if (target / "checkpoint.pt").exists() and not (target / "metrics.jsonl").exists():
        write_lines(target / "metrics.jsonl", load_checkpoint(target / "checkpoint.pt")["metrics_rows"])
    if (target / "checkpoint-best.pt").exists():
        ensure_best(target)
    return target


def link_best(out_dir: Path) -> None:
    """best.pt <- checkpoint-best.pt (no second copy on disk, and Snakemake deleting best.pt leaves the kept one)."""
    _link_or_copy(out_dir / "checkpoint-best.pt", out_dir / "best.pt")


def keep_best_copy(out_dir: Path) -> None:
    """A run from before kept copies has best.pt alone: checkpoint-best.pt becomes a link to it."""
    if (out_dir / "best.pt").exists() and not (out_dir / "checkpoint-best.pt").exists():
        _link_or_copy(out_dir / "best.pt", out_dir / "checkpoint-best.pt")


def ensure_best(out_dir: Path) -> None:
    """best.pt exists after every successful run: relinked from checkpoint-best.pt when deleted
    (Snakemake removes a job's declared outputs before rerunning it, even with nothing left to train)."""
    best, kept = out_dir / "best.pt", out_dir / "checkpoint-best.pt"
    if kept.exists():
        if not best.exists() or not os.path.samefile(best, kept):
            _check_restorable(kept, out_dir)
            link_best(out_dir)
    elif not best.exists():
        raise ValueError(
            f"{out_dir}: the run is finished but best.pt is missing and there is no checkpoint-best.pt to restore "
            "it from (no epoch improved valid ppl, or the run predates kept copies); train into a new --out dir"
        )


def _check_restorable(kept: Path, out_dir: Path) -> None:
    """DataError unless `kept` loads, checks and rebuilds into its model (what `score` will do with
    best.pt): a damaged kept copy never becomes best.pt."""
    try:
        payload = load_checkpoint(kept)
        vocab = payload.get("vocab")
        rebuild_model(payload, kept, vocab_from_payload(vocab)[1] if vocab is not None else None, "cpu")
    except ValueError as error:
        raise DataError(f"{out_dir}: best.pt is missing and its kept copy cannot restore it: {error}; train into a "
                        f"new --out dir") from None


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes a hard link to `source` (a copy where links are not supported), atomically."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    try:
        os.link(source, temp)
    except OSError:
        shutil.copyfile(source, temp)
    os.replace(temp, target)
