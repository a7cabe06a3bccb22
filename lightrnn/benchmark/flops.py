"""Analytic FLOPs per token of each model: the LSTM stack plus the output layer, as computed.

Counted like nanoGPT's MFU: matrix-multiply FLOPs only (2 per multiply-add); embedding
look-ups, element-wise gates, softmaxes and the class softmax's target dot product are O(H) or
O(output size) per token and left out. Backward costs twice the forward (a gradient for the
input and one for the weights of every product), so a training token costs 3x its forward.

Output layers, per target token, for what the code actually evaluates:
    LightRNN            2H(R + C): one row head and one column head per word (R = C = ceil(sqrt V)),
                        plus its per-word terms: word_dim k adds 2Hk (P h) + 2Ck (the C words of
                        the target's row dotted with it), word_input_dim k adds 2kE (A e_w); the
                        per-word bias is a look-up (not counted)
    full softmax        2HV
    class softmax       2HK + 2H |class(target)|: the class layer and the target's class block only
    adaptive softmax    2H(c_0 + n) + 2(H h_i + h_i |cluster i|) for a target in tail cluster i
For the class and adaptive softmax the per-token cost depends on the target, so it is the
expectation under the target distribution `target_probs` (the benchmark's Zipfian stream, or a
batch's own histogram, which makes the count exact for that batch).

The layout is read from the model's modules (which output layer it has), not from its name, so
the same function counts a model built from any registry entry with these layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from torch import nn


class Flops(NamedTuple):
    """FLOPs per token: lstm and output are forward costs; forward = their sum; train = 3 x forward."""

    lstm: float
    output: float
    forward: float
    train: float


def lstm_flops_per_step(input_dim: int, hidden_dim: int, num_layers: int) -> float:
    """Forward FLOPs of one time step of an `nn.LSTM` stack: 2 * 4H * (input + H) per layer."""
    first = 8.0 * hidden_dim * (input_dim + hidden_dim)
    rest = 8.0 * hidden_dim * (2 * hidden_dim)
    return first + (num_layers - 1) * rest


def _lstm(model: nn.Module) -> nn.LSTM:
    lstms = [module for module in model.modules() if isinstance(module, nn.LSTM)]
    if len(lstms) != 1:
        raise ValueError(f"flops: expected exactly one nn.LSTM in {type(model).__name__}, found {len(lstms)}")
    return lstms[0]


def _check_probs(target_probs: np.ndarray, vocab_size: int) -> np.ndarray:
    probs = np.asarray(target_probs, dtype=np.float64)
    if probs.shape != (vocab_size,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(
            f"flops: target_probs must be a probability vector of shape ({vocab_size},), "
            f"got shape {probs.shape} summing to {probs.sum():.6g}"
        )
    return probs


def output_flops_per_token(model: nn.Module, target_probs: np.ndarray) -> tuple[float, float]:
    """(forward FLOPs per token of the output layer, LSTM steps per token: 2 for LightRNN, else 1).

    The LightRNN step count excludes its one extra step per batch (added by `flops_per_token`).
    """
    hidden = int(model.hidden_dim)
    probs = _check_probs(target_probs, int(model.vocab_size))
    if hasattr(model, "row_head") and hasattr(model, "col_head"):  # LightRNN's 2-D softmax
        columns = model.col_head.out_features
        cost = 2.0 * hidden * (model.row_head.out_features + columns)
        word_dim, word_input_dim = int(getattr(model, "word_dim", 0)), int(getattr(model, "word_input_dim", 0))
        cost += 2.0 * word_dim * (hidden + columns) + 2.0 * word_input_dim * int(getattr(model, "embed_dim", 0))
        return cost, 2.0
    decoder = getattr(model, "decoder", None)
    if isinstance(decoder, nn.AdaptiveLogSoftmaxWithLoss):
        bounds = list(decoder.cutoffs)  # [c_0, ..., V]
        cost = 2.0 * hidden * decoder.head.out_features
        for index, tail in enumerate(decoder.tail):
            projection, cluster = tail[0], tail[1]
            mass = probs[bounds[index] : bounds[index + 1]].sum()
            cost += mass * 2.0 * (hidden * projection.out_features + projection.out_features * cluster.out_features)
        return cost, 1.0
    if hasattr(model, "class_decoder") and hasattr(model, "word_class"):  # class-based softmax
        word_class = model.word_class.detach().cpu().numpy()
        class_sizes = np.bincount(word_class, minlength=model.num_classes).astype(np.float64)  # [K]
        class_mass = np.bincount(word_class, weights=probs, minlength=model.num_classes)  # [K]
        expected_block = float(class_mass @ class_sizes)  # E[|class(target)|]
        return 2.0 * hidden * (model.class_decoder.out_features + expected_block), 1.0
    if isinstance(decoder, nn.Linear):  # one softmax over the vocabulary
        return 2.0 * hidden * decoder.out_features, 1.0
    raise ValueError(
        f"flops: no FLOP formula for the output layer of {type(model).__name__}; add one to "
        "lightrnn/benchmark/flops.py (row_head/col_head, AdaptiveLogSoftmaxWithLoss decoder, "
        "class_decoder/word_class or Linear decoder are known)"
    )


def flops_per_token(model: nn.Module, target_probs: np.ndarray, bptt: int) -> Flops:
    """Analytic FLOPs per target token of `model` on windows of `bptt` tokens (see the module docstring).

    Args:
        model: a `LanguageModel` (a meta-device build is enough).
        target_probs: [V] probabilities of the target tokens.
        bptt: window length T; LightRNN runs 2T + 1 LSTM steps per window (one extra for the
            last target's row), so 2 + 1/T per token.
    """
    if bptt < 1:
        raise ValueError(f"flops: bptt must be >= 1, got {bptt}")
    lstm = _lstm(model)
    output, steps = output_flops_per_token(model, target_probs)
    if steps > 1:
        steps += 1.0 / bptt
    recurrent = steps * lstm_flops_per_step(lstm.input_size, lstm.hidden_size, lstm.num_layers)
    forward = recurrent + output
    return Flops(lstm=recurrent, output=output, forward=forward, train=3.0 * forward)
