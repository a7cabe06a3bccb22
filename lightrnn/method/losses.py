"""The losses of the bootstrap reallocation (docs/PAPER.md, step 3): the frozen model scores every
row and every column for every word.

row_loss[w, r] = sum over the positions t where w is the target of -log P_row(r | h_t), and
col_loss[w, c] likewise (under the current table, as the official code does; or, for the
self-consistent reallocation, with every word fed its new row: `accumulate_column_losses`).
`lightrnn.method.reallocate` solves and applies; this module only reads the model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor


def take_batches(batches: Iterable[tuple[Tensor, Tensor]], fraction: float) -> Iterable[tuple[Tensor, Tensor]]:
    """The first `fraction` of `batches` (at least one), re-iterable when `batches` was."""
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}; pass e.g. fraction=0.1 for a tenth of the batches")
    if hasattr(batches, "__len__") and not isinstance(batches, Iterator):  # a list, a DataLoader, ...
        count = max(1, math.floor(fraction * len(batches)))  # type: ignore[arg-type]
        if fraction == 1.0:
            return batches

        class _Prefix:
            def __len__(self) -> int:
                return count

            def __iter__(self):
                return itertools.islice(iter(batches), count)

        return _Prefix()
    taken = list(batches)  # a one-shot iterator: keep what we use so it can be read twice
    if not taken:
        raise ValueError("batches is empty: reallocation needs at least one (tokens, targets) batch")
    return taken[: max(1, math.floor(fraction * len(taken)))]


def _device_of(model: Any) -> torch.device:
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def accumulate_losses(
    model: Any, batches: Iterable[tuple[Tensor, Tensor]], fraction: float = 1.0,
    target_counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Row and column losses of every word under the model's current table, in one pass.

    Args:
        model: a LightRNN (anything with `table`, `vocab_size`, `num_rows`, `num_cols` and
            `slot_log_probs(tokens, targets, state) -> (row_logp [B, T, R], col_logp [B, T, C], state)`).
        batches: (tokens, targets) LongTensor [B, T] pairs of consecutive stretches of the
            training stream; the recurrent state is carried from one to the next.
        fraction: use the first `fraction` of the batches (at least one).

    Returns:
        row_loss [V, R] float64: row_loss[w, r] = sum over positions with target w of -log P_row(r);
        col_loss [V, C] float64: the same for columns (given the true row, teacher forcing);
        the mean NLL per token (row + column cross-entropy) of this pass, in nats.

    The sums are `index_add_` of whole [B*T, R] blocks on the model's device: float64 on CPU;
    on an accelerator float32 blocks flushed into float64 every few batches (float32 alone
    would lose the small terms of frequent words after ~10^7 additions).
    """
    batches = take_batches(batches, fraction)
    device = _device_of(model)
    table = model.table
    vocab_size, num_rows, num_cols = int(model.vocab_size), int(model.num_rows), int(model.num_cols)
    word_row = torch.as_tensor(table.rows, dtype=torch.long, device=device)
    word_col = torch.as_tensor(table.cols, dtype=torch.long, device=device)
    exact_dtype = torch.float64
    fast_dtype = torch.float64 if device.type == "cpu" else torch.float32
    row_total = torch.zeros(vocab_size, num_rows, dtype=exact_dtype, device=device)
    col_total = torch.zeros(vocab_size, num_cols, dtype=exact_dtype, device=device)
    row_part, col_part = (row_total, col_total) if fast_dtype == exact_dtype else (
        torch.zeros_like(row_total, dtype=fast_dtype), torch.zeros_like(col_total, dtype=fast_dtype))
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    counts = torch.zeros(vocab_size, dtype=torch.float64, device=device) if target_counts is not None else None
    tokens_seen, state, since_flush = 0, None, 0
    for tokens, targets in batches:
        tokens, targets = tokens.to(device), targets.to(device)
        row_logp, col_logp, state = model.slot_log_probs(tokens, targets, state)  # [B, T, R], [B, T, C]
        flat_targets = targets.reshape(-1)  # [N]
        if counts is not None:
            counts += torch.bincount(flat_targets, minlength=vocab_size)
        row_logp = row_logp.reshape(flat_targets.numel(), num_rows)  # [N, R]
        col_logp = col_logp.reshape(flat_targets.numel(), num_cols)  # [N, C]
        row_part.index_add_(0, flat_targets, row_logp.to(fast_dtype), alpha=-1)
        col_part.index_add_(0, flat_targets, col_logp.to(fast_dtype), alpha=-1)
        target_logp = row_logp.gather(1, word_row[flat_targets, None]) + col_logp.gather(1, word_col[flat_targets, None])
        nll_sum -= target_logp.double().sum()
        tokens_seen += flat_targets.numel()
        since_flush += 1
        if row_part is not row_total and since_flush >= 16:
            row_total += row_part
            col_total += col_part
            row_part.zero_()
            col_part.zero_()
            since_flush = 0
    if tokens_seen == 0:
        raise ValueError("batches is empty: reallocation needs at least one (tokens, targets) batch")
    if row_part is not row_total:
        row_total += row_part
        col_total += col_part
    if counts is not None:
        target_counts += counts.cpu().numpy()
    return row_total.cpu().numpy(), col_total.cpu().numpy(), float(nll_sum) / tokens_seen


@torch.no_grad()
def mean_nll(model: Any, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Mean NLL per token (row + column cross-entropy) of the frozen model under its table."""
    device = _device_of(model)
    table = model.table
    word_row = torch.as_tensor(table.rows, dtype=torch.long, device=device)
    word_col = torch.as_tensor(table.cols, dtype=torch.long, device=device)
    nll_sum, tokens_seen, state = 0.0, 0, None
    for tokens, targets in batches:
        tokens, targets = tokens.to(device), targets.to(device)
        row_logp, col_logp, state = model.slot_log_probs(tokens, targets, state)
        nll_sum -= float(
            row_logp.gather(-1, word_row[targets].unsqueeze(-1)).double().sum()
            + col_logp.gather(-1, word_col[targets].unsqueeze(-1)).double().sum()
        )
        tokens_seen += targets.numel()
    return nll_sum / max(1, tokens_seen)


def provisional_columns(rows: np.ndarray, old_cols: np.ndarray, num_cols: int) -> np.ndarray:
    """Columns that make (rows, cols) a valid table: every word keeps its old column in its new
    row unless a word that stayed in that row (or, among movers, a lower id) holds it; the others
    take the row's free columns in order. [V] int64.

    The self-consistent reallocation scores its columns under this table (new rows, old columns
    where possible): a bijection, so the column softmaxes' supports and normalisers are those of
    a real table (`accumulate_column_losses`).
    """
    rows, old_cols = np.asarray(rows, dtype=np.int64), np.asarray(old_cols, dtype=np.int64)
    cols = np.empty_like(old_cols)
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(int(rows.max(initial=0)) + 2))
    for row in range(len(bounds) - 1):
        words = order[bounds[row]:bounds[row + 1]]
        if len(words) > num_cols:
            raise ValueError(f"provisional_columns: row {row} holds {len(words)} words, more than its {num_cols} slots")
        taken = np.zeros(num_cols, dtype=bool)
        waiting = []
        for word in words:  # ascending ids (stable sort), so the first claim of a column is the lowest id
            col = old_cols[word]
            if taken[col]:
                waiting.append(word)
            else:
                taken[col] = True
                cols[word] = col
        free = np.flatnonzero(~taken)
        cols[np.asarray(waiting, dtype=np.int64)] = free[:len(waiting)]
    return cols


@torch.no_grad()
def accumulate_column_losses(
    model: Any, batches: Iterable[tuple[Tensor, Tensor]], rows: np.ndarray, cols: np.ndarray | None = None,
) -> np.ndarray:
    """col_loss [V, C] float64 with every word fed its row in `rows` [V] (not the model's table).

    The model is scored under the valid table (rows, cols), by default cols =
    `provisional_columns(rows, the model's columns)`: the history and the column step read the
    new rows (and the old columns where they are free), and each column softmax is normalised
    over the words that share the target's new row at those columns. col_loss[w, c] sums over
    the positions with target w the loss of w at column c of its new row (`slot_log_probs`): the
    exact loss at its provisional column, the other columns priced with that row's normaliser.
    What this matching cannot see: the normaliser moves when the row's words change columns
    (per-word terms, or a row with empty slots); `table_column_nll` measures the final table's.
    The model's table is put back afterwards.
    """
    table = model.table
    if cols is None:
        cols = provisional_columns(rows, table.cols, table.num_cols)
    device = _device_of(model)
    vocab_size, num_cols = int(model.vocab_size), int(model.num_cols)
    total = torch.zeros(vocab_size, num_cols, dtype=torch.float64, device=device)
    model.set_table(type(table)(rows, cols, table.num_rows, table.num_cols))
    try:
        state = None
        for tokens, targets in batches:
            tokens, targets = tokens.to(device), targets.to(device)
            _, col_logp, state = model.slot_log_probs(tokens, targets, state)  # [B, T, C]
            total.index_add_(0, targets.reshape(-1), col_logp.reshape(-1, num_cols).double(), alpha=-1)
    finally:
        model.set_table(table)
    return total.cpu().numpy()


@torch.no_grad()
def table_column_nll(
    model: Any, batches: Iterable[tuple[Tensor, Tensor]], rows: np.ndarray, history_cols: np.ndarray,
    final_cols: np.ndarray,
) -> float:
    """Summed column NLL of the table (rows, final_cols) with the history fed (rows, history_cols).

    Each target's column softmax is normalised over the words of its row at their FINAL columns
    (every per-word term where the final table puts it; empty slots skipped): the exact column
    part of the self-consistent reallocation's objective, where `accumulate_column_losses` had to
    use the provisional columns' normalisers. The model's table is put back afterwards.
    """
    table = model.table
    device = _device_of(model)
    final = torch.as_tensor(np.asarray(final_cols, dtype=np.int64), device=device)
    type(table)(rows, final_cols, table.num_rows, table.num_cols)  # a valid table, or a ValueError naming the clash
    total = torch.zeros((), dtype=torch.float64, device=device)
    model.set_table(type(table)(rows, history_cols, table.num_rows, table.num_cols))
    try:
        state = None
        for tokens, targets in batches:
            tokens, targets = tokens.to(device), targets.to(device)
            _, col_logp, state = model.slot_log_probs(tokens, targets, state, slot_cols=final)  # [B, T, C]
            total -= col_logp.gather(-1, final[targets].unsqueeze(-1)).double().sum()
    finally:
        model.set_table(table)
    return float(total)
