"""Lower bounds on the assignment objective: naive, per-side transport (Lagrangian) and slot subgradient.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import time

import numpy as np

from lightrnn.method.assignment.costs import word_chunks


def naive_bound(row_loss: np.ndarray, col_loss: np.ndarray) -> float:
    """sum_w min_r row_loss[w, r] + min_c col_loss[w, c]: capacities ignored (always valid)."""
    total = 0.0
    for loss in (row_loss, col_loss):
        for part in word_chunks(loss.shape[0], loss.shape[1]):
            total += float(loss[part].min(axis=1).sum(dtype=np.float64))
    return total


def smallest_k(loss: np.ndarray, k: int, prices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each word's k smallest losses (plus `prices` [width] when given) and their bins, ascending.

    Returns ([V, k] float64, [V, k] int64).
    """
    import torch

    num_words, width = loss.shape
    k = min(k, width)
    values = np.empty((num_words, k), dtype=np.float64)
    indices = np.empty((num_words, k), dtype=np.int64)
    for part in word_chunks(num_words, width):
        block = np.ascontiguousarray(loss[part]) if prices is None else loss[part] + prices[None, :]
        top = torch.topk(torch.from_numpy(block), k, dim=1, largest=False, sorted=True)
        values[part] = top.values.double().numpy()
        indices[part] = top.indices.numpy()
    return values, indices


def transport_bound(
    top_values: np.ndarray,
    top_indices: np.ndarray,
    capacity: int,
    width: int,
    upper: float,
    iterations: int,
) -> tuple[float, np.ndarray]:
    """Lagrangian bound of one side (rows or columns) with at most `capacity` words per bin.

    For prices u >= 0 on the bins, L(u) = sum_w min_b (loss[w, b] + u_b) - capacity * sum_b u_b
    is <= the cheapest assignment of words to bins with those capacities (weak duality), hence
    <= the row (resp. column) part of any table. Each word's minimum is taken over its k
    smallest losses and, for the other bins, the (k+1)-th smallest loss + min(u): a value no
    larger than the true minimum, so the bound stays valid with k << width. u = 0 is the naive
    bound; projected supergradient steps with a Polyak step towards `upper` (the side's part of
    a known table) raise it. Returns the best L(u) seen and its prices u [width].
    """
    num_words, k = top_values.shape
    if k < width:
        values, indices, outside = top_values[:, :-1], top_indices[:, :-1], top_values[:, -1]
    else:
        values, indices, outside = top_values, top_indices, None
    prices = np.zeros(width, dtype=np.float64)
    best, best_prices, theta, stale = -np.inf, prices, 1.0, 0
    for _ in range(max(1, iterations)):
        priced = values + prices[indices]  # [V, k]
        pick = priced.argmin(axis=1)
        cost = priced[np.arange(num_words), pick]
        chosen = indices[np.arange(num_words), pick]
        if outside is not None:
            cheapest_bin = int(prices.argmin())
            fallback = outside + prices[cheapest_bin]
            use_outside = fallback < cost
            cost = np.where(use_outside, fallback, cost)
            chosen = np.where(use_outside, cheapest_bin, chosen)
        value = float(cost.sum()) - capacity * float(prices.sum())
        if value > best + 1e-12 * abs(best if np.isfinite(best) else 1.0):
            best, best_prices, stale = value, prices, 0
        else:
            stale += 1
            if stale >= 4:
                theta, stale = theta / 2, 0
        gradient = np.bincount(chosen, minlength=width).astype(np.float64) - capacity
        # Bins with price 0 and spare room cannot go lower: drop them from the step.
        gradient[(prices <= 0) & (gradient < 0)] = 0.0
        norm = float(gradient @ gradient)
        if norm == 0.0 or upper - value <= 0 or theta < 1e-4:
            break
        prices = np.maximum(0.0, prices + theta * (upper - value) / norm * gradient)
    return best, best_prices


def slot_subgradient_bound(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    row_prices: np.ndarray,
    col_prices: np.ndarray,
    upper: float,
    k: int = 4,
    iterations: int = 100,
    deadline: float = float("inf"),
) -> float:
    """Lagrangian bound with slot prices u_rc = a_r + b_c + d_rc, d >= 0 raised by supergradient steps.

    Starts from the per-side bound's prices (a = `row_prices` [R], b = `col_prices` [C]): with
    d = 0 it is that bound (at least), since sum_w min_{r,c} (row[w, r] + a_r + col[w, c] + b_c)
    - C sum a - R sum b is the two sides' bounds added. Raising d_rc on slots wanted by several
    words prices in what the per-side bound ignores: the words of a row need distinct columns.
    Each word's minimum is taken over its k best priced rows x k best priced columns, and any
    other slot is bounded below by its (k+1)-th priced row (column) plus its best column (row),
    valid because d >= 0, so every value is a valid bound whatever the table. Polyak steps
    towards `upper` (a known table's objective); returns the best value seen.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    k_rows, k_cols = min(k, num_rows), min(k, num_cols)
    row_values, row_best = smallest_k(row_loss, k_rows + 1, row_prices)
    col_values, col_best = smallest_k(col_loss, k_cols + 1, col_prices)
    outside = np.full(num_words, np.inf)
    if k_rows < num_rows:
        outside = np.minimum(outside, row_values[:, k_rows] + col_values[:, 0])
    if k_cols < num_cols:
        outside = np.minimum(outside, row_values[:, 0] + col_values[:, k_cols])
    slots = np.repeat(row_best[:, :k_rows], k_cols, axis=1) * num_cols + np.tile(col_best[:, :k_cols], (1, k_rows))
    values = np.repeat(row_values[:, :k_rows], k_cols, axis=1) + np.tile(col_values[:, :k_cols], (1, k_rows))
    del row_values, col_values, row_best, col_best
    constant = -num_cols * float(row_prices.sum()) - num_rows * float(col_prices.sum())
    words = np.arange(num_words)
    extra = np.zeros(num_rows * num_cols)
    best, theta, stale = -np.inf, 1.0, 0
    for _ in range(max(1, iterations)):
        priced = values + extra[slots]
        pick = priced.argmin(axis=1)
        cost = priced[words, pick]
        inside = cost <= outside
        value = float(np.where(inside, cost, outside).sum()) + constant - float(extra.sum())
        if value > best:
            best, stale = value, 0
        else:
            stale += 1
            if stale >= 4:
                theta, stale = theta / 2, 0
        if time.perf_counter() > deadline or theta < 1e-4 or upper - value <= 0:
            break
        # A supergradient: words per slot minus the slot's capacity 1 (words that took the
        # outside bound are left out: their slot is unknown, and any step keeps the bound valid).
        gradient = np.bincount(slots[words, pick][inside], minlength=extra.size).astype(np.float64) - 1.0
        gradient[(extra <= 0) & (gradient < 0)] = 0.0
        norm = float(gradient @ gradient)
        if norm == 0.0:
            break
        extra = np.maximum(0.0, extra + theta * (upper - value) / norm * gradient)
    return best
