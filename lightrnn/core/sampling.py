"""Drawing one choice from a softmax stage: temperature, top-k and a mask of allowed outcomes.

Every model's `generate_step` samples through `sample_logits`, one call per stage of its own
factorisation (LightRNN: a row, then a column given that row; the class softmax: a class, then a
word of that class; the adaptive softmax: a head slot, then, for a cluster slot, a word of that
cluster; the full softmax: one V-way stage). Top-k applies to each stage, so for a factorised
model it keeps the k most likely rows (classes, head slots) and then the k most likely columns
(words) of the chosen one: the sampler never materialises a V-way distribution it does not have.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_sampling(temperature: float, top_k: int | None) -> None:
    """ValueError naming the bad option: temperature must be > 0, top_k >= 1 (None: no cut)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"--temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"--top-k must be an integer >= 1, got {top_k!r}")


def sample_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
    generator: torch.Generator | None = None, allowed: Tensor | None = None,
) -> Tensor:
    """One index per row of `logits` [B, n], drawn from softmax(logits / temperature).

    allowed: BoolTensor [B, n] or [n]; outcomes outside it get probability 0 (LightRNN's empty
    table slots). top_k: only the k largest (allowed) logits of each row stay. Float32 arithmetic.
    Returns LongTensor [B].
    """
    probabilities = stage_probabilities(logits, temperature, top_k, allowed)  # [B, n]
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)


def stage_probabilities(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, allowed: Tensor | None = None,
) -> Tensor:
    """The distribution `sample_logits` draws from: [B, n] float32 (the tests enumerate it exactly)."""
    check_sampling(temperature, top_k)
    scores = logits.float() / float(temperature)  # [B, n]
    if allowed is not None:
        scores = scores.masked_fill(~allowed.expand_as(scores), float("-inf"))
    if top_k is not None and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.softmax(scores, dim=-1)
