"""One training step, the same for the training loop and the throughput benchmark.

forward under autocast (bf16 on CUDA when asked) -> mean NLL (float32) -> finite check ->
backward -> global gradient-norm clipping -> optimizer step -> state detached for the next
window (truncated BPTT). A benchmark that timed anything else would measure another program.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightrnn.core import distributed
from lightrnn.core.lm import State, detach_state
from lightrnn.core.runtime import autocast_context
from lightrnn.training.optim import Optimizers, clip_grad_norm


class TrainingDiverged(FloatingPointError):
    """A NaN or inf training loss; the training loop adds the epoch and step to the message."""


def train_step(
    model: nn.Module,
    optimizer: Optimizers,
    tokens: Tensor,
    targets: Tensor,
    state: State | None,
    clip: float,
    bf16: bool = False,
) -> tuple[Tensor, State]:
    """Take one step on the window (tokens, targets) [B, T]; returns (nll [B, T] detached, next state).

    `model` is a `LanguageModel` or its DDP wrapper; `clip` <= 0 turns clipping off.
    """
    with autocast_context(tokens.device, bf16):
        output = model(tokens, targets, state)
    loss = output.nll.float().mean()
    # Every rank learns whether any rank diverged before anyone raises: a rank that raised alone
    # would leave the others waiting in backward's all-reduce until the collective timeout.
    diverged = distributed.ranks_where(not bool(torch.isfinite(loss)))
    if diverged:
        where = f" on rank(s) {', '.join(map(str, diverged))}" if distributed.is_distributed() else ""
        raise TrainingDiverged(f"training loss is {loss.item() if not torch.isfinite(loss) else 'non-finite'}{where}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        clip_grad_norm(model.parameters(), clip)
    optimizer.step()
    return output.nll.detach(), detach_state(output.state)
