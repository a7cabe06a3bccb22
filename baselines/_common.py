"""What every baseline shares: argument checks, word counts, and the embedding + LSTM trunk.

The trunk is the same as LightRNN's apart from the input layer: one embedding row per word
(instead of one per table row and column), dropout on the embeddings, an `nn.LSTM` stack with
dropout between layers, and dropout on its output before the softmax layer. Only the output
layer differs between the baselines, so it is the only thing a comparison measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor, nn

from lightrnn.core.lm import State, lstm_param_count
from lightrnn.core.runtime import run_lstm


def check_int(name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= `minimum`, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_sizes(vocab_size: Any, embed_dim: Any, hidden_dim: Any, num_layers: Any) -> None:
    """Validate the size arguments every model (and every `param_count`) takes."""
    check_int("vocab_size", vocab_size, 2)  # a 1-word vocabulary has nothing to predict
    check_int("embed_dim", embed_dim, 1)
    check_int("hidden_dim", hidden_dim, 1)
    check_int("num_layers", num_layers, 1)


def check_dropout(dropout: Any) -> float:
    """Dropout probability in [0, 1), else a ValueError naming `dropout`."""
    is_number = isinstance(dropout, (int, float)) and not isinstance(dropout, bool)
    if not is_number or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def resolve_word_counts(vocab_size: int, word_counts: np.ndarray | None) -> np.ndarray:
    """Word counts in id order as float64 [V].

    `None` means the documented fallback: Zipfian counts by id rank, count(id) = 1 / (id + 1),
    which matches the project's frequency-ordered ids (id 0 is the most frequent word). Only
    relative counts matter to the callers, so the scale is irrelevant.
    """
    if word_counts is None:
        return 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64)
    counts = np.asarray(word_counts, dtype=np.float64)
    if counts.shape != (vocab_size,):
        raise ValueError(
            f"word_counts must have shape ({vocab_size},) (one count per word id), "
            f"got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError("word_counts must be finite, non-negative and not all zero")
    return counts


def default_num_buckets(vocab_size: int) -> int:
    """ceil(sqrt(V)): LightRNN's table side, also the class softmax's default number of classes."""
    return math.isqrt(vocab_size - 1) + 1


class LSTMTrunk(nn.Module):
    """Word embedding -> dropout -> LSTM stack -> dropout.

    Args:
        vocab_size, embed_dim, hidden_dim, num_layers, dropout: as in `LanguageModel`.
        sparse_embedding: sparse gradients for the embedding table; only optimizers that take
            sparse gradients work then (`torch.optim.SGD`, `torch.optim.SparseAdam` for the
            embedding), so it is off by default and the training loop's Adam needs it off.
        rank: 0, or k >= 1 for a low-rank input: a V x k embedding times a k x E projection
            (`input_projection`, no bias) before the dropout.
    Shape:
        tokens [B, T] -> hidden [B, T, H], state (h, c) each [num_layers, B, H]
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        sparse_embedding: bool = False,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, rank or embed_dim, sparse=bool(sparse_embedding))
        self.input_projection = nn.Linear(rank, embed_dim, bias=False) if rank else None
        self.input_dropout = nn.Dropout(dropout)
        # nn.LSTM warns (and does nothing) when asked for dropout with a single layer.
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_dim,
            num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = nn.Dropout(dropout)
        # Small uniform embeddings, as in the PyTorch word_language_model example.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens [B, T] -> (hidden [B, T, H] after output dropout, state)."""
        embedded = self.embedding(tokens)  # [B, T, E] (or [B, T, k] before the projection)
        if self.input_projection is not None:
            embedded = self.input_projection(embedded)
        embedded = self.input_dropout(embedded)
        # float32 with autocast off even under bf16 autocast: see `lightrnn.core.runtime.run_lstm`.
        hidden, state = run_lstm(self.lstm, embedded, state)  # [B, T, H]
        return self.output_dropout(hidden), state

    @staticmethod
    def param_count(vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int) -> int:
        """V*E for the embedding plus the LSTM stack."""
        return vocab_size * embed_dim + lstm_param_count(embed_dim, hidden_dim, num_layers)


def check_targets(tokens: Tensor, targets: Tensor) -> None:
    """tokens and targets must both be [B, T] with the same shape."""
    if tokens.dim() != 2 or targets.shape != tokens.shape:
        raise ValueError(
            f"tokens and targets must both be [B, T] with the same shape, "
            f"got {tuple(tokens.shape)} and {tuple(targets.shape)}"
        )


def check_tokens(tokens: Tensor) -> None:
    """tokens must be [B, T]."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")


def reject_unknown_options(model_name: str, unknown: dict[str, Any], allowed: list[str]) -> None:
    """A ValueError naming options a model does not take (instead of a bare TypeError)."""
    if unknown:
        raise ValueError(
            f"{model_name} got unknown option(s) {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(allowed)}"
        )
