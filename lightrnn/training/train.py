"""The one training loop for every model: truncated BPTT, rounds, exact evaluation, checkpoints.

Model-agnostic: it builds models through the registry, uses only the `lightrnn.core.lm` contract,
and asks for a word table by capability (`getattr(model, "table", None)`), never by name.

Schedule: `config.rounds` = epochs per round. Epochs are numbered 1, 2, ... across rounds;
rounds 0, 1, .... With `patience` > 0 the run stops early, before the next event, once valid ppl
has not improved for that many epochs (`lightrnn.core.metrics.early_stop`, asked of the rows, so
a resumed run stops where an uninterrupted one did). After every epoch: exact valid ppl (and test
ppl at the end of a round, or every epoch with test_every_epoch; never with
test_during_training=false), an "epoch" row in metrics.jsonl, `checkpoint.pt`, and
`best.pt` when valid ppl improved. Between rounds: `model.between_rounds(...)`; when it returns
metrics (LightRNN's reallocation) valid ppl is measured at once and a "realloc" row is written
whose `round` is the round about to start (the one that uses `table-<round>.npy`).

Resume: rerunning with the same config and out dir continues after the last checkpoint (the
metrics file is rewritten from the rows the checkpoint holds, so a row written after it is
not duplicated); the final metrics equal an uninterrupted run's on CPU. Inside an epoch a
checkpoint is also written every `checkpoint_every_s` seconds (`lightrnn.training.epoch`): a resumed
epoch continues at the next batch with the same result. The checkpoint records the data it trains on (`checkpoint.data_identity`); a
checkpoint of another config or other data is refused (`on_config_change="refuse"`, the CLI's
default) or moved aside (kept) before a fresh start ("move-aside", what the workflow uses):
`lightrnn.training.rundir`, which also keeps best.pt. OUT/.lock (`lightrnn.core.runlock`) keeps a second
process off the same OUT. Progress lines and bars: `lightrnn.training.progress`. Rows: `lightrnn.core.metrics`.

Data-parallel (`torchrun --nproc_per_node W -m lightrnn train ...`, `lightrnn.core.distributed`): the
model is wrapped in DDP; batch sizes are per process and rank r trains on its contiguous shard of
the training stream (`shard_stream`): the run sees exactly the batches of one process with batch
W * batch_size. Evaluation is sharded the same way and summed: exact over the whole split. Rank 0
alone writes files; every rank resumes from the same checkpoint (it holds each rank's RNG state).

Read top to bottom: `train` (checks, process group, lock) -> `_train` (the schedule) -> `_epoch` /
`_reallocate` (one event each; every row goes through `Run.record`, `lightrnn.training.run`)
-> `_open_run` / `_resume` (a fresh run, then OUT's checkpoint).
The batches of an epoch: `lightrnn.training.epoch`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lightrnn.config import TrainConfig
from lightrnn.core import distributed
from lightrnn.core.fileio import remove_stale_temps, write_lines
from lightrnn.core.loaders import input_file
from lightrnn.core.metrics import early_stop, epoch_row, param_stats, realloc_row, run_fields
from lightrnn.core.runlock import out_dir_lock
from lightrnn.core.runtime import PhasePeaks, resolve_device, seed_everything, tf32_enabled, use_fp32_matmul
from lightrnn.registry import build_from_config
from lightrnn.training import progress
from lightrnn.training.batches import TrainPairs, load_split, load_vocab, shard_stream
from lightrnn.training.checkpoint import (
    Progress,
    RunMismatch,
    data_identity,
    data_vocab_payload,
    resume_training,
    without_start_files,
)
from lightrnn.training.curves import check_curves, open_curves
from lightrnn.training.epoch import train_epoch
from lightrnn.training.optim import Optimizers, PlateauDecay
from lightrnn.training.preflight import check_fits
from lightrnn.training.run import Run
from lightrnn.training.rundir import Owner, ensure_best, keep_best_copy, move_aside
from lightrnn.training.step import TrainingDiverged

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
    start afresh). `tensorboard`: a folder for live curves (`lightrnn.training.curves`; also on with the
    config key `tensorboard`, into OUT/tensorboard).
    """
    if on_config_change not in ON_CONFIG_CHANGE:
        raise ValueError(f"on_config_change: got {on_config_change!r}; allowed values: {', '.join(ON_CONFIG_CHANGE)}")
    device = resolve_device(config.device)
    if config.bf16 and device.type != "cuda":
        raise ValueError(f"config key bf16: bf16 autocast needs a CUDA device, the run is on {device}; set bf16=false")
    use_fp32_matmul()  # float32 is IEEE float32 on a GPU too (no TF32); rows record it as `tf32`
    check_curves(out_dir, config.tensorboard, tensorboard)  # before the lock makes OUT: a refusal writes nothing
    context = distributed.setup(device, config.rendezvous_timeout_s)
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
    dataset = dataset or data_dir.resolve().name
    # A run that resumes takes its word table from checkpoint.pt: the initial_table file it started
    # from is needed only for a fresh start (a finished run works once that file is gone; the model
    # is then built as `rebuild_model` builds a model file's, the table replaced by the checkpoint's).
    start_files = not (out_dir / "checkpoint.pt").exists() or all(map(os.path.isfile, _start_files(config).values()))
    run = _open_run(config, data_dir, out_dir, dataset, context, start_files)
    resumed = _resume(run, on_config_change)
    if not start_files and not run.checkpoint_path.exists():  # moved aside: a fresh start after all
        run = _open_run(config, data_dir, out_dir, dataset, context, True)
        resumed = _resume(run, on_config_change)
    if run.main:
        run.on_row = open_curves(out_dir, config.tensorboard, tensorboard)  # live curves of the rows, if asked
    events = _schedule(config.rounds)
    epoch = sum(1 for kind, _, _ in events[: resumed.next_event] if kind == "epoch")  # epochs done
    for event_index in range(resumed.next_event, len(events)):
        if early_stop([json.loads(line) for line in run.rows], run.config.patience)[2]:
            break  # valid ppl has not improved for `patience` epochs (a resume of a stopped run stops here too)
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
        ensure_best(out_dir, _owner(run))
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
    wants_test = config.test_during_training and (end_of_round or config.test_every_epoch)
    test = run.evaluate("test") if wants_test else None
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
    run.optimizer.follow(run.model)  # each word's optimizer state follows it to its new slot
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


def _open_run(
    config: TrainConfig, data_dir: Path, out_dir: Path, dataset: str, context: distributed.Context,
    start_files: bool = True,
) -> Run:
    """Load the data, check it fits, build the model and its optimizer: a fresh run (`start_files`
    False: built without its initial_table file, for a run whose checkpoint replaces the table)."""
    device, rank, world = context.device, context.rank, context.world_size
    words, word_counts = load_vocab(data_dir)
    vocab_size = len(words)
    streams = {split: load_split(data_dir, split, vocab_size) for split in ("train", "valid", "test")}
    train_stream = shard_stream(streams["train"], config.batch_size, rank, world)  # [N / W] ids, a view
    if start_files:
        _check_start_files(config)
    built = config if start_files else TrainConfig.from_dict(without_start_files(config.to_dict()))
    check_fits(built, vocab_size, word_counts, device, train_tokens=int(train_stream.shape[0]))  # before allocating
    out_dir.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        remove_stale_temps(out_dir)  # a checkpoint temp a kill -9 left (gigabytes at paper scale)
    seed_everything(config.seed)
    # The same weights on every rank (a `context` table is computed from the whole training split;
    # on a resume the checkpoint's table replaces it, but a run moved aside starts from it).
    model = build_from_config(built, vocab_size, word_counts, train_stream=streams["train"]).to(device)
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


def _start_files(config: TrainConfig) -> dict[str, str]:
    """{where: path} of the initial_table files the config key and the model option name."""
    option = config.model_options.get("initial_table") if isinstance(config.model_options, dict) else None
    named = {"config key initial_table": config.initial_table, "model option initial_table": option}
    return {where: path for where, path in named.items()
            if isinstance(path, str) and path not in ("random", "frequency", "context")}


def _check_start_files(config: TrainConfig) -> None:
    """One line naming the initial_table file a fresh start reads, and why, when it cannot be read."""
    for where, path in _start_files(config).items():
        input_file(path, f"{where}: the table a fresh run starts from",
                   "OUT has no checkpoint.pt holding the table; pass a .npy written by WordTable.save")


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
    if run.main and resumed.step:
        # The log of a resumed job keeps the earlier attempts' lines: say where this one takes over.
        where = f"batch {resumed.epoch_batch} of " if resumed.epoch_batch else "the start of "
        print(f"lightrnn train: resumed from {run.checkpoint_path} at step {resumed.step}, {where}event "
              f"{resumed.next_event + 1} of the schedule ({len(resumed.rows)} metrics rows kept)",
              file=sys.stderr, flush=True)
    if run.main:
        keep_best_copy(run.out_dir, _owner(run))
        write_lines(run.out_dir / "metrics.jsonl", run.rows)  # drop a row written after the last checkpoint
        run.config.to_yaml(run.out_dir / "config.yaml")
    run.ddp_model = distributed.wrap_ddp(run.model, run.context.device)
    run.started = time.perf_counter()
    return resumed


def _owner(run: Run) -> Owner:
    """Whose best.pt the kept copy in OUT must be: this run's config, data and best valid ppl."""
    return Owner(run.config.config_hash, run.data, run.best_valid)


def _schedule(rounds: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """(kind, round, epoch_in_round) events: each round's epochs, then a reallocation before the next."""
    events: list[tuple[str, int, int]] = []
    for round_index, epochs in enumerate(rounds):
        events.extend(("epoch", round_index, epoch) for epoch in range(epochs))
        if round_index + 1 < len(rounds):
            events.append(("realloc", round_index + 1, 0))
    return events
