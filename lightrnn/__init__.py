"""LightRNN: memory- and computation-efficient recurrent language models (Li et al., NIPS 2016)."""

__version__ = "0.1.0"


def load(path, data=None, device="auto"):
    """A trained model file -> `lightrnn.pretrained.TrainedModel` (score, generate); see that module.

    Imported on call, so `import lightrnn` stays light (no torch).
    """
    from lightrnn.pretrained import load as _load

    return _load(path, data=data, device=device)
