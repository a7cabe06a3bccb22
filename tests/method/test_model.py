"""LightRNN: exact distribution, nll, the row-then-column interleaving, parameter counts."""

from __future__ import annotations

import pytest
import torch

from lightrnn.core.lm import LMOutput
from lightrnn.method.model import LightRNN
from lightrnn.registry import build
from lightrnn.method.word_table import WordTable


def _model(vocab_size: int, seed: int = 0, dropout: float = 0.0, **kwargs) -> LightRNN:
    torch.manual_seed(seed)
    model = LightRNN(vocab_size, embed_dim=6, hidden_dim=10, num_layers=2, dropout=dropout, **kwargs).double()
    return model.eval()


def _batch(stream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return stream[:, :-1], stream[:, 1:]


@pytest.mark.parametrize("vocab_size", [16, 25])
def test_log_prob_sums_to_one_when_table_is_full(vocab_size: int) -> None:
    model = _model(vocab_size)
    tokens = torch.randint(0, vocab_size, (3, 5), generator=torch.Generator().manual_seed(1))
    log_prob, _ = model.log_prob(tokens)
    assert log_prob.shape == (3, 5, vocab_size)
    torch.testing.assert_close(log_prob.exp().sum(-1), torch.ones(3, 5, dtype=torch.float64))


def test_log_prob_sums_to_one_with_empty_slots() -> None:
    model = _model(11)  # 16 slots, 5 empty: both softmaxes skip them (tests/method/test_distribution.py)
    tokens = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(2))
    total = model.log_prob(tokens)[0].exp().sum(-1)
    torch.testing.assert_close(total, torch.ones(2, 6, dtype=torch.float64))


@pytest.mark.parametrize("vocab_size", [9, 14])
def test_nll_is_minus_log_prob_of_target_and_states_agree(vocab_size: int) -> None:
    model = _model(vocab_size, initial_table="random", table_seed=4)
    stream = torch.randint(0, vocab_size, (3, 13), generator=torch.Generator().manual_seed(3))
    state = None
    for start in (0, 6):  # two consecutive batches, the state carried across
        tokens, targets = _batch(stream[:, start : start + 7])
        output = model(tokens, targets, state)
        assert isinstance(output, LMOutput) and output.nll.shape == tokens.shape
        log_prob, log_prob_state = model.log_prob(tokens, state)
        torch.testing.assert_close(output.nll, -log_prob.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
        row_logp, col_logp, slot_state = model.slot_log_probs(tokens, targets, state)
        rows, cols = model.word_row[targets], model.word_col[targets]
        from_slots = -(row_logp.gather(-1, rows.unsqueeze(-1)) + col_logp.gather(-1, cols.unsqueeze(-1))).squeeze(-1)
        torch.testing.assert_close(output.nll, from_slots)
        for other in (log_prob_state, slot_state):
            torch.testing.assert_close(output.state, other)
        state = output.state


def test_batches_chain_like_one_long_batch() -> None:
    model = _model(12)
    stream = torch.randint(0, 12, (2, 17), generator=torch.Generator().manual_seed(5))
    whole = model(*_batch(stream)).nll
    first = model(*_batch(stream[:, :9]))
    second = model(*_batch(stream[:, 8:]), first.state)
    torch.testing.assert_close(torch.cat((first.nll, second.nll), dim=1), whole)


def test_column_prediction_is_conditioned_on_the_targets_own_row() -> None:
    """Fails if the interleaving is off by one half-step.

    Position t predicts the column of targets[:, t] after reading its row. Replacing w_{t+1}
    by a word in ANOTHER row must change col_logp[:, t] (the row was fed) but not row_logp[:, t]
    (it predicts that row). Replacing it by a word in the SAME row but another column must leave
    both row_logp[:, t] and col_logp[:, t] unchanged (the column is fed only afterwards), and no
    earlier position may move at all.
    """
    model = _model(16, initial_table="frequency")  # 4 x 4: word w at (w // 4, w % 4)
    stream = torch.tensor([[1, 5, 9, 2, 14, 7, 3, 11]])
    t = 3  # targets[:, 3] = stream[:, 4] = 14 at (3, 2)
    base_row, base_col, _ = model.slot_log_probs(*_batch(stream))

    other_row = stream.clone()
    other_row[0, t + 1] = 6  # (1, 2): same column, different row
    row_logp, col_logp, _ = model.slot_log_probs(*_batch(other_row))
    torch.testing.assert_close(row_logp[:, : t + 1], base_row[:, : t + 1])
    torch.testing.assert_close(col_logp[:, :t], base_col[:, :t])
    assert (col_logp[:, t] - base_col[:, t]).abs().max() > 1e-6

    same_row = stream.clone()
    same_row[0, t + 1] = 13  # (3, 1): same row, different column
    row_logp, col_logp, _ = model.slot_log_probs(*_batch(same_row))
    torch.testing.assert_close(row_logp[:, : t + 1], base_row[:, : t + 1])
    torch.testing.assert_close(col_logp[:, : t + 1], base_col[:, : t + 1])
    assert (row_logp[:, t + 1] - base_row[:, t + 1]).abs().max() > 1e-6  # the column is fed next


def test_set_table_moves_words_not_vectors(tmp_path) -> None:
    model = _model(10)
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items() if not name.startswith("word_")}
    new_table = WordTable.frequency_ordered(10)
    model.set_table(new_table)
    assert model.table == new_table
    for name, tensor in model.state_dict().items():
        if name in weights:
            assert torch.equal(tensor, weights[name])
    # The table is in the state_dict, so a fresh model picks it up from a checkpoint.
    fresh = _model(10, seed=9)
    fresh.load_state_dict(model.state_dict())
    assert fresh.table == new_table
    with pytest.raises(ValueError, match="holds 9 words"):
        model.set_table(WordTable.random(9))


def test_initial_table_options(tmp_path) -> None:
    assert _model(10, initial_table="frequency").table == WordTable.frequency_ordered(10)
    assert _model(10, table_seed=3).table == WordTable.random(10, seed=3)
    path = WordTable.random(10, seed=7).save(tmp_path / "t.npy")
    assert _model(10, initial_table=str(path)).table == WordTable.random(10, seed=7)
    with pytest.raises(ValueError, match="initial_table must be"):
        _model(10, initial_table="alphabetical")
    with pytest.raises(ValueError, match="word_counts has 3 entries"):
        _model(10, word_counts=[1, 2, 3])


@pytest.mark.parametrize(
    "vocab_size, embed_dim, hidden_dim, num_layers",
    [(10, 4, 6, 1), (100, 8, 5, 2), (37, 3, 7, 3)],
)
def test_param_count_matches_the_allocated_model(vocab_size, embed_dim, hidden_dim, num_layers) -> None:
    model = build("lightrnn", vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers, dropout=0.1)
    allocated = sum(p.numel() for p in model.parameters())
    assert allocated == LightRNN.param_count(vocab_size, embed_dim, hidden_dim, num_layers)


@pytest.mark.parametrize(
    "vocab_size, size, paper_millions",
    [(793471, 1500, 41), (136912, 1000, 17)],  # One Billion Word, ACLW-French (docs/PAPER.md)
)
def test_paper_sizes_on_meta_device(vocab_size: int, size: int, paper_millions: int) -> None:
    with torch.device("meta"):
        model = LightRNN(vocab_size, size, size, 2, 0.5)
    allocated = sum(p.numel() for p in model.parameters())
    assert allocated == LightRNN.param_count(vocab_size, size, size, 2)
    assert abs(allocated / 1e6 - paper_millions) < 1.0


def test_loss_falls_on_a_repeating_corpus() -> None:
    torch.manual_seed(0)
    model = LightRNN(20, 16, 32, 1, 0.0)
    stream = torch.arange(20).repeat(4, 3)  # a deterministic cycle: perfectly predictable
    tokens, targets = _batch(stream)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = model(tokens, targets).nll.mean().item()
    for _ in range(150):
        optimizer.zero_grad()
        model(tokens, targets).nll.mean().backward()
        optimizer.step()
    assert model(tokens, targets).nll.mean().item() < 0.2 * first


def test_bad_shapes_are_named() -> None:
    model = _model(9)
    with pytest.raises(ValueError, match="tokens and targets must both be"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
