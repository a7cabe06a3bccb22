"""Data-parallel plumbing: the process group from torchrun's environment, rank helpers, collectives.

`torchrun --nproc_per_node N -m lightrnn train ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT; `setup` reads them and joins the group: NCCL for CUDA tensors on GPU (with gloo
beside it for CPU tensors, so the reallocation's numpy matrices and pickled objects still
travel), gloo alone on CPU. Every helper is the identity in a plain single process (rank 0 of
a world of 1, no process group), so library code calls them unconditionally and never asks
whether it runs distributed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
# Rank 0 solves the reallocation (minutes at V = 793k) while the other ranks wait in a
# broadcast; the default collective timeout (10 min for NCCL) would kill them first. That wait
# runs on its own gloo group with this long timeout (LIGHTRNN_DIST_TIMEOUT_S) ...
DEFAULT_TIMEOUT_S = 4 * 3600
# ... while every other collective (DDP's gradient all-reduce, the finite-loss flag, evaluation
# sums) keeps a short one (LIGHTRNN_COLLECTIVE_TIMEOUT_S), so a rank that died or hung is
# reported in minutes, not hours. It covers rank 0 writing a checkpoint while the others wait.
COLLECTIVE_TIMEOUT_S = 30 * 60
_wait_group: Any = None  # the long-timeout gloo group of `run_on_main`, made by `setup`
# numpy arrays are reduced in slices of this many elements (512 MiB of float64) so the
# transport never needs a second copy of a [V, R] loss matrix.
_CHUNK_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank, world_size, local_rank, its device, and whether `setup`
    created the process group (then `teardown` destroys it)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be an integer (torchrun sets it)") from None


RENDEZVOUS_TIMEOUT_S = 300.0  # config key rendezvous_timeout_s: how long the processes wait for each other


def _rendezvous_store(rank: int, world: int, timeout_s: float) -> Any:
    """The store every process of the group meets at, within `timeout_s`; one line naming who is missing.

    torch's env:// rendezvous waits for the default 30 minutes in silence for a process that was
    never started (WORLD_SIZE=2 with one process, a RANK outside the world). Here each process says
    at once what it waits for, and the wait is bounded. Under torchrun the agent hosts the store.
    """
    import sys

    if not 0 <= rank < world:
        raise ValueError(f"environment variable RANK={rank} is outside the world of WORLD_SIZE={world} processes "
                         f"(ranks 0 to {world - 1}); start the run with torchrun --nproc_per_node {world}")
    host = os.environ.get("MASTER_ADDR", "")
    port = _env_int("MASTER_PORT", -1)
    if not host or not 0 < port < 65536:
        raise ValueError(f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set to a host and port; start "
                         f"the run with torchrun --nproc_per_node {world}, which sets them")
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    print(f"lightrnn: rank {rank} of {world}: waiting up to {timeout_s:g} s for the {world} processes to meet at "
          f"{host}:{port} (config key rendezvous_timeout_s)", file=sys.stderr, flush=True)
    try:
        return dist.TCPStore(host, port, world, is_master=rank == 0 and not agent,
                             timeout=timedelta(seconds=timeout_s), wait_for_workers=True)
    except (RuntimeError, OSError) as error:  # DistStoreError is a RuntimeError
        detail = " ".join(str(error).split())[:200]
        raise RuntimeError(
            f"rank {rank} of {world}: the {world} processes did not all meet at {host}:{port} within {timeout_s:g} s "
            f"({detail}); start every rank (torchrun --nproc_per_node {world}) or raise the config key "
            f"rendezvous_timeout_s"
        ) from None


def setup(device: torch.device, rendezvous_timeout_s: float = RENDEZVOUS_TIMEOUT_S) -> Context:
    """Join the process group torchrun describes (or the one already initialised), pick this rank's device.

    `device` is the resolved config device: under several processes a CUDA device becomes
    cuda:LOCAL_RANK (an explicit index is refused: each process takes its own GPU); a CPU run
    stays on CPU with gloo. One process without WORLD_SIZE > 1 gets Context(0, 1, 0, device, False).
    The processes meet within `rendezvous_timeout_s` (`_rendezvous_store`), each saying what it waits for.
    """
    if dist.is_available() and dist.is_initialized():  # set up by the caller (a test, a notebook)
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        owns = False
    else:
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return Context(0, 1, 0, device, False)
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; install a full torch")
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        if not 0 <= rank < world or local_rank < 0:
            raise ValueError(f"environment variables RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE="
                             f"{world} (ranks 0 to {world - 1}); start the run with torchrun --nproc_per_node {world}")
        owns = True
    if world > 1 and device.type == "cuda":
        if device.index is not None:
            raise ValueError(
                f"config key device: {device} names one GPU but {world} processes were started; use device=cuda "
                "or auto (each process takes GPU LOCAL_RANK)"
            )
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; start at most "
                f"{torch.cuda.device_count()} processes per node (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    global _wait_group
    if owns:
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=_env_int("LIGHTRNN_COLLECTIVE_TIMEOUT_S", COLLECTIVE_TIMEOUT_S))
        store = _rendezvous_store(rank, world, rendezvous_timeout_s)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        wait_timeout = timedelta(seconds=_env_int("LIGHTRNN_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        _wait_group = dist.new_group(backend="gloo", timeout=wait_timeout)  # every rank must create it
    return Context(rank, world, local_rank, device, owns)


def teardown(context: Context) -> None:
    """Destroy the process group if `setup` created it."""
    global _wait_group
    if context.owns_group and dist.is_initialized():
        _wait_group = None
        dist.destroy_process_group()


def ranks_where(flag: bool) -> list[int]:
    """The ranks on which `flag` is true, known to every rank (one tiny all-reduce when distributed).

    Used for the finite-loss check: all ranks agree before any raises, none is left waiting.
    """
    if not is_distributed():
        return [0] if flag else []
    flags = torch.zeros(world_size(), dtype=torch.float32, device=_collective_device())
    flags[rank()] = float(flag)
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return [index for index, value in enumerate(flags.tolist()) if value > 0]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes logs, metrics, tables and checkpoints."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def sum_scalars(*values: float) -> tuple[float, ...]:
    """Each value summed over all ranks, in float64 (one collective for all of them)."""
    if not is_distributed():
        return tuple(float(v) for v in values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tuple(float(v) for v in tensor.cpu())


def mean_over_ranks(value: float) -> float:
    """The mean of a per-rank value (exact for a per-token mean when the ranks saw equal token counts)."""
    return sum_scalars(value)[0] / world_size()


def sum_array_to_main(array: np.ndarray) -> np.ndarray:
    """Sum a numpy array over all ranks into rank 0's copy ([any shape], float dtype); returns it.

    In place, in slices of 2^26 elements; only rank 0's result is meaningful afterwards (the
    others hold partial sums). Travels over gloo on CPU (NCCL runs use the gloo side of the group).
    """
    if not is_distributed():
        return array
    if not array.flags.c_contiguous or not array.flags.writeable:
        array = np.ascontiguousarray(array).copy()
    flat = torch.from_numpy(array.reshape(-1))  # shares memory with `array`
    device = _collective_device()
    for start in range(0, flat.numel(), _CHUNK_ELEMENTS):
        piece = flat[start : start + _CHUNK_ELEMENTS]
        moved = piece if device.type == "cpu" else piece.to(device)
        dist.reduce(moved, dst=0, op=dist.ReduceOp.SUM)
        if moved is not piece and is_main():
            piece.copy_(moved.cpu())
    return array


def run_on_main(function: Callable[[], T]) -> T:
    """Run `function` on rank 0 only and give every rank its result (pickled broadcast).

    An exception on rank 0 is re-raised there and reported on the other ranks as a
    RuntimeError naming it, instead of leaving them waiting until the collective timeout.
    """
    if not is_distributed():
        return function()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            payload[0] = ("ok", function())
        except BaseException as caught:  # noqa: BLE001 (re-raised below after telling the others)
            error = caught
            payload[0] = ("error", f"{type(caught).__name__}: {caught}")
    # The others wait here while rank 0 solves: the long-timeout gloo group when `setup` made one.
    if _wait_group is not None:
        dist.broadcast_object_list(payload, src=0, group=_wait_group, device=torch.device("cpu"))
    else:
        dist.broadcast_object_list(payload, src=0, device=_collective_device())
    if error is not None:
        raise error
    status, value = payload[0]
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def check_replicas_equal(module: nn.Module, where: str) -> None:
    """Raise if any parameter or buffer differs between ranks (DDP assumes identical replicas).

    Compares a sha256 of every state_dict tensor's bytes: exact, and only digests travel.
    """
    if not is_distributed():
        return
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digests = all_gather_objects(digest.hexdigest())
    if len(set(digests)) != 1:
        differing = [index for index, value in enumerate(digests) if value != digests[0]]
        raise RuntimeError(f"{where}: the model differs between rank 0 and rank(s) {differing}; the replicas diverged")


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel, or itself in a single process.

    find_unused_parameters=True because a model may leave some parameters out of a step
    (an adaptive softmax's tail cluster with no target in the batch); it costs one walk of
    the autograd graph per step, no communication. Buffers are not broadcast every forward:
    they only change between rounds (the word table), where `check_replicas_equal` verifies them.
    """
    if not is_distributed():
        return model
    refuse_sparse_gradients(model, device)
    options: dict[str, Any] = {"find_unused_parameters": True}
    accepted = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    options["forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"] = False
    if device.type == "cuda":
        options["device_ids"] = [device.index]
    return nn.parallel.DistributedDataParallel(model, **options)


def refuse_sparse_gradients(model: nn.Module, device: torch.device) -> None:
    """A clear error for sparse embedding gradients on CUDA: NCCL cannot all-reduce sparse tensors,
    so DDP would die at the first backward (gloo, on CPU, all-reduces them)."""
    if device.type != "cuda":
        return
    sparse = [name for name, module in model.named_modules() if isinstance(module, nn.Embedding) and module.sparse]
    if sparse:
        raise ValueError(
            f"config key model_options.sparse_embedding: sparse embedding gradients ({', '.join(sparse)}) cannot "
            "be all-reduced by NCCL in a multi-GPU run; set sparse_embedding=false (or train on one GPU)"
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def gradient_bytes(model: nn.Module) -> int:
    """Bytes of the gradients DDP all-reduces every step: every parameter that requires grad, dense.

    DDP's buckets hold exactly these gradients (one all-reduce per bucket per step, unused
    parameters included as zeros), so this equals the sum of its bucket sizes (tested). The
    ring all-reduce moves 2 (W - 1) / W times this per rank over the wire.
    """
    return int(sum(p.numel() * p.element_size() for p in unwrap(model).parameters() if p.requires_grad))


def launch_command(nproc_per_node: int, lightrnn_args: list[str]) -> list[str]:
    """The command that runs `lightrnn <args>` on `nproc_per_node` local processes.

    0 or 1: `python -m lightrnn ARGS`; more: `python -m torch.distributed.run --standalone
    --nproc_per_node N -m lightrnn ARGS` (torchrun; --standalone picks a free local rendezvous,
    so several jobs on one node do not collide).
    """
    if nproc_per_node < 0:
        raise ValueError(f"nproc_per_node must be >= 0 (the number of GPUs), got {nproc_per_node}")
    if nproc_per_node <= 1:
        return [sys.executable, "-m", "lightrnn", *lightrnn_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "lightrnn", *lightrnn_args]


def _collective_device() -> torch.device:
    """Where small collective tensors live: CPU under gloo (or the gloo side of a mixed group),
    the current GPU under NCCL alone."""
    backend = str(dist.get_backend())
    if "gloo" in backend:
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())
