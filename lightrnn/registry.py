"""The model registry: the one way to build a model, from keyword arguments or from a `TrainConfig`.

Training, evaluation, benchmarks, `lightrnn params` and the scaling study all build through
`build` (or `build_from_config`, which maps a config onto it); nothing else names a model class.
To add a model: write a `LanguageModel` subclass (`lightrnn.core.lm`) and add one line to `REGISTRY`
(see docs/DESIGN.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light at import time: the Snakefile and the report read `names()` without torch
    import numpy as np

    from lightrnn.config import TrainConfig
    from lightrnn.core.lm import LanguageModel

# name -> "module:Class". Strings, so that importing the registry imports no model code.
REGISTRY: dict[str, str] = {
    "lightrnn": "lightrnn.method.model:LightRNN",
    "full_softmax": "baselines.full_softmax:FullSoftmaxLM",
    "class_softmax": "baselines.class_softmax:ClassSoftmaxLM",
    "adaptive_softmax": "baselines.adaptive_softmax:AdaptiveSoftmaxLM",
}

# Run-level settings a model receives only if it declares them in its `options`
# (config key -> constructor option): the word table's start and its shuffling seed.
CONFIG_OPTIONS: dict[str, str] = {"initial_table": "initial_table", "seed": "table_seed"}


def names() -> list[str]:
    return list(REGISTRY)


def model_class(name: str) -> "type[LanguageModel]":
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def accepts(name: str, option: str) -> bool:
    """Whether model `name` takes the model-specific constructor option `option`."""
    return option in model_class(name).options


def check_options(name: str, options: dict[str, Any]) -> None:
    """A one-line ValueError naming any option model `name` does not take."""
    allowed = model_class(name).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name} got unknown option(s) {', '.join(unknown)}; its options are: {', '.join(allowed) or 'none'}"
        )


def build(
    name: str, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, dropout: float = 0.0,
    **options: Any,
) -> "LanguageModel":
    """Build a registered model: `build("lightrnn", 10000, 512, 512, 2, dropout=0.2, table_seed=0)`.

    Works under `with torch.device("meta"):` (no memory) to count parameters.
    """
    check_options(name, options)
    return model_class(name)(
        vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers, dropout=dropout, **options
    )


def build_from_config(
    config: "TrainConfig", vocab_size: int, word_counts: "np.ndarray | None" = None,
    train_stream: "np.ndarray | None" = None,
) -> "LanguageModel":
    """The model a training config describes, over `vocab_size` words with these counts.

    `config.model_options` go to the model as they are; the run-level keys of `CONFIG_OPTIONS`
    go only to models that take them (a baseline has no word table). `initial_table: context`
    builds the table from `train_stream` (`lightrnn.method.initial_table`); without a stream (counting
    parameters, rebuilding a checkpoint whose table is in its state_dict) a random one stands in.
    """
    options: dict[str, Any] = dict(config.model_options)
    for key, option in CONFIG_OPTIONS.items():
        if accepts(config.model, option):
            options.setdefault(option, getattr(config, key))
    if options.get("initial_table") == "context":
        options["initial_table"] = "random"
        if train_stream is not None:
            from lightrnn.method.initial_table import context_table

            options.setdefault("table", context_table(train_stream, vocab_size, seed=config.seed))
    if word_counts is not None and accepts(config.model, "word_counts"):
        options.setdefault("word_counts", word_counts)
    return build(
        config.model, vocab_size, embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
        num_layers=config.num_layers, dropout=config.dropout, **options,
    )


def param_count(name: str, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, **options: Any) -> int:
    """Closed-form parameters of model `name` (nothing allocated)."""
    check_options(name, options)
    return model_class(name).param_count(
        vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers, **options
    )
