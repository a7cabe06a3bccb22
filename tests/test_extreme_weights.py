"""Huge but finite output weights: every model's log_prob still sums to 1, or its nll is non-finite
(which `lightrnn score` and `lightrnn eval` refuse in one line), never a finite wrong value.

A log-sum-exp written as max + log(sum) loses log(sum) in float32 once the max is near 3e38: the
class softmax then gave each class's words log-probability 0 (they summed to |k|, about 19).
"""

from __future__ import annotations

import pytest
import torch

from lightrnn import registry

VOCAB = 23  # LightRNN: a 5 x 5 table with two empty slots
BIG = 3e38  # finite in float32 (max 3.4e38)


def _output_biases(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The biases after the LSTM: the output layers' (head, class, word, cluster) biases."""
    return [p for name, p in model.named_parameters() if name.endswith("bias") and "lstm" not in name]


def _same(biases: list[torch.nn.Parameter]) -> None:
    for bias in biases:
        bias.fill_(BIG)


def _alternating(biases: list[torch.nn.Parameter]) -> None:
    for bias in biases:
        flat = bias.view(-1)
        flat.copy_(torch.where(torch.arange(flat.numel()) % 2 == 0, BIG, -BIG))


def _one_huge(biases: list[torch.nn.Parameter]) -> None:
    for bias in biases:
        bias.view(-1)[0] = BIG


def _huge_weights(biases: list[torch.nn.Parameter]) -> None:
    for bias in biases:
        bias.fill_(BIG)
        bias.view(-1)[-1] = -BIG


EXTREMES = {"same": _same, "alternating": _alternating, "one_huge": _one_huge, "both_signs": _huge_weights}


@pytest.mark.parametrize("extreme", sorted(EXTREMES))
@pytest.mark.parametrize("name", registry.REGISTRY)
def test_extreme_finite_weights_give_a_distribution_or_a_non_finite_nll(name, extreme) -> None:
    torch.manual_seed(0)
    options = {"cutoffs": [4, 9], "div_value": 2.0, "head_bias": True} if name == "adaptive_softmax" else {}
    if name == "class_softmax":
        options = {"num_classes": 4}
    model = registry.build(name, VOCAB, embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0, **options).eval()
    biases = _output_biases(model)
    assert biases, f"{name}: no output bias found to set"
    with torch.no_grad():
        EXTREMES[extreme](biases)
        stream = torch.randint(0, VOCAB, (2, 7))
        tokens, targets = stream[:, :-1], stream[:, 1:]
        log_probs, _ = model.log_prob(tokens)
        nll = model(tokens, targets).nll
    if not torch.isfinite(log_probs.exp().sum(-1)).all() or torch.isnan(log_probs).any():
        # No distribution: the loss must say so (non-finite) rather than give a finite number.
        assert not torch.isfinite(nll).all()
        return
    torch.testing.assert_close(log_probs.exp().double().sum(-1), torch.ones(tokens.shape, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    target_log_probs = log_probs.gather(-1, targets[..., None]).squeeze(-1)
    finite = torch.isfinite(target_log_probs)
    assert torch.equal(torch.isfinite(nll), finite)  # a word of probability 0 costs inf in both
    torch.testing.assert_close(nll[finite], -target_log_probs[finite], atol=1e-4, rtol=1e-4)


def test_lightrnn_slot_scores_stay_normalised_at_huge_logits() -> None:
    """The reallocation's slot scores (`_slot_scores`): the kept entries a softmax, at a max of 3e38 too."""
    from lightrnn.method.model import _slot_scores

    logits = torch.tensor([[BIG, BIG, BIG, BIG - 1e32], [1.0, 2.0, 3.0, 4.0]])
    keep = torch.tensor([[True, True, False, True], [False, False, False, False]])
    scores = _slot_scores(logits, keep)
    kept = scores[0][keep[0]].exp().double().sum()
    assert abs(kept.item() - 1.0) < 1e-4
    assert torch.isfinite(scores).all()
    assert torch.equal(scores[1], torch.zeros(4))  # nothing kept: each entry alone has probability 1
