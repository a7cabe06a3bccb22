"""The contract every language model in this project honours (LightRNN and every baseline).

The training loop, evaluation, benchmarks and data-parallel training only ever use what is
defined here, so they never ask which model they hold.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Iterable, NamedTuple

import torch
from torch import Tensor, nn

# LSTM state: (h, c), each [num_layers, B, hidden_dim].
State = tuple[Tensor, Tensor]


class LMOutput(NamedTuple):
    """What `forward` returns.

    nll:   [B, T] negative log-likelihood of each target token, in nats.
    state: the recurrent state after the last position, to carry into the next batch.
    """

    nll: Tensor
    state: State


def detach_state(state: State) -> State:
    """Cut the graph between truncated-BPTT windows, keeping the values.

    A state produced under bf16/fp16 autocast is carried on in float32, so that rounding does
    not accumulate across windows.
    """
    return tuple(
        tensor.detach().float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor.detach()
        for tensor in state
    )  # type: ignore[return-value]


class LanguageModel(nn.Module, abc.ABC):
    """Base class: an LSTM language model over a vocabulary of `vocab_size` word ids.

    Subclasses implement `forward`, `log_prob` and `param_count`; the constructor signature is
    `(vocab_size, embed_dim, hidden_dim, num_layers, dropout, **model_specific)` everywhere.

    Shapes:
        tokens, targets: LongTensor [B, T]; targets are the next tokens of the same stream
            (`targets[:, :-1] == tokens[:, 1:]`).
        forward -> LMOutput(nll [B, T], state)
        log_prob(tokens, state) -> (log-probabilities [B, T, V] of the next token, state)
    """

    vocab_size: int
    hidden_dim: int
    num_layers: int
    # The model-specific constructor options (beyond the five shared arguments): what
    # `lightrnn.registry.build` accepts for this model and what `model_options` may hold.
    options: ClassVar[tuple[str, ...]] = ()

    def init_state(self, batch_size: int) -> State:
        """Zero LSTM state on the model's device and dtype."""
        weight = next(self.parameters())
        shape = (self.num_layers, batch_size, self.hidden_dim)
        return (weight.new_zeros(shape), weight.new_zeros(shape))

    @abc.abstractmethod
    def forward(self, tokens: Tensor, targets: Tensor, state: State | None = None) -> LMOutput:
        """Per-token NLL of `targets` given `tokens` (and the carried state)."""

    @abc.abstractmethod
    def log_prob(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The exact next-token distribution at every position: [B, T, V] log-probabilities."""

    @classmethod
    @abc.abstractmethod
    def param_count(
        cls, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, **model_specific
    ) -> int:
        """Closed-form number of parameters (checked against the allocated model in tests)."""

    def between_rounds(self, batches: Iterable[tuple[Tensor, Tensor]], **options) -> dict[str, float]:
        """Hook the training loop calls after every round but the last.

        `batches` yields (tokens, targets) over the training data. Models without a
        between-round step (every baseline) return no metrics; LightRNN reallocates its words
        here and returns realloc_objective, realloc_lower_bound and realloc_s.
        """
        return {}

    def check_state(self) -> None:
        """ValueError saying what is inconsistent in the state just loaded from a file: buffers that
        index each other (the class softmax's class layout). Called after every `load_state_dict`
        of a model file (`lightrnn.training.checkpoint.rebuild_model`, resuming a run); the default
        has nothing to check (LightRNN's word table is checked with the checkpoint's payload)."""

    def generate_step(
        self, token: Tensor, state: State | None = None, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State]:
        """Read `token` [B] and sample the next token [B] through the model's own factorisation;
        returns (next [B], the state after reading `token`). Used by `lightrnn generate`."""
        raise NotImplementedError(f"{type(self).__name__} has no generate_step; it cannot generate text")


def lstm_param_count(input_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Parameters of `nn.LSTM(input_dim, hidden_dim, num_layers)` with both biases."""
    first = 4 * hidden_dim * (input_dim + hidden_dim + 2)
    rest = 4 * hidden_dim * (hidden_dim + hidden_dim + 2)
    return first + (num_layers - 1) * rest
