"""The one training loop for every model: truncated BPTT, rounds, exact evaluation, checkpoints.

Model-agnostic: it builds models through the registry, uses only the `lightrnn.lm` contract,
and asks for a word table by capability (`getattr(model, "table", None)`), never by name.

Schedule: `config.rounds` = epochs per round. Epochs are numbered 1, 2, ... across rounds;
rounds 0, 1, .... After every epoch: exact valid ppl (and test ppl at the end of a round, or
every epoch with test_every_epoch), an "epoch" row in metrics.jsonl, `checkpoint.pt`, and
`best.pt` when valid ppl improved. Between rounds: `model.between_rounds(...)`; when it returns
metrics (LightRNN's reallocation) valid ppl is measured at once and a "realloc" row is written
whose `round` is the round about to start (the one that uses `table-<round>.npy`).

Resume: rerunning with the same config and out dir continues after the last checkpoint (the
metrics file is rewritten from the rows the checkpoint holds, so a row written after it is
not duplicated); the final metrics equal an uninterrupted run's on CPU. Inside an epoch a
checkpoint is also written every `checkpoint_every_s` seconds (`lightrnn.epoch`): a resumed
epoch continues at the next batch with the same result. The checkpoint records the data it trains on (`checkpoint.data_identity`); a
checkpoint of another config or other data is refused (`on_config_change="refuse"`, the CLI's
default) or moved aside (kept) before a fresh start ("move-aside", what the workflow uses):
`lightrnn.rundir`, which also keeps best.pt. OUT/.lock (`lightrnn.runlock`) keeps a second
process off the same OUT. Progress lines and bars: `lightrnn.progress`. Rows: `lightrnn.metrics`.

Data-parallel (`torchrun --nproc_per_node W -m lightrnn train ...`, `lightrnn.distributed`): the
model is wrapped in DDP; batch sizes are per process and rank r trains on its contiguous shard of
the training stream (`shard_stream`): the run sees exactly the batches of one process with batch
W * batch_size. Evaluation is sharded the same way and summed: exact over the whole split. Rank 0
alone writes files; every rank resumes from the same checkpoint (it holds each rank's RNG state).

Read top to bottom: `train` (checks, process group, lock) -> `_train` (the schedule) -> `_epoch` /
`_reallocate` (one event each; every row goes through `Run.record`) -> `Run`, what the loop
carries from event to event -> `_open_run` / `_resume` (a fresh run, then OUT's checkpoint).
The batches of an epoch: `lightrnn.epoch`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lightrnn import distributed, progress
from lightrnn.batches import TrainPairs, load_split, load_vocab, shard_stream
from lightrnn.checkpoint import (
    Progress, RunMismatch, data_identity, data_vocab_payload, resume_training, rng_state, save_training,
)
from lightrnn.config import TrainConfig
from lightrnn.curves import open_curves
from lightrnn.epoch import train_epoch
from lightrnn.evaluate import evaluate_distributed
from lightrnn.fileio import append_line, remove_stale_temps, write_lines
from lightrnn.metrics import epoch_row, param_stats, realloc_row, row_to_line, run_fields
from lightrnn.registry import build_from_config
from lightrnn.optim import Optimizers, PlateauDecay
from lightrnn.preflight import check_fits
from lightrnn.rundir import ensure_best, keep_best_copy, link_best, move_aside
from lightrnn.runlock import out_dir_lock
from lightrnn.runtime import PhasePeaks, resolve_device, seed_everything, tf32_enabled, use_fp32_matmul
from lightrnn.step import TrainingDiverged

ON_CONFIG_CHANGE = ("refuse", "move-aside")


def train(
    config: TrainConfig, data_dir: str | Path, out_dir: str | Path, dataset: str | None = None,
    on_config_change: str = "refuse", tensorboard: str | Path | None = None,
) -> Path:
    """Train `config.model` on the encoded data dir; returns the path of metrics.jsonl.

    Writes OUT/{checkpoint.pt, checkpoint-best.pt, best.pt, metrics.jsonl, config.yaml} and, for
    models with a word table, OUT/table-<round>.npy (the table each round starts with). Under
    torchrun every process calls this; they join one process group for the run (see the module
    docstring). `on_config_change`: what to do with a checkpoint of another config or other data
    in OUT: "refuse" (an error naming both) or "move-aside" (keep it in OUT/../<name>.old-<hash12>/,
    start afresh). `tensorboard`: a folder for live curves (`lightrnn.curves`; also on with the
    config key `tensorboard`, into OUT/tensorboard).
    """
    if on_config_change not in ON_CONFIG_CHANGE:
        raise ValueError(f"on_config_change: got {on_config_change!r}; allowed values: {', '.join(ON_CONFIG_CHANGE)}")
    device = resolve_device(config.device)
    if config.bf16 and device.type != "cuda":
        raise ValueError(f"config key bf16: bf16 autocast needs a CUDA device, the run is on {device}; set bf16=false")
    use_fp32_matmul()  # float32 is IEEE float32 on a GPU too (no TF32); rows record it as `tf32`
    context = distributed.setup(device)
    try:
        # Rank 0 holds OUT/.lock; the other ranks of its torchrun share the folder with it.
        lock = out_dir_lock(out_dir) if context.is_main else contextlib.nullcontext()
        with lock:
            return _train(config, Path(data_dir), Path(out_dir), dataset, context, on_config_change, tensorboard)
    except FloatingPointError as error:  # a NaN/inf loss in a step, or an evaluation that overflowed
        kept = Path(out_dir) / "checkpoint.pt"
        note = f"{kept} (the last good state) is kept" if kept.is_file() else "no checkpoint was written yet"
        raise TrainingDiverged(f"{error}; {note}") from None
    finally:
        distributed.teardown(context)


def _train(
    config: TrainConfig, data_dir: Path, out_dir: Path, dataset: str | None, context: distributed.Context,
    on_config_change: str = "refuse", tensorboard: str | Path | None = None,
) -> Path:
    run = _open_run(config, data_dir, out_dir, dataset or data_dir.resolve().name, context)
    resumed = _resume(run, on_config_change)
    if run.main:
        run.on_row = open_curves(out_dir, config.tensorboard, tensorboard)  # live curves of the rows, if asked
    events = _schedule(config.rounds)
    epoch = sum(1 for kind, _, _ in events[: resumed.next_event] if kind == "epoch")  # epochs done
    for event_index in range(resumed.next_event, len(events)):
        kind, round_index, epoch_in_round = events[event_index]
        if kind == "realloc":
            _reallocate(run, event_index, round_index, epoch)
            continue
        epoch += 1
        inside = resumed if event_index == resumed.next_event and resumed.epoch_batch else None
        _epoch(run, event_index, round_index, epoch_in_round, epoch, inside)
    if run.main:
        # A finished run's metrics.jsonl is exactly its checkpoint's rows, whatever happened to the
        # file meanwhile (a job refused by OUT/.lock that a workflow manager cleaned up after).
        write_lines(out_dir / "metrics.jsonl", run.rows)
        ensure_best(out_dir)
        # A restored best.pt keeps its old mtime; a workflow manager comparing it with inputs
        # re-made since (same data, nothing left to train) would rerun the job on every invocation.
        os.utime(out_dir / "best.pt")
    return out_dir / "metrics.jsonl"


def _epoch(
    run: Run, event_index: int, round_index: int, epoch_in_round: int, epoch: int, resumed: Progress | None,
) -> None:
    """Train one epoch, evaluate, decay the lr on a plateau, record the row."""
    config, context = run.config, run.context
    table = getattr(run.model, "table", None)
    if epoch_in_round == 0 and table is not None and run.main:
        table.save(run.out_dir / f"table-{round_index}.npy")  # the table the round starts with
    with run.peaks.phase("train"):
        trained = train_epoch(
            run.ddp_model, run.optimizer, config, run.train_stream, context.device, epoch, run.step, run.main,
            resumed=resumed, rank=context.rank, world=context.world_size,
            checkpoint=functools.partial(run.save, run.checkpoint_path, event_index),
        )
    run.step = trained["step"]
    valid = run.evaluate("valid")
    end_of_round = epoch_in_round + 1 == config.rounds[round_index]
    test = run.evaluate("test") if (end_of_round or config.test_every_epoch) else None
    lr_used = run.scheduler.lr
    run.scheduler.step(valid["ppl"])
    allreduce = distributed.gradient_bytes(run.model) if context.world_size > 1 else 0  # 0: nothing all-reduced
    row = epoch_row(
        run.identity, round=round_index, epoch=epoch, step=run.step, lr=lr_used, train=trained, valid=valid,
        test=test, peaks=run.peaks.row_fields(), wall_s=run.wall_s(), allreduce_bytes_per_step=allreduce,
    )
    run.record(row, event_index + 1)
    if run.main:
        progress.epoch_done(epoch, row)


def _reallocate(run: Run, event_index: int, round_index: int, epoch: int) -> None:
    """The model's `between_rounds` (LightRNN reallocates its words); a row when it reports metrics."""
    config = run.config
    batches = TrainPairs(  # this rank's shard; the model sums the ranks' statistics itself
        run.train_stream, config.batch_size, config.bptt, max_batches=config.max_steps_per_epoch,
        device=run.context.device,
    )
    with run.peaks.phase("realloc"):
        realloc = run.model.between_rounds(
            batches, method=config.realloc_method, fraction=config.realloc_fraction,
            time_limit=config.realloc_time_limit or None, keep_bonus=config.realloc_keep_bonus,
            save_losses_to=run.out_dir / f"losses-{round_index}.npz" if config.realloc_save_losses else None,
        )
    distributed.check_replicas_equal(run.model, f"after the reallocation before round {round_index}")
    if not realloc:
        run.save(run.checkpoint_path, event_index + 1)
        return
    run.scheduler.new_round()
    valid = run.evaluate("valid")
    row = realloc_row(
        run.identity, round=round_index, epoch=epoch, step=run.step, lr=run.scheduler.lr, valid=valid,
        peaks=run.peaks.row_fields(), wall_s=run.wall_s(), realloc=realloc,
    )
    run.record(row, event_index + 1)


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
    on_row: Callable[[dict[str, Any]], None] | None = None  # called with every row appended (`lightrnn.curves`)

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


def _open_run(
    config: TrainConfig, data_dir: Path, out_dir: Path, dataset: str, context: distributed.Context,
) -> Run:
    """Load the data, check it fits, build the model and its optimizer: a fresh run."""
    device, rank, world = context.device, context.rank, context.world_size
    words, word_counts = load_vocab(data_dir)
    vocab_size = len(words)
    streams = {split: load_split(data_dir, split, vocab_size) for split in ("train", "valid", "test")}
    train_stream = shard_stream(streams["train"], config.batch_size, rank, world)  # [N / W] ids, a view
    check_fits(config, vocab_size, word_counts, device, train_tokens=int(train_stream.shape[0]))  # before allocating
    out_dir.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        remove_stale_temps(out_dir)  # a checkpoint temp a kill -9 left (gigabytes at paper scale)
    seed_everything(config.seed)
    # The same weights on every rank (a `context` table is computed from the whole training split;
    # on a resume the checkpoint's table replaces it, but a run moved aside starts from it).
    model = build_from_config(config, vocab_size, word_counts, train_stream=streams["train"]).to(device)
    if rank > 0:
        # Independent dropout masks per rank (rank 0 keeps the single-process stream).
        torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    optimizer = Optimizers(model, config.optimizer, config.lr)  # SparseAdam beside Adam for sparse embeddings
    params, param_bytes = param_stats(model)
    identity = run_fields(
        dataset=dataset, model=config.model, seed=config.seed, params=params, param_bytes=param_bytes,
        device=str(device), config_hash=config.config_hash, world_size=world, tf32=tf32_enabled(),
    )
    data = data_identity(data_dir, vocab_size, {split: int(stream.shape[0]) for split, stream in streams.items()})
    scheduler = PlateauDecay(optimizer, config.lr_decay, config.lr_patience)
    run = Run(config, dataset, out_dir, context, streams, train_stream, model, model, optimizer, scheduler,
              PhasePeaks(device), data, vocab_size, identity)
    run.vocab = data_vocab_payload(data_dir, words, word_counts)
    return run


def _resume(run: Run, on_config_change: str) -> Progress:
    """Continue after OUT's checkpoint (or move a run of another config aside); then wrap in DDP."""
    resumed, mismatch = Progress(), None
    if run.checkpoint_path.exists():
        try:
            resumed = resume_training(
                run.checkpoint_path, run.config, run.model, run.optimizer, run.scheduler,
                run.context.rank, run.context.world_size, data=run.data,
            )
        except RunMismatch as error:  # raised before anything was restored: the model is still fresh
            if on_config_change != "move-aside":
                raise
            mismatch = error
    # Every rank has read the checkpoint (the gather) before rank 0 moves it.
    if on_config_change == "move-aside" and any(distributed.all_gather_objects(mismatch is not None)):
        if run.main and mismatch is not None:
            moved = move_aside(run.out_dir, mismatch.old_hash)
            print(f"lightrnn train: {mismatch}\nmoved that run to {moved}; starting afresh", file=sys.stderr, flush=True)
        distributed.all_gather_objects(None)
    run.step, run.prior_wall, run.best_valid, run.rows = resumed.step, resumed.wall_s, resumed.best_valid, resumed.rows
    if run.main:
        keep_best_copy(run.out_dir)
        write_lines(run.out_dir / "metrics.jsonl", run.rows)  # drop a row written after the last checkpoint
        run.config.to_yaml(run.out_dir / "config.yaml")
    run.ddp_model = distributed.wrap_ddp(run.model, run.context.device)
    run.started = time.perf_counter()
    return resumed


def _schedule(rounds: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """(kind, round, epoch_in_round) events: each round's epochs, then a reallocation before the next."""
    events: list[tuple[str, int, int]] = []
    for round_index, epochs in enumerate(rounds):
        events.extend(("epoch", round_index, epoch) for epoch in range(epochs))
        if round_index + 1 < len(rounds):
            events.append(("realloc", round_index + 1, 0))
    return events
