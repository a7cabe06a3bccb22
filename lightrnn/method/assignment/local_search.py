"""The local search on a table (exact swap moves and exact sub-problems) and the dense exact matching.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from lightrnn.method.assignment.bounds import smallest_k
from lightrnn.method.assignment.costs import slot_owner, word_costs


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
