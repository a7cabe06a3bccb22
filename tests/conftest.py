"""Fixtures every test module shares."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from lightrnn.data.markov import generate_markov_corpus


@pytest.fixture(autouse=True)
def one_thread():
    # The machine is shared; several threads per tiny op are slower, and one thread is deterministic.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def markov_corpus(factory: pytest.TempPathFactory, vocab_size: int, tokens: tuple[int, int, int], seed: int) -> Path:
    """An encoded data dir of a Markov chain (successors=3) with (train, valid, test) tokens."""
    out = factory.mktemp("data") / "markov"
    train, valid, test = tokens
    generate_markov_corpus(out, vocab_size=vocab_size, successors=3, train_tokens=train, valid_tokens=valid,
                           test_tokens=test, seed=seed)
    return out


@pytest.fixture(scope="module")
def clean_copy():
    """A copy of the repository's tracked files, as a user's clone (for Snakemake runs)."""
    from tests._workflow_fixtures import copy_repo

    with tempfile.TemporaryDirectory() as folder:
        yield copy_repo(Path(folder) / "repo")
