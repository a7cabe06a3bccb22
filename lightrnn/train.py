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
checkpoint is also written every `checkpoint_every_s` seconds (the batches done, the carried
LSTM state, the epoch's running NLL, the RNG): a resumed epoch continues at the next batch with
the same result. The checkpoint records the data it trains on (`checkpoint.data_identity`); a
checkpoint of another config or other data is refused (`on_config_change="refuse"`, the CLI's
default) or moved aside to OUT/../<name>.old-<hash12>/ (kept) before a fresh start
("move-aside", what the workflow uses). best.pt is a hard link to OUT/checkpoint-best.pt, so a
best.pt deleted by a workflow manager before a rerun is restored even when nothing is left to
train. OUT/.lock (`lightrnn.runlock`) keeps a second process off the same OUT.

Progress: a tqdm bar on a terminal; otherwise (a log file, a batch job) a line every
`log_every_s` seconds on stderr: batches done, tokens/s, running train ppl, ETA of the epoch.

Data-parallel (`torchrun --nproc_per_node W -m lightrnn train ...`, `lightrnn.distributed`): the
model is wrapped in DDP; batch_size and eval_batch_size are per process, so the global batch is
W * batch_size, and rank r trains on its contiguous shard of the training stream
(`shard_stream`): the run sees exactly the batches of one process with batch W * batch_size.
Evaluation is sharded the same way and its nll_sum and token counts summed: exact over the
whole split. Rank 0 alone writes metrics.jsonl, config.yaml, tables and checkpoints; every
rank resumes from the same checkpoint (which holds each rank's RNG state). Rows carry
world_size, and epoch rows allreduce_bytes_per_step (`distributed.gradient_bytes`, 0 in one
process: nothing is all-reduced).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn import distributed
from lightrnn.batches import TrainPairs, lm_batches, load_split, load_vocab, num_batches, shard_stream
from lightrnn.checkpoint import (
    Progress,
    RunMismatch,
    data_identity,
    data_vocab_payload,
    load_checkpoint,
    resume_training,
    rng_state,
    save_training,
)
from lightrnn.config import TrainConfig
from lightrnn.curves import open_curves
from lightrnn.errors import UsageError
from lightrnn.evaluate import evaluate_distributed
from lightrnn.fileio import append_line, remove_stale_temps, write_lines
from lightrnn.metrics import REALLOC_FIELDS, git_rev, make_row, param_stats, perplexity, row_to_line
from lightrnn.models import build_from_config
from lightrnn.optim import Optimizers
from lightrnn.preflight import check_fits
from lightrnn.runlock import LOCK_NAME, out_dir_lock
from lightrnn.runtime import PhasePeaks, resolve_device, seed_everything, tf32_enabled, use_fp32_matmul
from lightrnn.step import TrainingDiverged, train_step


class PlateauDecay:
    """Multiply the learning rate by `decay` when valid ppl has not improved for `patience` + 1 epochs."""

    def __init__(self, optimizer: Optimizers, decay: float, patience: int) -> None:
        self.optimizer, self.decay, self.patience = optimizer, decay, patience
        self.best = math.inf
        self.bad_epochs = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, valid_ppl: float) -> None:
        if valid_ppl < self.best:
            self.best, self.bad_epochs = valid_ppl, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.decay < 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.decay
            self.bad_epochs = 0

    def new_round(self) -> None:
        """Judge the plateau afresh after a word reallocation: the valid ppl spike right after
        one (the paper's figure) is the new table settling in, not a plateau to decay on."""
        self.best, self.bad_epochs = math.inf, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> Optimizers:
    """Adam or SGD; embeddings with sparse gradients get SparseAdam beside Adam (`lightrnn.optim`)."""
    return Optimizers(model, config.optimizer, config.lr)


def _schedule(rounds: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """(kind, round, epoch_in_round) events: each round's epochs, then a reallocation before the next."""
    events: list[tuple[str, int, int]] = []
    for round_index, epochs in enumerate(rounds):
        events.extend(("epoch", round_index, epoch) for epoch in range(epochs))
        if round_index + 1 < len(rounds):
            events.append(("realloc", round_index + 1, 0))
    return events


ON_CONFIG_CHANGE = ("refuse", "move-aside")


def require_gpus(count: int, job: str) -> None:
    """Fail at once (UsageError naming the environment and the fix) when a job that asked for
    `count` GPUs runs where torch sees fewer, instead of training for days on the CPU."""
    seen = torch.cuda.device_count()
    if count <= seen:
        return
    raise UsageError(
        f"{job}: the job asked for {count} GPU(s) but torch {torch.__version__} in the environment {sys.prefix} "
        f"sees {seen} CUDA device(s) (CUDA build: {torch.version.cuda or 'none, a CPU-only torch'}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Fix: run the job on a GPU node "
        "with a CUDA build of torch in that environment (with --use-conda, create the envs on a GPU node: "
        "snakemake --use-conda --conda-create-envs-only), or train on the CPU with resources.train.gpu: 0 "
        "(snakemake --set-resources train:gpu=0)"
    )


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


def move_aside(out_dir: Path, old_hash: str) -> Path:
    """Move everything in OUT (but the lock) to OUT/../<name>.old-<hash12>[-N]/ and return that folder."""
    base = out_dir.parent / f"{out_dir.name}.old-{old_hash[:12]}"
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
        _ensure_best(target)
    return target


def _link_best(out_dir: Path) -> None:
    """best.pt <- checkpoint-best.pt (no second copy on disk, and Snakemake deleting best.pt leaves the kept one)."""
    _link_or_copy(out_dir / "checkpoint-best.pt", out_dir / "best.pt")


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


def _train(
    config: TrainConfig, data_dir: Path, out_dir: Path, dataset: str | None, context: distributed.Context,
    on_config_change: str = "refuse", tensorboard: str | Path | None = None,
) -> Path:
    dataset = dataset or data_dir.resolve().name
    device, rank, world, main = context.device, context.rank, context.world_size, context.is_main
    words, word_counts = load_vocab(data_dir)
    vocab_size = len(words)
    streams = {split: load_split(data_dir, split, vocab_size) for split in ("train", "valid", "test")}
    train_stream = shard_stream(streams["train"], config.batch_size, rank, world)  # [N / W] ids, a view
    check_fits(config, vocab_size, word_counts, device, train_tokens=int(train_stream.shape[0]))  # before allocating
    out_dir.mkdir(parents=True, exist_ok=True)
    if main:
        remove_stale_temps(out_dir)  # a checkpoint temp a kill -9 left (gigabytes at paper scale)
    checkpoint_path = out_dir / "checkpoint.pt"
    metrics_path = out_dir / "metrics.jsonl"

    seed_everything(config.seed)
    # The same weights on every rank (a `context` table is computed from the whole training split;
    # on a resume the checkpoint's table replaces it, but a run moved aside starts from it).
    model = build_from_config(config, vocab_size, word_counts, train_stream=streams["train"]).to(device)
    if rank > 0:
        # Independent dropout masks per rank (rank 0 keeps the single-process stream).
        torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    optimizer = make_optimizer(config, model)
    scheduler = PlateauDecay(optimizer, config.lr_decay, config.lr_patience)
    params, param_bytes = param_stats(model)
    peaks = PhasePeaks(device)  # CUDA peak per phase (train, eval, realloc), reset at each

    events = _schedule(config.rounds)
    data = data_identity(data_dir, vocab_size, {split: int(stream.shape[0]) for split, stream in streams.items()})
    vocab = data_vocab_payload(data_dir, words, word_counts)  # checkpoints carry it: best.pt is usable alone
    progress = Progress()
    mismatch: RunMismatch | None = None
    if checkpoint_path.exists():
        try:
            progress = resume_training(checkpoint_path, config, model, optimizer, scheduler, rank, world, data=data)
        except RunMismatch as error:  # raised before anything was restored: the model is still fresh
            if on_config_change != "move-aside":
                raise
            mismatch = error
    # Every rank has read the checkpoint (the gather) before rank 0 moves it.
    if on_config_change == "move-aside" and any(distributed.all_gather_objects(mismatch is not None)):
        if main and mismatch is not None:
            moved = move_aside(out_dir, mismatch.old_hash)
            print(f"lightrnn train: {mismatch}\nmoved that run to {moved}; starting afresh", file=sys.stderr, flush=True)
        distributed.all_gather_objects(None)
    if main and (out_dir / "best.pt").exists() and not (out_dir / "checkpoint-best.pt").exists():
        _link_or_copy(out_dir / "best.pt", out_dir / "checkpoint-best.pt")  # a run from before kept copies
    next_event, step, prior_wall, best_valid = progress.next_event, progress.step, progress.wall_s, progress.best_valid
    rows: list[str] = progress.rows
    if main:
        write_lines(metrics_path, rows)  # drop a row written after the last checkpoint
        config.to_yaml(out_dir / "config.yaml")
    on_row = open_curves(out_dir, config.tensorboard, tensorboard) if main else None  # live curves of the rows
    ddp_model = distributed.wrap_ddp(model, device)  # trains; `model` evaluates, reallocates, saves
    allreduce_bytes = distributed.gradient_bytes(model) if world > 1 else 0

    session_start = time.perf_counter()
    common = {
        "dataset": dataset, "model": config.model, "seed": config.seed, "params": params,
        "param_bytes": param_bytes, "device": str(device), "git_rev": git_rev(), "config_hash": config.config_hash,
        "world_size": world, "tf32": tf32_enabled(),
    }
    global_epoch = sum(1 for kind, _, _ in events[:next_event] if kind == "epoch")

    def evaluate_split(split: str) -> dict[str, float]:
        # bf16 trains faster; reported perplexities stay float32 arithmetic.
        with peaks.phase("eval"):
            return evaluate_distributed(model, streams[split], config.eval_batch_size, config.bptt, device, bf16=False)

    def save(path: Path, event_index: int, epoch: dict[str, Any] | None = None) -> None:
        """Every rank calls this (it gathers the RNG states); rank 0 writes.

        `epoch` (a mid-epoch checkpoint): {"batch", "seconds", "step", "rank": this rank's
        {"state", "nll", "tokens"}}; event_index is then the epoch's own event.
        """
        gathered = distributed.all_gather_objects({"rng": rng_state(), "epoch": epoch and epoch["rank"]})
        if not main:
            return
        progress = Progress(
            next_event=event_index, step=epoch["step"] if epoch else step,
            wall_s=prior_wall + time.perf_counter() - session_start, best_valid=best_valid, rows=rows,
        )
        if epoch:
            progress.epoch_batch, progress.epoch_seconds = epoch["batch"], epoch["seconds"]
            progress.carried = [entry["epoch"] for entry in gathered]
        rng_ranks = [entry["rng"] for entry in gathered]
        save_training(path, config, dataset, vocab_size, model, optimizer, scheduler, progress, rng_ranks, data=data,
                      vocab=vocab)

    def record(row: dict[str, Any], event_index: int) -> None:
        """best.pt, then the checkpoint (holding the row), then append: a kill in between loses nothing.

        best.pt goes first: a checkpoint that records an improvement is never left beside a stale
        best.pt (a kill between the two only redoes this epoch, which rewrites both).
        """
        nonlocal best_valid
        line = row_to_line(row)
        rows.append(line)
        improved = row["valid_ppl"] is not None and row["valid_ppl"] < best_valid
        if improved:
            best_valid = row["valid_ppl"]
            save(out_dir / "checkpoint-best.pt", event_index)
            if main:
                _link_best(out_dir)
        save(checkpoint_path, event_index)
        if main:
            append_line(metrics_path, line)
        if on_row is not None:
            on_row(row)

    for event_index in range(next_event, len(events)):
        kind, round_index, epoch_in_round = events[event_index]
        table = getattr(model, "table", None)
        if kind == "epoch" and epoch_in_round == 0 and table is not None and main:
            table.save(out_dir / f"table-{round_index}.npy")

        if kind == "realloc":
            batches = TrainPairs(  # this rank's shard; the model sums the ranks' statistics itself
                train_stream, config.batch_size, config.bptt,
                max_batches=config.max_steps_per_epoch, device=device,
            )
            with peaks.phase("realloc"):
                realloc = model.between_rounds(
                    batches, method=config.realloc_method, fraction=config.realloc_fraction,
                    time_limit=config.realloc_time_limit or None, keep_bonus=config.realloc_keep_bonus,
                    save_losses_to=out_dir / f"losses-{round_index}.npz" if config.realloc_save_losses else None,
                )
            distributed.check_replicas_equal(model, f"after the reallocation before round {round_index}")
            if realloc:
                scheduler.new_round()
                valid = evaluate_split("valid")
                row = make_row(
                    kind="realloc", round=round_index, epoch=global_epoch, step=step, lr=scheduler.lr,
                    valid_ppl=valid["ppl"], eval_tokens_per_s=valid["tokens_per_s"],
                    **peaks.row_fields(), wall_s=prior_wall + time.perf_counter() - session_start,
                    **common, **{key: realloc.get(key) for key in REALLOC_FIELDS},
                    **{key: value for key, value in realloc.items() if key not in REALLOC_FIELDS},
                )
                record(row, event_index + 1)
            else:
                save(checkpoint_path, event_index + 1)
            continue

        global_epoch += 1
        resumed = progress if event_index == next_event and progress.epoch_batch else None

        def checkpoint_inside(epoch: dict[str, Any], event_index: int = event_index) -> None:
            save(checkpoint_path, event_index, epoch)

        with peaks.phase("train"):
            train_stats = _train_epoch(
                ddp_model, optimizer, config, train_stream, device, global_epoch, step, main,
                resumed=resumed, rank=rank, world=world, checkpoint=checkpoint_inside,
            )
        step = train_stats["step"]
        valid = evaluate_split("valid")
        end_of_round = epoch_in_round + 1 == config.rounds[round_index]
        test = evaluate_split("test") if (end_of_round or config.test_every_epoch) else None
        lr_used = scheduler.lr
        scheduler.step(valid["ppl"])
        row = make_row(
            kind="epoch", round=round_index, epoch=global_epoch, step=step, lr=lr_used,
            train_ppl=train_stats["ppl"], valid_ppl=valid["ppl"], test_ppl=test["ppl"] if test else None,
            train_tokens_per_s=train_stats["tokens_per_s"], eval_tokens_per_s=valid["tokens_per_s"],
            **peaks.row_fields(), wall_s=prior_wall + time.perf_counter() - session_start, **common,
            allreduce_bytes_per_step=allreduce_bytes,
        )
        record(row, event_index + 1)
        if main and not sys.stderr.isatty():
            test_text = f", test ppl {row['test_ppl']:.2f}" if row["test_ppl"] is not None else ""
            print(
                f"epoch {global_epoch} done: train ppl {row['train_ppl']:.2f}, valid ppl {row['valid_ppl']:.2f}"
                f"{test_text}, {row['train_tokens_per_s']:,.0f} tokens/s", file=sys.stderr, flush=True,
            )
    if main:
        _ensure_best(out_dir)
        # A restored best.pt keeps its old mtime; a workflow manager comparing it with inputs
        # re-made since (same data, nothing left to train) would rerun the job on every invocation.
        os.utime(out_dir / "best.pt")
    return metrics_path


def _ensure_best(out_dir: Path) -> None:
    """best.pt exists after every successful run: relinked from checkpoint-best.pt when deleted
    (Snakemake removes a job's declared outputs before rerunning it, even with nothing left to train)."""
    best, kept = out_dir / "best.pt", out_dir / "checkpoint-best.pt"
    if kept.exists():
        if not best.exists() or not os.path.samefile(best, kept):
            _link_best(out_dir)
    elif not best.exists():
        raise ValueError(
            f"{out_dir}: the run is finished but best.pt is missing and there is no checkpoint-best.pt to restore "
            "it from (no epoch improved valid ppl, or the run predates kept copies); train into a new --out dir"
        )


def _train_epoch(
    model: torch.nn.Module, optimizer: Optimizers, config: TrainConfig, stream: np.ndarray,
    device: torch.device, epoch: int, step: int, main: bool = True, *, resumed: Progress | None = None,
    rank: int = 0, world: int = 1, checkpoint: Any = None,
) -> dict[str, float]:
    """One pass over the training stream (or max_steps_per_epoch batches); the state carried across batches.

    `model` is a LanguageModel or its DDP wrapper, `stream` this rank's shard. train ppl and
    tokens/s are over all ranks (tokens summed, rank 0's wall time). `resumed`: a mid-epoch
    checkpoint's Progress, continued at its next batch. `checkpoint(epoch)` is called every
    config.checkpoint_every_s seconds (all ranks together) with what the rest of the epoch needs.
    """
    model.train()
    total = num_batches(int(stream.shape[0]), config.batch_size, config.bptt)
    if config.max_steps_per_epoch:
        total = min(total, config.max_steps_per_epoch)
    first, seconds_before = 0, 0.0
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    tokens, state = 0, None
    if resumed is not None and resumed.carried:
        carried = resumed.carried[rank]
        first, seconds_before = resumed.epoch_batch, resumed.epoch_seconds
        nll_sum += carried["nll"]
        tokens = int(carried["tokens"])
        state = tuple(part.to(device) for part in carried["state"]) if carried["state"] is not None else None
    progress = _progress(total, f"epoch {epoch}", first) if main else None
    log = _ProgressLog(epoch, total, first, tokens, world, config.log_every_s) if main and progress is None else None
    start = time.perf_counter()
    last_checkpoint = time.monotonic()
    every = config.checkpoint_every_s if checkpoint is not None else 0.0
    batches = lm_batches(
        stream, config.batch_size, config.bptt, max_batches=config.max_steps_per_epoch, device=device, start=first
    )
    for batch_index, batch in enumerate(batches, start=first):
        try:
            nll, state = train_step(model, optimizer, batch.tokens, batch.targets, state, config.clip, config.bf16)
        except TrainingDiverged as error:
            raise TrainingDiverged(
                f"{error} at epoch {epoch}, step {step + 1} (batch {batch_index + 1} of the "
                f"epoch); lower lr or clip and train again into a new --out"
            ) from None
        step += 1
        tokens += batch.tokens.numel()
        nll_sum += nll.double().sum()
        if progress is not None:
            progress.update(1)
            if batch_index % 10 == 0:
                elapsed = max(time.perf_counter() - start, 1e-9)
                progress.set_postfix(ppl=f"{perplexity(float(nll_sum), tokens):.1f}", tok_s=f"{tokens / elapsed:.0f}")
        if log is not None:
            log.maybe(batch_index + 1, step, nll_sum, tokens)
        if every and batch_index + 1 < total and (world == 1 or (batch_index + 1) % 20 == 0):
            due = time.monotonic() - last_checkpoint >= every
            if world > 1:  # rank 0's clock decides, so every rank joins the same checkpoint
                due = distributed.sum_scalars(float(due and main))[0] > 0
            if due:
                checkpoint({
                    "batch": batch_index + 1, "step": step,
                    "seconds": seconds_before + time.perf_counter() - start,
                    "rank": {
                        "state": None if state is None else [part.detach().cpu() for part in state],
                        "nll": float(nll_sum), "tokens": tokens,
                    },
                })
                last_checkpoint = time.monotonic()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total_nll, tokens = distributed.sum_scalars(float(nll_sum), tokens)
    seconds = seconds_before + time.perf_counter() - start
    if progress is not None:
        progress.close()
    return {
        "step": step,
        "ppl": perplexity(total_nll, tokens),
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }


class _ProgressLog:
    """Without a terminal (a log file, a batch job): one stderr line every `every` seconds."""

    def __init__(self, epoch: int, total: int, first: int, tokens: int, world: int, every: float) -> None:
        self.epoch, self.total, self.first, self.world, self.every = epoch, total, first, world, every
        self.tokens_at_start = tokens  # a resumed epoch's earlier tokens were timed by another process
        self.start = self.last = time.perf_counter()

    def maybe(self, done: int, step: int, nll_sum: torch.Tensor, tokens: int) -> None:
        now = time.perf_counter()
        if not self.every or now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        batches = done - self.first
        tokens_per_s = self.world * (tokens - self.tokens_at_start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) * elapsed / batches if batches else 0.0
        print(
            f"epoch {self.epoch}: batch {done:,}/{self.total:,} ({100 * done / self.total:.1f}%), step {step:,}, "
            f"{tokens_per_s:,.0f} tokens/s, running train ppl {perplexity(float(nll_sum), tokens):.2f}, "
            f"epoch ETA {_duration(eta)}",
            file=sys.stderr, flush=True,
        )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {int(seconds % 60):02d}s"


def _progress(total: int, description: str, initial: int = 0):
    """A tqdm bar on a terminal, nothing otherwise (`_ProgressLog` writes timed lines instead)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="batch", leave=False)
