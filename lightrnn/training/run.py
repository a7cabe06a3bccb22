"""What the training loop carries from event to event, and the one way a row is recorded.

`Run` holds the run's fixed parts (config, data, model, optimizer, schedule) and where it stands
(step, best valid ppl, the rows so far). `Run.record` is the only writer of rows: best.pt, then
the checkpoint holding the row, then metrics.jsonl, so a kill in between loses nothing.
`Run.save` gathers every rank's RNG state and has rank 0 write the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lightrnn.config import TrainConfig
from lightrnn.core import distributed
from lightrnn.core.fileio import append_line, write_lines
from lightrnn.core.metrics import row_to_line
from lightrnn.core.runtime import PhasePeaks
from lightrnn.training.checkpoint import Progress, rng_state, save_training
from lightrnn.training.evaluate import evaluate_distributed
from lightrnn.training.optim import Optimizers, PlateauDecay
from lightrnn.training.rundir import link_best


@dataclass
class Run:
    """What the loop carries from event to event: the run's fixed parts, then where it stands."""

    config: TrainConfig
    dataset: str
    out_dir: Path
    context: distributed.Context
    streams: dict[str, np.ndarray]  # train, valid, test: the whole splits
    train_stream: np.ndarray  # this rank's shard of the training split
    model: torch.nn.Module  # evaluates, reallocates, saves
    ddp_model: torch.nn.Module  # trains (`model` itself in one process)
    optimizer: Optimizers
    scheduler: PlateauDecay
    peaks: PhasePeaks  # CUDA peak per phase (train, eval, realloc), reset at each row
    data: dict[str, Any]  # `checkpoint.data_identity` of the encoded data
    vocab_size: int
    identity: dict[str, Any] = field(default_factory=dict)  # `metrics.run_fields`: in every row
    step: int = 0
    best_valid: float = float("inf")
    rows: list[str] = field(default_factory=list)  # metrics.jsonl's lines so far
    prior_wall: float = 0.0  # seconds trained before this process resumed the run
    started: float = field(default_factory=time.perf_counter)
    vocab: dict[str, Any] | None = None  # `checkpoint.vocab_payload`: checkpoints carry it, best.pt is usable alone
    on_row: Callable[[dict[str, Any]], None] | None = None  # called with every row appended (`lightrnn.training.curves`)

    @property
    def main(self) -> bool:
        return self.context.is_main

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def wall_s(self) -> float:
        return self.prior_wall + time.perf_counter() - self.started

    def evaluate(self, split: str) -> dict[str, float]:
        """Exact ppl and tokens/s over the whole split (bf16 trains faster; reported ppl stays float32)."""
        with self.peaks.phase("eval"):
            return evaluate_distributed(
                self.model, self.streams[split], self.config.eval_batch_size, self.config.bptt,
                self.context.device, bf16=False,
            )

    def save(self, path: Path, event_index: int, epoch: dict[str, Any] | None = None) -> None:
        """Every rank calls this (it gathers the RNG states); rank 0 writes.

        `epoch` (a mid-epoch checkpoint): {"batch", "seconds", "step", "rank": this rank's
        {"state", "nll", "tokens"}}; event_index is then the epoch's own event.
        """
        gathered = distributed.all_gather_objects({"rng": rng_state(), "epoch": epoch and epoch["rank"]})
        if not self.main:
            return
        state = Progress(
            next_event=event_index, step=epoch["step"] if epoch else self.step, wall_s=self.wall_s(),
            best_valid=self.best_valid, rows=self.rows,
        )
        if epoch:
            state.epoch_batch, state.epoch_seconds = epoch["batch"], epoch["seconds"]
            state.carried = [entry["epoch"] for entry in gathered]
        save_training(
            path, self.config, self.dataset, self.vocab_size, self.model, self.optimizer, self.scheduler, state,
            [entry["rng"] for entry in gathered], data=self.data, vocab=self.vocab,
        )

    def record(self, row: dict[str, Any], event_index: int) -> None:
        """Every row passes here: best.pt, then the checkpoint (holding the row), then append, so
        a kill in between loses nothing. best.pt goes first: a checkpoint that records an
        improvement is never left beside a stale best.pt (a kill between the two only redoes this
        epoch, which rewrites both)."""
        line = row_to_line(row)
        self.rows.append(line)
        if row["valid_ppl"] is not None and row["valid_ppl"] < self.best_valid:
            self.best_valid = row["valid_ppl"]
            self.save(self.out_dir / "checkpoint-best.pt", event_index)
            if self.main:
                link_best(self.out_dir)
        self.save(self.checkpoint_path, event_index)
        if self.main:
            metrics = self.out_dir / "metrics.jsonl"
            if metrics.exists():
                append_line(metrics, line)
            else:  # deleted meanwhile (a workflow manager cleaning up a refused job): whole again, from the rows
                write_lines(metrics, self.rows)
        if self.on_row is not None:
            self.on_row(row)
