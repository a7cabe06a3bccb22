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

import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightrnn.config import RUNTIME_KEYS, TrainConfig
from lightrnn.core.errors import DataError
from lightrnn.core.fileio import atomic_path
from lightrnn.core.loaders import Fields, check_metrics_row, parse_json, short
from lightrnn.data.encoded import vocab_sha256

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
    return {
        "vocab_sha256": vocab_sha256(data_dir), "vocab_words": int(vocab_size),
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
    require_resumable(checkpoint, path)
    try:
        model.load_state_dict(checkpoint["model"])
        getattr(model, "module", model).check_state()  # a DDP wrapper holds the model in .module
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:  # another model or a damaged state
        detail = short(" ".join(str(error).split()), 200)
        raise DataError(f"checkpoint {path} does not fit this run's model or optimizer ({detail}); {_CHECKPOINT_FIX}") from None
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
    """Load a checkpoint written by `save_checkpoint` (weights_only=True: no pickled code), checked.

    Every record's CRC is verified first (a flipped bit in a weight is refused, not evaluated),
    then the payload is checked by `check_payload`: what this returns is well-typed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    verify_records(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file
        text = str(error)
        if "Weights only load failed" in text:  # torch refused to unpickle code: say so, and what it would cost
            found = re.search(r"GLOBAL (\S+)", text)
            what = f" ({short(found.group(1), 80)})" if found else ""
            raise DataError(
                f"checkpoint {path} holds a pickled object{what} that only running code could load; refused "
                f"(weights_only): loading it with weights_only=False can run arbitrary code, so do that only for a "
                f"file from a source you trust; pass a checkpoint.pt or best.pt written by lightrnn train"
            ) from error
        first_line = text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__
        raise DataError(
            f"checkpoint {path} could not be read ({first_line}); pass a checkpoint.pt or best.pt written by lightrnn train"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise DataError(f"checkpoint {path} is not a lightrnn checkpoint (format {FORMAT})")
    return check_payload(payload, path)


# ----- checking a loaded checkpoint (the boundary: nothing below trusts the file) ----------------

_CHECKPOINT_FIX = "pass a checkpoint.pt or best.pt written by lightrnn train (or delete it and train again)"


def verify_records(path: Path) -> None:
    """DataError naming the record when a CRC of the checkpoint's zip does not match its bytes.

    torch.load does not check CRCs; reading every record once costs one pass over the file.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # torch.load says what it is not
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError) as error:
        raise DataError(f"checkpoint {path} is damaged ({short(str(error), 120)}); {_CHECKPOINT_FIX}") from None
    except OSError as error:
        if error.errno is not None:
            raise
        raise DataError(f"checkpoint {path} is damaged ({short(str(error), 120)}); {_CHECKPOINT_FIX}") from None
    if bad is not None:
        raise DataError(f"checkpoint {path}: record {short(bad)} is damaged (CRC mismatch); {_CHECKPOINT_FIX}")


def check_payload(payload: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Types, ranges and invariants of a checkpoint payload; DataError naming `path` and the key.

    Checked: the config (as `TrainConfig`), vocab_size, the model's tensors and, for a model with a
    word table (word_row/word_col), that the table is a bijection of the V words onto distinct
    slots of its R x C grid; the schedule position, the metrics rows (each a valid row), the RNG
    states of every rank, the data identity and the mid-epoch state.
    """
    fields = Fields(f"checkpoint {path}", _CHECKPOINT_FIX)
    values = without_start_files(fields.mapping(payload.get("config"), "config"))
    try:
        TrainConfig.from_dict(values, source=f"checkpoint {path}: config")
    except ValueError as error:
        message = str(error)
        raise DataError(message if str(path) in message else f"checkpoint {path}: config: {message}") from None
    vocab_size = fields.integer(payload, "vocab_size", 1, 2**40)
    if "dataset" in payload:
        fields.string(payload, "dataset", optional=True)
    model = fields.mapping(payload.get("model"), "model")
    for key, tensor in model.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise fields.error(f"model[{short(key)}]", "a tensor", type(tensor).__name__)
        if tensor.is_complex():  # load_state_dict would drop the imaginary part with a warning
            raise fields.error(f"model[{short(key)}]", "a real tensor", str(tensor.dtype))
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DataError(f"checkpoint {path}: model[{short(key)}] holds NaN or infinite values (a diverged "
                            f"run, or a damaged file); {_CHECKPOINT_FIX}")
    # LightRNN's word table (the class softmax has a `word_row` buffer of its own, and no `word_col`).
    if values.get("model") == "lightrnn" or "word_col" in model:
        _check_table(fields, model, vocab_size)
    if payload.get("vocab") is not None:
        _check_vocab(fields, payload["vocab"], vocab_size)
    for key in ("optimizer", "scheduler"):
        if key in payload:
            fields.mapping(payload[key], key)
    for key in ("next_event", "step"):
        if key in payload:
            fields.integer(payload, key, 0)
    if "wall_s" in payload:
        fields.number(payload, "wall_s", 0.0)
    if "best_valid" in payload:
        fields.number(payload, "best_valid", 0.0, allow_inf=True)
    world_size = fields.integer(payload, "world_size", 1, 1 << 16, optional=True) or 1
    rows = payload.get("metrics_rows", [])
    if not isinstance(rows, list):
        raise fields.error("metrics_rows", "a list of JSON lines", rows)
    for index, line in enumerate(rows):
        where = f"checkpoint {path}: metrics_rows[{index}]"
        if not isinstance(line, str):
            raise fields.error(f"metrics_rows[{index}]", "a JSON line", line)
        check_metrics_row(parse_json(line, where, _CHECKPOINT_FIX), where, _CHECKPOINT_FIX)
    if "rng" in payload:
        _check_rng(fields, payload["rng"], "rng")
    if world_size > 1:
        ranks = payload.get("rng_ranks")
        if not isinstance(ranks, list) or len(ranks) != world_size:
            raise fields.error("rng_ranks", f"a list of {world_size} RNG states", ranks)
        for rank, state in enumerate(ranks):
            _check_rng(fields, state, f"rng_ranks[{rank}]")
    if payload.get("data") is not None:
        data = fields.mapping(payload["data"], "data")
        fields.string(data, "vocab_sha256")
        fields.integer(data, "vocab_words", 1)
        fields.split_counts(data, "split_tokens", 0, optional=True)
    if payload.get("epoch") is not None:
        epoch = fields.mapping(payload["epoch"], "epoch")
        fields.integer(epoch, "batch", 0, optional=True, field="epoch.batch")
        fields.number(epoch, "seconds", 0.0, optional=True)
        carried = epoch.get("carried")
        if carried is not None:
            if not isinstance(carried, list) or len(carried) != world_size:
                raise fields.error("epoch.carried", f"a list of {world_size} per-rank state(s)", carried)
            for rank, entry in enumerate(carried):
                _check_carried(fields, entry, f"epoch.carried[{rank}]")
    return payload


def _check_carried(fields: Fields, entry: Any, key: str) -> None:
    """One rank's mid-epoch state as `train_epoch` continues it: {"state": None or the LSTM's (h, c)
    tensors, "nll": a finite number >= 0, "tokens": an integer >= 0}."""
    entry = fields.mapping(entry, key)
    fields.float_value(entry.get("nll"), f"{key}.nll", 0.0)
    fields.int_value(entry.get("tokens"), f"{key}.tokens", 0)
    state = entry.get("state")
    if state is not None and (not isinstance(state, (list, tuple)) or not state
                              or not all(isinstance(part, torch.Tensor) and part.is_floating_point()
                                         and bool(torch.isfinite(part).all()) for part in state)):
        raise fields.error(f"{key}.state", "null or the LSTM state: a list of finite float tensors",
                           type(state).__name__)


def without_start_files(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config as its model is rebuilt from: `initial_table` naming a .npy (a config key,
    or a model option) becomes "random". The table the run ended with is in the state_dict (the
    buffers word_row/word_col), so a model file never needs the file its run started from."""
    values = dict(config)
    if isinstance(values.get("initial_table"), str) and values["initial_table"] not in ("random", "frequency", "context"):
        values["initial_table"] = "random"
    options = values.get("model_options")
    if isinstance(options, dict) and "initial_table" in options:
        values["model_options"] = {**options, "initial_table": "random"}
    return values


def rebuild_model(payload: dict[str, Any], path: str | os.PathLike, counts: Any, device: Any,
                  config: TrainConfig | None = None) -> tuple[torch.nn.Module, TrainConfig]:
    """The model a checked checkpoint describes, with its weights, on `device`: (model in eval mode,
    config). The one place a model file becomes a model (score, generate, export, eval, restoring
    best.pt): its config without start files (`without_start_files`), `build_from_config`, the
    weights loaded, then the model's own check of its state (`LanguageModel.check_state`: buffers
    that index each other, such as the class softmax's layout). Every failure is a DataError naming `path`."""
    from lightrnn.registry import build_from_config

    config = config or model_config(payload, path)
    try:
        model = build_from_config(config, int(payload["vocab_size"]), counts).to(device)
    except ValueError as error:
        raise DataError(f"checkpoint {path}: its config does not build a model ({short(str(error), 200)}); "
                        f"{_CHECKPOINT_FIX}") from None
    try:
        model.load_state_dict(payload["model"])
        model.check_state()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        detail = short(" ".join(str(error).split()), 300)
        raise DataError(f"checkpoint {path} does not fit the model its config describes ({detail}); "
                        f"{_CHECKPOINT_FIX}") from None
    return model.eval(), config


def model_config(payload: dict[str, Any], path: str | os.PathLike) -> TrainConfig:
    """The `TrainConfig` of a checked checkpoint, start files dropped (`without_start_files`)."""
    return TrainConfig.from_dict(without_start_files(payload["config"]), source=f"checkpoint {path}")


RESUME_KEYS = ("model", "optimizer", "scheduler", "rng", "next_event", "step", "wall_s", "best_valid", "metrics_rows")


def require_resumable(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """DataError naming the first key a resume needs that the (checked) payload lacks."""
    missing = [key for key in RESUME_KEYS if checkpoint.get(key) is None]
    if missing:
        raise DataError(f"checkpoint {path}: {', '.join(missing)}: missing, so the run cannot resume from it; "
                        f"{_CHECKPOINT_FIX}")


def _check_vocab(fields: Fields, vocab: Any, vocab_size: int) -> None:
    """The vocabulary inside a model file (`vocab_payload`): V distinct words, V counts >= 0, and
    unk/eos tokens that are among the words (or None)."""
    vocab = fields.mapping(vocab, "vocab")
    words = vocab.get("words")
    if not isinstance(words, str) or len(listed := words.split("\n")) != vocab_size or len(set(listed)) != vocab_size:
        raise fields.error("vocab.words", f"{vocab_size} distinct words, one per line", words)
    counts = vocab.get("counts")
    if (not isinstance(counts, torch.Tensor) or counts.dim() != 1 or counts.numel() != vocab_size
            or counts.is_floating_point() or counts.is_complex() or bool((counts < 0).any())):
        raise fields.error("vocab.counts", f"an integer tensor of {vocab_size} counts >= 0", counts)
    for key in ("unk_token", "eos_token"):
        token = vocab.get(key)
        if token is not None and (not isinstance(token, str) or token not in set(listed)):
            raise fields.error(f"vocab.{key}", "one of the vocabulary's words, or null", token)


def _check_table(fields: Fields, model: dict[str, Any], vocab_size: int) -> None:
    """The word table in a state_dict: a bijection of the V words onto distinct slots, ids < V."""
    from lightrnn.method.word_table import WordTable

    rows, cols = model.get("word_row"), model.get("word_col")
    for name, tensor in (("word_row", rows), ("word_col", cols)):
        if (not isinstance(tensor, torch.Tensor) or tensor.dim() != 1 or tensor.is_floating_point()
                or tensor.is_complex() or tensor.numel() != vocab_size):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise fields.error(f"model.{name}", f"an integer tensor of the {vocab_size} words' slots", shape)
    grid = []
    for name in ("row_embedding.weight", "col_embedding.weight"):
        weight = model.get(name)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise fields.error(f"model.{name}", "a 2-D tensor", type(weight).__name__)
        grid.append(int(weight.shape[0]))
    try:
        WordTable(rows.numpy(), cols.numpy(), grid[0], grid[1])
    except ValueError as error:
        raise DataError(f"{fields.where}: the word table (model.word_row/word_col) is not a bijection of "
                        f"{vocab_size} words onto slots: {short(str(error), 200)}; {fields.fix}") from None


def _check_rng(fields: Fields, state: Any, key: str) -> None:
    """An RNG state as `rng_state` writes it (what `set_rng_state` restores without a surprise)."""
    state = fields.mapping(state, key)
    python = state.get("python")
    if (not isinstance(python, (list, tuple)) or len(python) != 3 or python[0] != 3
            or not isinstance(python[1], (list, tuple)) or len(python[1]) != 625
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in python[1])
            or not (python[2] is None or isinstance(python[2], float))):
        raise fields.error(f"{key}.python", "Python's random.getstate() (version 3, 625 words)", python)
    numpy = state.get("numpy")
    if (not isinstance(numpy, (list, tuple)) or len(numpy) != 5 or numpy[0] != "MT19937"
            or not isinstance(numpy[1], torch.Tensor) or numpy[1].shape != (624,)
            or not isinstance(numpy[2], int) or not 0 <= numpy[2] <= 624
            or not isinstance(numpy[3], int) or not isinstance(numpy[4], float)):
        raise fields.error(f"{key}.numpy", "numpy's MT19937 state (624 words)", numpy)
    generator = state.get("torch")
    if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8 or generator.dim() != 1:
        raise fields.error(f"{key}.torch", "torch's generator state (a uint8 tensor)", type(generator).__name__)
    cuda = state.get("cuda")
    if cuda is not None and not isinstance(cuda, (torch.Tensor, list, tuple)):
        raise fields.error(f"{key}.cuda", "a CUDA generator state", type(cuda).__name__)


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
        from lightrnn.core.fileio import read_json_object

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
