"""Download a registry corpus: resumable, checksum-verified, moved into place atomically.

Why not pooch: it re-downloads from byte 0 after an interruption (no HTTP Range), which costs
hours on the 1.8 GB One Billion Word archive over a slow link. This fetcher is plain urllib:
- the bytes go to `<file>.part`; an interrupted transfer is resumed with `Range: bytes=N-`
  (a 200 answer to a range request means the server ignores ranges: start again from 0);
- a custom User-Agent (the WikiText host rejects Python's default one);
- the checksum (md5 or sha256, per registry entry) is checked before `os.replace` puts the
  file in place; a mismatch deletes the partial file and says what to do;
- `file://` URLs work (offline caches, the smoke configuration's generated archives);
- a tqdm progress bar only when stderr is a terminal (logs stay clean under Snakemake);
- only a dropped transfer is resumed: a refused connection, an unknown host or a TLS failure
  is an error at once (the `.part` bytes are kept for the next fetch);
- credentials never leave the request: a `user:password@` in the URL is sent as an
  Authorization header, and every URL that is logged, printed or written to the lock file has
  its user info, query string and fragment removed (signed URLs carry secrets there);
- a corpus without a published checksum (ACLW) is pinned only once the file opens as the
  expected archive with every member its datasets need: an HTML error page is never pinned.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import json
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lightrnn import __version__
from lightrnn.core.errors import DataError, DiskFull, is_disk_full
from lightrnn.core.fileio import write_text
from lightrnn.core.loaders import content_length
from lightrnn.core.runlock import out_dir_lock
from lightrnn.data.corpora import LOCK_ENV, Checksum, Corpus, expected_checksum, get_corpus, lock_file_path, read_lock
from lightrnn.data.progress import Progress

log = logging.getLogger(__name__)

USER_AGENT = f"lightrnn-replication/{__version__} (LightRNN replication suite data fetcher; urllib)"
CHUNK_BYTES = 1 << 20


class IncompleteDownload(OSError):
    """The connection ended before Content-Length bytes arrived; resumable."""


class BadResponse(http.client.HTTPException):
    """A server's answer that is not what HTTP allows (a Content-Length that is no byte count)."""


# A transfer that started and broke off: resumed with a Range request. Anything else (refused,
# unknown host, TLS, HTTP errors) will not get better by asking again a second later.
_DROPPED = (IncompleteDownload, http.client.IncompleteRead, ConnectionResetError, ConnectionAbortedError,
            BrokenPipeError, socket.timeout, TimeoutError)


def redact_url(url: str) -> str:
    """`url` without user info, query string and fragment: safe to log, print and write to a file."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.scheme == "file" and "@" not in parts.netloc:
        # As the user wrote it: `file:relative/path` stays relative (read against the working
        # directory), never rewritten to `file:///relative/path`, which names another file.
        return url.split("#", 1)[0].split("?", 1)[0] + ("?..." if parts.query else "")
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    hidden = "?..." if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + hidden


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks (bounded memory on multi-GB archives)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    corpus: str,
    dest: Path,
    url: str | None = None,
    sha256: str | None = None,
    *,
    lock_file: Path | None = None,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 2.0,
) -> Path:
    """Download `corpus` (a corpus or dataset name) into directory `dest`; return the file's path.

    `url` replaces the registry's URLs (a mirror or a `file://` cache); `sha256` replaces the
    registry's checksum. A file already in place is verified, not downloaded again. A corpus
    without a published checksum (ACLW) has its sha256 pinned in `lock_file` (default
    `lightrnn/data/checksums.lock.json`, or $LIGHTRNN_CHECKSUM_LOCK) on the first download.
    `retries` is the number of resumptions after a dropped connection, per URL.
    """
    entry = get_corpus(corpus)
    if entry.archive_format == "manual":
        raise ValueError(f"corpus {entry.name!r} cannot be downloaded: {entry.note}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # One fetch per folder (DEST/.lock, as `lightrnn train`): two would write one .part at once.
    with out_dir_lock(dest, "lightrnn data fetch"):
        return _fetch(entry, dest, url, sha256, lock_file, retries, timeout_s, backoff_s)


def _fetch(entry: Corpus, dest: Path, url: str | None, sha256: str | None, lock_file: Path | None, retries: int,
           timeout_s: float, backoff_s: float) -> Path:
    target = dest / entry.filename
    part = target.with_name(target.name + ".part")
    expected = Checksum("sha256", sha256) if sha256 else expected_checksum(entry, lock_file)

    if target.exists():
        _verify_existing(target, expected, entry)
        if expected is None:
            try:
                _check_archive(entry, target, f"{target} is not")
            except DataError as error:
                raise DataError(f"{error}; nothing was pinned: delete it and fetch again") from None
            _pin(entry, target, url or str(target), lock_file)
        return target

    urls = (url,) if url else entry.urls
    failures: list[str] = []
    for candidate in urls:
        try:
            _download(candidate, part, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s)
            break
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            _raise_if_local(error, part)
            failures.append(f"{redact_url(candidate)}: {_describe(error)}")
            if candidate != urls[-1]:  # the final error lists every failure; this says a mirror comes next
                log.warning("download failed: %s; trying the next URL", failures[-1])
    else:
        kept = f"; {part.stat().st_size} bytes are kept in {part} and the next fetch resumes" if part.exists() else ""
        raise ValueError(
            f"could not download corpus {entry.name!r} ({'; '.join(failures)}){kept}. "
            f"Retry, or pass --url MIRROR (https://, http:// or file://) with the same file."
        )
    source = redact_url(candidate)

    if expected is not None:
        actual = file_digest(part, expected.algorithm)
        if actual != expected.hexdigest:
            part.unlink()
            raise ValueError(
                f"checksum mismatch for {target.name} from {source}: "
                f"expected {expected}, got {expected.algorithm}:{actual}; the partial file was removed. "
                f"If the publisher changed the file and you trust it, pass --sha256 <its sha256>; "
                f"otherwise fetch from a mirror with --url URL."
            )
    else:
        try:
            _check_archive(entry, part, f"the file downloaded from {source} is not")
        except DataError as error:
            part.unlink()
            raise DataError(
                f"{error}; it was removed and nothing was pinned: check the URL (a login or error page?) "
                f"or pass --url MIRROR"
            ) from None
    os.replace(part, target)
    if expected is None:
        _pin(entry, target, candidate, lock_file)
    log.info("fetched %s -> %s", entry.name, target)
    return target


def _raise_if_local(error: BaseException, part: Path) -> None:
    """A failure on this machine's side (full disk, permissions) is not the server's: no mirror helps."""
    if is_disk_full(error):
        have = part.stat().st_size if part.exists() else 0
        raise DiskFull(
            errno.ENOSPC,
            f"no space left to write {part}; the {have} bytes so far are kept and the next fetch resumes: "
            f"free space on that disk and run it again",
        ) from error
    if isinstance(error, (PermissionError, IsADirectoryError, NotADirectoryError)) and error.filename is not None:
        raise error


def _check_archive(entry: Corpus, path: Path, subject: str) -> None:
    """DataError unless `path` opens as `entry`'s archive with every member its datasets read."""
    from lightrnn.data.prepare import missing_members

    try:
        missing = missing_members(entry, path)
    except ValueError as error:
        raise DataError(f"{subject} the {entry.name} {entry.archive_format} archive: {error}") from None
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{subject} the {entry.name} archive: it lacks {shown}")


def _verify_existing(target: Path, expected: Checksum | None, entry: Corpus) -> None:
    if expected is None:
        return
    actual = file_digest(target, expected.algorithm)
    if actual != expected.hexdigest:
        raise ValueError(
            f"{target} exists but its {expected.algorithm} is {actual}, expected {expected.hexdigest} "
            f"for corpus {entry.name!r}: delete it and fetch again, or pass --sha256 if it is a file you trust."
        )


def _pin(entry: Corpus, target: Path, source: str, lock_file: Path | None) -> None:
    """Record the sha256 of a corpus that has no published checksum, so later fetches verify it."""
    path = lock_file or lock_file_path()
    digest = file_digest(target, "sha256")
    raw = dict(read_lock(path))
    raw[entry.name] = {"sha256": digest, "size_bytes": target.stat().st_size, "url": redact_url(source)}
    try:
        write_text(path, json.dumps(raw, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        raise ValueError(
            f"downloaded {target} (sha256 {digest}) but could not pin it in {path} ({error.strerror or error}); "
            f"set {LOCK_ENV} to a writable file, or pass --sha256 {digest} from now on."
        ) from error
    log.warning("corpus %s has no published checksum: pinned sha256 %s in %s", entry.name, digest, path)


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        hint = " (the host may reject the User-Agent or moved the file: try a mirror)" if error.code == 403 else ""
        return f"HTTP {error.code} {error.reason}{hint}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    return f"{type(error).__name__}: {error}"


def _download(url: str, part: Path, *, retries: int, timeout_s: float, backoff_s: float) -> None:
    """Append the bytes of `url` to `part` from its current size; resume after dropped transfers only."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"--url {redact_url(url)!r}: use an http://, https:// or file:// URL")
    for attempt in range(retries + 1):
        try:
            if scheme == "file":
                _copy_local(url, part)
            else:
                _download_http(url, part, timeout_s)
            return
        except urllib.error.URLError:
            raise  # HTTP errors, refused connections, unknown hosts, TLS: the caller tries the next mirror
        except _DROPPED as error:
            if attempt == retries:
                raise
            have = part.stat().st_size if part.exists() else 0
            log.warning("%s: %s at byte %d; resuming (attempt %d of %d)", redact_url(url), _describe(error), have,
                        attempt + 1, retries)
            time.sleep(backoff_s * (2**attempt))


def _copy_local(url: str, part: Path) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise FileNotFoundError(f"{redact_url(url)}: no such file {source}")
    offset = part.stat().st_size if part.exists() else 0
    total = source.stat().st_size
    if offset > total:
        offset = 0  # a stale .part from some other file: start again
    with open(source, "rb") as reader, open(part, "r+b" if offset else "wb") as writer:
        reader.seek(offset)
        writer.seek(offset)
        writer.truncate()
        _copy_stream(reader, writer, offset, total, part.name)


def _download_http(url: str, part: Path, timeout_s: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        # user:password@ goes in a header: urllib would take it for part of the host name.
        login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")
        host = parts.hostname + (f":{parts.port}" if parts.port is not None else "")
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # the .part already holds every byte; the checksum decides
        raise
    with response:
        try:
            length = content_length(response.headers.get("Content-Length"), redact_url(url))
        except ValueError as error:
            raise BadResponse(str(error)) from None
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise IncompleteDownload(f"server answered Content-Range {content_range!r} to a resume at {offset}")
        elif offset:
            offset = 0  # the server ignored the range and sends the whole file
        total = offset + length if length is not None else None
        with open(part, "ab" if offset else "wb") as writer:
            received = _copy_stream(response, writer, offset, total, part.name)
    if total is not None and received < total:
        # http.client returns b"" on a dropped connection rather than raising: check the count.
        raise IncompleteDownload(f"connection closed after {received} of {total} bytes")


def _copy_stream(reader, writer, offset: int, total: int | None, label: str) -> int:
    """Copy reader to writer in 1 MiB blocks; return the byte position reached (offset + copied)."""
    bar = None
    progress = Progress("fetch", label, initial_bytes=offset)  # lines in a log when stderr is no terminal
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label)
    position = offset
    try:
        for block in iter(lambda: reader.read(CHUNK_BYTES), b""):
            writer.write(block)
            position += len(block)
            if bar is not None:
                bar.update(len(block))
            else:
                progress.add(bytes=len(block))
    finally:
        writer.flush()
        if bar is not None:
            bar.close()
    progress.done()
    return position
