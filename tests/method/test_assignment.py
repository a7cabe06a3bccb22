"""The auction on candidate slots (`assignment.auction_slots` / `auction_matching`) and the priced-slot bound."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from lightrnn.method import assignment
from lightrnn.method.reallocate import resolve_method, solve


def _losses(num_words: int, num_rows: int, num_cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, size=(num_words, 1)).astype(np.float64)
    # Shared preferences (a few popular rows and columns) make the capacity conflicts real.
    row = counts * (rng.random((num_words, num_rows)) + 2.0 * (rng.random(num_rows) < 0.2))
    col = counts * (rng.random((num_words, num_cols)) + 2.0 * (rng.random(num_cols) < 0.2))
    return row, col


def _optimum(row_loss: np.ndarray, col_loss: np.ndarray) -> float:
    rows, cols = assignment.exact(row_loss, col_loss)
    return assignment.objective(row_loss, col_loss, rows, cols)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auction_slots_is_within_v_eps_of_the_optimum_on_a_dense_problem(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_words = num_slots = 30  # as many slots as words: what `auction_matching` hands it
    cost = rng.random((num_words, num_slots)) * 10
    slots = np.tile(np.arange(num_slots), (num_words, 1))
    eps = 1e-4
    found, prices, rounds = assignment.auction_slots(cost, slots, num_slots, eps_final=eps, eps_start=1.0)
    assert found is not None and rounds > 0
    assert np.unique(found).size == num_words  # one word per slot
    value = cost[np.arange(num_words), found].sum()
    words, chosen = linear_sum_assignment(cost)
    optimum = cost[words, chosen].sum()
    assert optimum - 1e-9 <= value <= optimum + num_words * eps + 1e-9
    assert np.all(prices >= 0)
    # With more slots than words the result stays a matching, never below the optimum.
    wide = rng.random((num_words, 36)) * 10
    found, _, _ = assignment.auction_slots(wide, np.tile(np.arange(36), (num_words, 1)), 36, eps_final=eps, eps_start=1.0)
    assert found is not None and np.unique(found).size == num_words
    words, chosen = linear_sum_assignment(wide)
    assert wide[np.arange(num_words), found].sum() >= wide[words, chosen].sum() - 1e-9


@pytest.mark.parametrize("shape", [(40, 7, 7), (45, 6, 8), (64, 8, 8)])
def test_auction_matching_with_full_candidates_is_nearly_optimal_and_its_bound_is_valid(shape) -> None:
    row_loss, col_loss = _losses(*shape, seed=sum(shape))
    start_rows, start_cols = assignment.greedy(row_loss, col_loss)
    optimum = _optimum(row_loss, col_loss)
    rows, cols, prices = assignment.auction_matching(row_loss, col_loss, start_rows, start_cols,
                                                     k=max(shape[1:]), precision=1e-6)
    assert np.unique(rows * shape[2] + cols).size == shape[0]
    value = assignment.objective(row_loss, col_loss, rows, cols)
    # The optimum over the slots the start occupies (the auction's candidates when k covers the grid).
    used = np.flatnonzero(assignment.slot_owner(start_rows, start_cols, shape[1], shape[2]) >= 0)
    cost = row_loss[:, used // shape[2]] + col_loss[:, used % shape[2]]
    words, chosen = linear_sum_assignment(cost)
    restricted = cost[words, chosen].sum()
    assert optimum * (1 - 1e-9) <= value <= restricted * (1 + 1e-4)
    for k in (2, 3, max(shape[1:])):
        bound = assignment.priced_slot_bound(row_loss, col_loss, rows, cols, prices, k)
        assert bound <= optimum * (1 + 1e-9)
    if shape[0] == shape[1] * shape[2]:  # every slot used: the auction's own prices nearly meet the objective
        assert assignment.priced_slot_bound(row_loss, col_loss, rows, cols, prices, max(shape[1:])) >= value * (1 - 1e-3)


def test_auction_matching_is_never_worse_than_its_start_and_stops_at_the_deadline() -> None:
    row_loss, col_loss = _losses(60, 8, 8, seed=5)
    start_rows, start_cols = assignment.greedy(row_loss, col_loss)
    start_value = assignment.objective(row_loss, col_loss, start_rows, start_cols)
    rows, cols, _ = assignment.auction_matching(row_loss, col_loss, start_rows, start_cols, k=2)
    assert assignment.objective(row_loss, col_loss, rows, cols) <= start_value + 1e-9
    # A deadline already past: no complete matching, the start comes back unchanged.
    rows, cols, prices = assignment.auction_matching(row_loss, col_loss, start_rows, start_cols, k=3,
                                                     deadline=time.perf_counter() - 1.0)
    assert np.array_equal(rows, start_rows) and np.array_equal(cols, start_cols)
    assert assignment.priced_slot_bound(row_loss, col_loss, rows, cols, prices, 3) <= _optimum(row_loss, col_loss) + 1e-9


def test_priced_slot_bound_with_side_prices_stays_valid() -> None:
    row_loss, col_loss = _losses(50, 8, 7, seed=9)
    optimum = _optimum(row_loss, col_loss)
    rng = np.random.default_rng(0)
    rows, cols = assignment.greedy(row_loss, col_loss)
    for _ in range(5):
        row_prices, col_prices = rng.random(8) * 20, rng.random(7) * 20
        prices = (row_prices[:, None] + col_prices[None, :] + rng.random((8, 7)) * 5).ravel()
        for k in (1, 3, 8):
            bound = assignment.priced_slot_bound(row_loss, col_loss, rows, cols, prices, k, row_prices, col_prices)
            assert bound <= optimum * (1 + 1e-9)


def test_solve_auction() -> None:
    row_loss, col_loss = _losses(200, 15, 15, seed=3)
    greedy = solve(row_loss, col_loss, method="greedy")
    result = solve(row_loss, col_loss, method="auction")
    assert result.objective <= greedy.objective + 1e-9
    assert result.lower_bound <= _optimum(row_loss, col_loss) * (1 + 1e-9) <= result.objective * (1 + 1e-9)
    assert resolve_method("auction", 793_471, 891, 891) == "auction"
