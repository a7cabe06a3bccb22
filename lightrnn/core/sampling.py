"""Drawing one choice from a softmax stage: temperature, top-k and a mask of allowed outcomes.

Every model's `generate_step` samples through `sample_logits`, one call per stage of its own
factorisation (LightRNN: a row, then a column given that row; the class softmax: a class, then a
word of that class; the adaptive softmax: a head slot, then, for a cluster slot, a word of that
cluster; the full softmax: one V-way stage). Top-k applies to each stage, so for a factorised
model it keeps the k most likely rows (classes, head slots) and then the k most likely columns
(words) of the chosen one: the sampler never materialises a V-way distribution it does not have.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# What torch.Generator.manual_seed accepts (a 64-bit seed, signed or not); outside it torch says
# only "Overflow when unpacking long long".
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_sampling(temperature: float, top_k: int | None) -> None:
    """ValueError naming the bad option: temperature a finite number > 0, top_k >= 1 (None: no cut)."""
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0
            or not math.isfinite(temperature)):
        raise ValueError(f"--temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"--top-k must be an integer >= 1, got {top_k!r}")


def check_seed(seed: int) -> int:
    """The seed as an int; ValueError naming --seed outside torch's 64-bit range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"--seed must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]} (64 bits), got {seed!r}")
    return seed


def sample_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
    generator: torch.Generator | None = None, allowed: Tensor | None = None,
) -> Tensor:
    """One index per row of `logits` [B, n], drawn from softmax(logits / temperature).

    allowed: BoolTensor [B, n] or [n]; outcomes outside it get probability 0 (LightRNN's empty
    table slots). top_k: only the k largest (allowed) logits of each row stay. Float32 arithmetic.
    Returns LongTensor [B].

    Each row's largest allowed logit is subtracted before dividing by the temperature, so any
    temperature > 0 gives a distribution (a tiny one: the most likely outcome, not inf - inf =
    NaN). A NaN or infinite allowed logit is a diverged model: FloatingPointError, one line.
    """
    probabilities = stage_probabilities(logits, temperature, top_k, allowed)  # [B, n]
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)


def stage_probabilities(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, allowed: Tensor | None = None,
) -> Tensor:
    """The distribution `sample_logits` draws from: [B, n] float32 (the tests enumerate it exactly)."""
    check_sampling(temperature, top_k)
    scores = logits.float()  # [B, n]
    if allowed is not None:
        scores = scores.masked_fill(~allowed.expand_as(scores), float("-inf"))
    best = scores.max(dim=-1, keepdim=True).values  # [B, 1]
    if bool(torch.isnan(scores).any()) or not bool(torch.isfinite(best).all()):
        raise FloatingPointError("the model gave a NaN or infinite score to sample from: its weights have "
                                 "diverged; use a model file of a run that did not")
    # <= 0, the best 0; -inf stays -inf. Divided in float64: a temperature below float32's range
    # (1e-300) would be 0 there, and 0 / 0 NaN.
    scores = ((scores - best).double() / float(temperature)).float()
    if top_k is not None and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.softmax(scores, dim=-1)
