"""Exact perplexity over a whole split, for any model that honours `lightrnn.core.lm`."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightrnn.core import distributed
from lightrnn.core.lm import detach_state
from lightrnn.core.metrics import git_rev, param_stats, perplexity
from lightrnn.core.runtime import autocast_context, resolve_device
from lightrnn.training.batches import lm_batches, load_split, load_vocab, shard_stream
from lightrnn.training.checkpoint import check_trained_on, load_checkpoint, model_config, rebuild_model
from lightrnn.training.preflight import check_fits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    stream: np.ndarray,
    batch_size: int,
    bptt: int,
    device: torch.device | str,
    bf16: bool = False,
    per_token: bool = False,
) -> dict[str, float]:
    """Perplexity of `model` on `stream` (1-D int ids), every target counted exactly once.

    The stream's N - 1 targets are cut into `batch_size` contiguous segments read with the
    state carried across windows (`lm_batches(exact=True)`); padded positions are masked out.
    Returns {nll_sum (nats, float64), tokens (N - 1), ppl = exp(nll_sum / tokens), tokens_per_s}
    and, with per_token, "token_nll": the N - 1 NLLs (float64 numpy) in the stream's order (the
    segments are contiguous: row b's targets, in order, then row b + 1's), for `block_sums`.
    The model is left in the train/eval mode it had.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    tokens = 0
    state = None
    rows: list[list[np.ndarray]] = [[] for _ in range(batch_size)]
    start = time.perf_counter()
    try:
        for batch in lm_batches(stream, batch_size, bptt, exact=True, device=device):
            with autocast_context(device, bf16):
                output = model(batch.tokens, batch.targets, state)
            nll = output.nll.double()  # [B, T]
            if per_token:
                values = nll.cpu().numpy()
                mask = None if batch.mask is None else batch.mask.cpu().numpy()
                for row in range(values.shape[0]):
                    rows[row].append(values[row] if mask is None else values[row][mask[row]])
            if batch.mask is not None:
                nll = nll.masked_fill(~batch.mask, 0.0)
                tokens += int(batch.mask.sum())
            else:
                tokens += batch.tokens.numel()
            nll_sum += nll.sum()
            state = detach_state(output.state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    total = float(nll_sum)
    ppl = perplexity(total, tokens) if tokens else math.nan
    if not math.isfinite(ppl):
        raise FloatingPointError(
            f"evaluation gave a mean nll of {total / max(tokens, 1):.4g} nats per token (perplexity {ppl}): "
            f"the model has diverged; train again with a lower lr or with clip > 0"
        )
    result = {
        "nll_sum": total,
        "tokens": tokens,
        "ppl": ppl,
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }
    if per_token:
        result["token_nll"] = np.concatenate([part for row in rows for part in row]) if tokens else np.zeros(0)
    return result


BLOCK_TOKENS = 100  # eval.json's block_nll: NLL sums over consecutive blocks of this many targets


def block_sums(token_nll: np.ndarray, block_tokens: int = BLOCK_TOKENS) -> list[float]:
    """NLL sums over consecutive blocks of `block_tokens` targets (the last block holds the rest).

    Every run evaluated on the same split has the same blocks, so two runs' block sums pair up:
    the paired bootstrap of `lightrnn.report.intervals` resamples blocks, not tokens (a block
    keeps the dependence between neighbouring words inside it).
    """
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    return [float(token_nll[start:start + block_tokens].sum()) for start in range(0, len(token_nll), block_tokens)]


def evaluate_distributed(
    model: nn.Module,
    stream: np.ndarray,
    batch_size: int,
    bptt: int,
    device: torch.device | str,
    bf16: bool = False,
) -> dict[str, float]:
    """`evaluate` over the whole split when several processes share it; `evaluate` itself in one process.

    Rank r scores its contiguous shard (`shard_stream(exact=True)`: rows r*B .. r*B + B - 1 of the
    layout of B * world_size rows), then nll_sum and token counts are summed over the ranks.
    Exact: every one of the N - 1 targets is counted once, and the result equals `evaluate`
    in one process with batch_size * world_size (float summation order aside). Same keys as
    `evaluate`; tokens_per_s is the whole split over rank 0's wall time, the reduction included.
    """
    world = distributed.world_size()
    if world == 1:
        return evaluate(model, stream, batch_size, bptt, device, bf16=bf16)
    start = time.perf_counter()
    shard = shard_stream(stream, batch_size, distributed.rank(), world, exact=True)
    nll_sum, tokens = 0.0, 0
    if shard.shape[0] >= 2:  # a short split leaves the last ranks without targets
        local = evaluate(model, shard, batch_size, bptt, device, bf16=bf16)
        nll_sum, tokens = local["nll_sum"], local["tokens"]
    nll_sum, tokens = distributed.sum_scalars(nll_sum, tokens)
    seconds = time.perf_counter() - start
    return {
        "nll_sum": nll_sum,
        "tokens": int(tokens),
        "ppl": perplexity(nll_sum, tokens),
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }


def evaluate_checkpoint(
    checkpoint: str, data_dir: str, split: str = "test", device: str = "auto", batch_size: int | None = None
) -> dict[str, object]:
    """Rebuild the model of a training checkpoint and evaluate it exactly on `split`.

    Returns eval.json's fields: dataset (the name of `data_dir`, the data evaluated, as training
    names it), data (`data_dir`), trained_on (the checkpoint's dataset), model, split, ppl,
    nll_sum, tokens, tokens_per_s, params, device, git_rev, checkpoint, and block_tokens with
    block_nll (`block_sums`: the NLL per block of BLOCK_TOKENS targets, for paired intervals).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    torch_device = resolve_device(device)
    payload = load_checkpoint(checkpoint, map_location="cpu")  # load_state_dict moves the weights
    # The table (if any) is in the state_dict: the initial_table file the run started from may be
    # gone, and is not needed (`checkpoint.model_config`).
    config = model_config(payload, checkpoint)
    words, counts = load_vocab(data_dir)
    check_trained_on(checkpoint, payload, data_dir, words)
    batch_size = config.eval_batch_size if batch_size is None else batch_size
    check_fits(config, len(words), counts, torch_device, training=False, batch_size=batch_size)
    model, _ = rebuild_model(payload, checkpoint, counts, torch_device, config)
    stream = load_split(data_dir, split, len(words))
    # Reported perplexities are float32 arithmetic even for a model trained under bf16 autocast.
    result = evaluate(model, stream, batch_size, config.bptt, torch_device, bf16=False, per_token=True)
    return {
        "dataset": Path(data_dir).resolve().name, "data": str(data_dir), "trained_on": payload.get("dataset"),
        "model": config.model, "split": split, "ppl": result["ppl"],
        "nll_sum": result["nll_sum"], "tokens": result["tokens"], "tokens_per_s": result["tokens_per_s"],
        "params": param_stats(model)[0], "device": str(torch_device), "git_rev": git_rev(),
        "checkpoint": str(checkpoint), "block_tokens": BLOCK_TOKENS,
        "block_nll": [round(value, 6) for value in block_sums(result["token_nll"])],
    }
