"""The reallocation's loss-accumulation pass: its speed and memory, and how much data the solver needs.

`accumulation_speed`: at each V, a LightRNN (the throughput benchmark's sizes) runs
`losses.accumulate_losses` (a frozen forward pass that adds every position's [R] row and [C]
column log-probabilities into two [V, R] / [V, C] float64 sums) over a Zipfian stream, timed
and with its peak memory measured, beside the same model's training and evaluation tokens/s
(`throughput.measure_once`, the training loop's step). A row at One Billion Word's V is added by
arithmetic only: the two sums alone are 8 * V * (R + C) bytes (11.3 GB at V = 793,471).

`fraction_effect`: from a trained LightRNN checkpoint and its data, the table the solver picks
from the losses of the first `fraction` of the training batches (`realloc_fraction`) against the
table it picks from all of them: the share of words placed in the same slot, and the NLL per
token, under the losses of all batches, of each table (what the matching minimises).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lightrnn.benchmark.machine import PeakMemory, machine_info, torch_threads
from lightrnn.method.word_table import WordTable

BILLIONW_VOCAB = 793_471
BILLIONW_TRAIN_TOKENS = 799_000_000  # about 0.8B training tokens (docs/PAPER.md)


def sums_bytes(vocab_size: int) -> int:
    """Bytes of the two float64 sums accumulate_losses keeps: 8 * V * (R + C), R = C = ceil(sqrt V)."""
    side = WordTable.square_size(vocab_size)
    return 8 * vocab_size * 2 * side


def accumulation_speed(
    vocab_sizes: Sequence[int] = (10_000, 50_000, 100_000),
    embed_dim: int = 256,
    hidden_dim: int = 256,
    num_layers: int = 2,
    batch_size: int = 16,
    bptt: int = 16,
    batches: int = 8,
    threads: int | None = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """One row per V: accumulation tokens/s and peak memory beside training/evaluation tokens/s; plus 793,471 by arithmetic."""
    from lightrnn.benchmark.throughput import (
        ThroughputSettings,
        build_for_bench,
        measure_once,
        stream_windows,
        zipf_stream,
    )
    from lightrnn.core.runtime import use_fp32_matmul
    from lightrnn.method.losses import accumulate_losses

    use_fp32_matmul()
    device = torch.device("cpu")
    rows = []
    with torch_threads(threads):
        info = machine_info(device)
        for vocab_size in vocab_sizes:
            settings = ThroughputSettings(vocab_sizes=(int(vocab_size),), models=("lightrnn",), embed_dim=embed_dim,
                                          hidden_dim=hidden_dim, num_layers=num_layers, batch_size=batch_size,
                                          bptt=bptt, warmup_steps=1, timed_steps=2, min_seconds=1.0, repeats=1,
                                          threads=threads, seed=seed)
            stream = zipf_stream(int(vocab_size), (batches + 1) * batch_size * bptt + batch_size + 1, seed=seed)
            windows = stream_windows(stream, batch_size, bptt, device)[:batches]
            torch.manual_seed(seed)
            model = build_for_bench("lightrnn", int(vocab_size), settings).eval()
            accumulate_losses(model, windows[:1])  # warm-up (allocator, kernels)
            with PeakMemory(device) as memory:
                start = time.perf_counter()
                row_loss, col_loss, _ = accumulate_losses(model, windows)
                seconds = time.perf_counter() - start
            del row_loss, col_loss, model
            trained = measure_once("lightrnn", int(vocab_size), stream, settings)
            tokens = len(windows) * batch_size * bptt
            row = {
                "vocab_size": int(vocab_size), "rows": WordTable.square_size(int(vocab_size)),
                "embed_dim": embed_dim, "hidden_dim": hidden_dim, "num_layers": num_layers,
                "batch_size": batch_size, "bptt": bptt, "tokens": tokens,
                "accumulate_tokens_per_s": tokens / seconds,
                "train_tokens_per_s": trained["train_tokens_per_s"], "eval_tokens_per_s": trained["eval_tokens_per_s"],
                "accumulate_over_train": tokens / seconds / trained["train_tokens_per_s"],
                "accumulate_peak_bytes": memory.bytes, "memory_method": memory.method,
                "sums_bytes": sums_bytes(int(vocab_size)), "measured": "yes",
                "billionw_hours_at_this_speed": float("nan"), **info,
            }
            rows.append(row)
            if progress is not None:
                progress(f"V={vocab_size}: accumulate {row['accumulate_tokens_per_s']:.0f} tok/s, train "
                         f"{row['train_tokens_per_s']:.0f} tok/s, peak {memory.bytes / 2**20:.0f} MiB "
                         f"(sums {row['sums_bytes'] / 2**20:.0f} MiB)")
    largest = rows[-1] if rows else None
    rows.append({
        "vocab_size": BILLIONW_VOCAB, "rows": WordTable.square_size(BILLIONW_VOCAB), "embed_dim": embed_dim,
        "hidden_dim": hidden_dim, "num_layers": num_layers, "batch_size": batch_size, "bptt": bptt,
        "tokens": BILLIONW_TRAIN_TOKENS, "accumulate_tokens_per_s": float("nan"), "train_tokens_per_s": float("nan"),
        "eval_tokens_per_s": float("nan"), "accumulate_over_train": float("nan"), "accumulate_peak_bytes": float("nan"),
        "memory_method": "arithmetic", "sums_bytes": sums_bytes(BILLIONW_VOCAB), "measured": "no (arithmetic)",
        # A pass over the whole training set at the largest measured V's accumulation speed (the
        # output layer's cost grows with sqrt V, so this is optimistic for V = 793,471).
        "billionw_hours_at_this_speed": (BILLIONW_TRAIN_TOKENS / largest["accumulate_tokens_per_s"] / 3600
                                         if largest else float("nan")),
        **(dict((k, largest[k]) for k in info) if largest else {}),
    })
    return rows


@torch.no_grad()
def _nll_per_token(model: Any, batches: list, rows: np.ndarray, cols: np.ndarray) -> float:
    """Mean NLL per token of the frozen model with the table (rows, cols): the word's row + column log-probability."""
    model.set_table(WordTable(rows, cols, model.num_rows, model.num_cols))
    word_row, word_col = torch.as_tensor(rows), torch.as_tensor(cols)
    total, count, state = 0.0, 0, None
    for tokens, targets in batches:
        row_logp, col_logp, state = model.slot_log_probs(tokens, targets, state)
        total -= float(row_logp.gather(-1, word_row[targets].unsqueeze(-1)).double().sum()
                       + col_logp.gather(-1, word_col[targets].unsqueeze(-1)).double().sum())
        count += targets.numel()
    return total / max(1, count)


def fraction_effect(
    checkpoint: str | Path,
    data_dir: str | Path,
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
    method: str = "auto",
    max_batches: int = 0,
    progress: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """The solver's table from a `fraction` of the training batches against its table from all of them.

    Rows: fraction, tokens read, accumulate_s / solve_s, same_slot (share of words in the same
    slot as the fraction-1.0 table), same_row, moved (share of words the reallocation moves from
    the checkpoint's table), objective_nll (the table's objective under ALL batches' losses, per
    token), objective_nll_over_full (minus the fraction-1.0 table's), and nll_after (the frozen
    model's measured NLL per token over all batches with the table: the input side moves too).
    """
    from lightrnn.config import TrainConfig
    from lightrnn.method.losses import accumulate_losses
    from lightrnn.method.reallocate import solve
    from lightrnn.registry import build_from_config
    from lightrnn.training.batches import lm_batches, load_split, load_vocab
    from lightrnn.training.checkpoint import check_trained_on, load_checkpoint

    payload = load_checkpoint(checkpoint, map_location="cpu")
    values = dict(payload["config"])
    values["initial_table"] = "random"
    config = TrainConfig.from_dict(values, source=str(checkpoint))
    words, counts = load_vocab(data_dir)
    check_trained_on(checkpoint, payload, data_dir, words)
    model = build_from_config(config, len(words), counts)
    model.load_state_dict(payload["model"])
    model.eval()
    start_table = model.table
    stream = load_split(data_dir, "train", len(words))
    batches = [(batch.tokens, batch.targets) for batch in
               lm_batches(stream, config.batch_size, config.bptt, max_batches=max_batches)]
    full_rows, full_cols = accumulate_losses(model, batches)[:2]
    tokens_all = sum(int(targets.numel()) for _, targets in batches)
    results: dict[float, dict[str, Any]] = {}
    for fraction in sorted(fractions, reverse=True):  # 1.0 first: the reference
        model.set_table(start_table)
        start = time.perf_counter()
        row_loss, col_loss, _ = accumulate_losses(model, batches, fraction=fraction)
        accumulate_s = time.perf_counter() - start
        allocation = solve(row_loss, col_loss, method=method, init=start_table)
        results[fraction] = {
            "fraction": fraction, "tokens": int(max(1, int(fraction * len(batches))) * config.batch_size * config.bptt),
            "accumulate_s": accumulate_s, "solve_s": allocation.seconds - allocation.bound_seconds,
            "rows": allocation.rows, "cols": allocation.cols,
            "objective_nll": float(full_rows[np.arange(len(words)), allocation.rows].sum()
                                   + full_cols[np.arange(len(words)), allocation.cols].sum()) / tokens_all,
        }
        if progress is not None:
            progress(f"fraction {fraction}: solved in {results[fraction]['solve_s']:.1f} s")
    reference = results[max(results)]
    out = []
    for fraction in sorted(results):
        result = dict(results[fraction])
        rows, cols = result.pop("rows"), result.pop("cols")
        result.update(
            same_slot=float(np.mean((rows == reference["rows"]) & (cols == reference["cols"]))),
            same_row=float(np.mean(rows == reference["rows"])),
            moved=float(np.mean((rows != start_table.rows) | (cols != start_table.cols))),
            objective_nll_over_full=result["objective_nll"] - reference["objective_nll"],
            nll_after=_nll_per_token(model, batches, rows, cols), vocab_size=len(words), method=method,
            checkpoint=str(checkpoint), **machine_info(torch.device("cpu")),
        )
        out.append(result)
    return out
