"""The self-consistent reallocation's objective (issue 30, part 4), against a brute-force computation.

The brute force walks the LSTM one half-step at a time from explicit tables and normalises every
softmax by listing the words of the row (python loops, no slot map), so it shares no code with
`losses.accumulate_column_losses` / `table_column_nll` beyond the model's layers.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightrnn.method.model import LightRNN
from lightrnn.method.reallocate import reallocate_model


def _model(vocab_size: int, options: dict) -> LightRNN:
    torch.manual_seed(0)
    model = LightRNN(vocab_size, embed_dim=5, hidden_dim=7, num_layers=1, dropout=0.0, **options).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return model.eval()


def _score(value: float, members: list[float], present: bool) -> float:
    """log-probability of `value` among `members` (present) or of `value` alone added to them."""
    normaliser = torch.logsumexp(torch.tensor(members, dtype=torch.float64), 0).item()
    return value - (normaliser if present else float(torch.logaddexp(torch.tensor(normaliser), torch.tensor(value))))


def _term(model: LightRNN, word: int, hidden: torch.Tensor) -> float:
    term = 0.0
    bias, out = model.word_output_terms()
    if bias is not None:
        term += float(bias[word])
    if out is not None:
        term += float(out[word] @ model.word_out_proj(hidden))
    return term


@torch.no_grad()
def _brute(model: LightRNN, batches, history: tuple[list[int], list[int]], scored_rows: list[int],
           slot_cols: list[int], part: str) -> float:
    """Summed NLL of one half over the batches, the history fed the table `history`.

    part "row": -log P_row(scored_rows[w]) over the rows the history table fills;
    part "col": -log P_col(slot_cols[w]) over the words of w's row (scored_rows) at their slot_cols.
    """
    vocab = model.vocab_size
    hist_rows, hist_cols = history
    state, total = None, 0.0
    for tokens, targets in batches:
        for t in range(tokens.shape[1]):
            for b in range(tokens.shape[0]):
                word, target = int(tokens[b, t]), int(targets[b, t])
                x_row = model.row_embedding.weight[hist_rows[word]]
                x_col = model.col_embedding.weight[hist_cols[word]]
                if model.word_input_dim:
                    x_col = x_col + model.word_in_proj(model.word_in.weight[word])
                h0 = None if state is None else (state[0][:, b:b + 1].contiguous(), state[1][:, b:b + 1].contiguous())
                out, new = model.lstm(torch.stack((x_row, x_col))[None], h0)
                if part == "row":
                    logits = model.row_head(out[0, 1])
                    filled = sorted(set(hist_rows))
                    r = scored_rows[target]
                    total -= _score(float(logits[r]), [float(logits[i]) for i in filled], r in filled)
                else:
                    col_out, _ = model.lstm(model.row_embedding.weight[scored_rows[target]][None, None], new)
                    hidden = col_out[0, 0]
                    logits = model.col_head(hidden)
                    row = scored_rows[target]
                    members = [v for v in range(vocab) if scored_rows[v] == row]
                    scores = {slot_cols[v]: float(logits[slot_cols[v]]) + _term(model, v, hidden) for v in members}
                    total -= _score(scores[slot_cols[target]], list(scores.values()), True)
                if state is None:
                    state = tuple(torch.zeros(s.shape[0], tokens.shape[0], s.shape[2], dtype=s.dtype) for s in new)
                state[0][:, b] = new[0][:, 0]
                state[1][:, b] = new[1][:, 0]
    return total


@pytest.mark.parametrize("vocab_size, options", [
    (10, {"word_bias": True, "word_dim": 3, "word_input_dim": 2}),
    (13, {"word_bias": True}),
    (16, {}),
])
def test_consistent_objective_equals_brute_force(vocab_size, options):
    from lightrnn.method.losses import provisional_columns

    model = _model(vocab_size, options)
    stream = torch.randint(0, vocab_size, (3, 11), generator=torch.Generator().manual_seed(4))
    batches = [(stream[:, :5], stream[:, 1:6]), (stream[:, 5:10], stream[:, 6:11])]
    old = model.table
    result = reallocate_model(model, batches, method="greedy", columns="consistent")
    new = model.table
    assert result["realloc_moved"] > 0
    history = (new.rows.tolist(), provisional_columns(new.rows, old.cols, new.num_cols).tolist())
    rows_part = _brute(model, batches, (old.rows.tolist(), old.cols.tolist()), new.rows.tolist(), [], "row")
    exact_cols = _brute(model, batches, history, new.rows.tolist(), new.cols.tolist(), "col")
    tokens = result["realloc_tokens"]
    assert tokens == 30
    assert result["realloc_nll_predicted"] * tokens == pytest.approx(rows_part + exact_cols, rel=1e-7)  # the solvers sum in float32
    # The matching's own value prices the final columns with the provisional table's normalisers.
    matched = result["realloc_objective"] - rows_part
    assert result["realloc_column_gap"] * tokens == pytest.approx(exact_cols - matched, rel=1e-6, abs=1e-6)
    if not options and vocab_size == 16:  # full rows, no per-word terms: the normaliser cannot move
        assert abs(result["realloc_column_gap"]) < 1e-12
    if options.get("word_dim"):  # with per-word terms it does: what the matching cannot see
        assert abs(result["realloc_column_gap"]) > 1e-4
    assert math.isfinite(result["realloc_lower_bound"]) and result["realloc_lower_bound"] <= result["realloc_objective"] + 1e-9
