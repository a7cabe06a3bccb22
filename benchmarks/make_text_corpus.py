"""A small real-English corpus in the PTB archive's layout, from the Python standard library's docstrings.

    .venv/bin/python benchmarks/make_text_corpus.py --out /tmp/docstrings.tgz
    lightrnn data fetch ptb --dest RAW --url file:///tmp/docstrings.tgz --sha256 <printed sha256>

For measuring what needs real text without a download (the reallocation benchmark on real
losses): every module, class and function docstring of the `.py` files under this Python's
standard library, in sorted file order. Mikolov's PTB conventions: lower case, numbers as N,
the `--vocab` most frequent training words kept and the others written as <unk>, one sentence
per line. Files go to train/valid/test by a hash of their path (90/5/5; `--held-out 10`:
80/10/10, the study's, for a test split twice as large), so a file's sentences stay together. A line of valid or test that also occurs in an earlier split (train, then valid),
after the <unk> mapping (what a model sees), is removed, and the count is printed: a test
sentence seen verbatim in training measures memory, not modelling. The archive (simple-examples/data/ptb.{train,valid,test}.txt) is byte-for-byte
reproducible for a given Python installation; it is not committed (write it under /tmp).
"""

from __future__ import annotations

import argparse
import ast
import collections
import gzip
import hashlib
import io
import re
import sys
import sysconfig
import tarfile
from pathlib import Path

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9][0-9.,]*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def docstrings(root: Path):
    """(relative path, docstring) of every module, class and function under `root`, sorted by path."""
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue  # lib2to3 test data and the like: not Python 3 source
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    yield path.relative_to(root).as_posix(), text


def sentences(text: str):
    """Token lists of one docstring, PTB style: lower case, numbers as N, no punctuation."""
    for sentence in SENTENCE_END.split(text.lower()):
        tokens = ["N" if token[0].isdigit() else token for token in WORD.findall(sentence)]
        if len(tokens) >= 3:
            yield tokens


def split_of(path: str, held_out: int = 5) -> str:
    """train, valid or test by a hash of the path: `held_out` percent each for valid and test."""
    bucket = int(hashlib.sha256(path.encode()).hexdigest(), 16) % 100
    return "valid" if bucket < held_out else "test" if bucket < 2 * held_out else "train"


def build(root: Path, vocab_size: int, held_out: int = 5) -> dict[str, list[list[str]]]:
    """The three splits, <unk>-mapped, each line of valid and test that an earlier split holds removed."""
    return dedup(build_splits(root, vocab_size, held_out))[0]


def build_splits(root: Path, vocab_size: int, held_out: int = 5) -> dict[str, list[list[str]]]:
    splits: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
    for path, text in docstrings(root):
        splits[split_of(path, held_out)].extend(sentences(text))
    counts = collections.Counter(token for line in splits["train"] for token in line)
    # <eos> is added by the PTB encoding rule; <unk> is an ordinary word, as in Mikolov's files.
    kept = {word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 2]}
    return {name: [[t if t in kept else "<unk>" for t in line] for line in lines] for name, lines in splits.items()}


def dedup(splits: dict[str, list[list[str]]]) -> tuple[dict[str, list[list[str]]], dict[str, int]]:
    """Remove from valid every line train holds, and from test every line train or valid holds.

    Returns the splits and, per split, how many lines were removed (train keeps all its lines: the
    vocabulary was counted on it). Duplicates inside one split stay (they are no leak).
    """
    seen: set[tuple[str, ...]] = set()
    kept: dict[str, list[list[str]]] = {}
    removed: dict[str, int] = {}
    for name in ("train", "valid", "test"):
        lines = splits[name]
        kept[name] = lines if name == "train" else [line for line in lines if tuple(line) not in seen]
        removed[name] = len(lines) - len(kept[name])
        seen.update(tuple(line) for line in lines)
    return kept, removed


def archive(splits: dict[str, list[list[str]]]) -> bytes:
    buffer = io.BytesIO()
    # gzip's header holds a time stamp: fix it so the same input gives the same bytes (and sha256).
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("train", "valid", "test"):
            data = "".join(" " + " ".join(line) + " \n" for line in splits[name]).encode()
            info = tarfile.TarInfo(f"simple-examples/data/ptb.{name}.txt")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help=".tgz to write (keep it out of the repository)")
    parser.add_argument("--vocab", type=int, default=10_000, help="vocabulary size with <unk> and <eos>")
    parser.add_argument("--held-out", type=int, default=5,
                        help="percent of the files for valid, and again for test (default 5: 90/5/5)")
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    args = parser.parse_args()
    if args.vocab < 3:
        parser.error(f"--vocab {args.vocab}: need at least 3 (<unk>, <eos> and one word)")
    if not 1 <= args.held_out <= 45:
        parser.error(f"--held-out {args.held_out}: need a percent in [1, 45] (valid and test each)")
    if not args.stdlib.is_dir():
        parser.error(f"--stdlib {args.stdlib}: not a directory")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
    from lightrnn.core.fileio import write_bytes

    splits, removed = dedup(build_splits(args.stdlib, args.vocab, args.held_out))
    data = archive(splits)
    write_bytes(args.out, data)
    tokens = {name: sum(len(line) + 1 for line in lines) for name, lines in splits.items()}
    print(f"{args.out}: tokens (with <eos>) {tokens}; lines removed as duplicates of an earlier split: "
          f"valid {removed['valid']}, test {removed['test']}; sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
