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
not duplicated); the final metrics equal an uninterrupted run's on CPU.

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

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn import distributed
from lightrnn.batches import TrainPairs, lm_batches, load_split, load_vocab, num_batches, shard_stream
from lightrnn.checkpoint import Progress, resume_training, rng_state, save_training
from lightrnn.config import TrainConfig
from lightrnn.evaluate import evaluate_distributed
from lightrnn.fileio import append_line, write_lines
from lightrnn.metrics import REALLOC_FIELDS, git_rev, make_row, param_stats, row_to_line
from lightrnn.models import build_from_config
from lightrnn.optim import Optimizers
from lightrnn.runtime import peak_memory_bytes, reset_peak_memory, resolve_device, seed_everything
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


def train(config: TrainConfig, data_dir: str | Path, out_dir: str | Path, dataset: str | None = None) -> Path:
    """Train `config.model` on the encoded data dir; returns the path of metrics.jsonl.

    Writes OUT/{checkpoint.pt, best.pt, metrics.jsonl, config.yaml} and, for models with a word
    table, OUT/table-<round>.npy (the table each round starts with). Under torchrun every
    process calls this; they join one process group for the run (see the module docstring).
    """
    device = resolve_device(config.device)
    if config.bf16 and device.type != "cuda":
        raise ValueError(f"config key bf16: bf16 autocast needs a CUDA device, the run is on {device}; set bf16=false")
    context = distributed.setup(device)
    try:
        return _train(config, Path(data_dir), Path(out_dir), dataset, context)
    finally:
        distributed.teardown(context)


def _train(
    config: TrainConfig, data_dir: Path, out_dir: Path, dataset: str | None, context: distributed.Context
) -> Path:
    dataset = dataset or data_dir.resolve().name
    device, rank, world, main = context.device, context.rank, context.world_size, context.is_main
    words, word_counts = load_vocab(data_dir)
    vocab_size = len(words)
    streams = {split: load_split(data_dir, split, vocab_size) for split in ("train", "valid", "test")}
    train_stream = shard_stream(streams["train"], config.batch_size, rank, world)  # [N / W] ids, a view
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    metrics_path = out_dir / "metrics.jsonl"

    seed_everything(config.seed)
    model = build_from_config(config, vocab_size, word_counts).to(device)  # the same weights on every rank
    if rank > 0:
        # Independent dropout masks per rank (rank 0 keeps the single-process stream).
        torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    optimizer = make_optimizer(config, model)
    scheduler = PlateauDecay(optimizer, config.lr_decay, config.lr_patience)
    params, param_bytes = param_stats(model)
    reset_peak_memory(device)

    events = _schedule(config.rounds)
    progress = Progress()
    if checkpoint_path.exists():
        progress = resume_training(checkpoint_path, config, model, optimizer, scheduler, rank, world)
    next_event, step, prior_wall, best_valid = progress.next_event, progress.step, progress.wall_s, progress.best_valid
    rows: list[str] = progress.rows
    if main:
        write_lines(metrics_path, rows)  # drop a row written after the last checkpoint
        config.to_yaml(out_dir / "config.yaml")
    ddp_model = distributed.wrap_ddp(model, device)  # trains; `model` evaluates, reallocates, saves
    allreduce_bytes = distributed.gradient_bytes(model) if world > 1 else 0

    session_start = time.perf_counter()
    common = {
        "dataset": dataset, "model": config.model, "seed": config.seed, "params": params,
        "param_bytes": param_bytes, "device": str(device), "git_rev": git_rev(), "config_hash": config.config_hash,
        "world_size": world,
    }
    global_epoch = sum(1 for kind, _, _ in events[:next_event] if kind == "epoch")

    def evaluate_split(split: str) -> dict[str, float]:
        # bf16 trains faster; reported perplexities stay float32 arithmetic.
        return evaluate_distributed(model, streams[split], config.eval_batch_size, config.bptt, device, bf16=False)

    def save(path: Path, event_index: int) -> None:
        """Every rank calls this (it gathers the RNG states); rank 0 writes."""
        rng_ranks = distributed.all_gather_objects(rng_state())
        if not main:
            return
        progress = Progress(
            next_event=event_index, step=step, wall_s=prior_wall + time.perf_counter() - session_start,
            best_valid=best_valid, rows=rows,
        )
        save_training(path, config, dataset, vocab_size, model, optimizer, scheduler, progress, rng_ranks)

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
            save(out_dir / "best.pt", event_index)
        save(checkpoint_path, event_index)
        if main:
            append_line(metrics_path, line)

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
            realloc = model.between_rounds(
                batches,
                method=config.realloc_method,
                fraction=config.realloc_fraction,
                time_limit=config.realloc_time_limit or None,
                save_losses_to=out_dir / f"losses-{round_index}.npz" if config.realloc_save_losses else None,
            )
            distributed.check_replicas_equal(model, f"after the reallocation before round {round_index}")
            if realloc:
                scheduler.new_round()
                valid = evaluate_split("valid")
                row = make_row(
                    kind="realloc", round=round_index, epoch=global_epoch, step=step, lr=scheduler.lr,
                    valid_ppl=valid["ppl"], eval_tokens_per_s=valid["tokens_per_s"],
                    peak_memory_bytes=peak_memory_bytes(device),
                    wall_s=prior_wall + time.perf_counter() - session_start,
                    **common, **{key: realloc.get(key) for key in REALLOC_FIELDS},
                    **{key: value for key, value in realloc.items() if key not in REALLOC_FIELDS},
                )
                record(row, event_index + 1)
            else:
                save(checkpoint_path, event_index + 1)
            continue

        global_epoch += 1
        train_stats = _train_epoch(ddp_model, optimizer, config, train_stream, device, global_epoch, step, main)
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
            peak_memory_bytes=peak_memory_bytes(device),
            wall_s=prior_wall + time.perf_counter() - session_start, **common,
            allreduce_bytes_per_step=allreduce_bytes,
        )
        record(row, event_index + 1)
    return metrics_path


def _train_epoch(
    model: torch.nn.Module, optimizer: Optimizers, config: TrainConfig, stream: np.ndarray,
    device: torch.device, epoch: int, step: int, main: bool = True,
) -> dict[str, float]:
    """One pass over the training stream (or max_steps_per_epoch batches); the state carried across batches.

    `model` is a LanguageModel or its DDP wrapper, `stream` this rank's shard. train ppl and
    tokens/s are over all ranks (tokens summed, rank 0's wall time).
    """
    model.train()
    total = num_batches(int(stream.shape[0]), config.batch_size, config.bptt)
    if config.max_steps_per_epoch:
        total = min(total, config.max_steps_per_epoch)
    progress = _progress(total, f"epoch {epoch}") if main else None
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    tokens, state = 0, None
    start = time.perf_counter()
    for batch_index, batch in enumerate(
        lm_batches(stream, config.batch_size, config.bptt, max_batches=config.max_steps_per_epoch, device=device)
    ):
        try:
            nll, state = train_step(model, optimizer, batch.tokens, batch.targets, state, config.clip, config.bf16)
        except TrainingDiverged as error:
            raise TrainingDiverged(
                f"{error} at epoch {epoch}, step {step + 1} (batch {batch_index + 1} of the "
                f"epoch); the last good checkpoint is kept; lower lr or clip and resume from a new --out"
            ) from None
        step += 1
        tokens += batch.tokens.numel()
        nll_sum += nll.double().sum()
        if progress is not None:
            progress.update(1)
            if batch_index % 10 == 0:
                elapsed = max(time.perf_counter() - start, 1e-9)
                progress.set_postfix(ppl=f"{math.exp(float(nll_sum) / tokens):.1f}", tok_s=f"{tokens / elapsed:.0f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total_nll, tokens = distributed.sum_scalars(float(nll_sum), tokens)
    seconds = time.perf_counter() - start
    if progress is not None:
        progress.close()
    return {
        "step": step,
        "ppl": math.exp(total_nll / tokens),
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }


def _progress(total: int, description: str):
    """A tqdm bar on a terminal, nothing otherwise (logs stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="batch", leave=False)
