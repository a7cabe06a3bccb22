"""Adaptive softmax LSTM language model (Grave et al. 2017), via `nn.AdaptiveLogSoftmaxWithLoss`.

The frequent words (the "shortlist", ids below cutoffs[0]) get full-size output vectors in the
head; the rarer words fall into tail clusters whose output vectors live in spaces
H / div_value**i dimensions wide, reached through one head slot per cluster. It needs word ids in
decreasing frequency order, which is the project's vocabulary convention (id 0 most frequent).
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from baselines._common import (
    LSTMTrunk,
    check_dropout,
    check_sizes,
    check_targets,
    check_tokens,
    reject_unknown_options,
    resolve_word_counts,
)
from lightrnn.core.lm import LanguageModel, LMOutput, State

# The model-specific options (config `model_options`) this model accepts.
OPTIONS = ["word_counts", "cutoffs", "cutoff_mass", "div_value", "head_bias", "sparse_embedding"]
DEFAULT_CUTOFF_MASS = (0.8, 0.95)
# Checked with the options' types wherever options are read (the constructor checks the rest).
OPTION_BOUNDS = {"cutoffs": (1, 2**31 - 1), "cutoff_mass": (0.0, 1.0), "div_value": (1.0, 1e6)}


def mass_cutoffs(word_counts: np.ndarray, cutoff_mass: Sequence[float]) -> list[int]:
    """Cutoffs (word counts in id order [V]) where the first ids cover each fraction of the mass.

    E.g. cutoff_mass (0.8, 0.95): the shortlist is the fewest leading ids holding 80% of the
    tokens, the first tail cluster the ids up to 95%, the last cluster the rest. Cutoffs are
    kept in [1, V - 1] and duplicates dropped, so every cluster has at least one word.
    """
    vocab_size = len(word_counts)
    covered = np.cumsum(word_counts) / word_counts.sum()  # [V]
    cutoffs = np.searchsorted(covered, np.asarray(cutoff_mass), side="left") + 1
    return sorted({int(c) for c in np.clip(cutoffs, 1, vocab_size - 1)})


def _float32(hidden: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off around the adaptive softmax: it allocates its output in its input's dtype and
    `index_copy_`s each cluster's log-softmax into it, which autocast computes in float32 (on CUDA a
    bf16 output then raises "expected the same dtype" at the first tail-cluster target). Its GEMMs
    are the small shortlist and projected clusters, so float32 costs little."""
    return torch.autocast(hidden.device.type, enabled=False)


class AdaptiveSoftmaxLM(LanguageModel):
    """Embedding -> LSTM -> adaptive softmax.

    Args:
        vocab_size, embed_dim, hidden_dim, num_layers, dropout: the shared contract.
        word_counts: counts in id order [V] for the default cutoffs; None means Zipfian counts
            by id rank (see `baselines._common.resolve_word_counts`).
        cutoffs: explicit increasing cutoffs in [1, V - 1]; overrides cutoff_mass.
        cutoff_mass: increasing fractions in (0, 1) of the token mass the default cutoffs cover
            (default 0.8, 0.95: a shortlist and two tail clusters).
        div_value: each tail cluster's projection is div_value times narrower than the last
            (PyTorch's default 4.0); every projection must keep at least one dimension.
        head_bias: a bias in the head layer (PyTorch's default: none).
        sparse_embedding: see `baselines._common.LSTMTrunk`.
    """

    options = tuple(OPTIONS)
    option_bounds = OPTION_BOUNDS

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        word_counts: np.ndarray | None = None,
        cutoffs: Sequence[int] | None = None,
        cutoff_mass: Sequence[float] = DEFAULT_CUTOFF_MASS,
        div_value: float = 4.0,
        head_bias: bool = False,
        sparse_embedding: bool = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        reject_unknown_options("adaptive_softmax", unknown, OPTIONS)
        cutoffs = self.resolve_cutoffs(
            vocab_size, embed_dim, hidden_dim, num_layers, word_counts, cutoffs, cutoff_mass,
            div_value, head_bias,
        )
        self.vocab_size, self.hidden_dim, self.num_layers = vocab_size, hidden_dim, num_layers
        self.cutoffs = cutoffs
        self.trunk = LSTMTrunk(
            vocab_size, embed_dim, hidden_dim, num_layers, check_dropout(dropout), sparse_embedding
        )
        self.decoder = nn.AdaptiveLogSoftmaxWithLoss(
            hidden_dim, vocab_size, cutoffs, div_value=float(div_value), head_bias=head_bias
        )

    @staticmethod
    def resolve_cutoffs(
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        word_counts: np.ndarray | None,
        cutoffs: Sequence[int] | None,
        cutoff_mass: Sequence[float],
        div_value: Any,
        head_bias: Any,
    ) -> list[int]:
        """Validate every argument and return the cutoffs the model uses."""
        check_sizes(vocab_size, embed_dim, hidden_dim, num_layers)
        if not isinstance(head_bias, bool):
            raise ValueError(f"head_bias must be true or false, got {head_bias!r}")
        if isinstance(div_value, bool) or not isinstance(div_value, (int, float)) or div_value < 1:
            raise ValueError(f"div_value must be a number >= 1, got {div_value!r}")
        if cutoffs is None:
            fractions = list(cutoff_mass) if isinstance(cutoff_mass, (list, tuple)) else None
            if (
                not fractions
                or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in fractions)
                or any(not 0 < f < 1 for f in fractions)
                or fractions != sorted(set(fractions))
            ):
                raise ValueError(
                    f"cutoff_mass must be a non-empty increasing list of fractions in (0, 1), "
                    f"got {cutoff_mass!r}"
                )
            resolved = mass_cutoffs(resolve_word_counts(vocab_size, word_counts), fractions)
        else:
            resolved = list(cutoffs) if isinstance(cutoffs, (list, tuple, np.ndarray)) else []
            if (
                not resolved
                or not all(isinstance(c, (int, np.integer)) for c in resolved)
                or any(isinstance(c, bool) for c in resolved)
                or resolved != sorted(set(resolved))
                or resolved[0] < 1
                or resolved[-1] > vocab_size - 1
            ):
                raise ValueError(
                    f"cutoffs must be a non-empty increasing list of integers in "
                    f"[1, vocab_size - 1 = {vocab_size - 1}], got {cutoffs!r}"
                )
            resolved = [int(c) for c in resolved]
        # PyTorch's own width rule; a zero-width projection would make a cluster uniform.
        narrowest = int(hidden_dim // (div_value ** len(resolved)))
        if narrowest < 1:
            raise ValueError(
                f"div_value={div_value} with {len(resolved)} tail clusters leaves no dimension of "
                f"hidden_dim={hidden_dim} for the last cluster: "
                "lower div_value or use fewer cutoffs"
            )
        return resolved

    def forward(self, tokens: Tensor, targets: Tensor, state: State | None = None) -> LMOutput:
        """Per-token NLL [B, T] in nats; each token evaluates the head and its own cluster only."""
        check_targets(tokens, targets)
        hidden, state = self.trunk(tokens, state)  # [B, T, H]
        with _float32(hidden):
            target_logp = self.decoder(hidden.flatten(0, 1).float(), targets.flatten()).output  # [N]
        return LMOutput(-target_logp.float().view_as(targets), state)

    def log_prob(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Exact next-word log-probabilities [B, T, V]."""
        check_tokens(tokens)
        hidden, state = self.trunk(tokens, state)
        with _float32(hidden):
            log_probs = self.decoder.log_prob(hidden.flatten(0, 1).float()).float()  # [N, V]
        return log_probs.view(*tokens.shape, self.vocab_size), state

    @classmethod
    def param_count(
        cls,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        word_counts: np.ndarray | None = None,
        cutoffs: Sequence[int] | None = None,
        cutoff_mass: Sequence[float] = DEFAULT_CUTOFF_MASS,
        div_value: float = 4.0,
        head_bias: bool = False,
        sparse_embedding: bool = False,
        **unknown: Any,
    ) -> int:
        """V*E + LSTM + head H*(c_0 + n) [+ c_0 + n] + sum_i (H*h_i + h_i*(c_{i+1} - c_i)).

        n = number of tail clusters, c = cutoffs + [V], h_i = floor(H / div_value**(i + 1)).
        """
        reject_unknown_options("adaptive_softmax", unknown, OPTIONS)
        resolved = cls.resolve_cutoffs(
            vocab_size, embed_dim, hidden_dim, num_layers, word_counts, cutoffs, cutoff_mass,
            div_value, head_bias,
        )
        bounds = resolved + [vocab_size]
        head_size = resolved[0] + len(resolved)
        count = LSTMTrunk.param_count(vocab_size, embed_dim, hidden_dim, num_layers)
        count += hidden_dim * head_size + (head_size if head_bias else 0)
        for i in range(len(resolved)):
            width = int(hidden_dim // (div_value ** (i + 1)))
            count += hidden_dim * width + width * (bounds[i + 1] - bounds[i])
        return count

    @torch.no_grad()
    def generate_step(
        self, token: Tensor, state: State | None = None, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State]:
        """Read `token` [B] and sample the next word [B] through the head and the clusters: a head
        slot (a shortlist word or a cluster); for a cluster, a word from that cluster's own
        projected softmax; (words, state)."""
        from lightrnn.core.sampling import sample_logits

        hidden, state = self.trunk(token.unsqueeze(1), state)
        hidden = hidden[:, 0].float()  # [B, H]
        with _float32(hidden):
            slot = sample_logits(self.decoder.head(hidden), temperature, top_k, generator)  # [B]
            words = slot.clone()
            shortlist = self.decoder.shortlist_size
            for cluster in range(len(self.decoder.tail)):  # only rows that drew a cluster slot draw again
                rows = (slot == shortlist + cluster).nonzero().squeeze(1)
                if rows.numel():
                    scores = self.decoder.tail[cluster](hidden[rows])  # [n, cluster size]
                    words[rows] = self.decoder.cutoffs[cluster] + sample_logits(scores, temperature, top_k, generator)
        return words, state
