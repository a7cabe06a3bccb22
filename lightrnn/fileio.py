"""File I/O every part of the project shares: atomic writes, JSON lines, the vocabulary file.

Atomic write: the content goes to a hidden temp file in the target's folder, which is flushed
and renamed over the target at the end (`os.replace`, atomic on POSIX). A crash, a kill or a
full disk leaves either the old file or the new one, never half of one; a failed write removes
its temp file. Temp files are named `.NAME.<random>.tmp`, so `remove_stale_temps` can sweep the
ones a `kill -9` left behind. Finished files get the mode a plain `open` would give them
(0666 & ~umask), not `mkstemp`'s 0600: on a shared cluster colleagues can read the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

TEMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def readable_mode(path: str | os.PathLike) -> None:
    """Give a file the mode a plain `open` would have given it (0666 & ~umask)."""
    os.chmod(path, _umask_mode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode_from: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block ends without error it replaces `path`.

    For writers that want a file name (`torch.save`, `savefig`, `np.save`). `mode_from`: copy
    that file's permissions instead of the umask default (rewriting a user's README).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        if mode_from is not None and Path(mode_from).exists():
            os.chmod(temp, os.stat(mode_from).st_mode & 0o7777)
        else:
            readable_mode(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """`open(path, mode)` that replaces `path` only when the block ends without error."""
    if "w" not in mode:
        raise ValueError(f"atomic_open: mode must write ('w' or 'wb'), got {mode!r}")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as temp:
        with open(temp, mode, **open_kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())


def write_bytes(path: str | os.PathLike, data: bytes, mode_from: str | os.PathLike | None = None) -> Path:
    """Replace `path` with `data` atomically."""
    with atomic_path(path, mode_from=mode_from) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, mode_from: str | os.PathLike | None = None) -> Path:
    """Replace `path` with `text` (UTF-8) atomically."""
    return write_bytes(path, text.encode("utf-8"), mode_from=mode_from)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    """Replace `path` with `value` as JSON (no NaN/inf: they are not JSON) atomically."""
    return write_text(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


def write_lines(path: str | os.PathLike, lines: list[str]) -> Path:
    """Replace `path` with these lines (each ended by a newline) atomically."""
    return write_text(path, "".join(line + "\n" for line in lines))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """`np.save` atomically (no pickled objects: `allow_pickle=False`)."""
    with atomic_open(path, "wb") as stream:
        np.save(stream, array, allow_pickle=False)
    return Path(path)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (JSON-lines logs: a kill loses at most this line)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(line + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temp files an interrupted atomic write left in `folder` (of `name` only, if given).

    Only call it where no other process writes into `folder` at the same time (the training
    loop holds a lock on its out dir).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"
    removed = []
    for temp in folder.glob(pattern):
        if temp.is_file():
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a JSON-lines file; a bad line raises ValueError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON object ({error.msg}); the file is damaged") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def read_vocab(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(words in id order, counts int64 [V]) from a `vocab.tsv` of `word<TAB>count` lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass --data an encoded data dir (lightrnn data encode)")
    words: list[str] = []
    counts: list[int] = []
    try:
        with path.open(encoding="utf-8", newline="\n") as stream:
            for number, line in enumerate(stream, start=1):
                line = line.rstrip("\n")
                word, separator, count = line.rpartition("\t")
                if not separator:
                    raise ValueError(f"{path}:{number}: expected word<TAB>count, got {line!r}")
                try:
                    counts.append(int(count))
                except ValueError:
                    raise ValueError(f"{path}:{number}: the count {count!r} is not an integer") from None
                words.append(word)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); re-run lightrnn data encode") from None
    if not words:
        raise ValueError(f"{path} is empty; re-run lightrnn data encode")
    return words, np.asarray(counts, dtype=np.int64)
