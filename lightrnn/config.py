"""Training configuration: a small YAML file (plus `key=value` overrides) validated into a frozen dataclass.

Defaults follow the official CNTK code (docs/PAPER.md: embed 512, hidden 512, 2 layers, dropout 0.2,
Adam, sequence length 32, batch 20) except where its setting does not carry over to PyTorch:
`lr` (the official 0.15 is CNTK's per-minibatch Adam with a momentum time constant; 1e-3 is
PyTorch Adam's usual rate) and `clip` (the official code does not clip; 5.0 guards the loss
spikes right after a reallocation). `lr_decay` = 1.0 (no decay, as the official code).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightrnn.core.errors import DataError
from lightrnn.core.fileio import write_text
from lightrnn.core.loaders import input_file, parse_yaml, short

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "sgd"),
    "realloc_method": ("auto", "exact", "greedy", "sparse", "refine", "auction"),
}
# Keys that change how a run reports and checkpoints, not what it computes.
RUNTIME_KEYS: tuple[str, ...] = ("log_every_s", "checkpoint_every_s", "realloc_save_losses", "tensorboard",
                                  "rendezvous_timeout_s")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MAX_CONFIG_BYTES = 1 << 20
# Upper bounds of the integer keys, checked when the config is read, before anything is built.
# Memory (vocabulary x dims, layers, batch sizes) is checked against the device by
# `lightrnn.training.preflight` on the meta device; these bounds keep what that check builds small in time:
# an nn.LSTM of 10**9 layers takes hours to build even on the meta device, and a seed must fit
# numpy's 32-bit seeding.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "embed_dim": (1, 2**31 - 1), "hidden_dim": (1, 2**31 - 1), "num_layers": (1, 1024),
    "batch_size": (1, 2**31 - 1), "bptt": (1, 2**31 - 1), "eval_batch_size": (1, 2**31 - 1),
    "lr_patience": (0, 2**31 - 1), "patience": (0, 2**31 - 1), "max_steps_per_epoch": (0, 2**62), "seed": (0, 2**32 - 1),
}
MAX_ROUNDS, MAX_EPOCHS_PER_ROUND = 1000, 100_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; its `config_hash` identifies the run."""

    model: str = "lightrnn"
    embed_dim: int = 512
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    batch_size: int = 20
    bptt: int = 32
    rounds: tuple[int, ...] = (10, 10, 10)  # epochs per round; reallocation between rounds
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0  # multiply lr by this when valid ppl has not improved for lr_patience+1 epochs
    lr_patience: int = 0
    clip: float = 5.0  # max global gradient norm; 0 = no clipping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = False  # bf16 autocast (CUDA only)
    realloc_method: str = "auto"
    realloc_fraction: float = 1.0  # share of the training batches the reallocation reads
    # Seconds for refine's local search (0 = until it converges): bounds a reallocation's wall
    # time at One Billion Word scale on a slow or shared machine.
    realloc_time_limit: float = 0.0
    # Nats per occurrence a word gains by keeping its row, and again its column, at a reallocation:
    # it moves only when the matching finds it more than that better off elsewhere (0: the paper's
    # reallocation). A moved word reads another row and column vector, which the objective ignores.
    realloc_keep_bonus: float = 0.0
    realloc_save_losses: bool = False  # also write each reallocation's losses to OUT/losses-<round>.npz
    # random | frequency | context (words with similar previous words share a row: lightrnn.method.initial_table)
    # | path to a .npy (models with a table)
    initial_table: str = "random"
    eval_batch_size: int = 10
    # Early stopping: stop once valid ppl has not improved for `patience` epochs (0 = train every
    # epoch of `rounds`, whose sum is then the maximum). lightrnn.core.metrics.early_stop reads it.
    patience: int = 0
    test_every_epoch: bool = False
    # false: training never reads the test split (no test ppl in any row); the test split is read
    # once, by `lightrnn eval` on best.pt (the study: the checkpoint is chosen on valid alone).
    test_during_training: bool = True
    max_steps_per_epoch: int = 0  # 0 = the whole training split every epoch
    model_options: dict[str, Any] = field(default_factory=dict)
    # Reporting only (not in config_hash: changing them never invalidates a run): a progress line
    # on stderr every log_every_s seconds when stderr is not a terminal, and a mid-epoch
    # checkpoint every checkpoint_every_s seconds (0 = off), so a kill loses minutes, not an epoch.
    log_every_s: float = 600.0
    checkpoint_every_s: float = 1800.0
    tensorboard: bool = False  # live curves in OUT/tensorboard/ (lightrnn.training.curves; needs the tensorboard extra)
    # Several processes (torchrun): how long they wait for each other at the start (announced, then refused).
    rendezvous_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        self._validate()

    # ----- construction ---------------------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping; values are coerced to each field's type. Unknown keys are errors."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
        unknown = sorted(str(key)[:80] for key in set(values) - set(cls.keys()))
        if unknown:
            listed = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(
                f"{source}: unknown config key(s) {listed}; allowed keys: {', '.join(cls.keys())}"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        coerced = {key: _coerce(key, fields[key].type, value, source) for key, value in values.items()}
        return cls(**coerced)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, overrides: list[str] | None = None) -> "TrainConfig":
        """Read a YAML mapping (None: defaults only) and apply `key=value` overrides (YAML values)."""
        values: dict[str, Any] = {}
        source = "config"
        if path is not None:
            source = str(path)
            input_file(path, "config file", "pass a YAML file of config keys")
            size = Path(path).stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise DataError(f"config file {path}: {size} bytes, more than a config of {len(cls.keys())} keys "
                                f"needs ({MAX_CONFIG_BYTES}); pass a YAML file of config keys")
            try:
                loaded = parse_yaml(Path(path).read_bytes().decode("utf-8"), f"config file {path}")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"config file {path} is not UTF-8 text (byte {error.start}); pass a YAML file of config keys"
                ) from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ValueError(f"config file {path}: expected a mapping of config keys, got {type(loaded).__name__}")
            values.update(loaded)
        for override in overrides or []:
            key, separator, text = override.partition("=")
            key = key.strip()
            if not separator or not key:
                raise ValueError(f"--set {short(override)}: expected key=value, e.g. --set lr=0.001")
            if key not in cls.keys():
                raise ValueError(f"--set {short(override)}: unknown config key {short(key)}; "
                                 f"allowed keys: {', '.join(cls.keys())}")
            values[key] = parse_yaml(text, f"--set {short(override)}") if text.strip() else ""
            if not source.endswith("--set"):
                source = "--set" if path is None else f"{path} + --set"
        return cls.from_dict(values, source=source)

    # ----- output ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values (tuples become lists)."""
        values = dataclasses.asdict(self)
        values["rounds"] = list(self.rounds)
        values["model_options"] = dict(self.model_options)
        return values

    @property
    def config_hash(self) -> str:
        """sha256 of the resolved config's canonical JSON (sorted keys, no spaces)."""
        values = {key: value for key, value in self.to_dict().items() if key not in RUNTIME_KEYS}
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the resolved config atomically."""
        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # ----- validation -----------------------------------------------------------------------

    def _validate(self) -> None:
        from lightrnn.registry import check_options, names

        if self.model not in names():
            raise ValueError(f"config key model: unknown model {short(self.model)}; allowed values: {', '.join(names())}")
        try:
            check_options(self.model, self.model_options)
            check_option_values(self.model, self.model_options, "config key model_options")
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith("config key") else f"config key model_options: {message}") from None
        for key, (low, high) in INT_BOUNDS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"config key {key}: must be an integer, got {short(value)}")
            if not low <= value <= high:
                raise ValueError(f"config key {key}: must be an integer in [{low}, {high}], got {short(value)}")
        if (not self.rounds or len(self.rounds) > MAX_ROUNDS
                or any(not 1 <= epochs <= MAX_EPOCHS_PER_ROUND for epochs in self.rounds)):
            raise ValueError(f"config key rounds: must be a non-empty list of at most {MAX_ROUNDS} rounds of epochs, each in "
                             f"[1, {MAX_EPOCHS_PER_ROUND}], got {short(list(self.rounds))}")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type == "float" and not math.isfinite(value):
                raise ValueError(f"config key {item.name}: must be a finite number, got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config key dropout: must be in [0, 1), got {self.dropout}")
        if not self.lr > 0.0:
            raise ValueError(f"config key lr: must be > 0, got {self.lr}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"config key lr_decay: must be in (0, 1] (1 = no decay), got {self.lr_decay}")
        if not self.clip >= 0.0:
            raise ValueError(f"config key clip: must be >= 0 (0 = no clipping), got {self.clip}")
        if not self.realloc_time_limit >= 0.0:
            raise ValueError(
                f"config key realloc_time_limit: must be >= 0 seconds (0 = no limit), got {self.realloc_time_limit}"
            )
        if not 0.0 < self.rendezvous_timeout_s <= 86400.0:
            raise ValueError(f"config key rendezvous_timeout_s: must be in (0, 86400] seconds, got "
                             f"{self.rendezvous_timeout_s}")
        if self.test_every_epoch and not self.test_during_training:
            raise ValueError("config keys test_every_epoch and test_during_training: test_every_epoch=true needs "
                             "test_during_training=true; set one of them")
        for key in ("log_every_s", "checkpoint_every_s"):
            if not getattr(self, key) >= 0.0:
                raise ValueError(f"config key {key}: must be >= 0 seconds (0 = off), got {getattr(self, key)}")
        if not self.realloc_keep_bonus >= 0.0:
            raise ValueError(f"config key realloc_keep_bonus: must be >= 0 nats (0 = none), got {self.realloc_keep_bonus}")
        if not 0.0 < self.realloc_fraction <= 1.0:
            raise ValueError(f"config key realloc_fraction: must be in (0, 1], got {self.realloc_fraction}")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"config key {key}: got {short(getattr(self, key))}; allowed values: {', '.join(allowed)}")
        if not _DEVICE_PATTERN.match(self.device):
            raise ValueError(f"config key device: got {short(self.device)}; allowed values: auto, cpu, cuda, cuda:N")
        if self.initial_table not in ("random", "frequency", "context"):
            if not self.initial_table.endswith(".npy"):
                raise ValueError(
                    f"config key initial_table: got {short(self.initial_table)}; allowed values: random, frequency, "
                    "context, or a path to a .npy table written by WordTable.save"
                )
            # The file itself is read (and checked, naming the key) by a fresh start only: a run that
            # resumes, or has finished, holds its table in its checkpoint (training/train.py).


def _coerce(key: str, annotation: Any, value: Any, source: str) -> Any:
    """Check and convert one value to its field's type (annotations are strings here)."""
    kind = str(annotation)

    def bad(expected: str) -> ValueError:
        return ValueError(f"{source}: config key {key}: expected {expected}, got {short(value)}")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad("an integer")
        return value
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind.startswith("tuple[int"):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if (not isinstance(value, (list, tuple)) or len(value) > MAX_ROUNDS
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise bad("a list of integers such as [10, 10, 10]")
        return tuple(value)
    if kind.startswith("dict"):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad("a mapping such as {tie_weights: true}")
        return dict(value)
    raise TypeError(f"config key {key}: no coercion for type {kind}")


# Option values a config (or --option) may give, by the constructor's annotation. Others (a
# WordTable, word counts) are runtime objects the run builds from the data: not settable by hand.
_OPTION_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "Sequence[int]": "a list of integers", "Sequence[float]": "a list of numbers"}


def check_option_values(model: str, options: dict[str, Any], where: str) -> None:
    """ValueError naming `where` and the option when a value is not of the type the model's
    constructor declares (`model_options={table: 5}`, `word_counts: 5`, `div_value: [1]`)."""
    import inspect

    from lightrnn.registry import model_class

    if not isinstance(options, dict):
        raise ValueError(f"{where}: expected a mapping of options, got {short(options)}")
    parameters = inspect.signature(model_class(model).__init__).parameters
    for name, value in options.items():
        parameter = parameters.get(name)
        annotation = str(parameter.annotation) if parameter is not None else ""
        optional = annotation.endswith(" | None")
        kind = annotation.removesuffix(" | None")
        if value is None and optional:
            continue
        if kind not in _OPTION_KINDS:
            raise ValueError(f"{where}: {name} of model {model} is set by the run from the data, not by hand; "
                             f"remove it")
        if not _option_value_ok(kind, value):
            raise ValueError(f"{where}: {name} of model {model}: expected {_OPTION_KINDS[kind]}, got {short(value)}")
        bounds = model_class(model).option_bounds.get(name)
        if bounds is None and kind in ("int", "Sequence[int]"):  # an integer a model may compute with safely
            bounds = (-_INT_OPTION_LIMIT, _INT_OPTION_LIMIT)
        items = value if isinstance(value, (list, tuple)) else [value]
        if bounds is not None and value is not None and any(not bounds[0] <= item <= bounds[1] for item in items):
            each = "each item " if isinstance(value, (list, tuple)) else ""
            raise ValueError(f"{where}: {name} of model {model}: {each}must be in [{_number(bounds[0])}, {_number(bounds[1])}], "
                             f"got {short(value)}")


_INT_OPTION_LIMIT = 2**62  # an integer option without its own bounds stays this small


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _option_value_ok(kind: str, value: Any) -> bool:
    def number(item: Any, integer: bool) -> bool:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return False
        if integer:
            return isinstance(item, int)  # its range is checked after the type: the message names that range
        return math.isfinite(float(item)) if isinstance(item, float) or abs(item) < 2**1000 else False

    if kind in ("int", "float"):
        return number(value, kind == "int")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str) and len(value) <= 4096
    integer = kind == "Sequence[int]"
    return isinstance(value, (list, tuple)) and len(value) <= 1_000_000 and all(number(v, integer) for v in value)
