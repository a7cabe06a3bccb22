"""One writing process per output folder: OUT/.lock holds the owner's PID and host.

Taken by `lightrnn train` (its --out), `lightrnn data encode` (its --out) and `lightrnn data
fetch` (its --dest): two processes writing one folder would delete each other's temp and
staging files, or duplicate every metrics row.

Created with O_CREAT | O_EXCL (atomic on local file systems and NFSv3+), so two processes
started on one --out cannot both train into it and duplicate every metrics row. A lock left by a
process that died (same host, PID gone) is taken over; on another host liveness cannot be
checked, so the error says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lightrnn.core.errors import UsageError

LOCK_NAME = ".lock"


class OutDirLocked(UsageError):
    """Another live process holds the output folder's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> tuple[int | None, str, str]:
    """(PID, host, command) of a lock file; bounded read, any garbage is (None, "", "")."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(4096).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, "", ""
    fields = text.split()
    pid = int(fields[0]) if fields and fields[0].isascii() and fields[0].isdigit() and len(fields[0]) < 10 else None
    host = fields[1][:255] if len(fields) > 1 else ""
    return pid, host, " ".join(fields[2:])[:80] or "lightrnn train"  # a lock of before the command was recorded


@contextlib.contextmanager
def out_dir_lock(out_dir: str | os.PathLike, holder: str = "lightrnn train") -> Iterator[Path]:
    """Hold OUT/.lock for the duration of the block; raise OutDirLocked naming the holder's PID.

    `holder`: the command taking it, written into the lock file so a refusal names what holds it.
    """
    path = Path(out_dir) / LOCK_NAME
    created = not path.parent.exists()  # a folder this lock made is removed again if left empty
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, owner_host, owner = _read(path)
            if pid is None and time.time() - _mtime(path) < 5:
                time.sleep(0.1)  # just created, PID not written yet
                continue
            if pid is not None and pid != os.getpid() and (owner_host != host or _alive(pid)):
                raise OutDirLocked(
                    f"{out_dir} is in use by {owner or 'lightrnn'} process {pid} on {owner_host or 'an unknown host'} "
                    f"(lock file {path}); wait for it to finish or stop it, or if that process is gone delete {path}"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process is dead (or the lock is our own leftover)
            continue
        try:
            os.write(fd, f"{os.getpid()} {host} {holder}\n".encode())
        finally:
            os.close(fd)
        break
    else:
        raise OutDirLocked(f"could not take the lock {path}; another process keeps recreating it")
    try:
        yield path
    finally:
        pid, _, _ = _read(path)
        if pid == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if created:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when empty: a failed first run leaves no folder behind


def live_holder(out_dir: str | os.PathLike) -> str | None:
    """Who holds OUT/.lock now ("lightrnn train process 123 on host"), or None when nobody live does.

    For a workflow manager that must not touch OUT's files while another process writes them:
    Snakemake deletes a job's declared outputs before running it, so the train rule asks this
    while it plans the job, before anything is deleted (workflow/rules/train.smk).
    """
    path = Path(out_dir) / LOCK_NAME
    pid, owner_host, owner = _read(path)
    if pid is None or pid == os.getpid():
        return None
    if owner_host == socket.gethostname() and not _alive(pid):
        return None  # stale: the next run takes it over
    return f"{owner} process {pid} on {owner_host or 'an unknown host'} (lock file {path})"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as error:
        if error.errno == errno.ENOENT:
            return 0.0
        raise
