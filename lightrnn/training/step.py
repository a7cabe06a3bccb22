"""One training step, the same for the training loop and the throughput benchmark.

forward under autocast (bf16 on CUDA when asked) -> mean NLL (float32) -> finite check ->
backward -> global gradient-norm clipping -> optimizer step -> state detached for the next
window (truncated BPTT). A benchmark that timed anything else would measure another program.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from lightrnn.core import distributed
from lightrnn.core.lm import State, detach_state
from lightrnn.core.runtime import autocast_context
from lightrnn.training.optim import Optimizers, clip_grad_norm


class TrainingDiverged(FloatingPointError):
    """A NaN or inf training loss; the training loop adds the epoch and step to the message."""


PHASES = ("forward", "backward", "clip", "optimizer")


class _PhaseClock:
    """Adds the seconds since the previous mark to `timings[phase]`; does nothing when `timings` is None.

    Marks synchronise the device first, so a phase is charged for its own kernels; only the
    benchmark's phase breakdown passes `timings`, the training loop never pays the syncs.
    """

    def __init__(self, timings: dict[str, float] | None, device: torch.device) -> None:
        self.timings, self.device = timings, device
        if timings is not None:
            self.last = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def __call__(self, phase: str) -> None:
        if self.timings is not None:
            now = self._now()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
            self.last = now


def train_step(
    model: nn.Module,
    optimizer: Optimizers,
    tokens: Tensor,
    targets: Tensor,
    state: State | None,
    clip: float,
    bf16: bool = False,
    timings: dict[str, float] | None = None,
) -> tuple[Tensor, State]:
    """Take one step on the window (tokens, targets) [B, T]; returns (nll [B, T] detached, next state).

    `model` is a `LanguageModel` or its DDP wrapper; `clip` <= 0 turns clipping off. `timings`
    (the benchmark's phase breakdown) accumulates the seconds of each of `PHASES`.
    """
    clock = _PhaseClock(timings, tokens.device)
    with autocast_context(tokens.device, bf16):
        output = model(tokens, targets, state)
    loss = output.nll.float().mean()
    # Every rank learns whether any rank diverged before anyone raises: a rank that raised alone
    # would leave the others waiting in backward's all-reduce until the collective timeout.
    diverged = distributed.ranks_where(not bool(torch.isfinite(loss)))
    if diverged:
        where = f" on rank(s) {', '.join(map(str, diverged))}" if distributed.is_distributed() else ""
        raise TrainingDiverged(f"training loss is {loss.item() if not torch.isfinite(loss) else 'non-finite'}{where}")
    clock("forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clock("backward")
    if clip > 0:
        clip_grad_norm(model.parameters(), clip, optimizer.deferred_gradients())
    clock("clip")
    optimizer.step()
    clock("optimizer")
    return output.nll.detach(), detach_state(output.state)
