"""Word reallocation: solvers against brute force and the official heap, loss accumulation, the hook."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from lightrnn.method import assignment
from lightrnn.method.assignment.heuristic import first_priority
from lightrnn.method.losses import accumulate_column_losses, accumulate_losses
from lightrnn.method.reallocate import (
    Allocation,
    assign_columns,
    load_losses,
    lower_bound,
    reallocate_model,
    refine,
    save_losses,
    solve,
)
from lightrnn.method.word_table import WordTable
from lightrnn.core.metrics import undeclared

METHODS = ["exact", "greedy", "sparse", "refine", "auto"]


def random_losses(num_words: int, num_rows: int, num_cols: int, seed: int, dtype=np.float64):
    """Nonnegative losses with word-frequency scales, like accumulated -log-probabilities."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(1, 50, size=(num_words, 1))
    row_loss = (-np.log(rng.dirichlet(np.full(num_rows, 0.5), size=num_words) + 1e-9) * scale).astype(dtype)
    col_loss = (-np.log(rng.dirichlet(np.full(num_cols, 0.5), size=num_words) + 1e-9) * scale).astype(dtype)
    return row_loss, col_loss


def brute_force(row_loss: np.ndarray, col_loss: np.ndarray) -> float:
    num_words, num_cols = row_loss.shape[0], col_loss.shape[1]
    slots = row_loss.shape[1] * num_cols
    return min(
        sum(row_loss[w, s // num_cols] + col_loss[w, s % num_cols] for w, s in enumerate(chosen))
        for chosen in itertools.permutations(range(slots), num_words)
    )


def assert_valid(allocation: Allocation, row_loss: np.ndarray, col_loss: np.ndarray) -> None:
    num_words, num_rows, num_cols = row_loss.shape[0], row_loss.shape[1], col_loss.shape[1]
    rows, cols = allocation.rows, allocation.cols
    assert rows.shape == cols.shape == (num_words,)
    assert rows.min() >= 0 and rows.max() < num_rows and cols.min() >= 0 and cols.max() < num_cols
    assert np.unique(rows * num_cols + cols).size == num_words  # injective
    WordTable(rows, cols, num_rows, num_cols)  # the table class agrees
    recomputed = sum(float(row_loss[w, rows[w]]) + float(col_loss[w, cols[w]]) for w in range(num_words))
    assert allocation.objective == pytest.approx(recomputed, rel=1e-9, abs=1e-9)
    assert allocation.lower_bound <= allocation.objective + 1e-9
    assert allocation.lower_bound >= assignment.naive_bound(row_loss, col_loss) - 1e-6 * abs(allocation.objective)
    assert allocation.seconds >= 0


# ----- solvers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_exact_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    num_rows, num_cols = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    num_words = int(rng.integers(1, min(num_rows * num_cols, 6) + 1))  # empty slots included
    row_loss, col_loss = random_losses(num_words, num_rows, num_cols, seed)
    optimum = brute_force(row_loss, col_loss)
    allocation = solve(row_loss, col_loss, method="exact")
    assert allocation.objective == pytest.approx(optimum, rel=1e-12)
    for method in METHODS:
        result = solve(row_loss, col_loss, method=method)
        assert_valid(result, row_loss, col_loss)
        assert result.lower_bound <= optimum + 1e-9
        assert result.objective >= optimum - 1e-9


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(30, 6, 6), (36, 6, 6), (40, 5, 9), (7, 4, 3), (1, 1, 1)])
def test_every_method_gives_a_valid_table_and_bound(method: str, shape: tuple[int, int, int]) -> None:
    row_loss, col_loss = random_losses(*shape, seed=sum(shape))
    allocation = solve(row_loss, col_loss, method=method)
    assert_valid(allocation, row_loss, col_loss)
    optimum = solve(row_loss, col_loss, method="exact").objective
    assert allocation.lower_bound <= optimum + 1e-9
    assert allocation.objective >= optimum - 1e-9


def test_bound_is_stronger_than_naive_and_valid() -> None:
    row_loss, col_loss = random_losses(60, 8, 8, seed=3)
    rows, cols = assignment.greedy(row_loss, col_loss)
    bound = lower_bound(row_loss, col_loss, rows, cols, bound_candidates=3)
    optimum = solve(row_loss, col_loss, method="exact").objective
    assert assignment.naive_bound(row_loss, col_loss) < bound <= optimum + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_sparse_exact_equals_the_optimum_when_the_candidates_cover_the_grid(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    num_rows, num_cols = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    num_words = int(rng.integers(1, num_rows * num_cols + 1))
    row_loss, col_loss = random_losses(num_words, num_rows, num_cols, seed)
    start = WordTable.random(num_words, seed=seed) if num_rows == num_cols == WordTable.square_size(num_words) else None
    init = (start.rows, start.cols) if start is not None else assignment.greedy(row_loss, col_loss)
    rows, cols = assignment.sparse_exact(row_loss, col_loss, *init, k=max(num_rows, num_cols))
    cost = row_loss[:, np.repeat(np.arange(num_rows), num_cols)] + col_loss[:, np.tile(np.arange(num_cols), num_rows)]
    optimum = cost[linear_sum_assignment(cost)].sum()
    assert assignment.objective(row_loss, col_loss, rows, cols) == pytest.approx(optimum, rel=1e-12)
    WordTable(rows, cols, num_rows, num_cols)  # injective


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sparse_exact_is_the_optimum_over_its_candidates(k: int) -> None:
    """Brute force over the tables that keep every word in its k x k box or its start slot."""
    row_loss, col_loss = random_losses(5, 3, 3, seed=10 + k)
    start_rows, start_cols = assignment.greedy(row_loss, col_loss)
    slots, costs, _, _ = assignment.candidate_slots(row_loss, col_loss, start_rows, start_cols, k)
    allowed = [dict(zip(slots[w].tolist(), costs[w].tolist())) for w in range(5)]
    best = min(sum(allowed[w][s] for w, s in enumerate(chosen))
               for chosen in itertools.permutations(range(9), 5)
               if all(s in allowed[w] for w, s in enumerate(chosen)))
    rows, cols = assignment.sparse_exact(row_loss, col_loss, start_rows, start_cols, k)
    assert assignment.objective(row_loss, col_loss, rows, cols) == pytest.approx(best, rel=1e-12)
    assert best <= assignment.objective(row_loss, col_loss, start_rows, start_cols) + 1e-12


@pytest.mark.parametrize("shape", [(36, 6, 6), (30, 6, 6), (100, 10, 10), (90, 9, 11)])
def test_slot_price_bound_is_valid_and_tighter_than_the_per_side_bound(shape: tuple[int, int, int]) -> None:
    row_loss, col_loss = random_losses(*shape, seed=shape[0] + 1)
    optimum = solve(row_loss, col_loss, method="exact").objective
    per_side = []
    for method in ("greedy", "refine", "sparse"):
        allocation = solve(row_loss, col_loss, method=method, bound_slot_iterations=0,
                           bound_slot_candidates=0)
        rows, cols = allocation.rows, allocation.cols
        per_side.append(allocation.lower_bound)
        for k in (2, 4, 12):
            assert assignment.slot_price_bound(row_loss, col_loss, rows, cols, k=k, graph_k=3) <= optimum + 1e-9
        combined = lower_bound(row_loss, col_loss, rows, cols)
        assert allocation.lower_bound - 1e-9 <= combined <= optimum + 1e-9
    # On the sparse matching's table (optimal on its candidates) the slot prices close most of the gap.
    sparse = solve(row_loss, col_loss, method="sparse")
    assert sparse.lower_bound > max(per_side)
    assert optimum / sparse.lower_bound - 1 < 0.5 * (optimum / max(per_side) - 1)


@pytest.mark.parametrize("num_words", [36, 90, 100])
def test_slot_subgradient_bound_tightens_the_per_side_bound_for_any_table(num_words: int) -> None:
    from lightrnn.benchmark.synthetic_losses import synthetic_losses

    row_loss, col_loss = synthetic_losses(num_words, seed=num_words)
    optimum = solve(row_loss, col_loss, method="exact").objective
    greedy = assignment.greedy(row_loss, col_loss)
    for table in (greedy, refine(row_loss, col_loss, *greedy)):
        per_side = lower_bound(row_loss, col_loss, *table, bound_slot_iterations=0, bound_slot_candidates=0)
        for iterations in (1, 20, 100):
            bound = lower_bound(row_loss, col_loss, *table, bound_slot_iterations=iterations, bound_slot_candidates=0)
            assert per_side - 1e-6 * optimum <= bound <= optimum * (1 + 1e-9)
        assert optimum / bound - 1 < 0.8 * (optimum / per_side - 1)  # a fifth of the looseness gone at least


@pytest.mark.parametrize("start", ["random", "greedy", "frequency"])
def test_refine_never_worse_than_its_start(start: str) -> None:
    row_loss, col_loss = random_losses(200, 15, 15, seed=7)
    if start == "random":
        table = WordTable.random(200, seed=1)
    elif start == "frequency":
        table = WordTable.frequency_ordered(200)
    else:
        table = WordTable(*assignment.greedy(row_loss, col_loss), 15, 15)
    before = assignment.objective(row_loss, col_loss, table.rows, table.cols)
    refined = solve(row_loss, col_loss, method="refine", init=table)
    assert_valid(refined, row_loss, col_loss)
    assert refined.objective <= before
    greedy = solve(row_loss, col_loss, method="greedy")
    auto = solve(row_loss, col_loss, method="auto", init=table, max_exact_cells=0)
    assert auto.objective <= min(before, greedy.objective)


def test_refine_honours_a_zero_time_limit() -> None:
    row_loss, col_loss = random_losses(100, 10, 10, seed=2)
    table = WordTable.random(100, seed=4)
    result = solve(row_loss, col_loss, method="refine", init=(table.rows, table.cols), time_limit=0.0)
    assert result.objective == pytest.approx(assignment.objective(row_loss, col_loss, table.rows, table.cols))


def test_solvers_accept_float32() -> None:
    row_loss, col_loss = random_losses(50, 8, 7, seed=5, dtype=np.float32)
    for method in METHODS:
        assert_valid(solve(row_loss, col_loss, method=method), row_loss, col_loss)


def _official_heap(loss: np.ndarray, words: list[int], capacity: list[int]) -> dict[int, int]:
    """Literal port of one phase of pyreallocate.cpp's max-heap (ties broken by word order)."""
    width = loss.shape[1]
    order = {w: np.argsort(loss[w], kind="stable") for w in words}
    remaining = {w: float(loss[w].sum()) for w in words}
    pointer = {w: 0 for w in words}
    rank = {w: i for i, w in enumerate(words)}

    def next_node(w: int):
        candidate = int(order[w][pointer[w]])
        remaining[w] -= float(loss[w, candidate])
        pointer[w] += 1
        key = 0.0 if pointer[w] == width - 1 else remaining[w] / (width - pointer[w] - 1)
        return (-key, rank[w], w, candidate)

    heap = [next_node(w) for w in words]
    heapq.heapify(heap)
    placed = {}
    while heap:
        _, _, w, candidate = heapq.heappop(heap)
        if capacity[candidate] == 0:
            if pointer[w] >= width:
                raise IndexError("the C++ code reads past the candidate list here")
            heapq.heappush(heap, next_node(w))
        else:
            capacity[candidate] -= 1
            placed[w] = candidate
    return placed


def _official_greedy(row_loss: np.ndarray, col_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    priority = first_priority(row_loss)
    words = [int(w) for w in np.argsort(-priority, kind="stable")]
    row_of = _official_heap(row_loss, words, [num_cols] * num_rows)
    rows = np.array([row_of[w] for w in range(num_words)])
    cols = np.empty(num_words, dtype=np.int64)
    col_priority = first_priority(col_loss)
    for row in range(num_rows):
        members = [int(w) for w in np.flatnonzero(rows == row)]
        members.sort(key=lambda w: -col_priority[w])
        for w, col in _official_heap(col_loss, members, [1] * num_cols).items():
            cols[w] = col
    return rows, cols


@pytest.mark.parametrize("shape", [(60, 8, 8), (64, 8, 8), (45, 5, 10), (300, 18, 18)])
def test_greedy_matches_the_official_heap(shape: tuple[int, int, int]) -> None:
    row_loss, col_loss = random_losses(*shape, seed=shape[0])
    rows, cols = assignment.greedy(row_loss, col_loss)
    expected_rows, expected_cols = _official_greedy(row_loss, col_loss)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)


def test_exact_refuses_a_large_instance() -> None:
    row_loss, col_loss = random_losses(400, 20, 20, seed=0)
    with pytest.raises(ValueError, match=r"V = 400 .*R\*C = 400 .*MiB.*method='sparse', 'refine'"):
        solve(row_loss, col_loss, method="exact", max_exact_cells=1000)
    assert solve(row_loss, col_loss, method="auto", max_exact_cells=1000).objective > 0


@pytest.mark.parametrize(
    ("row_loss", "col_loss", "kwargs", "message"),
    [
        (np.zeros((5, 2)), np.zeros((5, 2)), {}, "do not fit"),
        (np.zeros((4, 2)), np.zeros((3, 2)), {}, "col_loss"),
        (np.full((2, 2), np.nan), np.zeros((2, 2)), {}, "NaN"),
        (np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2)), {}, "float32 or float64"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"method": "hungarian"}, "method must be one of"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"speed": 3}, "unknown option"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"method": "refine", "init": (np.array([0, 0]), np.array([1, 1]))},
         "not injective"),
    ],
)
def test_solve_rejects_bad_input(row_loss, col_loss, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        solve(row_loss, col_loss, **kwargs)


# ----- loss accumulation and the between-rounds hook ---------------------------------------------


class FakeLightRNN(nn.Module):
    """Same table/slot_log_probs contract as lightrnn.method.model.LightRNN, tiny and deterministic.

    Row logits depend on the input token and the carried state (a running sum, so carrying it
    matters); column logits also on the target's true row under the current table.
    """

    def __init__(self, vocab_size: int = 14, side: int = 4, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.vocab_size, self.num_rows, self.num_cols = vocab_size, side, side
        self.row_weight = nn.Parameter(torch.randn(vocab_size, side, generator=generator) * 2)
        self.col_weight = nn.Parameter(torch.randn(vocab_size, side, generator=generator) * 2)
        self.row_to_col = nn.Parameter(torch.randn(side, side, generator=generator))
        table = WordTable.random(vocab_size, seed=seed)
        self.register_buffer("word_row", torch.as_tensor(table.rows))
        self.register_buffer("word_col", torch.as_tensor(table.cols))

    @property
    def table(self) -> WordTable:
        return WordTable(self.word_row.numpy(), self.word_col.numpy(), self.num_rows, self.num_cols)

    def set_table(self, table: WordTable) -> None:
        self.word_row.copy_(torch.as_tensor(table.rows))
        self.word_col.copy_(torch.as_tensor(table.cols))

    def slot_log_probs(self, tokens, targets, state=None, slot_cols=None):
        # Its softmaxes are over every row and column, so no table moves a normaliser (slot_cols unused).
        state = torch.zeros(tokens.shape[0], self.num_rows) if state is None else state
        context = torch.cumsum(self.row_weight[tokens], dim=1) * 0.1 + state[:, None]  # [B, T, R]
        row_logp = torch.log_softmax(self.row_weight[tokens] + context, dim=-1)
        col_logits = self.col_weight[tokens] + self.row_to_col[self.word_row[targets]]  # [B, T, C]
        return row_logp, torch.log_softmax(col_logits, dim=-1), context[:, -1]


def make_batches(vocab_size: int, count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, vocab_size, (2, count * 5 + 1), generator=generator)
    return [(stream[:, i * 5 : i * 5 + 5], stream[:, i * 5 + 1 : i * 5 + 6]) for i in range(count)]


def naive_losses(model: FakeLightRNN, batches) -> tuple[np.ndarray, np.ndarray, float]:
    row_loss = np.zeros((model.vocab_size, model.num_rows))
    col_loss = np.zeros((model.vocab_size, model.num_cols))
    table, state, nll, tokens_seen = model.table, None, 0.0, 0
    with torch.no_grad():
        for tokens, targets in batches:
            row_logp, col_logp, state = model.slot_log_probs(tokens, targets, state)
            for b, t in itertools.product(range(tokens.shape[0]), range(tokens.shape[1])):
                word = int(targets[b, t])
                row_loss[word] -= row_logp[b, t].double().numpy()
                col_loss[word] -= col_logp[b, t].double().numpy()
                nll -= float(row_logp[b, t, table.rows[word]]) + float(col_logp[b, t, table.cols[word]])
                tokens_seen += 1
    return row_loss, col_loss, nll / tokens_seen


def test_accumulate_losses_matches_a_per_position_loop() -> None:
    model = FakeLightRNN()
    batches = make_batches(model.vocab_size, 4)
    row_loss, col_loss, nll = accumulate_losses(model, batches)
    expected_rows, expected_cols, expected_nll = naive_losses(model, batches)
    assert row_loss.dtype == np.float64 and row_loss.shape == (model.vocab_size, model.num_rows)
    np.testing.assert_allclose(row_loss, expected_rows, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(col_loss, expected_cols, rtol=1e-5, atol=1e-5)
    assert nll == pytest.approx(expected_nll, rel=1e-5)


def test_accumulate_losses_uses_the_first_fraction() -> None:
    model = FakeLightRNN()
    batches = make_batches(model.vocab_size, 4)
    half = accumulate_losses(model, iter(batches), fraction=0.5)
    expected_rows, _, expected_nll = naive_losses(model, batches[:2])
    np.testing.assert_allclose(half[0], expected_rows, rtol=1e-5, atol=1e-5)
    assert half[2] == pytest.approx(expected_nll, rel=1e-5)
    tiny = accumulate_losses(model, batches, fraction=0.01)  # at least one batch
    np.testing.assert_allclose(tiny[0], naive_losses(model, batches[:1])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fraction"):
        accumulate_losses(model, batches, fraction=0.0)
    with pytest.raises(ValueError, match="empty"):
        accumulate_losses(model, iter([]))


def test_reallocate_model_lowers_the_objective_and_restores_train_mode() -> None:
    model = FakeLightRNN(vocab_size=14, side=4, seed=3)
    batches = make_batches(model.vocab_size, 6, seed=1)
    row_loss, col_loss, _ = accumulate_losses(model, batches)
    old = model.table
    before = assignment.objective(row_loss, col_loss, old.rows, old.cols)
    model.train()
    metrics = reallocate_model(model, batches)
    assert model.training
    assert set(metrics) == {
        "realloc_objective", "realloc_lower_bound", "realloc_s", "realloc_method",
        "realloc_nll_before", "realloc_nll_after", "realloc_moved", "realloc_tokens", "realloc_nll_predicted",
        "realloc_keep_bonus", "realloc_columns", "realloc_alternate", "realloc_column_gap",
        "realloc_accumulate_s", "realloc_solve_s", "realloc_bound_s",
    }
    assert metrics["realloc_columns"] == "separable" and metrics["realloc_alternate"] is None
    assert undeclared(metrics) == [], "declare the reallocation's fields in lightrnn/core/metrics.py REALLOC_EXTRAS"
    assert metrics["realloc_method"] == "exact"
    assert metrics["realloc_lower_bound"] <= metrics["realloc_objective"] < before
    parts = [metrics[f"realloc_{part}_s"] for part in ("accumulate", "solve", "bound")]
    assert min(parts) >= 0 and sum(parts) <= metrics["realloc_s"]
    assert metrics["realloc_nll_before"] == pytest.approx(naive_losses(FakeLightRNN(14, 4, 3), batches)[2], rel=1e-5)
    new = model.table
    assert metrics["realloc_objective"] == pytest.approx(assignment.objective(row_loss, col_loss, new.rows, new.cols))
    assert 0 < metrics["realloc_moved"] <= 1
    # Row losses here do not depend on the table, so the row part of the NLL after is exact.
    assert metrics["realloc_nll_after"] == pytest.approx(naive_losses(model, batches)[2], rel=1e-5)

    refined = reallocate_model(model, batches, method="refine", fraction=0.5)
    assert refined["realloc_method"] == "refine"
    assert refined["realloc_lower_bound"] <= refined["realloc_objective"]
    assert refined["realloc_bound_s"] > 0


def test_saved_losses_load_back_and_reproduce_the_reallocation(tmp_path) -> None:
    model = FakeLightRNN(vocab_size=14, side=4, seed=3)
    batches = make_batches(model.vocab_size, 6, seed=1)
    row_loss, col_loss, _ = accumulate_losses(model, batches)
    old = model.table
    metrics = reallocate_model(model, batches, save_losses_to=tmp_path / "losses-1.npz")
    saved_rows, saved_cols, (rows, cols) = load_losses(tmp_path / "losses-1.npz")
    assert saved_rows.dtype == saved_cols.dtype == np.float32
    np.testing.assert_allclose(saved_rows, row_loss, rtol=1e-6)
    np.testing.assert_allclose(saved_cols, col_loss, rtol=1e-6)
    np.testing.assert_array_equal(rows, old.rows)
    np.testing.assert_array_equal(cols, old.cols)
    again = solve(saved_rows, saved_cols, method="exact")
    assert again.objective == pytest.approx(metrics["realloc_objective"], rel=1e-5)
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_load_losses_names_the_file_on_bad_input(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: cannot read"):
        load_losses(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", row_loss=np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"partial\.npz: not a reallocation losses file \(missing col_loss, cols, rows\)"):
        load_losses(tmp_path / "partial.npz")
    table = WordTable.random(4, seed=0)
    save_losses(tmp_path / "mismatch.npz", np.zeros((4, 2)), np.zeros((4, 2)), table)
    with np.load(tmp_path / "mismatch.npz") as data:
        arrays = dict(data)
    arrays["rows"] = arrays["rows"][:3]
    np.savez(tmp_path / "mismatch.npz", **arrays)
    with pytest.raises(ValueError, match=r"mismatch\.npz: rows/cols have shapes"):
        load_losses(tmp_path / "mismatch.npz")


# ----- with the real model and training loop -----------------------------------------------------


@pytest.mark.slow
def test_three_rounds_with_lightrnn(tmp_path) -> None:
    from lightrnn.config import TrainConfig
    from lightrnn.data.markov import generate_markov_corpus
    from lightrnn.core.fileio import read_jsonl as read_metrics
    from lightrnn.training.train import train

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = tmp_path / "markov"
        generate_markov_corpus(corpus, vocab_size=30, successors=3, train_tokens=3000, valid_tokens=400,
                               test_tokens=400, seed=2)
        config = TrainConfig.from_yaml(None, [
            "embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.0", "batch_size=8", "bptt=12",
            "lr=0.01", "eval_batch_size=8", "device=cpu", "rounds=[1, 1, 1]", "max_steps_per_epoch=10",
            "realloc_method=auto",
        ])
        rows = read_metrics(train(config, corpus, tmp_path / "run"))
    finally:
        torch.set_num_threads(previous_threads)
    assert [(row["kind"], row["round"]) for row in rows] == [
        ("epoch", 0), ("realloc", 1), ("epoch", 1), ("realloc", 2), ("epoch", 2)]
    for row in (rows[1], rows[3]):
        assert row["realloc_lower_bound"] <= row["realloc_objective"]
        assert row["realloc_s"] > 0 and row["realloc_method"] == "exact"
        assert row["realloc_nll_before"] > 0 and row["realloc_nll_after"] > 0
    tables = [WordTable.load(tmp_path / "run" / f"table-{i}.npy") for i in range(3)]
    assert tables[0] != tables[1]  # words moved


# ----- the benchmark ------------------------------------------------------------------------------


def test_bench_realloc_on_saved_losses_compares_every_solver(tmp_path, capsys) -> None:
    from lightrnn.core.csvio import read_csv
    from lightrnn.cli import main

    row_loss, col_loss = random_losses(40, 7, 7, seed=11)
    start = WordTable.random(40, seed=2)
    save_losses(tmp_path / "losses-1.npz", row_loss, col_loss, start)
    out = tmp_path / "realloc.csv"
    assert main(["bench", "realloc", "--out", str(out), "--losses", str(tmp_path / "losses-1.npz"),
                 "--time-limit", "5"]) == 0
    rows = read_csv(out)
    assert [row["method"] for row in rows] == ["exact", "sparse", "greedy", "refine", "auction", "auto"]
    optimum = solve(row_loss, col_loss, method="exact").objective
    for row in rows:
        assert row["losses"] == "losses-1.npz" and (row["V"], row["R"], row["C"]) == (40, 7, 7)
        assert row["exact_objective"] == pytest.approx(optimum, rel=1e-6)
        assert row["objective"] >= optimum * (1 - 1e-6)
        assert row["transport_bound"] <= row["lower_bound"] + 1e-6 <= optimum * (1 + 1e-6) + 1e-6
        assert row["gap_vs_exact"] == pytest.approx(row["objective"] / optimum - 1, abs=1e-6)
        assert row["bound_looseness"] >= -1e-6 and row["git_rev"]
    assert rows[-1]["resolved"] == "exact"  # 40 x 49 cells: the default method is exact here
    # --append keeps those rows and adds the synthetic instance beside them.
    assert main(["bench", "realloc", "--out", str(out), "--sizes", "30", "--append", "--time-limit", "1"]) == 0
    both = read_csv(out)
    assert [row["losses"] for row in both] == ["losses-1.npz"] * 6 + ["synthetic"] * 6
    assert main(["bench", "realloc", "--out", str(out), "--losses", str(tmp_path / "missing.npz")]) != 0
    assert "missing.npz: no such file" in capsys.readouterr().err


def test_synthetic_losses_shape_and_determinism() -> None:
    from lightrnn.benchmark.synthetic_losses import synthetic_losses

    row_loss, col_loss = synthetic_losses(50, seed=3)
    assert row_loss.shape == col_loss.shape == (50, 8) and row_loss.dtype == np.float32
    assert (row_loss >= 0).all() and np.isfinite(col_loss).all()
    np.testing.assert_array_equal(row_loss, synthetic_losses(50, seed=3)[0])


def test_training_saves_the_losses_and_splits_the_time(tmp_path) -> None:
    from lightrnn.config import TrainConfig
    from lightrnn.data.markov import generate_markov_corpus
    from lightrnn.core.fileio import read_jsonl
    from lightrnn.training.train import train

    corpus = tmp_path / "markov"
    generate_markov_corpus(corpus, vocab_size=20, successors=3, train_tokens=800, valid_tokens=200,
                           test_tokens=200, seed=4)
    config = TrainConfig.from_yaml(None, [
        "embed_dim=8", "hidden_dim=8", "num_layers=1", "dropout=0.0", "batch_size=4", "bptt=8", "eval_batch_size=4",
        "device=cpu", "rounds=[1, 1]", "max_steps_per_epoch=3", "realloc_method=sparse", "realloc_save_losses=true",
    ])
    rows = read_jsonl(train(config, corpus, tmp_path / "run"))
    realloc = [row for row in rows if row["kind"] == "realloc"]
    assert len(realloc) == 1 and realloc[0]["realloc_method"] == "sparse"
    parts = [realloc[0][f"realloc_{part}_s"] for part in ("accumulate", "solve", "bound")]
    assert min(parts) >= 0 and sum(parts) <= realloc[0]["realloc_s"]
    row_loss, col_loss, (rows_, cols_) = load_losses(tmp_path / "run" / "losses-1.npz")
    assert row_loss.shape == col_loss.shape == (20, 5)
    assert WordTable(rows_, cols_, 5, 5) == WordTable.load(tmp_path / "run" / "table-0.npy")
    again = solve(row_loss, col_loss, method="sparse", init=(rows_, cols_))
    assert again.objective == pytest.approx(realloc[0]["realloc_objective"], rel=1e-5)


# ----- the self-consistent reallocation ------------------------------------------------------------


def test_assign_columns_is_the_exact_optimum_of_every_row() -> None:
    rng = np.random.default_rng(0)
    rows = np.array([0, 0, 1, 1, 1, 2, 0])  # row 0 holds 3 words, row 1 3, row 2 one
    col_loss = rng.random((7, 3))
    cols, value = assign_columns(col_loss, rows, 3)
    best = 0.0
    for row in range(3):
        words = np.flatnonzero(rows == row)
        assert len(set(cols[words])) == len(words)  # distinct columns inside a row
        best += min(sum(col_loss[w, c] for w, c in zip(words, perm))
                    for perm in itertools.permutations(range(3), len(words)))
    assert value == pytest.approx(best) == pytest.approx(col_loss[np.arange(7), cols].sum())


def test_consistent_columns_are_scored_under_the_new_rows() -> None:
    # FakeLightRNN's column logits read the target's row (row_to_col) and its history does not
    # read the table, so scored under the new rows the objective IS the NLL after; the separable
    # objective (columns scored under the old rows) is not.
    model = FakeLightRNN(vocab_size=14, side=4, seed=3)
    batches = make_batches(model.vocab_size, 6, seed=1)
    old = model.table
    consistent = reallocate_model(model, batches, method="exact", columns="consistent")
    new = model.table
    assert consistent["realloc_columns"] == "consistent" and consistent["realloc_alternate"] == 1
    assert consistent["realloc_method"] == "greedy+refine rows, exact columns"
    assert consistent["realloc_nll_predicted"] == pytest.approx(consistent["realloc_nll_after"], rel=1e-9)
    assert consistent["realloc_column_gap"] == pytest.approx(0.0, abs=1e-12)  # no normaliser moves here
    assert consistent["realloc_lower_bound"] <= consistent["realloc_objective"] + 1e-9
    # the rows are at least as good as greedy's on the row losses, and the columns optimal given them
    row_loss, _, _ = accumulate_losses(FakeLightRNN(14, 4, 3), batches)
    greedy_rows, _ = assignment.greedy(row_loss, np.zeros((14, 4)))
    assert row_loss[np.arange(14), new.rows].sum() <= row_loss[np.arange(14), greedy_rows].sum() + 1e-9
    col_loss = accumulate_column_losses(FakeLightRNN(14, 4, 3), batches, new.rows)
    assert col_loss[np.arange(14), new.cols].sum() == pytest.approx(assign_columns(col_loss, new.rows, 4)[1])
    assert not np.array_equal(new.rows, old.rows)

    separable_model = FakeLightRNN(vocab_size=14, side=4, seed=3)
    separable = reallocate_model(separable_model, batches, method="exact")
    assert separable["realloc_nll_predicted"] < separable["realloc_nll_after"] - 1e-3
    # scored under the rows each word will have, the new table fits the frozen model better
    assert consistent["realloc_nll_after"] < separable["realloc_nll_after"]


def test_consistent_reallocation_of_a_lightrnn_alternates_and_restores_the_table_on_the_way() -> None:
    from lightrnn.registry import build

    torch.manual_seed(0)
    model = build("lightrnn", 30, 8, 8, 1, table_seed=0, realloc_columns="consistent", realloc_alternate=2)
    tokens = torch.randint(0, 30, (4, 10))
    batches = [(tokens, torch.roll(tokens, -1, dims=1))]
    metrics = model.between_rounds(batches, method="refine")
    assert metrics["realloc_columns"] == "consistent" and metrics["realloc_alternate"] == 2
    table = model.table  # a valid table (WordTable checks one word per slot)
    assert table.vocab_size == 30 and metrics["realloc_moved"] > 0
    assert np.isfinite(metrics["realloc_objective"]) and np.isfinite(metrics["realloc_nll_predicted"])
