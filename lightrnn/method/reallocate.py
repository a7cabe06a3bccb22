"""Bootstrap word reallocation (docs/PAPER.md, steps 3-5): accumulate losses (`losses`), solve, apply.

After a training round the frozen model scores every row and every column for every word:
row_loss[w, r] = sum over the positions t where w is the target of -log P_row(r | h_t), and
col_loss[w, c] likewise (under the current table, as the official code does). The new table
minimises sum_w row_loss[w, r(w)] + col_loss[w, c(w)] with at most one word per slot: a
minimum-weight matching of the V words to the R * C slots.

Methods of `solve`:
    exact   `scipy.optimize.linear_sum_assignment` on the dense V x (R*C) cost; refused past
            `max_exact_cells` (its cost matrix alone would be 8 * V * R * C bytes).
    greedy  the official CNTK heuristic (rows by a regret-like heap with C words per row, then
            columns inside each row), the peer to beat.
    sparse  exact matching restricted to each word's `sparse_candidates` (12) best rows x best
            columns (by loss + the per-side bound's prices) plus its slot in the start table
            (the better of `init` and greedy's): scipy's sparse
            `min_weight_full_bipartite_matching`, never worse than the start.
    refine  local search from a start table (`init`, else greedy's), never worse than it:
            vectorised moves to another row and column at once (swaps with the occupant or
            into an empty slot), alternated with exact per-row and per-column assignments.
    auction an eps-optimal matching of the words to their 6 best rows x 6 best columns (and
            their slot in the start table, the better of `init` and greedy's), by a vectorised
            auction (`assignment.auction_matching`) within `time_limit`; never worse than the start.
    auto    exact when affordable, else sparse (while V * (k*k + 1) edges stay under
            `max_sparse_edges`) followed by refine, else refine; from the better of `init` and greedy.
Every result carries a valid lower bound, the largest of three Lagrangian bounds: prices on
rows and on columns separately (the transportation bound, which ignores that the words of a row
need distinct columns), a price on every slot raised from those by supergradient steps, and a
price on every slot read off the solved table (`assignment.slot_price_bound`, nearly tight when
the table is optimal on each word's candidate slots). See `lower_bound`.
"""

from __future__ import annotations

import math
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from lightrnn.core import distributed
from lightrnn.core.fileio import atomic_open
from lightrnn.method import assignment
from lightrnn.method.losses import (accumulate_column_losses, accumulate_losses, mean_nll, provisional_columns,
                                   table_column_nll, take_batches)
from lightrnn.method.word_table import WordTable

METHODS = ("exact", "greedy", "sparse", "refine", "auction", "auto")
# Default size limit of `exact`: V * R * C cost cells (4M cells = 32 MB, about a second).
MAX_EXACT_CELLS = 4_000_000
# Defaults of the sparse matching: candidates per side, and the edge count above which `auto`
# skips it (scipy's LAPJVsp time grows faster than its edges; see docs/performance.md's measurements).
SPARSE_CANDIDATES = 12
MAX_SPARSE_EDGES = 2_000_000
# Candidates per side where the slot-price bound looks for a cheaper slot than the priced table's.
BOUND_SLOT_CANDIDATES = 16
# Supergradient steps of the slot-price bound. Measured on one refine table at V = 793,471
# (synthetic, 2 CPU cores): 100 steps 12.6 s, gap 2.59%; 300 steps 30 s, 1.99%; 1000 steps 94 s,
# 1.96%: past ~300 the bound barely moves, so 300 buys most of it for about 17 s more.
BOUND_SLOT_ITERATIONS = 300


class Allocation(NamedTuple):
    """A solved table: rows, cols [V] int64; objective and lower_bound in the losses' units.

    seconds: the whole `solve`; bound_seconds: the part of it spent on the lower bound.
    """

    rows: np.ndarray
    cols: np.ndarray
    objective: float
    lower_bound: float
    seconds: float
    bound_seconds: float = 0.0


# ----- solving -----------------------------------------------------------------------------------


def _check_losses(row_loss: np.ndarray, col_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    row_loss, col_loss = np.asarray(row_loss), np.asarray(col_loss)
    for name, loss in (("row_loss", row_loss), ("col_loss", col_loss)):
        if loss.ndim != 2 or loss.dtype not in (np.float32, np.float64):
            raise ValueError(f"solve: {name} must be a 2-D float32 or float64 array [V, R or C], got {loss.dtype} {loss.shape}")
        for part in assignment.word_chunks(loss.shape[0], loss.shape[1]):
            if not np.isfinite(loss[part]).all():
                raise ValueError(f"solve: {name} holds NaN or infinite values (words {part.start}..{part.stop - 1}); "
                                 "check the model's log-probabilities")
    if row_loss.shape[0] != col_loss.shape[0]:
        raise ValueError(f"solve: row_loss has {row_loss.shape[0]} words but col_loss {col_loss.shape[0]}; both must be [V, .]")
    num_words, num_slots = row_loss.shape[0], row_loss.shape[1] * col_loss.shape[1]
    if num_words < 1 or num_slots < num_words:
        raise ValueError(f"solve: {num_words} words do not fit in R * C = {row_loss.shape[1]} * {col_loss.shape[1]} slots "
                         "(need 1 <= V <= R * C)")
    return row_loss, col_loss


def _table_arrays(init: WordTable | tuple[np.ndarray, np.ndarray], num_words: int, num_rows: int, num_cols: int):
    if isinstance(init, tuple):
        rows, cols = init
        init = WordTable(np.asarray(rows), np.asarray(cols), num_rows, num_cols)
    if not hasattr(init, "rows") or not hasattr(init, "cols"):
        raise ValueError(f"solve: init must be a WordTable or a (rows, cols) tuple, got {type(init).__name__}")
    if (init.num_rows, init.num_cols) != (num_rows, num_cols) or init.rows.size != num_words:
        raise ValueError(f"solve: init is a {init.num_rows} x {init.num_cols} table of {init.rows.size} words, "
                         f"the losses are for {num_words} words on {num_rows} x {num_cols}")
    return np.asarray(init.rows, dtype=np.int64), np.asarray(init.cols, dtype=np.int64)


def side_bounds(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    iterations: int = 60,
    candidates: int = 16,
) -> tuple[float, tuple[np.ndarray, np.ndarray], float]:
    """The per-side (transportation) bounds added, their prices (rows [R], columns [C]) and the
    table's objective that steered them (see `assignment.transport_bound`)."""
    words = np.arange(row_loss.shape[0])
    total, prices, upper = 0.0, [], 0.0
    for loss, capacity, assigned in ((row_loss, col_loss.shape[1], rows), (col_loss, row_loss.shape[1], cols)):
        values, indices = assignment.smallest_k(loss, candidates + 1)
        side_upper = float(loss[words, assigned].sum(dtype=np.float64))
        side, side_prices = assignment.transport_bound(values, indices, capacity, loss.shape[1], side_upper, iterations)
        total, upper = total + side, upper + side_upper
        prices.append(side_prices)
    return total, (prices[0], prices[1]), upper


def lower_bound(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    bound_iterations: int = 60,
    bound_candidates: int = 16,
    bound_slot_iterations: int = BOUND_SLOT_ITERATIONS,
    bound_slot_candidates: int | None = None,
) -> float:
    """A valid lower bound on the optimal objective (>= the naive sum of per-word minima).

    The largest of three Lagrangian bounds, all steered by a known table `rows`/`cols`
    (without one the naive bound is returned):
    - per side (`transport_bound`): the slot constraints relaxed to "at most C words per row"
      and "at most R words per column", prices on each side's bins by projected supergradient
      steps (`bound_iterations`, each word's minimum among its `bound_candidates` best bins);
    - slot prices by supergradient (`slot_subgradient_bound`, `bound_slot_iterations` steps,
      0 skips it): from those prices, a price on every slot raised where several words want it;
      it prices in the distinct columns of a row that the first ignores. Valid for any table;
    - slot prices read off the table (`slot_price_bound`): its potentials over each word's
      SPARSE_CANDIDATES best rows x columns, a cheaper slot looked for among its
      `bound_slot_candidates` best. Nearly meets the objective when the table is optimal on
      those candidates (`sparse`'s). Default (None): 16 when that graph has at most
      MAX_SPARSE_EDGES edges, else skipped (0 skips it always): past that size the tables come
      from `refine`, whose potentials are inconsistent.
    """
    if rows is None or cols is None or bound_iterations <= 0:
        return assignment.naive_bound(row_loss, col_loss)
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    total, prices, upper = side_bounds(row_loss, col_loss, rows, cols, bound_iterations, bound_candidates)
    if bound_slot_iterations > 0:
        total = max(total, assignment.slot_subgradient_bound(row_loss, col_loss, *prices, upper,
                                                             iterations=bound_slot_iterations))
    graph_k = SPARSE_CANDIDATES
    if bound_slot_candidates is None:
        edges = num_words * (min(graph_k, num_rows) * min(graph_k, num_cols) + 1)
        bound_slot_candidates = BOUND_SLOT_CANDIDATES if edges <= MAX_SPARSE_EDGES else 0
    if bound_slot_candidates > 0:
        total = max(total, assignment.slot_price_bound(row_loss, col_loss, rows, cols, bound_slot_candidates, graph_k))
    return total


def solve(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    method: str = "auto",
    init: WordTable | tuple[np.ndarray, np.ndarray] | None = None,
    **options: Any,
) -> Allocation:
    """Solve min_table sum_w row_loss[w, r(w)] + col_loss[w, c(w)], one word per slot.

    Args:
        row_loss: [V, R] float32/float64, col_loss: [V, C]; V <= R * C (empty slots allowed).
        method: "exact" | "greedy" | "sparse" | "refine" | "auction" | "auto" (see the module docstring).
        init: start of `refine` (default: greedy's table); `sparse` and `auto` start from the
            better of it and greedy's.
        options: max_exact_cells (default 4e6: V * R * C above which `exact` refuses),
            sparse_candidates (k best rows x k best columns per word in `sparse`, default 12),
            max_sparse_edges (default 2e6: V * (k*k + 1) above which `auto` skips `sparse`),
            time_limit (seconds for refine's search, or since the start for the auction; default none), max_rounds (refine
            rounds, default 50), swap_rows / swap_cols (candidate rows/columns per word in a
            swap round, default 4), bound_iterations (default 60), bound_candidates (16),
            bound_slot_iterations (300), bound_slot_candidates (see `lower_bound`).

    Returns: Allocation(rows [V], cols [V], objective, lower_bound, seconds, bound_seconds).
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"solve: method must be one of {', '.join(METHODS)}, got {method!r}")
    bound_keys = ("bound_iterations", "bound_candidates", "bound_slot_iterations", "bound_slot_candidates")
    search_keys = ("time_limit", "max_rounds", "swap_rows", "swap_cols")
    known = {"max_exact_cells", "sparse_candidates", "max_sparse_edges", *search_keys, *bound_keys}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"solve: unknown option(s) {sorted(unknown)}; allowed: {sorted(known)}")
    row_loss, col_loss = _check_losses(row_loss, col_loss)
    num_words, num_rows = row_loss.shape
    num_cols = col_loss.shape[1]
    bound_options = {key: options[key] for key in bound_keys if key in options}
    search_options = {key: options[key] for key in search_keys if key in options}
    start_table = None if init is None else _table_arrays(init, num_words, num_rows, num_cols)

    resolved = resolve_method(method, num_words, num_rows, num_cols, **options)
    if resolved == "exact":
        cells, max_cells = num_words * num_rows * num_cols, int(options.get("max_exact_cells", MAX_EXACT_CELLS))
        if cells > max_cells:
            raise ValueError(
                f"solve(method='exact'): V = {num_words} words x R*C = {num_rows * num_cols} slots needs a dense "
                f"float64 cost matrix of {assignment.exact_bytes(num_words, num_rows * num_cols) / 2**20:,.0f} MiB "
                f"({cells:,} cells > max_exact_cells = {max_cells:,}); use method='sparse', 'refine' or 'auto' "
                "for this size"
            )
        rows, cols = assignment.exact(row_loss, col_loss)
        value = assignment.objective(row_loss, col_loss, rows, cols)
        # The matching is optimal, so its own value is the tightest valid bound.
        return Allocation(rows, cols, value, value, time.perf_counter() - start, 0.0)

    rows, cols = assignment.greedy(row_loss, col_loss)
    if start_table is not None and method != "greedy":
        greedy_value = assignment.objective(row_loss, col_loss, rows, cols)
        if method == "refine" or assignment.objective(row_loss, col_loss, *start_table) <= greedy_value:
            rows, cols = start_table
    if resolved in ("sparse", "sparse+refine"):
        _, (row_prices, col_prices), _ = side_bounds(row_loss, col_loss, rows, cols)
        rows, cols = assignment.sparse_exact(row_loss, col_loss, rows, cols,
                                             int(options.get("sparse_candidates", SPARSE_CANDIDATES)),
                                             row_prices, col_prices)
    if resolved in ("refine", "sparse+refine"):
        rows, cols = refine(row_loss, col_loss, rows, cols, **search_options)
    if resolved == "auction":
        limit = search_options.get("time_limit")
        rows, cols, _ = assignment.auction_matching(
            row_loss, col_loss, rows, cols, deadline=math.inf if limit is None else start + float(limit))
    value = assignment.objective(row_loss, col_loss, rows, cols)
    bound_start = time.perf_counter()
    bound = min(value, lower_bound(row_loss, col_loss, rows, cols, **bound_options))
    end = time.perf_counter()
    return Allocation(rows, cols, value, bound, end - start, end - bound_start)


def resolve_method(method: str, num_words: int, num_rows: int, num_cols: int, **options: Any) -> str:
    """What `solve(method=...)` runs at this size: exact, greedy, sparse, refine or sparse+refine."""
    if method != "auto":
        return method
    if num_words * num_rows * num_cols <= int(options.get("max_exact_cells", MAX_EXACT_CELLS)):
        return "exact"
    k = int(options.get("sparse_candidates", SPARSE_CANDIDATES))
    if num_words * (min(k, num_rows) * min(k, num_cols) + 1) <= int(options.get("max_sparse_edges", MAX_SPARSE_EDGES)):
        return "sparse+refine"
    return "refine"


def refine(
    row_loss: np.ndarray,
    col_loss: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    time_limit: float | None = None,
    max_rounds: int = 50,
    swap_rows: int = 4,
    swap_cols: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Local search from (rows, cols) [V]; the result's objective is never above the start's.

    A round: vectorised swap moves (`LocalSearch.swap_round`, crossing rows and columns) until
    a round gains < 5 % of the first one (the sweeps open new moves), then one exact sweep over the rows and one over
    the columns. Stops at a fixed point (a round gains nothing), after `max_rounds`, or at
    `time_limit` seconds (checked between sub-steps and between lines of a sweep).
    """
    deadline = time.perf_counter() + (math.inf if time_limit is None else float(time_limit))
    search = assignment.LocalSearch(row_loss, col_loss, rows, cols)
    start_value = search.value
    tolerance = 1e-12 * max(1.0, abs(start_value))
    for _ in range(max(0, int(max_rounds))):
        round_gain = 0.0
        first_gain = None
        while time.perf_counter() < deadline:
            gain, moves = search.swap_round(swap_rows, swap_cols)
            round_gain += gain
            first_gain = gain if first_gain is None else first_gain
            if moves == 0 or gain <= 0.05 * first_gain:
                break
        for by_row in (True, False):
            if time.perf_counter() < deadline:
                round_gain += search.line_sweep(by_row, deadline)
        if round_gain <= tolerance or time.perf_counter() >= deadline:
            break
    if search.value > start_value:  # float rounding only; keep the promise "never worse"
        return rows.astype(np.int64), cols.astype(np.int64)
    return search.rows, search.cols


# ----- the self-consistent reallocation (rows, then columns under the new rows) ---------------------


def assign_columns(col_loss: np.ndarray, rows: np.ndarray, num_rows: int) -> tuple[np.ndarray, float]:
    """The best columns given the rows: one exact C x C assignment per row (scipy). (cols [V], value)."""
    from scipy.optimize import linear_sum_assignment

    cols = np.zeros(len(rows), dtype=np.int64)
    value = 0.0
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(num_rows + 1))
    for row in range(num_rows):
        words = order[bounds[row]:bounds[row + 1]]
        if len(words) == 0:
            continue
        picked, columns = linear_sum_assignment(col_loss[words])
        cols[words[picked]] = columns
        value += float(col_loss[words[picked], columns].sum())
    return cols, value


def _consistent(model: Any, used: Iterable[tuple[Tensor, Tensor]], row_loss: np.ndarray, current: WordTable,
                method: str, alternate: int, bonus: np.ndarray, solver_options: dict[str, Any]):
    """Rows from the row losses alone (capacity C each: greedy, then refine unless `method` is
    greedy, via `solve` with zero column losses), then the
    columns scored under the new rows and assigned exactly per row; `alternate` times, each later
    pass rescoring the rows under the table the previous one made. Returns (table, objective,
    lower bound, solve seconds, bound seconds, column gap): objective = row objective + the
    column assignment's value (both in the losses of the last pass, the columns priced with the
    provisional table's normalisers); the bound is the row problem's bound plus that column
    value (the columns are optimal given the rows); column gap = the final table's exact column
    NLL (`table_column_nll`, same history) less that value: what the matching could not see."""
    num_rows, num_cols = current.num_rows, current.num_cols
    table, solve_s, bound_s = current, 0.0, 0.0
    for step in range(alternate):
        if step:
            model.set_table(table)
            row_loss, _, _ = accumulate_losses(model, used)
            row_loss = distributed.sum_array_to_main(row_loss)
        zeros = np.zeros((row_loss.shape[0], num_cols), dtype=row_loss.dtype)
        if bonus.any():
            apply_keep_bonus(row_loss, zeros, current, bonus)
            zeros[:] = 0.0  # the bonus keeps rows only: columns are re-scored under the new rows
        # Rows alone are a transportation problem (C words per row): the official greedy heap, then
        # (unless `method` is greedy) refine's local search from it; with zero column losses the
        # sparse matching's column candidates would all tie, so it is not used here.
        rows_method = "greedy" if method == "greedy" else "refine"
        rows_solved = distributed.run_on_main(
            lambda row_loss=row_loss, zeros=zeros: solve(row_loss, zeros, method=rows_method, **solver_options))
        solve_s += rows_solved.seconds - rows_solved.bound_seconds
        bound_s += rows_solved.bound_seconds
        history_cols = provisional_columns(rows_solved.rows, table.cols, num_cols)
        col_loss = distributed.sum_array_to_main(
            accumulate_column_losses(model, used, rows_solved.rows, history_cols))
        start = time.perf_counter()
        cols, column_value = distributed.run_on_main(lambda: assign_columns(col_loss, rows_solved.rows, num_rows))
        solve_s += time.perf_counter() - start
        table = WordTable(rows_solved.rows, cols, num_rows, num_cols)
    exact = distributed.sum_scalars(table_column_nll(model, used, table.rows, history_cols, table.cols))[0]
    model.set_table(current)
    return (table, rows_solved.objective + column_value, rows_solved.lower_bound + column_value, solve_s, bound_s,
            exact - column_value)


# ----- between rounds ----------------------------------------------------------------------------


def apply_keep_bonus(row_loss: np.ndarray, col_loss: np.ndarray, table: WordTable, bonus: np.ndarray) -> None:
    """Lower every word's loss at its current row and at its current column by `bonus` [V] (in place).

    The matching then moves a word only when another slot beats its own by more than the bonus on
    that side: what the model learned for it (the row and column vectors it reads) is kept unless
    the gain is large. The bonus is per occurrence (times the word's count), like the losses.
    """
    words = np.arange(table.vocab_size)
    row_loss[words, table.rows] -= bonus
    col_loss[words, table.cols] -= bonus


def save_losses(path: str | Path, row_loss: np.ndarray, col_loss: np.ndarray, table: WordTable) -> Path:
    """Write one reallocation's losses and start table to `path` (.npz, atomically).

    Arrays: row_loss [V, R] and col_loss [V, C] float32, rows and cols [V] int64 (the table the
    losses were scored under). `lightrnn bench realloc --losses` reads it back (`load_losses`).
    """
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, row_loss=np.asarray(row_loss, dtype=np.float32), col_loss=np.asarray(col_loss, dtype=np.float32),
                 rows=np.asarray(table.rows, dtype=np.int64), cols=np.asarray(table.cols, dtype=np.int64))
    return path


def load_losses(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(row_loss [V, R], col_loss [V, C], (rows, cols) [V]) from a file of `save_losses`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: cannot read a .npz of reallocation losses ({error}); "
                         "pass a losses-<round>.npz written by training with realloc_save_losses: true") from error
    missing = {"row_loss", "col_loss", "rows", "cols"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: not a reallocation losses file (missing {', '.join(sorted(missing))}); "
                         "write one with the training key realloc_save_losses: true")
    row_loss, col_loss = arrays["row_loss"], arrays["col_loss"]
    rows, cols = arrays["rows"].astype(np.int64), arrays["cols"].astype(np.int64)
    try:
        _check_losses(row_loss, col_loss)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if rows.shape != (row_loss.shape[0],) or cols.shape != rows.shape:
        raise ValueError(f"{path}: rows/cols have shapes {rows.shape}/{cols.shape}, expected ({row_loss.shape[0]},)")
    try:
        _table_arrays((rows, cols), row_loss.shape[0], row_loss.shape[1], col_loss.shape[1])
    except ValueError as error:
        raise ValueError(f"{path}: the saved table does not fit the losses ({error})") from None
    return row_loss, col_loss, (rows, cols)


def reallocate_model(
    model: Any,
    batches: Iterable[tuple[Tensor, Tensor]],
    method: str = "auto",
    fraction: float = 1.0,
    keep_bonus: float = 0.0,
    save_losses_to: str | Path | None = None,
    columns: str = "separable",
    alternate: int = 1,
    **solver_options: Any,
) -> dict[str, float | str]:
    """Accumulate, solve, apply: one bootstrap reallocation of a LightRNN's words.

    columns="separable" (the paper's, the default): one matching of row_loss + col_loss, both
    scored under the old table. columns="consistent": rows first from row_loss alone (C words
    per row, `method`'s solver with zero column losses), then a second pass over the same
    batches with every word fed its NEW row scores the columns (`accumulate_column_losses`),
    then an exact C x C assignment per row (`assign_columns`); `alternate` > 1 repeats rows then
    columns, rescoring the rows under the previous pass's table (two more passes each).

    The model is frozen (eval mode, no gradients) for the duration and put back in its mode.
    The NLL per token of the same batches is measured before (from the accumulation pass) and
    after applying the new table, because the objective only approximates it (the losses were
    scored under the old table). realloc_s covers accumulation, solving and applying, not the
    measurement pass after; realloc_accumulate_s, realloc_solve_s and realloc_bound_s split it
    (the solve part excludes the bound). `save_losses_to`: also write the summed losses and the
    old table there (`save_losses`, rank 0 only).

    Returns realloc_objective, realloc_lower_bound (of the problem solved: with `keep_bonus`, the
    losses less the bonus), realloc_s, realloc_accumulate_s, realloc_solve_s, realloc_bound_s,
    realloc_method, realloc_nll_before, realloc_nll_after, realloc_moved (fraction of words whose
    slot changed), realloc_tokens (targets read), realloc_columns, realloc_column_gap and
    realloc_nll_predicted: the objective per token, sum_w row_loss[w, r'(w)] + col_loss[w, c'(w)]
    over the tokens (with columns="consistent" plus the column gap, see below).

    What "predicted" is, and why measured-after is far above it. With the separable objective,
    row_loss[w, r'] is right for the new row (the row head's input does not depend on w's own
    row), but col_loss[w, c'] is the column head's loss of w at column c' *given its old row*:
    the column step read x_r(old row). After the move the column step reads x_r(r'), and the
    column head has never been trained to put w's mass at c' after that row. So "predicted" is
    not the NLL of any model: each position's exp(-row_loss - col_loss) terms, summed over the V
    words at their new slots, are not a distribution (an audit of the committed study found
    they sum to about 16 on average), and the gap to measured-after is the column head's (the
    same audit fed the history the old table and only the column step the new row: the input
    side, words reading other row and column vectors in the history, explained at most ~0.3
    nats of it).
    With columns="consistent" the column losses are scored under the new rows (the history fed
    the provisional table: new rows, old columns where free, `provisional_columns`), and after
    the columns are assigned one more pass prices the final table exactly (`table_column_nll`:
    each column softmax over the words of the target's row at their final columns), so
    "predicted" is the row losses (old table, as above) plus the final table's normalised column
    NLL under that history. realloc_column_gap (consistent only, nats per token) is that exact
    column NLL less the assignment's value: what the matching cannot see, since a column's
    normaliser depends on which words share the row and where (per-word terms, empty slots).
    realloc_objective and realloc_lower_bound stay those of the problem the matching solved.
    """
    start = time.perf_counter()
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            used = take_batches(batches, fraction)
            tokens = np.zeros(model.vocab_size, dtype=np.float64)  # how often each word is a target
            row_loss, col_loss, nll_before = accumulate_losses(model, used, target_counts=tokens)
            # Data-parallel (identity in one process): the ranks' shard losses are summed into
            # rank 0, which solves; every rank receives the same table. Equal token counts per
            # rank (the training shards are equal) make the mean of the ranks' means exact.
            row_loss, col_loss = distributed.sum_array_to_main(row_loss), distributed.sum_array_to_main(col_loss)
            nll_before = distributed.mean_over_ranks(nll_before)
            accumulate_s = time.perf_counter() - start
            current = model.table
            if save_losses_to is not None and distributed.is_main():
                save_losses(save_losses_to, row_loss, col_loss, current)
            tokens = distributed.sum_array_to_main(tokens)
            # A word the batches never show has no preference: with a bonus it stays where it is.
            bonus = keep_bonus * np.maximum(tokens, 1e-6) if keep_bonus > 0 else np.zeros_like(tokens)
            if columns not in ("separable", "consistent"):
                raise ValueError(f"reallocate_model: columns must be 'separable' or 'consistent', got {columns!r}")
            if columns == "consistent":
                col_loss = None
                table, objective, bound, solve_s, bound_s, column_gap = _consistent(
                    model, used, row_loss, current, method, max(1, int(alternate)), bonus, solver_options)
                allocation = Allocation(table.rows, table.cols, objective, bound, solve_s + bound_s, bound_s)
                kept = bonus[table.rows == current.rows].sum()
            else:
                column_gap = None
                if keep_bonus > 0:
                    apply_keep_bonus(row_loss, col_loss, current, bonus)
                allocation = distributed.run_on_main(
                    lambda: solve(row_loss, col_loss, method=method, init=current, **solver_options))
                table = WordTable(allocation.rows, allocation.cols, current.num_rows, current.num_cols)
                kept = bonus[table.rows == current.rows].sum() + bonus[table.cols == current.cols].sum()
            row_loss = col_loss = None  # free V x (R + C) floats before training resumes
            moved = float(np.mean((table.rows != current.rows) | (table.cols != current.cols)))
            # The objective per token (bonus removed): see "What predicted is" above.
            predicted = (allocation.objective + kept + (column_gap or 0.0)) / max(tokens.sum(), 1.0)
            model.set_table(table)
            seconds = time.perf_counter() - start
            nll_after = distributed.mean_over_ranks(mean_nll(model, used))
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return {
        "realloc_objective": allocation.objective,
        "realloc_lower_bound": allocation.lower_bound,
        "realloc_s": seconds,
        "realloc_accumulate_s": accumulate_s,
        "realloc_solve_s": allocation.seconds - allocation.bound_seconds,
        "realloc_bound_s": allocation.bound_seconds,
        "realloc_method": resolve_method(method, current.vocab_size, current.num_rows, current.num_cols, **solver_options)
        if columns == "separable" else ("greedy" if method == "greedy" else "greedy+refine") + " rows, exact columns",
        "realloc_nll_before": nll_before,
        "realloc_nll_after": nll_after,
        "realloc_moved": moved,
        "realloc_tokens": int(tokens.sum()),
        "realloc_nll_predicted": float(predicted),
        "realloc_keep_bonus": keep_bonus,
        "realloc_columns": columns,
        "realloc_alternate": int(alternate) if columns == "consistent" else None,
        "realloc_column_gap": None if column_gap is None else float(column_gap / max(tokens.sum(), 1.0)),
    }
