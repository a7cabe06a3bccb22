"""benchmarks/make_text_corpus.py: lines a later split shares with an earlier one are removed and counted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "make_text_corpus.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_text_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dedup_removes_lines_of_an_earlier_split_and_counts_them():
    corpus = _module()
    shared, valid_only = ["the", "cat", "sat"], ["a", "dog", "ran"]
    splits = {"train": [shared, ["x", "y", "z"], shared],  # a repeat inside train stays
              "valid": [shared, valid_only, valid_only],
              "test": [shared, valid_only, ["new", "line", "here"]]}
    kept, removed = corpus.dedup(splits)
    assert kept["train"] == splits["train"]
    assert kept["valid"] == [valid_only, valid_only]  # duplicates inside valid are no leak
    assert kept["test"] == [["new", "line", "here"]]
    assert removed == {"train": 0, "valid": 1, "test": 2}


def test_script_prints_the_count_and_writes_no_shared_line(tmp_path):
    # A generated "standard library": the same docstring sentence in files of every split.
    corpus = _module()
    paths = [f"mod{i}.py" for i in range(120)]
    splits = {corpus.split_of(path) for path in paths}
    assert splits == {"train", "valid", "test"}  # 120 files reach every bucket
    for path in paths:
        word = "".join(chr(ord("a") + int(digit)) for digit in path[3:-3])  # numbers would all read N
        (tmp_path / path).write_text(f'"""Shared words appear here. File {word} is unique."""\n')
    out = tmp_path / "corpus.tgz"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--stdlib", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert "lines removed as duplicates of an earlier split" in done.stdout
    with tarfile.open(out) as tar:
        lines = {name: [line.strip() for line in tar.extractfile(f"simple-examples/data/ptb.{name}.txt").read()
                        .decode().splitlines()] for name in ("train", "valid", "test")}
    assert "shared words appear here" in lines["train"]
    assert "shared words appear here" not in lines["valid"] + lines["test"]
    removed_valid = sum(corpus.split_of(path) == "valid" for path in paths)
    assert f"valid {removed_valid}," in done.stdout
