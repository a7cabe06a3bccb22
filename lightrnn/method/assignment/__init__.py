"""The word-to-slot assignment solvers behind `lightrnn.method.reallocate`.

The official greedy heuristic, the sparse exact matching on each word's best slots, the local
search, the auction on candidate slots, the dense exact matching and the lower bounds (per-side
Lagrangian, slot-price dual).

Notation (docs/PAPER.md, the reallocation step): V words, an R x C grid of slots, `row_loss` [V, R] and `col_loss`
[V, C] (float32 or float64, never copied whole: every pass over them goes in chunks of words so
that the 793,471 x 891 matrices of One Billion Word fit next to the solver), rows/cols [V] int64.
A slot is the flat index `row * C + col`; `owner` [R * C] holds the word in each slot, -1 if empty.
"""

from __future__ import annotations

import heapq
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

# Elements per chunk when streaming a [V, n] loss matrix: 2^22 float32 = 16 MB of temporaries.
_CHUNK_ELEMENTS = 1 << 22


def word_chunks(num_words: int, width: int):
    """Yield slices of word ids whose [m, width] block holds about _CHUNK_ELEMENTS values."""
    step = max(1, _CHUNK_ELEMENTS // max(1, width))
    for start in range(0, num_words, step):
        yield slice(start, min(num_words, start + step))


def objective(row_loss: np.ndarray, col_loss: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """sum_w row_loss[w, rows[w]] + col_loss[w, cols[w]] in float64."""
    words = np.arange(rows.size)
    return float(row_loss[words, rows].sum(dtype=np.float64) + col_loss[words, cols].sum(dtype=np.float64))


def word_costs(row_loss: np.ndarray, col_loss: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[V] float64: each word's cost at its slot."""
    words = np.arange(rows.size)
    return row_loss[words, rows].astype(np.float64) + col_loss[words, cols].astype(np.float64)


def slot_owner(rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int) -> np.ndarray:
    """[R * C] int64: the word in each slot, -1 where empty."""
    owner = np.full(num_rows * num_cols, -1, dtype=np.int64)
    owner[rows * num_cols + cols] = np.arange(rows.size, dtype=np.int64)
    return owner


# ----- the official greedy heuristic -------------------------------------------------------------


def _first_priority(loss: np.ndarray) -> np.ndarray:
    """[V] float64: the official code's key of each word's first candidate.

    pyreallocate.cpp sorts a word's losses ascending (l_0 <= l_1 <= ...), pops its best
    candidate and keys it by (sum of the others) / (n - 2), or 0 when n <= 2: a regret-like
    "how bad are my alternatives". Larger keys leave the max-heap first.
    """
    num_words, width = loss.shape
    priority = np.zeros(num_words, dtype=np.float64)
    if width <= 2:
        return priority
    for part in word_chunks(num_words, width):
        block = loss[part]
        priority[part] = (block.sum(axis=1, dtype=np.float64) - block.min(axis=1)) / (width - 2)
    return priority


def _candidate_key(sorted_losses: np.ndarray, index: int) -> float:
    """Key of a word's candidate number `index` (0-based) in the official code's queue."""
    width = sorted_losses.size
    if index + 1 >= width - 1:
        return 0.0
    return float(sorted_losses[index + 1 :].sum(dtype=np.float64)) / (width - index - 2)


def _heap_tail(loss: np.ndarray, words: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """The official max-heap process, run literally for the last few words.

    Used once at most two bins still have room: there the keys stop being monotone (the
    official code keys a word's last two candidates 0, deferring it behind everyone), so the
    simple "in key order, cheapest bin with room" shortcut of `_greedy_bins` no longer applies.
    `words` in key order (ties: that order); `capacity` [n] is updated in place. Returns the
    bin of each word [m].
    """
    losses = np.asarray(loss[words], dtype=np.float64)  # [m, n]
    order = np.argsort(losses, axis=1, kind="stable")  # [m, n]: each word's candidates, best first
    sorted_losses = np.take_along_axis(losses, order, axis=1)
    choice = np.full(words.size, -1, dtype=np.int64)
    heap = [(-_candidate_key(sorted_losses[i], 0), i, 0) for i in range(words.size)]
    heapq.heapify(heap)
    while heap:
        _, i, index = heapq.heappop(heap)
        candidate = int(order[i, index])
        if capacity[candidate] > 0:
            choice[i] = candidate
            capacity[candidate] -= 1
            continue
        # Rejected: the next candidate's key is >= the one just popped (keys only grow while
        # positive), so the word would be popped again at once; jump straight to its first
        # candidate with room, unless that is one of its last two, which are keyed 0 (deferred).
        open_ranks = np.flatnonzero(capacity[order[i, index + 1 :]] > 0) + index + 1
        rank = int(open_ranks[0])
        if rank >= losses.shape[1] - 2:
            heapq.heappush(heap, (0.0, i, rank))
        else:
            choice[i] = int(order[i, rank])
            capacity[choice[i]] -= 1
    return choice


def _greedy_bins(loss: np.ndarray, words: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Assign `words` (already in key order) to bins of `capacity` as the official max-heap does.

    While at least three bins have room, a rejected word's next key is at least the key just
    popped, so it is popped again at once: the heap process is then "each word in key order
    takes its cheapest bin with room". That is run in vectorised chunks; a chunk is cut at the
    first word whose bin was filled by an earlier word of the same chunk, and re-run from there
    (at most one cut per bin that fills). Returns the bin of each word [m].
    """
    num_bins = loss.shape[1]
    capacity = capacity.astype(np.int64).copy()
    choice = np.full(words.size, -1, dtype=np.int64)
    position, chunk = 0, 4096
    while position < words.size:
        open_bins = int(np.count_nonzero(capacity > 0))
        if open_bins <= 2:
            choice[position:] = _heap_tail(loss, words[position:], capacity)
            break
        batch = words[position : position + chunk]
        block = np.array(loss[batch], dtype=np.float64)  # [m, n]
        block[:, capacity <= 0] = np.inf
        wanted = block.argmin(axis=1)  # [m]
        # rank[i]: how many earlier words of this batch want the same bin.
        sorter = np.argsort(wanted, kind="stable")
        sorted_wanted = wanted[sorter]
        starts = np.flatnonzero(np.r_[True, sorted_wanted[1:] != sorted_wanted[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, wanted.size]))
        rank = np.empty(wanted.size, dtype=np.int64)
        rank[sorter] = np.arange(wanted.size) - group_start
        room = capacity[wanted]
        overflow = np.flatnonzero(rank >= room)
        accepted = int(overflow[0]) if overflow.size else wanted.size
        # Stop right after the word that leaves only two bins with room (the tail rules apply).
        fills = np.flatnonzero(rank[:accepted] == room[:accepted] - 1)
        if fills.size >= open_bins - 2:
            accepted = min(accepted, int(fills[open_bins - 3]) + 1)
        choice[position : position + accepted] = wanted[:accepted]
        capacity -= np.bincount(wanted[:accepted], minlength=num_bins)
        position += accepted
        chunk = max(64, chunk // 2) if accepted < wanted.size else min(1 << 16, chunk * 2)
    return choice


def greedy(row_loss: np.ndarray, col_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official CNTK heuristic (pyreallocate.cpp), reimplemented; returns (rows, cols) [V].

    Phase 1: words leave a max-heap keyed by `_first_priority` of their row losses and take
    their best row that still has fewer than C words. Phase 2, row by row: the words of the row
    leave a heap keyed the same way on their column losses and take their best free column.
    Same result as the C++ heap up to the order of equal keys (it assumes losses >= 0, as
    -log-probabilities are, which makes keys grow as a word is rejected). One deliberate
    difference: C++ reads past a word's candidate list when its last row is full (undefined
    behaviour); here that cannot happen because capacities are checked before the tail.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    row_order = np.argsort(-_first_priority(row_loss), kind="stable")
    rows = np.empty(num_words, dtype=np.int64)
    rows[row_order] = _greedy_bins(row_loss, row_order, np.full(num_rows, num_cols))

    # Phase 2, vectorised across rows: step k lets the k-th word (in key order) of every row
    # take its cheapest free column of that row; the last two words of a full row follow the
    # literal heap (their last candidates are keyed 0).
    col_priority = _first_priority(col_loss)
    by_row = np.lexsort((-col_priority, rows))  # words grouped by row, each row in key order
    counts = np.bincount(rows, minlength=num_rows)
    row_start = np.r_[0, np.cumsum(counts)[:-1]]
    cols = np.full(num_words, -1, dtype=np.int64)
    taken = np.zeros((num_rows, num_cols), dtype=bool)
    vector_steps = min(int(counts.max(initial=0)), max(0, num_cols - 2))
    for step in range(vector_steps):
        active = np.flatnonzero(counts > step)
        words = by_row[row_start[active] + step]
        block = np.array(col_loss[words], dtype=np.float64)  # [a, C]
        block[taken[active]] = np.inf
        chosen = block.argmin(axis=1)
        cols[words] = chosen
        taken[active, chosen] = True
    for row in np.flatnonzero(counts > vector_steps):
        words = by_row[row_start[row] + vector_steps : row_start[row] + counts[row]]
        capacity = (~taken[row]).astype(np.int64)
        cols[words] = _heap_tail(col_loss, words, capacity)
        taken[row, cols[words]] = True
    return rows, cols


# ----- lower bounds ------------------------------------------------------------------------------


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


# ----- exact sub-problems and the local search ---------------------------------------------------


class LocalSearch:
    """A table under improvement: rows, cols, owner and per-word costs kept consistent.

    Every move is exact and only accepted when it lowers the objective, so the objective never
    rises (float rounding aside, which `reallocate.solve` guards against).
    """

    def __init__(self, row_loss: np.ndarray, col_loss: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        self.row_loss, self.col_loss = row_loss, col_loss
        self.num_rows, self.num_cols = row_loss.shape[1], col_loss.shape[1]
        self.rows, self.cols = rows.astype(np.int64).copy(), cols.astype(np.int64).copy()
        self.owner = slot_owner(self.rows, self.cols, self.num_rows, self.num_cols)
        self.cost = word_costs(row_loss, col_loss, self.rows, self.cols)  # [V]
        # Each word's best rows [V, kr] and best columns [V, kc], computed on the first swap round.
        self.candidates: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def value(self) -> float:
        return float(self.cost.sum())

    def _reassign(self, words: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        self.owner[self.rows[words] * self.num_cols + self.cols[words]] = -1
        self.rows[words], self.cols[words] = rows, cols
        self.owner[rows * self.num_cols + cols] = words
        self.cost[words] = self.row_loss[words, rows].astype(np.float64) + self.col_loss[words, cols]

    def line_sweep(self, by_row: bool, deadline: float) -> float:
        """Exact re-assignment inside every row (words of a row -> its columns) or column.

        One `linear_sum_assignment` of at most C x C (resp. R x R) per line, empty slots
        included. Lines where every word already sits in its best column (row) are skipped.
        Returns the decrease of the objective.
        """
        before = self.value
        lines = self.num_rows if by_row else self.num_cols
        grid = self.owner.reshape(self.num_rows, self.num_cols)
        loss = self.col_loss if by_row else self.row_loss
        for line in range(lines):
            if time.perf_counter() > deadline:
                break
            occupants = grid[line] if by_row else grid[:, line]
            words = occupants[occupants >= 0]
            if words.size < 1:
                continue
            block = np.asarray(loss[words], dtype=np.float64)  # [m, width]
            current = self.cols[words] if by_row else self.rows[words]
            current_cost = block[np.arange(words.size), current]
            if np.all(current_cost <= block.min(axis=1)):
                continue
            matched_words, positions = linear_sum_assignment(block)
            if block[matched_words, positions].sum() < current_cost.sum() - 1e-12 * max(1.0, abs(current_cost.sum())):
                words = words[matched_words]
                if by_row:
                    self._reassign(words, np.full(words.size, line), positions)
                else:
                    self._reassign(words, positions, np.full(words.size, line))
        return before - self.value

    def _ensure_candidates(self, row_top: int, col_top: int) -> None:
        if self.candidates is None:
            _, best_rows = smallest_k(self.row_loss, row_top)
            _, best_cols = smallest_k(self.col_loss, col_top)
            self.candidates = (best_rows, best_cols)

    def swap_round(self, row_top: int = 4, col_top: int = 4) -> tuple[float, int]:
        """One vectorised round of moves to another row AND column at once.

        Every word w looks at the slots (r, c) with r among its `row_top` best rows (or its own
        row) and c among its `col_top` best columns (or its own column): it moves there,
        swapping with the occupant o (which moves to w's slot) or into the empty slot. The
        change is exact: l(w, r, c) + l(o, r_w, c_w) - l(w, r_w, c_w) - l(o, r, c). Each word
        keeps its best improving move; moves are taken in order of gain, skipping any that
        touches a word or empty slot already used this round, so the gains add up exactly.
        Returns (decrease of the objective, number of moves).
        """
        self._ensure_candidates(row_top, col_top)
        best_rows, best_cols = self.candidates
        num_words = self.rows.size
        words = np.arange(num_words)
        target_rows = np.concatenate([best_rows, self.rows[:, None]], axis=1)  # [V, kr + 1]
        target_cols = np.concatenate([best_cols, self.cols[:, None]], axis=1)  # [V, kc + 1]
        best_gain = np.zeros(num_words)
        best_slot = np.full(num_words, -1, dtype=np.int64)
        home = self.rows * self.num_cols + self.cols
        for i in range(target_rows.shape[1]):
            r = target_rows[:, i]
            moved_row = self.row_loss[words, r].astype(np.float64)
            for j in range(target_cols.shape[1]):
                c = target_cols[:, j]
                slot = r * self.num_cols + c
                other = self.owner[slot]
                gain = self.cost - moved_row - self.col_loss[words, c]
                occupied = other >= 0
                o = other[occupied]
                gain[occupied] += self.cost[o] - (
                    self.row_loss[o, self.rows[occupied]].astype(np.float64) + self.col_loss[o, self.cols[occupied]]
                )
                gain[slot == home] = 0.0
                better = gain > best_gain
                best_gain[better], best_slot[better] = gain[better], slot[better]
        movers = np.flatnonzero(best_gain > 1e-12 * np.maximum(1.0, self.cost))
        if movers.size == 0:
            return 0.0, 0
        movers = movers[np.argsort(-best_gain[movers], kind="stable")]
        slots = best_slot[movers]
        partners = self.owner[slots]
        # Conflict-free subset: a move survives if it is the first (by gain) to touch both its
        # word and its partner (a word, or an empty slot numbered V + slot).
        partner_ids = np.where(partners >= 0, partners, num_words + slots)
        first = np.full(num_words + self.owner.size, movers.size, dtype=np.int64)
        order = np.arange(movers.size)
        np.minimum.at(first, movers, order)
        np.minimum.at(first, partner_ids, order)
        keep = (first[movers] == order) & (first[partner_ids] == order)
        movers, slots, partners = movers[keep], slots[keep], partners[keep]
        before = self.value
        home_rows, home_cols = self.rows[movers].copy(), self.cols[movers].copy()
        swapped = partners >= 0
        self.owner[home_rows * self.num_cols + home_cols] = -1
        self._reassign(movers, slots // self.num_cols, slots % self.num_cols)
        if swapped.any():
            partner_words = partners[swapped]
            self.rows[partner_words], self.cols[partner_words] = home_rows[swapped], home_cols[swapped]
            self.owner[home_rows[swapped] * self.num_cols + home_cols[swapped]] = partner_words
            self.cost[partner_words] = (
                self.row_loss[partner_words, home_rows[swapped]].astype(np.float64)
                + self.col_loss[partner_words, home_cols[swapped]]
            )
        return before - self.value, int(movers.size)


def exact(row_loss: np.ndarray, col_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-weight matching of the V words to the R * C slots (V x R*C cost, dense)."""
    num_rows, num_cols = row_loss.shape[1], col_loss.shape[1]
    slot_rows = np.repeat(np.arange(num_rows), num_cols)  # [R*C]
    slot_cols = np.tile(np.arange(num_cols), num_rows)
    cost = row_loss.astype(np.float64)[:, slot_rows] + col_loss.astype(np.float64)[:, slot_cols]  # [V, R*C]
    words, slots = linear_sum_assignment(cost)
    rows = np.empty(row_loss.shape[0], dtype=np.int64)
    cols = np.empty(row_loss.shape[0], dtype=np.int64)
    rows[words], cols[words] = slot_rows[slots], slot_cols[slots]
    return rows, cols


def exact_bytes(num_words: int, num_slots: int) -> int:
    """Memory of the dense float64 cost matrix `exact` builds."""
    return 8 * num_words * num_slots



# ----- the sparse exact matching and the slot-price bound ----------------------------------------


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


# ----- the auction on candidate slots ------------------------------------------------------------


def auction_slots(
    costs: np.ndarray,
    slots: np.ndarray,
    num_slots: int,
    eps_final: float,
    eps_start: float,
    factor: float = 5.0,
    deadline: float = float("inf"),
    prices: np.ndarray | None = None,
    max_cleanups: int = 50,
) -> tuple[np.ndarray | None, np.ndarray, int]:
    """Bertsekas' forward auction (Jacobi bidding, epsilon scaling) of V words over candidate slots.

    costs [V, m] float64 and slots [V, m] int64: word w may take slot slots[w, j] at costs[w, j]
    (inf: not a candidate; at least one perfect matching must exist among the candidates:
    `candidate_slots` includes each word's slot of a feasible table). Prices u [num_slots] start at 0 and only rise; in a
    round every unassigned word bids for its cheapest priced candidate s1, raising u[s1] by the
    gap to its second cheapest + eps; each slot goes to its highest bid and its previous owner
    bids again. When all words are placed, eps shrinks by `factor`, the slots left empty drop
    to price 0 and the words that are no longer within eps of their cheapest priced candidate
    bid again. At the end every word's slot is within eps_final of its cheapest. When the
    candidates span exactly V slots (`auction_matching` arranges it) no slot is ever left empty
    and the matching is within V * eps_final of the best one over the candidates
    (eps-complementary slackness). With more slots than words an emptied slot's stale price
    could hide it: its price drops to 0 and the words that then prefer it bid again, up to
    `max_cleanups` times at eps_final; past that the result is feasible but not guaranteed.

    Everything is vectorised over the bidders of a round (no Python loop over words). Returns
    (slot of each word [V], or None when `deadline` came before the first complete matching;
    the prices [num_slots]; rounds run). A deadline inside a later phase returns the matching
    of the previous phase (complete) and the current prices (every u >= 0 gives a valid bound).
    """
    num_words, width = costs.shape
    prices = np.zeros(num_slots, dtype=np.float64) if prices is None else np.array(prices, dtype=np.float64)
    owner = np.full(num_slots, -1, dtype=np.int64)
    choice = np.full(num_words, -1, dtype=np.int64)  # the candidate column each word holds
    complete: np.ndarray | None = None
    eps, rounds, cleanups = float(eps_start), 0, int(max_cleanups)
    bidders = np.arange(num_words)
    while True:
        while bidders.size:
            if time.perf_counter() > deadline:
                return complete, prices, rounds
            rounds += 1
            candidates = slots[bidders]  # [b, m]
            priced = costs[bidders] + prices[candidates]
            index = np.arange(bidders.size)
            best = priced.argmin(axis=1)
            first = priced[index, best]
            priced[index, best] = np.inf
            second = priced.min(axis=1)
            # A word with one distinct candidate has no second: bid well above eps.
            second = np.where(np.isfinite(second), second, first + 1e3 * eps)
            wanted = candidates[index, best]
            bid = prices[wanted] + (second - first) + eps
            # The highest bid per slot wins (sorted by slot, then bid: the last of each group).
            order = np.lexsort((bid, wanted))
            sorted_slots = wanted[order]
            winners = order[np.r_[sorted_slots[1:] != sorted_slots[:-1], True]]
            won = wanted[winners]
            evicted = owner[won]
            evicted = evicted[evicted >= 0]
            choice[evicted] = -1
            owner[won] = bidders[winners]
            choice[bidders[winners]] = best[winners]
            prices[won] = bid[winners]
            lost = np.ones(bidders.size, dtype=bool)
            lost[winners] = False
            bidders = np.concatenate([bidders[lost], evicted])
        words = np.arange(num_words)
        complete = slots[words, choice]
        # Slots left empty must be priced 0 for the matching to be eps-optimal (a word would
        # otherwise ignore an empty slot only because of its stale price): free them, and let
        # the words that now prefer one bid again, in this phase (at most `cleanups` times) or
        # in the next.
        emptied = (owner < 0) & (prices > 0)
        prices[emptied] = 0.0
        if eps <= eps_final:
            if not emptied.any() or cleanups <= 0:
                return complete, prices, rounds
            cleanups -= 1
        else:
            eps = max(float(eps_final), eps / factor)
        slack = np.empty(num_words)
        for part in word_chunks(num_words, width):
            priced = costs[part] + prices[slots[part]]
            slack[part] = priced[np.arange(priced.shape[0]), choice[part]] - priced.min(axis=1)
        bidders = np.flatnonzero(slack > eps)
        owner[complete[bidders]] = -1
        choice[bidders] = -1


def auction_matching(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int = 6,
    precision: float = 1e-3,
    deadline: float = float("inf"),
    row_prices: np.ndarray | None = None,
    col_prices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An eps-optimal matching of the words to their k best rows x k best columns (and their slot in (rows, cols)).

    `auction_slots` on `candidate_slots` ("best" by loss + `row_prices` / `col_prices` when
    given), with eps_final = precision * (objective of (rows, cols)) / V: the result is within
    about `precision` of the best table over those candidates, and never worse than (rows, cols)
    (kept otherwise, and when `deadline` comes before a first complete matching).
    The candidates are limited to the V slots that (rows, cols) occupies: with as many slots as
    words the auction's epsilon scaling is exact (a slot emptied between phases would keep a
    stale price otherwise); the R*C - V slots left out are under 2 sqrt(V) on the square grid
    LightRNN uses (410 of 793,881 at One Billion Word).
    Returns (rows [V], cols [V], slot prices [R * C], 0 on the slots left out): any prices >= 0
    give a lower bound through `priced_slot_bound`.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    slots, costs, _, _ = candidate_slots(row_loss, col_loss, rows, cols, k, row_prices, col_prices)
    start_value = float(costs[:, -1].sum())
    costs[slot_owner(rows, cols, num_rows, num_cols)[slots] < 0] = np.inf  # slots the start leaves empty
    scale = max(abs(start_value), 1e-12) / num_words
    start = np.zeros((num_rows, num_cols))
    if row_prices is not None:
        start += np.asarray(row_prices, dtype=np.float64)[:, None]
    if col_prices is not None:
        start += np.asarray(col_prices, dtype=np.float64)[None, :]
    found, prices, _ = auction_slots(costs, slots, num_rows * num_cols, precision * scale, 100 * precision * scale,
                                     deadline=deadline, prices=start.ravel())
    del costs, slots
    prices[slot_owner(rows, cols, num_rows, num_cols) < 0] = 0.0
    if found is None:
        return rows, cols, prices
    new_rows, new_cols = found // num_cols, found % num_cols
    if objective(row_loss, col_loss, new_rows, new_cols) > start_value:
        return rows, cols, prices
    return new_rows, new_cols, prices
