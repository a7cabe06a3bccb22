"""One pass over the training stream: its batches, the LSTM state carried across them,
mid-epoch checkpoints, and progress (a bar on a terminal, timed lines otherwise).

The loop (`lightrnn.training.train`) calls `train_epoch` once per epoch of its schedule; every batch goes
through `lightrnn.training.step.train_step`, the step the throughput benchmark times.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from lightrnn.config import TrainConfig
from lightrnn.core import distributed
from lightrnn.core.errors import DataError
from lightrnn.core.metrics import perplexity
from lightrnn.training import progress
from lightrnn.training.batches import lm_batches, num_batches
from lightrnn.training.checkpoint import Progress
from lightrnn.training.optim import Optimizers
from lightrnn.training.step import TrainingDiverged, train_step


def train_epoch(
    model: torch.nn.Module, optimizer: Optimizers, config: TrainConfig, stream: np.ndarray,
    device: torch.device, epoch: int, step: int, main: bool = True, *, resumed: Progress | None = None,
    rank: int = 0, world: int = 1, checkpoint: Callable[[dict[str, Any]], None] | None = None,
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
        _check_carried_state(model, state, config.batch_size)
    bar = progress.progress_bar(total, f"epoch {epoch}", first) if main else None
    log = progress.ProgressLog(epoch, total, first, tokens, world, config.log_every_s) if main and bar is None else None
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
        if bar is not None:
            bar.update(1)
            if batch_index % 10 == 0:
                elapsed = max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(ppl=f"{perplexity(float(nll_sum), tokens):.1f}", tok_s=f"{tokens / elapsed:.0f}")
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
    if bar is not None:
        bar.close()
    return {
        "step": step,
        "ppl": perplexity(total_nll, tokens),
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }



def _check_carried_state(model: torch.nn.Module, state: tuple | None, rows: int) -> None:
    """DataError when a mid-epoch checkpoint's carried state is not this model's state for `rows`
    rows (`check_payload` checked its types; the shapes need the model)."""
    if state is None:
        return
    expected = getattr(model, "module", model).init_state(rows)
    shapes = [tuple(part.shape) for part in state]
    if shapes != [tuple(part.shape) for part in expected]:
        raise DataError(f"the checkpoint's carried LSTM state has shapes {shapes}, this model's is "
                        f"{[tuple(part.shape) for part in expected]}; pass a checkpoint.pt written by lightrnn "
                        f"train for this config (or delete it and train again)")
