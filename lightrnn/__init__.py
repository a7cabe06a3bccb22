"""LightRNN: memory- and computation-efficient recurrent language models (Li et al., NIPS 2016)."""

__version__ = "0.1.0"


def load(path, data=None, device="auto"):
    """A trained model file -> `lightrnn.pretrained.TrainedModel` (score, generate); see that module.

    Imported on call, by name, so `import lightrnn` stays light: the data stage's scripts (whose
    conda env has no torch) import the package but never call this.
    """
    import importlib

    return importlib.import_module("lightrnn.pretrained").load(path, data=data, device=device)
