"""The model registry: every caller builds models through `build`, never by class name."""

from __future__ import annotations

import importlib

from lightrnn.lm import LanguageModel

# name -> "module:Class". Strings, so that importing the registry imports no model code.
REGISTRY: dict[str, str] = {
    "lightrnn": "lightrnn.model:LightRNN",
    "full_softmax": "baselines.full_softmax:FullSoftmaxLM",
    "class_softmax": "baselines.class_softmax:ClassSoftmaxLM",
    "adaptive_softmax": "baselines.adaptive_softmax:AdaptiveSoftmaxLM",
}


def names() -> list[str]:
    return list(REGISTRY)


def model_class(name: str) -> type[LanguageModel]:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build(name: str, vocab_size: int, **hparams) -> LanguageModel:
    """Build a registered model: `build("lightrnn", 10000, embed_dim=512, hidden_dim=512, ...)`."""
    return model_class(name)(vocab_size, **hparams)
