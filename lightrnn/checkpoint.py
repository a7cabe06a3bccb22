"""Checkpoints: plain state (tensors, numbers, strings, lists, dicts) loadable with weights_only=True.

The one place a training checkpoint is assembled, written, read and checked. Contents: format,
config (dict), dataset, vocab_size, model state_dict (LightRNN's table is in it as the buffers
word_row/word_col), optimizer and scheduler state, RNG states of python, numpy and torch (CPU
and the current CUDA device) of every rank, the position in the round schedule (`Progress`: next event, step,
accumulated wall time, best valid ppl, the metrics rows written so far as JSON lines; inside an
epoch also the batches done, the epoch's running NLL and token count and every rank's carried LSTM
state), the number of processes of the run, and the identity of the data it trains on (`data`:
vocab.tsv's sha256, the vocabulary size and each split's token count), so that resuming on
re-encoded data is refused instead of mixing two datasets in one metrics file.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn.config import RUNTIME_KEYS, TrainConfig
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
    # Inside an epoch (a mid-epoch checkpoint; next_event is then the epoch's own event): batches
    # of the epoch already trained (0 = the epoch starts afresh), its training seconds so far, and
    # per rank what the rest of the epoch continues from: {"state": the LSTM state carried into
    # the next batch (CPU tensors), "nll": the epoch's summed NLL so far, "tokens": its tokens}.
    epoch_batch: int = 0
    epoch_seconds: float = 0.0
    carried: list[dict[str, Any]] | None = None


class RunMismatch(ValueError):
    """The checkpoint in OUT belongs to another config or other data (the message names both)."""

    def __init__(self, message: str, old_hash: str) -> None:
        super().__init__(message)
        self.old_hash = old_hash  # the config hash of the run found in OUT


def data_identity(data_dir: str | os.PathLike, vocab_size: int, split_tokens: dict[str, int]) -> dict[str, Any]:
    """What a run trains on: vocab.tsv's sha256, its size in words, and each split's token count."""
    digest = hashlib.sha256()
    with open(Path(data_dir) / "vocab.tsv", "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "vocab_sha256": digest.hexdigest(), "vocab_words": int(vocab_size),
        "split_tokens": {split: int(count) for split, count in sorted(split_tokens.items())},
    }


def _describe(identity: dict[str, Any]) -> str:
    sizes = ", ".join(f"{split} {count:,}" for split, count in identity["split_tokens"].items())
    return f"vocab sha256 {identity['vocab_sha256'][:12]} ({identity['vocab_words']:,} words), tokens {sizes}"


def save_training(
    path: str | os.PathLike, config: TrainConfig, dataset: str, vocab_size: int, model: torch.nn.Module,
    optimizer: Any, scheduler: Any, progress: Progress, rng_ranks: list[dict[str, Any]],
    data: dict[str, Any] | None = None, vocab: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint of a training run (`rng_ranks`: every rank's `rng_state()`,
    `data`: `data_identity` of the encoded data dir, `vocab`: `vocab_payload`, which makes the
    file usable on its own by `lightrnn score` / `generate`)."""
    payload = {
        "config": config.to_dict(), "dataset": dataset, "vocab_size": vocab_size,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng_ranks[0], "next_event": progress.next_event, "step": progress.step,
        "wall_s": progress.wall_s, "best_valid": progress.best_valid,
        "metrics_rows": list(progress.rows), "world_size": len(rng_ranks),
    }
    if data is not None:
        payload["data"] = data
    if vocab is not None:
        payload["vocab"] = vocab
    if progress.epoch_batch:
        payload["epoch"] = {"batch": progress.epoch_batch, "seconds": progress.epoch_seconds, "carried": progress.carried}
    if len(rng_ranks) > 1:
        payload["rng_ranks"] = rng_ranks
    return save_checkpoint(path, payload)


def resume_training(
    path: str | os.PathLike, config: TrainConfig, model: torch.nn.Module, optimizer: Any, scheduler: Any,
    rank: int = 0, world_size: int = 1, data: dict[str, Any] | None = None,
) -> Progress:
    """Restore model, optimizer, scheduler and this rank's RNG from `path`; return where the run stands.

    Refuses (RunMismatch) a checkpoint of another config or of other data (`data`: this run's
    `data_identity`), and (ValueError) one of another number of processes, naming both sides.
    """
    path = Path(path)
    # On CPU: load_state_dict moves each tensor where its parameter lives; RNG keys and Adam's step
    # counters must stay on the host (a CUDA numpy key cannot be converted, a CUDA step syncs).
    checkpoint = load_checkpoint(path, map_location="cpu")
    check_same_run(path, checkpoint, config, data)
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
    epoch = checkpoint.get("epoch") or {}
    return Progress(
        next_event=int(checkpoint["next_event"]), step=int(checkpoint["step"]), wall_s=float(checkpoint["wall_s"]),
        best_valid=float(checkpoint["best_valid"]), rows=list(checkpoint["metrics_rows"]),
        epoch_batch=int(epoch.get("batch", 0)), epoch_seconds=float(epoch.get("seconds", 0.0)),
        carried=epoch.get("carried"),
    )


def check_same_run(
    path: Path, checkpoint: dict[str, Any], config: TrainConfig, data: dict[str, Any] | None
) -> None:
    """RunMismatch when the checkpoint was written for another config or other data."""
    saved = TrainConfig.from_dict(checkpoint["config"], source=str(path))
    if saved.config_hash != config.config_hash:
        changed = sorted(
            key for key, value in config.to_dict().items()
            if key not in RUNTIME_KEYS and saved.to_dict().get(key) != value
        )
        raise RunMismatch(
            f"{path} belongs to a run with another config (hash {saved.config_hash[:12]} vs "
            f"{config.config_hash[:12]}; changed: {', '.join(changed) or 'none'}); use a new --out dir, "
            "delete the old one, or pass --on-config-change move-aside to keep it beside OUT and start afresh",
            saved.config_hash,
        )
    saved_data = checkpoint.get("data")
    if data is None:
        return
    if saved_data is None:  # a checkpoint from before data identities: the vocabulary size at least
        if int(checkpoint.get("vocab_size", -1)) != data["vocab_words"]:
            raise RunMismatch(
                f"{path} was trained with a vocabulary of {checkpoint.get('vocab_size')} words, the data has "
                f"{data['vocab_words']}; use a new --out dir or pass --on-config-change move-aside",
                saved.config_hash,
            )
        return
    if saved_data != data:
        raise RunMismatch(
            f"{path} was trained on other data ({_describe(saved_data)}) than this run's ({_describe(data)}): "
            "the dataset was re-encoded; use a new --out dir or pass --on-config-change move-aside to keep "
            "the old run beside OUT and start afresh",
            saved.config_hash,
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


# ----- self-contained model files (the vocabulary travels with the weights) ---------------------


def vocab_payload(
    words: list[str], counts: Any, unk_token: str | None, eos_token: str | None
) -> dict[str, Any]:
    """The vocabulary as weights_only-safe values, for `save_training(vocab=...)` and `save_model`.

    The words are one newline-joined string (one pickled object instead of V: an 800k-word
    vocabulary loads in milliseconds); a word never holds whitespace (the corpus is split on it).
    `unk_token` / `eos_token`: the entries unknown words map to and that end a sentence (None
    when the vocabulary has none, e.g. the Markov corpus has no unk).
    """
    if any("\n" in word for word in words):
        raise ValueError("vocab_payload: a word holds a newline; vocab.tsv entries are single lines")
    for name, token in (("unk", unk_token), ("eos", eos_token)):
        if token is not None and token not in words:
            raise ValueError(f"vocab_payload: the {name} token {token!r} is not in the vocabulary")
    return {
        "words": "\n".join(words), "counts": torch.as_tensor(np.asarray(counts, dtype=np.int64)),
        "unk_token": unk_token, "eos_token": eos_token,
    }


def data_vocab_payload(data_dir: str | os.PathLike, words: list[str], counts: Any) -> dict[str, Any]:
    """`vocab_payload` of an encoded data dir: its words and counts, its unk/eos from meta.json."""
    meta_path = Path(data_dir) / "meta.json"
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        from lightrnn.fileio import read_json_object

        meta = read_json_object(meta_path, "run `lightrnn data encode` again into this folder")
    unk, eos = meta.get("unk_token"), meta.get("eos_token")
    return vocab_payload(
        words, counts, unk if isinstance(unk, str) and unk in words else None,
        eos if isinstance(eos, str) and eos in words else None,
    )


def vocab_from_payload(vocab: dict[str, Any]) -> tuple[list[str], np.ndarray, str | None, str | None]:
    """(words in id order, counts [V] int64, unk token, eos token) from a `vocab_payload`."""
    words = str(vocab["words"]).split("\n")
    counts = np.asarray(vocab["counts"].cpu().numpy() if isinstance(vocab["counts"], torch.Tensor)
                        else vocab["counts"], dtype=np.int64)
    return words, counts, vocab.get("unk_token"), vocab.get("eos_token")


def save_model(path: str | os.PathLike, payload: dict[str, Any], vocab: dict[str, Any]) -> Path:
    """A self-contained model file from a training checkpoint's `payload`: config, dataset,
    vocabulary size, weights (LightRNN's word table is in them) and `vocab` (`vocab_payload`).

    Optimizer, scheduler and RNG states are left out: the file is for using the model, not for
    resuming its run (about a third of checkpoint.pt's size with Adam).
    """
    kept = {key: payload[key] for key in ("config", "dataset", "vocab_size", "model") if key in payload}
    if "data" in payload:
        kept["data"] = payload["data"]
    return save_checkpoint(path, {**kept, "vocab": vocab, "kind": "model"})
