"""LightRNN is a distribution over exactly its V words at every V (issue 30, parts 2 and 3).

Where V is not a perfect square the R x C table has empty slots; both softmaxes skip them, wherever
the table puts them (also after a reallocation or set_table), and `generate_step` draws from
exactly the distribution `log_prob` defines: checked here by enumerating the sampler's two stages.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import lightrnn.core.sampling as sampling
from lightrnn.method.model import LightRNN
from lightrnn.method.reallocate import reallocate_model
from lightrnn.method.word_table import WordTable

VOCABS = [10, 13, 41, 1000]
OPTIONS = [
    {"word_bias": bias, "word_dim": dim, "word_input_dim": input_dim}
    for bias, dim, input_dim in itertools.product((False, True), (0, 3), (0, 2))
]


def _model(vocab_size: int, options: dict, seed: int = 0, **extra) -> LightRNN:
    torch.manual_seed(seed)
    model = LightRNN(vocab_size, embed_dim=6, hidden_dim=8, num_layers=1, dropout=0.0, **options, **extra).double()
    with torch.no_grad():  # far from uniform, nonzero per-word terms: empty slots would hold real mass
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return model.eval()


def _tokens(vocab_size: int, seed: int = 1, shape=(2, 4)) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def _assert_normalised(model: LightRNN, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        log_prob, _ = model.log_prob(tokens)
        total = log_prob.exp().sum(-1)
    assert torch.all((total - 1.0).abs() < 1e-5), f"sums {total.min().item():.6f}..{total.max().item():.6f}"
    return log_prob


@pytest.mark.parametrize("vocab_size", VOCABS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_log_prob_sums_to_one_at_every_vocabulary(vocab_size, options):
    model = _model(vocab_size, options)
    tokens = _tokens(vocab_size)
    log_prob = _assert_normalised(model, tokens)
    # nll is -log_prob of the target: forward trains the same normalised distribution.
    targets = torch.cat((tokens[:, 1:], _tokens(vocab_size, seed=5, shape=(2, 1))), dim=1)
    with torch.no_grad():
        nll = model(tokens, targets).nll
    torch.testing.assert_close(nll, -log_prob.gather(-1, targets[..., None]).squeeze(-1))
    # Move the words (and so the empty slots) elsewhere: the supports follow the table.
    model.set_table(WordTable.random(vocab_size, seed=7))
    _assert_normalised(model, tokens)


def test_an_empty_row_gets_no_mass():
    """V = 10 filled row-major in a 4 x 4 table leaves row 3 empty and two slots of row 2."""
    model = _model(10, {"word_bias": True, "word_dim": 3}, initial_table="frequency")
    assert not bool(model.table.rows.max() == 3)
    _assert_normalised(model, _tokens(10))
    with torch.no_grad():
        row_logp, col_logp, _ = model.slot_log_probs(_tokens(10), _tokens(10, seed=2))
    assert torch.isfinite(row_logp).all() and torch.isfinite(col_logp).all()  # empty entries priced, not -inf


@pytest.mark.parametrize("vocab_size", VOCABS)
@pytest.mark.parametrize("columns, alternate, keep_bonus", [("separable", 1, 0.0), ("separable", 1, 0.5),
                                                           ("consistent", 1, 0.0), ("consistent", 2, 0.0)])
def test_log_prob_sums_to_one_after_a_reallocation(vocab_size, columns, alternate, keep_bonus):
    model = _model(vocab_size, {"word_bias": True, "word_dim": 3, "word_input_dim": 2})
    stream = _tokens(vocab_size, seed=3, shape=(4, 13))
    batches = [(stream[:, :6], stream[:, 1:7]), (stream[:, 6:12], stream[:, 7:13])]
    before = model.table
    result = reallocate_model(model, batches, method="greedy", columns=columns, alternate=alternate,
                              keep_bonus=keep_bonus)
    assert result["realloc_moved"] > 0 and model.table.rows.tolist() != before.rows.tolist()
    _assert_normalised(model, _tokens(vocab_size))


def _enumerated_sampler(model: LightRNN, token: int, monkeypatch) -> np.ndarray:
    """The exact distribution of one `generate_step` draw after `token`, by enumerating its stages.

    sample_logits is replaced by a stand-in that records the distribution the real one would draw
    from (`stage_probabilities`) and forces the outcome: batch element i takes row i, then the
    column stage's distribution is read for every row. P(word at (r, c)) = p_row[r] p_col[r][c].
    """
    rows = model.num_rows
    stages: list[torch.Tensor] = []

    def record(logits, temperature=1.0, top_k=None, generator=None, allowed=None):
        stages.append(sampling.stage_probabilities(logits, temperature, top_k, allowed).double())
        return torch.arange(logits.shape[0]) % logits.shape[1]

    monkeypatch.setattr(sampling, "sample_logits", record)
    words, _ = model.generate_step(torch.full((rows,), token, dtype=torch.long))
    p_row, p_col = stages[0][0], stages[1]  # [R], [R, C] (element r drew row r)
    slot_words, filled = model._slot_words()
    joint = (p_row[:, None] * p_col).numpy()
    assert joint[~filled.numpy()].sum() == 0.0  # never an empty slot
    distribution = np.zeros(model.vocab_size)
    distribution[slot_words[filled].numpy()] = joint[filled.numpy()]
    assert words.tolist() == [int(slot_words[r, r % model.num_cols]) if filled[r, r % model.num_cols] else
                              words.tolist()[r] for r in range(rows)]
    return distribution


@pytest.mark.parametrize("vocab_size", VOCABS)
@pytest.mark.parametrize("options", [OPTIONS[0], OPTIONS[-1]], ids=["plain", "all-terms"])
def test_generate_step_draws_exactly_log_prob(vocab_size, options, monkeypatch):
    model = _model(vocab_size, options).float()
    model.set_table(WordTable.random(vocab_size, seed=11))  # empty slots where a reallocation could leave them
    with torch.no_grad():
        exact = model.log_prob(torch.tensor([[4]]))[0][0, 0].exp().double().numpy()
    sampled = _enumerated_sampler(model, 4, monkeypatch)
    assert np.abs(sampled - exact).max() < 1e-5 and abs(sampled.sum() - 1.0) < 1e-5


@pytest.mark.parametrize("vocab_size", [10, 13])
def test_generate_step_draw_frequencies_match_log_prob(vocab_size):
    """The real sampler, seeded: 40k draws within total variation 0.02 of exp(log_prob)."""
    model = _model(vocab_size, {"word_bias": True, "word_dim": 3}).float()
    draws = 40000
    words, _ = model.generate_step(torch.full((draws,), 2, dtype=torch.long), None, 1.0, None,
                                   torch.Generator().manual_seed(0))
    empirical = np.bincount(words.numpy(), minlength=vocab_size) / draws
    with torch.no_grad():
        exact = model.log_prob(torch.tensor([[2]]))[0][0, 0].exp().double().numpy()
    assert 0.5 * np.abs(empirical - exact).sum() < 0.02
