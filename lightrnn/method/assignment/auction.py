"""The auction (Bertsekas, epsilon scaling) on each word's candidate slots.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import time

import numpy as np

from lightrnn.method.assignment.costs import objective, slot_owner, word_chunks
from lightrnn.method.assignment.sparse import candidate_slots


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
