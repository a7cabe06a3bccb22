"""The plain word-level LSTM language model: one V-way softmax over the whole vocabulary."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
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
from lightrnn.core.lm import LanguageModel, LMOutput, State, lstm_param_count

# The model-specific options (config `model_options`) this model accepts.
OPTIONS = ["word_counts", "tie_weights", "sparse_embedding", "rank"]


class FullSoftmaxLM(LanguageModel):
    """Embedding -> LSTM -> Linear(H, V) -> softmax over all V words.

    Args:
        vocab_size, embed_dim, hidden_dim, num_layers, dropout: the shared contract.
        word_counts: accepted for the shared contract; a full softmax does not use it.
        tie_weights: share the embedding matrix with the output layer (Press & Wolf 2017;
            Inan et al. 2017). It needs embed_dim == hidden_dim; otherwise a ValueError, not a
            silent extra projection, so that parameter counts mean what they say.
        sparse_embedding: see `baselines._common.LSTMTrunk`; incompatible with tie_weights
            (the tied matrix would get a dense and a sparse gradient).
        rank: 0 (default) or k >= 1: a low-rank input and output of rank k, each V x k plus
            k x dim: the embedding is a V x k table times a k x E projection, the output a
            H x k projection times a k x V matrix (plus the V biases). The control for LightRNN's
            per-word vectors of dimension k: a plain softmax with the same per-word rank.
            Incompatible with tie_weights.
    """

    options = tuple(OPTIONS)
    option_bounds = {"rank": (0, 65536)}  # checked with its type wherever options are read (0: full rank)

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        word_counts: np.ndarray | None = None,
        tie_weights: bool = False,
        sparse_embedding: bool = False,
        rank: int = 0,
        **unknown: object,
    ) -> None:
        super().__init__()
        reject_unknown_options("full_softmax", unknown, OPTIONS)
        self._check_options(
            vocab_size, embed_dim, hidden_dim, num_layers,
            tie_weights, sparse_embedding, word_counts, rank,
        )
        self.vocab_size, self.hidden_dim, self.num_layers = vocab_size, hidden_dim, num_layers
        self.tie_weights, self.rank = bool(tie_weights), int(rank)
        self.trunk = LSTMTrunk(
            vocab_size, embed_dim, hidden_dim, num_layers, check_dropout(dropout), sparse_embedding, self.rank
        )
        self.decoder: nn.Module = nn.Linear(hidden_dim, vocab_size)
        if self.rank:
            output = nn.Linear(self.rank, vocab_size)
            nn.init.uniform_(output.weight, -0.1, 0.1)
            nn.init.zeros_(output.bias)
            self.decoder = nn.Sequential(nn.Linear(hidden_dim, self.rank, bias=False), output)
        elif self.tie_weights:
            self.decoder.weight = self.trunk.embedding.weight  # one [V, E] matrix, counted once
        else:
            # As PyTorch's word_language_model example (and LightRNN's heads): uniform +-0.1, zero bias.
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if not self.rank:
            nn.init.zeros_(self.decoder.bias)

    @staticmethod
    def _check_options(
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        tie_weights: bool,
        sparse_embedding: bool,
        word_counts: np.ndarray | None,
        rank: int = 0,
    ) -> None:
        check_sizes(vocab_size, embed_dim, hidden_dim, num_layers)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
            raise ValueError(f"rank must be an integer >= 0 (0: a full-rank input and output), got {rank!r}")
        if rank and tie_weights:
            raise ValueError("rank and tie_weights cannot both be set: choose one")
        if not isinstance(tie_weights, bool):
            raise ValueError(f"tie_weights must be true or false, got {tie_weights!r}")
        if tie_weights and embed_dim != hidden_dim:
            raise ValueError(
                f"tie_weights needs embed_dim == hidden_dim, got embed_dim={embed_dim} and "
                f"hidden_dim={hidden_dim}: make them equal or set tie_weights=false"
            )
        if tie_weights and sparse_embedding:
            raise ValueError("tie_weights and sparse_embedding cannot both be true: choose one")
        if word_counts is not None:  # unused, but a wrong one is a caller's bug worth reporting
            resolve_word_counts(vocab_size, word_counts)

    def logits(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens [B, T] -> (unnormalised scores [B, T, V], state)."""
        hidden, state = self.trunk(tokens, state)  # [B, T, H]
        return self.decoder(hidden), state

    def forward(self, tokens: Tensor, targets: Tensor, state: State | None = None) -> LMOutput:
        """Per-token NLL [B, T] in nats of `targets` given `tokens`."""
        check_targets(tokens, targets)
        logits, state = self.logits(tokens, state)  # [B, T, V]
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return LMOutput(nll.view_as(targets).float(), state)

    def log_prob(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Exact next-word log-probabilities [B, T, V]."""
        check_tokens(tokens)
        logits, state = self.logits(tokens, state)
        return F.log_softmax(logits.float(), dim=-1), state

    @classmethod
    def param_count(
        cls,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        word_counts: np.ndarray | None = None,
        tie_weights: bool = False,
        sparse_embedding: bool = False,
        rank: int = 0,
        **unknown: object,
    ) -> int:
        """V*E + LSTM + (H*V unless tied) + V; with rank k: V*k + k*E + LSTM + H*k + k*V + V."""
        reject_unknown_options("full_softmax", unknown, OPTIONS)
        cls._check_options(
            vocab_size, embed_dim, hidden_dim, num_layers,
            tie_weights, sparse_embedding, word_counts, rank,
        )
        if rank:
            return (vocab_size * rank + rank * embed_dim + lstm_param_count(embed_dim, hidden_dim, num_layers)
                    + hidden_dim * rank + rank * vocab_size + vocab_size)
        decoder_weight = 0 if tie_weights else hidden_dim * vocab_size
        return (
            LSTMTrunk.param_count(vocab_size, embed_dim, hidden_dim, num_layers)
            + decoder_weight
            + vocab_size
        )

    @torch.no_grad()
    def generate_step(
        self, token: Tensor, state: State | None = None, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State]:
        """Read `token` [B] and sample the next word [B] from the V-way softmax; (words, state)."""
        from lightrnn.core.sampling import sample_logits

        logits, state = self.logits(token.unsqueeze(1), state)  # [B, 1, V]
        return sample_logits(logits[:, 0], temperature, top_k, generator), state
