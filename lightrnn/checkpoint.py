"""Checkpoints: plain state (tensors, numbers, strings, lists, dicts) loadable with weights_only=True.

The one place a training checkpoint is assembled, written, read and checked. Contents: format,
config (dict), dataset, vocab_size, model state_dict (LightRNN's table is in it as the buffers
word_row/word_col), optimizer and scheduler state, RNG states of python, numpy and torch (CPU
and the current CUDA device) of every rank, the position in the round schedule (`Progress`: next event, step,
accumulated wall time, best valid ppl, the metrics rows written so far as JSON lines) and the
number of processes of the run.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn.config import TrainConfig
from lightrnn.fileio import atomic_path

FORMAT = 1


@dataclass
class Progress:
    """Where a run stands: the next event of its schedule and what it has written so far."""

    next_event: int = 0
    step: int = 0
    wall_s: float = 0.0
    best_valid: float = math.inf
    rows: list[str] = field(default_factory=list)


def save_training(
    path: str | os.PathLike, config: TrainConfig, dataset: str, vocab_size: int, model: torch.nn.Module,
    optimizer: Any, scheduler: Any, progress: Progress, rng_ranks: list[dict[str, Any]],
) -> Path:
    """Write a resumable checkpoint of a training run (`rng_ranks`: every rank's `rng_state()`)."""
    payload = {
        "config": config.to_dict(), "dataset": dataset, "vocab_size": vocab_size,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng_ranks[0], "next_event": progress.next_event, "step": progress.step,
        "wall_s": progress.wall_s, "best_valid": progress.best_valid,
        "metrics_rows": list(progress.rows), "world_size": len(rng_ranks),
    }
    if len(rng_ranks) > 1:
        payload["rng_ranks"] = rng_ranks
    return save_checkpoint(path, payload)


def resume_training(
    path: str | os.PathLike, config: TrainConfig, model: torch.nn.Module, optimizer: Any, scheduler: Any,
    rank: int = 0, world_size: int = 1,
) -> Progress:
    """Restore model, optimizer, scheduler and this rank's RNG from `path`; return where the run stands.

    Refuses a checkpoint of another config or another number of processes, naming both.
    """
    path = Path(path)
    # On CPU: load_state_dict moves each tensor where its parameter lives; RNG keys and Adam's step
    # counters must stay on the host (a CUDA numpy key cannot be converted, a CUDA step syncs).
    checkpoint = load_checkpoint(path, map_location="cpu")
    saved = TrainConfig.from_dict(checkpoint["config"], source=str(path))
    if saved.config_hash != config.config_hash:
        raise ValueError(
            f"{path} belongs to a run with another config (hash {saved.config_hash[:12]} vs "
            f"{config.config_hash[:12]}); use a new --out dir or delete the old one"
        )
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != world_size:
        raise ValueError(
            f"{path} was written by a run on {saved_world} process(es), this one has {world_size}; the "
            f"shards and the global batch depend on it: resume with torchrun --nproc_per_node {saved_world} "
            "(1: plain lightrnn train) or use a new --out dir"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng_ranks"][rank] if world_size > 1 else checkpoint["rng"])
    return Progress(
        next_event=int(checkpoint["next_event"]), step=int(checkpoint["step"]), wall_s=float(checkpoint["wall_s"]),
        best_valid=float(checkpoint["best_valid"]), rows=list(checkpoint["metrics_rows"]),
    )


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """torch.save to a temp file in the same folder, then rename: never a half-written checkpoint."""
    with atomic_path(path) as temp:
        torch.save({"format": FORMAT, **payload}, temp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (weights_only=True: no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"checkpoint {path} could not be read ({first_line}); pass a checkpoint.pt or best.pt written by lightrnn train"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise ValueError(f"checkpoint {path} is not a lightrnn checkpoint (format {FORMAT})")
    return payload


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as weights_only-safe values."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # The current device's generator only (the one this rank draws from): saving every visible
        # GPU's would make a resume with fewer visible GPUs fail.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if isinstance(saved, (list, tuple)):  # an older checkpoint held every visible GPU's state
            index = torch.cuda.current_device()
            saved = saved[index] if index < len(saved) else None
        if saved is not None:
            torch.cuda.set_rng_state(saved.cpu())
