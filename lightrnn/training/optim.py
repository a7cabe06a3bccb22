"""Optimizers and gradient clipping shared by the training loop and the benchmarks.

Also the learning-rate schedule, `PlateauDecay`, which edits every group of an `Optimizers`.

Baselines can give their word embedding sparse gradients (`sparse_embedding: true`), which saves
a dense V x E gradient and its Adam update per step at large V. Plain Adam refuses sparse
gradients and `torch.nn.utils.clip_grad_norm_` cannot take their norm, so the loop and the
benchmarks both go through this module: what the benchmark times is what the loop trains.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from lightrnn.core import distributed

OPTIMIZERS = ("adam", "sgd")


def _sparse_parameter_ids(model: nn.Module) -> set[int]:
    """The parameters with sparse gradients: sparse embedding tables, and what a module lists in
    its `sparse_parameters()` (LightRNN's slot-ordered per-word tables)."""
    ids = {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse
    }
    for module in model.modules():
        if hasattr(module, "sparse_parameters"):
            ids.update(id(p) for p in module.sparse_parameters())
    return ids


def coalesced(grad: torch.Tensor) -> torch.Tensor:
    """A sparse gradient coalesced, in O(n) when its indices are already strictly increasing.

    LightRNN's per-word tables hand autograd coalesced gradients (one sorted row per word read),
    but autograd's accumulation rebuilds the tensor and drops the flag; `coalesce()` would then
    sort a few hundred thousand indices again, twice per step (clipping, the optimizer).
    """
    if grad.is_coalesced():
        return grad
    indices = grad._indices()
    if indices.shape[0] == 1 and bool((indices[0, 1:] > indices[0, :-1]).all()):
        return torch.sparse_coo_tensor(indices, grad._values(), grad.shape, is_coalesced=True, check_invariants=False)
    return grad.coalesce()


# SparseAdam's chunk: rows x row width floats updated at a time (4 MiB a work tensor): the
# gathered rows, the moments' updates and the gradient's chunk stay in the cache across the ops.
ADAM_CHUNK_FLOATS = 1 << 20


class SparseAdam(torch.optim.SparseAdam):
    """`torch.optim.SparseAdam`'s update, value for value, with dense row reads and writes.

    torch's version works on sparse tensors (`sparse_mask`, sparse `add_`), which at LightRNN's
    per-word tables (a few hundred thousand rows of gradient per step at the paper's V) costs
    several times more than gathering the touched rows of the moments, updating them and
    writing them back (`index_select` / `index_copy_` / `index_add_`), which this does, in
    torch's order of operations (tests/training/test_optim.py checks equality). Same state
    (step, exp_avg, exp_avg_sq), so checkpoints of either load into the other.

    The rows are updated a cache-sized chunk at a time (`ADAM_CHUNK_FLOATS`): a dozen
    element-wise ops then read their operands from the cache, and only the gradient, the
    moments and the weights cross the memory bus (at V = 793,471, k = 32: 9M values a step).
    The gathered rows live in three work buffers per parameter, kept between steps (never in the
    state_dict): on the CPU a fresh tensor costs first-touch page faults on every step.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._scratch: dict[int, torch.Tensor] = {}

    def _work(self, param: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three [rows, *param.shape[1:]] scratch tensors for `param` (views of one kept buffer)."""
        buffer = self._scratch.get(id(param))
        if buffer is None or buffer.shape[1] < rows or buffer.dtype != param.dtype or buffer.device != param.device:
            buffer = param.new_empty((3, max(rows, 1), *param.shape[1:]))
            self._scratch[id(param)] = buffer
        return buffer[0, :rows], buffer[1, :rows], buffer[2, :rows]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if not grad.is_sparse:
                    raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")
                grad = coalesced(-grad if group["maximize"] else grad)
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                ids, values = grad._indices()[0], grad._values()
                if values.numel() == 0:
                    continue
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                width = max(1, values[0].numel())
                chunk = max(1, ADAM_CHUNK_FLOATS // width) if param.device.type == "cpu" else ids.numel()
                buffers = self._work(param, min(chunk, ids.numel()))
                for start in range(0, ids.numel(), chunk):
                    rows, grads = ids[start:start + chunk], values[start:start + chunk]
                    old, avg, square = (buffer[: rows.numel()] for buffer in buffers)
                    # torch's order: avg = (g - m) (1 - b1) + m; square = (g^2 - v) (1 - b2) + v; in the buffers.
                    torch.index_select(state["exp_avg"], 0, rows, out=old)
                    torch.sub(grads, old, out=avg).mul_(1 - beta1).add_(old)
                    state["exp_avg"].index_copy_(0, rows, avg)
                    torch.index_select(state["exp_avg_sq"], 0, rows, out=old)
                    torch.mul(grads, grads, out=square).sub_(old).mul_(1 - beta2).add_(old)
                    state["exp_avg_sq"].index_copy_(0, rows, square)
                    param.index_add_(0, rows, avg.div_(square.sqrt_().add_(group["eps"])).mul_(-step_size))
        return loss


class Optimizers:
    """One optimizer's interface over Adam (or SGD) for dense parameters and SparseAdam for sparse ones.

    With `name="sgd"` a single SGD takes both (it accepts sparse gradients). `param_groups`
    lists every group, so a learning-rate schedule that edits `group["lr"]` reaches all of them.
    """

    def __init__(self, model: nn.Module, name: str, lr: float) -> None:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
        sparse_ids = _sparse_parameter_ids(model)
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
        sparse = [p for p in model.parameters() if p.requires_grad and id(p) in sparse_ids]
        # LightRNN's per-word output vectors hand plain SGD their gradient as factors (`RowGradient`):
        # SGD's update is linear in it, so the products are made where they are added. Not under
        # DDP, whose all-reduce reads `.grad`, and never for Adam, whose moments need the values.
        self._deferring = [module for module in model.modules() if hasattr(module, "defer_row_gradients")]
        defer = name == "sgd" and not distributed.is_distributed()
        for module in self._deferring:
            module.defer_row_gradients(defer)
        if name == "sgd":
            self.optimizers: list[torch.optim.Optimizer] = [torch.optim.SGD(dense + sparse, lr=lr)]
        else:
            self.optimizers = [torch.optim.Adam(dense, lr=lr)]
            if sparse:
                self.optimizers.append(SparseAdam(sparse, lr=lr))

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def label(self) -> str:
        """'Adam', 'Adam+SparseAdam' or 'SGD' (for benchmark CSVs)."""
        return "+".join(type(optimizer).__name__ for optimizer in self.optimizers)

    @torch.no_grad()
    def follow(self, model: nn.Module) -> None:
        """Move the optimizer state of parameter rows the model has moved (LightRNN's slot-ordered
        per-word terms after a reallocation: `take_moved_rows`), so each word keeps its moments."""
        for module in model.modules():
            if not hasattr(module, "take_moved_rows"):
                continue
            for param, index in module.take_moved_rows():
                for optimizer in self.optimizers:
                    for value in optimizer.state.get(param, {}).values():
                        if torch.is_tensor(value) and value.shape == param.shape:
                            value.copy_(value.reshape(index.numel(), -1).index_select(0, index).view_as(value))

    def deferred_gradients(self) -> list[tuple[nn.Parameter, Any]]:
        """[(parameter, RowGradient)]: the gradients backward left as factors (plain SGD only)."""
        return [pair for module in self._deferring for pair in module.row_gradients()]

    def deferred_applied(self) -> tuple[int, int]:
        """(rows, values) the last step's deferred gradients updated (`RowGradient.applied`)."""
        sizes = [module.row_gradient.applied for module in self._deferring if module.row_gradient is not None]
        return sum(rows for rows, _ in sizes), sum(values for _, values in sizes)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)
        for _, gradient in self.deferred_gradients():
            gradient.clear()

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()
        for param, gradient in self.deferred_gradients():  # SGD: param -= lr * gradient
            group = next(group for group in self.param_groups if any(p is param for p in group["params"]))
            gradient.apply_(param, -group["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(
                f"the checkpoint holds {len(saved)} optimizer(s), this run builds {len(self.optimizers)} "
                f"({self.label}); was sparse_embedding changed? use a new --out"
            )
        for optimizer, optimizer_state in zip(self.optimizers, saved):
            optimizer.load_state_dict(optimizer_state)



class PlateauDecay:
    """Multiply the learning rate by `decay` when valid ppl has not improved for `patience` + 1 epochs."""

    def __init__(self, optimizer: Optimizers, decay: float, patience: int) -> None:
        self.optimizer, self.decay, self.patience = optimizer, decay, patience
        self.best = math.inf
        self.bad_epochs = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, valid_ppl: float) -> None:
        if valid_ppl < self.best:
            self.best, self.bad_epochs = valid_ppl, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.decay < 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.decay
            self.bad_epochs = 0

    def new_round(self) -> None:
        """Judge the plateau afresh after a word reallocation: the valid ppl spike right after
        one (the paper's figure) is the new table settling in, not a plateau to decay on."""
        self.best, self.bad_epochs = math.inf, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float, deferred: Iterable[tuple] = ()) -> float:
    """`clip_grad_norm_` that also takes sparse gradients (their norm is over coalesced values)
    and deferred ones (`Optimizers.deferred_gradients()`: (parameter, RowGradient) pairs, whose
    norm has a closed form and whose scale the update applies).

    Returns the total norm before clipping; `max_norm <= 0` clips nothing.
    """
    with_grad = [p for p in parameters if p.grad is not None]
    factored = [gradient for _, gradient in deferred]
    if not (with_grad or factored) or max_norm <= 0:
        return 0.0
    if not factored and not any(p.grad.is_sparse for p in with_grad):
        return float(torch.nn.utils.clip_grad_norm_(with_grad, max_norm))  # the fused dense path
    for p in with_grad:
        if p.grad.is_sparse:
            p.grad = coalesced(p.grad)  # once here, so the optimizer finds it coalesced
    # torch.linalg.vector_norm: no squared copy of a gradient (tens of MB for the per-word tables at large V).
    norms = [torch.linalg.vector_norm(p.grad._values() if p.grad.is_sparse else p.grad, dtype=torch.float32)
             for p in with_grad]
    norms += [gradient.square_norm(param).sqrt() for param, gradient in deferred]
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if total.device.type == "cpu" and float(scale) == 1.0:
        return float(total)  # nothing to scale (on the CPU the check costs no device sync; a multiply by 1 tens of MB)
    for p in with_grad:
        # a sparse gradient's values in place: a sparse tensor times a 0-d tensor takes a slow general path
        (p.grad._values() if p.grad.is_sparse else p.grad).mul_(scale)
    for gradient in factored:
        gradient.scale *= float(scale)
    return float(total)
