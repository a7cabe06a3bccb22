"""Sub-commands of `lightrnn`; one module each, discovered by `lightrnn.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, else argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def path_text(text: str) -> str:
    """An argparse type: a path, never empty (an empty one would name the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; pass a file or folder path")
    return text


def path_arg(text: str) -> Path:
    """`path_text` as a Path."""
    return Path(path_text(text))
