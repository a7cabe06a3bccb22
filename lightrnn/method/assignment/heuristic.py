"""The official greedy heuristic (pyreallocate.cpp of the CNTK example): rows, then columns.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import heapq

import numpy as np

from lightrnn.method.assignment.costs import word_chunks


def first_priority(loss: np.ndarray) -> np.ndarray:
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

    Phase 1: words leave a max-heap keyed by `first_priority` of their row losses and take
    their best row that still has fewer than C words. Phase 2, row by row: the words of the row
    leave a heap keyed the same way on their column losses and take their best free column.
    Same result as the C++ heap up to the order of equal keys (it assumes losses >= 0, as
    -log-probabilities are, which makes keys grow as a word is rejected). One deliberate
    difference: C++ reads past a word's candidate list when its last row is full (undefined
    behaviour); here that cannot happen because capacities are checked before the tail.
    """
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    row_order = np.argsort(-first_priority(row_loss), kind="stable")
    rows = np.empty(num_words, dtype=np.int64)
    rows[row_order] = _greedy_bins(row_loss, row_order, np.full(num_rows, num_cols))

    # Phase 2, vectorised across rows: step k lets the k-th word (in key order) of every row
    # take its cheapest free column of that row; the last two words of a full row follow the
    # literal heap (their last candidates are keyed 0).
    col_priority = first_priority(col_loss)
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
