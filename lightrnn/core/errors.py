"""Errors the command line prints as one line (no traceback; LIGHTRNN_DEBUG=1 shows it).

Two kinds, two exit codes:
- 2, usage or data: a bad option, a missing or damaged input file, a config that cannot work.
  The user fixes the command or the data (`UsageError`, `DataError`, ValueError,
  FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError).
- 1, environment: the machine cannot do what was asked right now: a full disk, a permission,
  memory, the device, a diverged run, a library that cannot be imported (`DiskFull`,
  `NotEnoughMemory`, PermissionError, other OSError, MemoryError, torch's out-of-memory and
  runtime errors, FloatingPointError, ImportError of a dependency).

Errors are converted where the file is known (fileio, the data stage, evaluation), so the
message names it; `explain` is the last net for anything raised below that, naming the file
an OSError carries.
"""

from __future__ import annotations

import errno
import os
import sys

USAGE_EXIT = 2
ENVIRONMENT_EXIT = 1
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class UsageError(Exception):
    """A bad option or input named in a message that says what to do; printed without a traceback."""


class DataError(ValueError):
    """An input file that is damaged or not what it should be; the message names it and the fix."""


class DiskFull(OSError):
    """A write ran out of space (or hit a file-size limit); the message names the file and the fix."""


class NotEnoughMemory(MemoryError):
    """A run that cannot fit in the memory of its device; raised before anything big is allocated."""


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` means the disk (or quota, or RLIMIT_FSIZE) is full.

    torch.save reports a failed write as a RuntimeError without an errno ("basic_ios::clear:
    iostream error", "PytorchStreamWriter failed writing file"); the caller checks the free
    space to tell a full disk from other write failures.
    """
    if isinstance(error, DiskFull):
        return True
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL_ERRNOS
    return False


def disk_full(path: str | os.PathLike, error: BaseException | None = None) -> DiskFull:
    """The one message for a full disk: which file, and what to do."""
    detail = f" ({error.strerror or error})" if isinstance(error, OSError) and not isinstance(error, DiskFull) else ""
    return DiskFull(
        errno.ENOSPC,
        f"no space left to write {path}{detail}; nothing was half-written: free space on that disk "
        f"(or raise the quota or file-size limit) and run the command again",
    )


MAX_MESSAGE_CHARS = 600  # a message echoing a hostile value (a 1 GB line, an alias bomb) stays short


def _first_line(text: str) -> str:
    text = str(text).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 3] + "..."


def explain(error: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an error the CLI reports without a traceback; None for a bug."""
    if isinstance(error, DiskFull):
        return _first_line(error.strerror or str(error)), ENVIRONMENT_EXIT
    if isinstance(error, ImportError) and not (error.name or "").startswith(("lightrnn", "baselines")):
        return import_failure(error), ENVIRONMENT_EXIT
    if isinstance(error, (UsageError, ValueError)):
        return _first_line(str(error)) or type(error).__name__, USAGE_EXIT
    if isinstance(error, OSError):
        return _explain_os_error(error)
    if isinstance(error, MemoryError):
        message = _first_line(str(error)) or "out of memory"
        if not isinstance(error, NotEnoughMemory):
            message += "; use a smaller model or batch size, or a machine with more memory"
        return message, ENVIRONMENT_EXIT
    if isinstance(error, FloatingPointError):
        return _first_line(str(error)), ENVIRONMENT_EXIT
    if isinstance(error, RuntimeError) and type(error).__module__.startswith("torch"):
        # torch.OutOfMemoryError and the other torch runtime errors (CUDA, device, size mismatch).
        message = _first_line(str(error))
        if "out of memory" in message.lower():
            return f"{message}; use a smaller model or batch size, or a device with more memory", ENVIRONMENT_EXIT
        return f"{message} (torch); LIGHTRNN_DEBUG=1 shows where", ENVIRONMENT_EXIT
    if isinstance(error, RuntimeError):
        message = _first_line(str(error))
        if "iostream" in message or "PytorchStreamWriter" in message or "PytorchStreamReader" in message:
            return f"{message} (torch could not write or read a file: is the disk full?)", ENVIRONMENT_EXIT
        return f"{message}; LIGHTRNN_DEBUG=1 shows where", ENVIRONMENT_EXIT
    return None


def import_failure(error: ImportError) -> str:
    """One line for a library that cannot be imported: not installed, or installed but unloadable
    (torch's shared libraries under a low `ulimit -v` fail with "failed to map segment")."""
    detail = _first_line(str(error)) or type(error).__name__
    if isinstance(error, ModuleNotFoundError):
        return (f"{detail}: a dependency is not installed in this Python ({sys.executable}); install the project "
                f"into it (make venv, or pip install -e .) or run the project's .venv/bin/python")
    return (f"a library could not be loaded ({detail}): too little memory for its shared libraries (is `ulimit -v` "
            f"low?) or a broken install; raise the limit or reinstall it")


def _explain_os_error(error: OSError) -> tuple[str, int]:
    """An OSError that no layer converted: name its file and say what to do."""
    name = error.filename if error.filename is not None else ""
    where = f"{name}: " if name else ""
    reason = error.strerror or _first_line(str(error)) or type(error).__name__
    usage = isinstance(error, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError))
    if is_disk_full(error):
        return disk_full(name or "the output", error).strerror, ENVIRONMENT_EXIT
    if error.strerror is None:  # raised by the project with its own message
        return _first_line(str(error)) or type(error).__name__, USAGE_EXIT if usage else ENVIRONMENT_EXIT
    if isinstance(error, FileNotFoundError):
        return f"{where}{reason}; check the path", USAGE_EXIT
    if isinstance(error, FileExistsError):
        return f"{where}{reason}: a file is in the way of a folder to create; pass another path or move it", USAGE_EXIT
    if isinstance(error, IsADirectoryError):
        return f"{where}is a folder where a file is expected; pass a file path", USAGE_EXIT
    if isinstance(error, NotADirectoryError):
        return f"{where}a part of this path is a file, not a folder; pass a folder path", USAGE_EXIT
    if isinstance(error, PermissionError):
        return (f"{where}permission denied; make it writable/readable for you (chmod) or pass another path",
                ENVIRONMENT_EXIT)
    return f"{where}{reason} (errno {error.errno}); check the disk or path and run the command again", ENVIRONMENT_EXIT
