"""The sparse exact matching on each word's best slots and the slot-price lower bounds.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from lightrnn.method.assignment.bounds import smallest_k
from lightrnn.method.assignment.costs import _CHUNK_ELEMENTS, word_chunks


def candidate_slots(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int,
    row_prices: np.ndarray | None = None,
    col_prices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each word's k best rows x k best columns plus its slot in (rows, cols).

    "Best" by loss, or by loss + price when `row_prices` [R] / `col_prices` [C] are given.
    Returns (slots [V, k*k + 1] int64, costs [V, k*k + 1] float64 (unpriced), the (k+1)-th
    smallest row and column value [V] each (inf when k covers the side)): the last column is
    the word's own slot, so the table (rows, cols) is always a feasible matching of them.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    k_rows, k_cols = min(k, num_rows), min(k, num_cols)
    row_values, best_rows = smallest_k(row_loss, k_rows + 1, row_prices)
    col_values, best_cols = smallest_k(col_loss, k_cols + 1, col_prices)
    next_row = row_values[:, k_rows] if k_rows < num_rows else np.full(num_words, np.inf)
    next_col = col_values[:, k_cols] if k_cols < num_cols else np.full(num_words, np.inf)
    cand_rows = np.concatenate([np.repeat(best_rows[:, :k_rows], k_cols, axis=1), rows[:, None]], axis=1)
    cand_cols = np.concatenate([np.tile(best_cols[:, :k_cols], (1, k_rows)), cols[:, None]], axis=1)
    words = np.arange(num_words)[:, None]
    costs = row_loss[words, cand_rows].astype(np.float64) + col_loss[words, cand_cols]
    return cand_rows * num_cols + cand_cols, costs, next_row, next_col


def sparse_exact(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int = 8,
    row_prices: np.ndarray | None = None,
    col_prices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-weight matching of the words to their candidate slots (`candidate_slots`).

    Optimal among the tables where every word sits in one of its k best rows x k best columns
    or in its slot of (rows, cols); never worse than (rows, cols). scipy's LAPJVsp on a sparse
    V x (used slots) graph of V * (k*k + 1) edges: exact far beyond the dense solver's memory.
    Prices (the per-side bound's) choose the candidates: on real losses most words prefer the
    same few rows, and prices steer each word's candidates towards rows and columns with room.
    """
    num_words = rows.size
    num_cols = col_loss.shape[1]
    slots, costs, _, _ = candidate_slots(row_loss, col_loss, rows, cols, k, row_prices, col_prices)
    # A per-word constant does not change the optimal matching (each word is matched once);
    # shifting every word's cheapest edge to 1 keeps the weights positive and well scaled.
    weights = (costs - costs.min(axis=1, keepdims=True) + 1.0).ravel()
    words = np.repeat(np.arange(num_words), slots.shape[1])
    used, column = np.unique(slots.ravel(), return_inverse=True)
    # A word's own slot may also be among its best: keep one edge per (word, slot).
    _, first = np.unique(words * used.size + column, return_index=True)
    graph = csr_matrix((weights[first], (words[first], column[first])), shape=(num_words, used.size))
    matched_words, matched_columns = min_weight_full_bipartite_matching(graph)
    new_slots = np.empty(num_words, dtype=np.int64)
    new_slots[matched_words] = used[matched_columns]
    return new_slots // num_cols, new_slots % num_cols


def _priced_min(loss: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """[V] float64: min_b loss[w, b] + prices[b], in chunks of words."""
    out = np.empty(loss.shape[0], dtype=np.float64)
    for part in word_chunks(loss.shape[0], loss.shape[1]):
        out[part] = (loss[part] + prices[None, :]).min(axis=1)
    return out


def slot_price_bound(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int = 16,
    graph_k: int = 8,
    max_rounds: int = 300,
    deadline: float = float("inf"),
) -> float:
    """Lagrangian bound with a price on every slot, the prices read off the table (rows, cols).

    For any prices u >= 0 on the R*C slots, L(u) = sum_w min_s (cost[w, s] + u_s) - sum_s u_s
    is <= the optimum (weak duality; when V = R*C every slot is filled and u may be any sign).
    Unlike the per-side bound it sees that the words of a row need distinct columns; its best
    value is the optimum itself (the assignment LP is integral).

    Prices: the potentials of the table on each word's `graph_k` best rows x columns, i.e. the
    largest u with cost[w, s(w)] + u_{s(w)} <= cost[w, s] + u_s for those slots (shortest
    paths from the empty slots, by vectorised relaxation rounds, at most `max_rounds` or until
    `deadline`). When the table is optimal on that graph (`sparse_exact`'s), every word's own
    slot is its cheapest priced candidate and L(u) equals the objective except where a slot
    outside the `k` x `k` candidates evaluated might be cheaper: those are bounded below by the
    (k+1)-th row (column) loss plus the cheapest priced column (row). Valid for any table.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    slots, costs, _, _ = candidate_slots(row_loss, col_loss, rows, cols, graph_k)
    own = slots[:, -1]
    own_cost = costs[:, -1]
    costs -= own_cost[:, None]  # [V, m]: cost of moving each word to a candidate slot
    full = num_words == num_rows * num_cols
    prices = np.zeros(num_rows * num_cols)
    # With empty slots the prices must be >= 0 (the slot constraints are inequalities) and the
    # empty ones are 0; a full grid has equalities and free prices (start at 0, go down).
    if not full:
        prices[own] = np.inf
    floor = -np.inf if full else 0.0
    tolerance = 1e-9 * np.maximum(1.0, np.abs(own_cost))
    for _ in range(max(1, max_rounds)):
        if time.perf_counter() > deadline:
            break
        new = np.maximum(floor, np.minimum(prices[own], (prices[slots] + costs).min(axis=1)))
        changed = bool(np.any(new < prices[own] - tolerance))
        prices[own] = new
        if not changed:
            break
    del slots, costs
    if not full:
        # Slots no empty slot reaches through candidate moves: any price >= 0 stays valid.
        prices[~np.isfinite(prices)] = 0.0
        prices = np.maximum(prices, 0.0)
    return priced_slot_bound(row_loss, col_loss, rows, cols, prices, k)


def priced_slot_bound(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    prices: np.ndarray,
    k: int = 16,
    row_prices: np.ndarray | None = None,
    col_prices: np.ndarray | None = None,
) -> float:
    """L(u) = sum_w min_s (cost[w, s] + u_s) - sum_s u_s for slot prices u [R * C] (>= 0 unless V = R * C).

    A valid lower bound on the optimum for any such prices (weak duality). Each word's minimum
    is taken exactly over its `k` best rows x `k` best columns and its slot in (rows, cols); any
    other slot (r, c) costs at least its (k+1)-th row plus its cheapest column, priced as
    row[w, r] + a_r + col[w, c] + min_r' (u_r'c - a_r') (or the same with rows and columns
    swapped), so the minimum used is never above the true one. "Best" and "(k+1)-th" rank rows
    by row[w, r] + a_r with a = `row_prices` [R] (0 when None), columns by col[w, c] + b_c: with
    slot prices close to a_r + b_c (an auction started there), the ranking follows the prices
    and the bound of the other slots stays close to the candidates'. Streams over words in
    chunks: no [V, R*C] matrix.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    prices = np.asarray(prices, dtype=np.float64)
    grid = prices.reshape(num_rows, num_cols)
    row_shift = np.zeros(num_rows) if row_prices is None else np.asarray(row_prices, dtype=np.float64)
    col_shift = np.zeros(num_cols) if col_prices is None else np.asarray(col_prices, dtype=np.float64)
    cheapest_in_col = (grid - row_shift[:, None]).min(axis=0)  # [C]: min_r u_rc - a_r
    cheapest_in_row = (grid - col_shift[None, :]).min(axis=1)  # [R]: min_c u_rc - b_c
    total = -float(prices.sum())
    step = max(1, _CHUNK_ELEMENTS // max(1, min(k, num_rows) * min(k, num_cols) + 1 + num_rows + num_cols))
    for start in range(0, num_words, step):
        part = slice(start, min(num_words, start + step))
        part_slots, part_costs, next_row, next_col = candidate_slots(
            row_loss[part], col_loss[part], rows[part], cols[part], k, row_prices, col_prices)
        inside = (part_costs + prices[part_slots]).min(axis=1)
        outside = np.minimum(next_row + _priced_min(col_loss[part], cheapest_in_col),
                             next_col + _priced_min(row_loss[part], cheapest_in_row))
        total += float(np.minimum(inside, outside).sum())
    return total
