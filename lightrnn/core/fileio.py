"""File I/O every part of the project shares: atomic writes, JSON lines, the vocabulary file.

Atomic write: the content goes to a hidden temp file in the target's folder, which is flushed,
fsynced and renamed over the target at the end (`os.replace`, atomic on POSIX), and the folder
is fsynced after the rename. A crash, a kill or a full disk leaves either the old file or the
new one, never half of one; a failed write removes its temp file. Power loss: before the call
returns, the path holds the old file or the whole new one (the data is on disk before the
rename, so never an empty or half-written file, on ext4, XFS or btrfs alike); once it has
returned, the new file survives a power loss (the folder's entry is fsynced too). What is not
promised: the staged sets (`staged_dir`) and `append_line` rows other than the last fsynced one.

What is at the path is never destroyed by the write (`output_target`): a symlink is followed
(the file it points to is replaced, the link stays); a character device or a FIFO (`/dev/null`,
`/dev/stdout`, a named pipe), and anything under /dev or /proc, is written to directly (opened
for appending, never renamed over, so `--out /dev/null` leaves the device node alone and
`--summary /dev/stdout > f` keeps what was printed before); a folder, a block device or a socket
is refused, and so is an empty path. Temp files are named `.NAME.<random>.tmp`, so `remove_stale_temps` can sweep the
ones a `kill -9` left behind. Finished files get the mode a plain `open` would give them
(0666 & ~umask), not `mkstemp`'s 0600: on a shared cluster colleagues can read the results.

A set of files that belong together (encode's vocab.tsv, streams and meta.json; prepare's
splits and prepare.json) is written into a hidden staging folder and swapped in at the end
(`staged_dir`), manifest last, so a failure leaves the old set whole. Write failures become
one-line errors naming the target file (`lightrnn.core.errors`): a full disk is `DiskFull`, whatever
the writer (torch.save reports it as a RuntimeError without an errno).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from lightrnn.core.errors import DataError, DiskFull, disk_full, is_disk_full, path_kind

TEMP_SUFFIX = ".tmp"
STAGING_PREFIX = ".staging."
# torch.save's messages for a failed write (it raises RuntimeError without an errno).
_TORCH_WRITE_FAILURES = ("iostream error", "PytorchStreamWriter failed", "file write failed", "unexpected pos")


NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_TEMP_EXTRA = 1 + 1 + 8 + len(TEMP_SUFFIX)  # "." NAME "." <random> ".tmp"


def fit_name(name: str, extra_bytes: int) -> str:
    """`name` cut (at a UTF-8 character boundary) so that `extra_bytes` more still fit NAME_MAX."""
    encoded = os.fsencode(name)
    budget = max(NAME_MAX - extra_bytes, 1)
    if len(encoded) <= budget:
        return name
    return os.fsdecode(encoded[:budget].decode("utf-8", errors="ignore").encode("utf-8") or encoded[:budget])


def temp_prefix(name: str) -> str:
    """`.NAME.` for a temp file of `name`, NAME cut so the whole temp name fits NAME_MAX bytes.

    A legal 250-byte output name must not fail because its temp file is longer than the name.
    """
    return f".{fit_name(name, _TEMP_EXTRA + 4)}."  # 4: room for mkstemp's random part growing


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def readable_mode(path: str | os.PathLike) -> None:
    """Give a file the mode a plain `open` would have given it (0666 & ~umask)."""
    os.chmod(path, _umask_mode())


# The files a run folder (lightrnn/training) and an encoded data folder (lightrnn/data/encoded.py) own: a command's
# output never replaces one of them in such a folder (an export over checkpoint.pt would end its resume, one
# over best.pt would break its link to checkpoint-best.pt, a model file over vocab.tsv would break the data).
OWN_FILES = frozenset({"checkpoint.pt", "checkpoint-best.pt", "best.pt", "metrics.jsonl", "vocab.tsv", "meta.json"})


def _own_file(name: str) -> bool:
    return name in OWN_FILES or name.endswith(".npy")


def _owned_by_run_or_data(path: Path) -> bool:
    """Whether `path` names a run folder's or data folder's own file: its name is one, in a folder holding one."""
    if not _own_file(path.name):
        return False
    with contextlib.suppress(OSError):
        return any(_own_file(entry.name) for entry in os.scandir(path.parent))
    return False


def output_target(path: str | os.PathLike, what: str = "") -> tuple[Path, bool]:
    """(the path to write, whether to write it directly) for an output `path`; one error if it cannot be.

    Directly: a character device or FIFO, or anything under /dev or /proc (after symlinks), is
    opened for appending and written, never renamed over (the node is not replaced by a regular
    file). A symlink to anything else is followed, so the link stays and its target is replaced.
    Refused: an empty path, a folder, a block device (writing would destroy a disk), a socket.
    Commands call it (through `command_output`) before long work, so a bad `--out` is found at once.
    """
    label = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    if os.fspath(path) == "":
        raise DataError(f"{what or 'an output path'} is empty; pass a file path")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # a new file (a dangling symlink: its target is created)
    except NotADirectoryError:
        raise NotADirectoryError(errno.ENOTDIR, "a part of the path is a file, not a folder", str(path)) from None
    except OSError as error:
        raise type(error)(error.errno, error.strerror, str(path)) from None
    real = Path(os.path.realpath(path))
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, f"{label} is a folder; pass a file path", str(path))
    if mode is not None and (stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)):
        kind = "a block device" if stat.S_ISBLK(mode) else "a socket"
        raise DataError(f"{label} is {kind}: it is not written to; pass a file path")
    special = mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))
    under_system = str(real).startswith(("/dev/", "/proc/")) or str(Path(path).absolute()).startswith(("/dev/", "/proc/"))
    if special or (mode is not None and under_system):
        return path, True
    return real if path.is_symlink() else path, False


def command_output(path: str | os.PathLike, what: str,
                   inputs: tuple[str | os.PathLike | None, ...] = ()) -> tuple[Path, bool]:
    """`output_target` for a path a user names (`export --out`, `score --summary`, `eval --out`), plus what only
    such a path can be: one of the same command's `inputs` (the same file, through any link or hard link), or a
    run or data folder's own file (`OWN_FILES`, `*.npy`, in a folder holding one of them). Both are refused
    before any work; the run's own writes (which do replace checkpoint.pt) go through `output_target` alone."""
    target, direct = output_target(path, what)
    if direct:
        return target, direct
    label = f"{what} {os.fspath(path)}"
    for source in inputs:
        if source is not None and os.fspath(source) not in ("", "-"):
            with contextlib.suppress(OSError):
                if os.path.samefile(path, source):
                    raise DataError(f"{label} is the input {os.fspath(source)}: writing it would replace what is "
                                    "read; pass another output path")
    real = Path(os.path.realpath(path))
    if _owned_by_run_or_data(real):
        raise DataError(f"{label} is {real.parent}'s own {real.name} (a run or encoded data folder's file): "
                        "writing it would destroy it; pass a path outside, or another name")
    return target, direct


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode_from: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block ends without error it replaces `path`.

    For writers that want a file name (`torch.save`, `savefig`, `np.save`). `mode_from`: copy
    that file's permissions instead of the umask default (rewriting a user's README). Any error
    removes the temp file; a full disk, a permission or a folder in the way is reported for
    `path` (not the temp name). The temp file is fsynced before the rename and the folder after
    it (the module docstring says what that promises on a power loss). A device, FIFO or a path
    under /dev or /proc gets the bytes directly instead (`output_target`).
    """
    path, direct = output_target(path)
    if direct:
        with _direct_write(path) as temp:
            yield temp
        return
    ensure_dir(path.parent)
    try:
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX)
    except OSError as error:
        raise _for_target(error, path) from error
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        if mode_from is not None and Path(mode_from).exists():
            os.chmod(temp, os.stat(mode_from).st_mode & 0o7777)
        else:
            readable_mode(temp)
        _fsync_path(temp)
        os.replace(temp, path)
        _fsync_folder(path.parent)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        converted = _for_target(error, path)
        if converted is error:
            raise
        raise converted from error


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; a file system that cannot fsync a folder is left as it is."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _direct_write(path: Path) -> Iterator[Path]:
    """Let the writer fill a private temp file, then append its bytes to `path` (a device or FIFO)."""
    import sys

    with tempfile.TemporaryDirectory(prefix=".lightrnn-direct.") as folder:
        temp = Path(folder) / path.name
        yield temp
        for stream in (sys.stdout, sys.stderr):  # what was printed before comes first
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            # O_NONBLOCK: a FIFO nobody reads is an error at once (ENXIO), not a wait for ever.
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
            os.set_blocking(descriptor, True)
            with open(temp, "rb") as reader, open(descriptor, "ab") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
        except OSError as error:
            if error.errno == errno.ENXIO and path_kind(path) == "a FIFO":
                raise OSError(f"{path} is a FIFO that no process reads; start its reader first or "
                              "pass a file path") from None
            if error.errno in (errno.ENXIO, errno.ENODEV):  # /dev/tty without a controlling terminal, a gone device
                raise OSError(f"{path} is {path_kind(path)} that cannot be opened here ({error.strerror}: no "
                              "terminal or device behind it); pass a file path") from None
            converted = _for_target(error, path)
            if converted is error:
                raise
            raise converted from error


def _for_target(error: BaseException, path: Path) -> BaseException:
    """The error to report for a failed write of `path`: the target named, a full disk recognised."""
    if isinstance(error, DiskFull):
        return error
    if is_disk_full(error) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in _TORCH_WRITE_FAILURES)
    ):
        return disk_full(path, error)
    if isinstance(error, OSError) and error.errno is not None and error.strerror is not None:
        # PermissionError, a read-only file system ...: name the target, not the hidden temp file.
        return type(error)(error.errno, error.strerror, str(path))
    return error


def ensure_dir(folder: str | os.PathLike) -> Path:
    """`mkdir -p folder`; a file in the way raises FileExistsError/NotADirectoryError naming it."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    if folder.exists():
        raise FileExistsError(errno.EEXIST, f"is {path_kind(folder)}, not a folder", str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise NotADirectoryError(errno.ENOTDIR, "a part of the path is a file", str(error.filename or folder)) from None
    return folder


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the disk holding `folder` (or its nearest existing parent)."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """DiskFull before writing when `folder`'s disk has less than `needed_bytes` plus a margin free.

    The margin (5%, at least 16 MiB) leaves room for the file system's own blocks and for what
    other programs write meanwhile; a full disk in the middle of a write is reported anyway.
    """
    needed = int(needed_bytes) + max(int(needed_bytes) // 20, 16 << 20)
    free = free_bytes(folder)
    if free < needed:
        raise DiskFull(
            errno.ENOSPC,
            f"{what} needs about {format_bytes(needed)} in {folder} but only {format_bytes(free)} is free there; "
            f"free some space or write to another disk",
        )


def format_bytes(count: float) -> str:
    """1023 B, 1.5 KiB, 2.0 GiB: sizes in messages and progress lines."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """Yield an empty hidden folder in `out_dir`; what the block writes there replaces `out_dir`'s files.

    When the block ends without error, every file in the staging folder is moved over the file
    of the same name in `out_dir` (other files of `out_dir`, e.g. training runs, are left
    alone), `last` (the set's manifest, e.g. meta.json) last: the old manifest is moved away
    first, so from the first rename to the last the set has no manifest and is visibly
    incomplete, never a mixed set that looks whole. The renames do not write data, so they do
    not fail on a full disk. On any error the staging folder is deleted and `out_dir` keeps
    its old files; a full disk while the block writes is reported as `out_dir` being full (not
    the hidden staging file it filled on). Staging folders a killed process left are deleted on
    entry: only one process may write a given `out_dir` at a time.
    """
    out_dir = ensure_dir(out_dir)
    _remove_stale_staging(out_dir)
    try:
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=STAGING_PREFIX, suffix=TEMP_SUFFIX))
    except OSError as error:
        raise _for_target(error, out_dir) from error
    try:
        yield staging
        _commit_staging(staging, out_dir, last)
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise disk_full(out_dir, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit_staging(staging: Path, out_dir: Path, last: str | None) -> None:
    names = sorted(entry.name for entry in staging.iterdir() if entry.is_file() and not entry.name.startswith("."))
    for name in names:
        if (out_dir / name).is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder; move it away to write this output", str(out_dir / name))
    if last in names:
        names = [name for name in names if name != last] + [last]
    backup = staging / ".old"
    backup.mkdir()
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in ([last] if last in names else []) + [name for name in names if name != last]:
            if (out_dir / name).exists():
                os.replace(out_dir / name, backup / name)
                moved_out.append(name)
        for name in names:
            os.replace(staging / name, out_dir / name)
            moved_in.append(name)
    except BaseException:
        # Put the old set back: renames within one folder tree do not need space.
        for name in moved_in:
            with contextlib.suppress(OSError):
                os.replace(out_dir / name, staging / name)
        for name in moved_out:
            with contextlib.suppress(OSError):
                os.replace(backup / name, out_dir / name)
        raise


def _remove_stale_staging(folder: Path) -> list[Path]:
    removed = []
    for stale in folder.glob(f"{STAGING_PREFIX}*{TEMP_SUFFIX}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


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
    """Append one line and flush it to disk (JSON-lines logs: a kill loses at most this line).

    A new file gets the umask mode (plain `open`). A full disk raises DiskFull naming `path`.
    """
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        converted = _for_target(error, Path(path))
        if converted is error:
            raise
        raise converted from error


def load_npy(path: str | os.PathLike, mmap_mode: str | None = "r", fix: str = "re-run lightrnn data encode") -> np.ndarray:
    """`np.load` without pickles; a damaged, truncated or foreign file raises DataError naming it and `fix`."""
    path = Path(path)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, SyntaxError) as error:
        text = str(error)
        if "pickle" in text or "Python objects" in text:
            # Never load it with allow_pickle=True: a pickle can run code.
            reason = "not a plain .npy array (it looks like a pickle or another format)"
        elif "mmap length" in text or "reshape" in text or isinstance(error, EOFError) or "EOF" in text:
            reason = f"truncated ({path.stat().st_size} bytes, shorter than its header says)"
        else:
            reason = f"not a valid .npy file ({text.strip().splitlines()[0] if text.strip() else type(error).__name__})"
        raise DataError(f"{path}: {reason}; {fix}") from None


def read_json_object(path: str | os.PathLike, fix: str) -> dict[str, Any]:
    """A JSON file holding one object; DataError naming the file and `fix` otherwise (`lightrnn.core.loaders`)."""
    from lightrnn.core.loaders import read_json_object as read

    return read(path, fix)


def _json_object(text: str, where: str, fix: str) -> dict[str, Any]:
    """`text` parsed as one JSON object; DataError naming `where` (a file, or file:line) and `fix`."""
    from lightrnn.core.loaders import Fields, parse_json

    return Fields(where, fix).mapping(parse_json(text, where, fix))


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temp files an interrupted atomic write left in `folder` (of `name` only, if given).

    Without `name`, staging folders of an interrupted `staged_dir` go too.

    Only call it where no other process writes into `folder` at the same time (the training
    loop holds a lock on its out dir).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f"{glob.escape(temp_prefix(name))}*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"
    removed = [] if name else _remove_stale_staging(folder)
    for temp in folder.glob(pattern):
        if temp.is_file():
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a JSON-lines file; a bad line raises ValueError naming the file and the line."""
    from lightrnn.core.loaders import input_file

    path = input_file(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_json_object(line, f"{path}:{number}", "the file is damaged: rerun what wrote it"))
    return rows
