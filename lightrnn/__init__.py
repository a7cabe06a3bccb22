"""LightRNN: memory- and computation-efficient recurrent language models (Li et al., NIPS 2016)."""

__version__ = "0.1.0"
