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
- credentials go only to the origin they were given for: a redirect to another origin (scheme,
  host or port), or from https to http, is followed WITHOUT the Authorization header (dropped,
  with a warning naming the new host, as curl and requests do); no .netrc is read. A redirect to
  anything but http(s) (ftp://, file://) is refused;
- every wait is bounded and announced: no byte for `stall_s` seconds (default 60, `--stall-s`,
  the workflow's `fetch: stall_s`) is a stalled transfer, resumed like a dropped one, each retry
  saying what broke, at which byte and how long it waits; the whole fetch, retries and mirrors
  included, stops after `max_time_s` (default 12 hours, `--max-time-s`, `fetch: max_time_s`),
  even against a server that drips a byte at a time, keeping the `.part` bytes for the next fetch;
  the stall bound covers the response headers too (a status line dripped a byte a second is a stall);
- every download is bounded in size: `max_bytes` (`--max-bytes`; default `SIZE_MARGIN` times the
  corpus's published size, `DEFAULT_MAX_BYTES` where none is known); a Content-Length above it,
  or a body that grows past it, is refused and its `.part` removed (it cannot be the archive),
  and a Content-Length larger than the destination's free space is refused before any byte is written;
- the URL schemes fetch accepts are `SCHEMES`; the workflow schema's pattern for `corpora.*.url`
  is `url_pattern()` (a test keeps the two equal), so a config the dry run accepts is one fetch takes;
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
import re
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lightrnn import __version__
from lightrnn.core.errors import DataError, DiskFull, is_disk_full
from lightrnn.core.fileio import write_text
from lightrnn.core.loaders import content_length, input_file
from lightrnn.core.runlock import out_dir_lock
from lightrnn.data.corpora import LOCK_ENV, Checksum, Corpus, expected_checksum, get_corpus, lock_file_path, read_lock
from lightrnn.data.progress import Progress

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "file")  # what fetch downloads from; the workflow schema's url pattern is built from it
STALL_S = 60.0  # no byte for this long: a stalled transfer (resumed)
MAX_TIME_S = 12 * 3600.0  # the whole fetch, retries and mirrors included
SIZE_MARGIN = 2  # a download may be this many times the corpus's published size (a mirror may recompress)
DEFAULT_MAX_BYTES = 8 << 30  # the bound of a corpus without a published size (the largest known is 1.8 GB)

USER_AGENT = f"lightrnn-replication/{__version__} (LightRNN replication suite data fetcher; urllib)"
CHUNK_BYTES = 1 << 20


class IncompleteDownload(OSError):
    """The connection ended before Content-Length bytes arrived; resumable."""


class DeadlineExceeded(OSError):
    """The fetch's total-time bound passed; not retried (the `.part` bytes are kept)."""


class TooLarge(DataError):
    """A download larger than its bound (`max_bytes`): not the archive; not retried, its `.part` removed."""


class HeadersStalled(TimeoutError):
    """The response headers did not all arrive within the stall bound; resumed like a stalled body."""


class BadResponse(http.client.HTTPException):
    """A server's answer that is not what HTTP allows (a Content-Length that is no byte count)."""


# A transfer that started and broke off: resumed with a Range request. Anything else (refused,
# unknown host, TLS, HTTP errors) will not get better by asking again a second later.
_DROPPED = (IncompleteDownload, http.client.IncompleteRead, ConnectionResetError, ConnectionAbortedError,
            BrokenPipeError, socket.timeout, TimeoutError)


def url_pattern() -> str:
    """The regular expression the workflow schema gives `corpora.*.url`: exactly the `SCHEMES` fetch takes."""
    return "^(" + "|".join(SCHEMES) + "):"


def _shown(url: str) -> str:
    """A URL that may not parse, shown without what could be a secret (user info, query, fragment)."""
    text = re.sub(r"//[^/?#]*@", "//", str(url)).split("#", 1)[0]
    text = text.split("?", 1)[0] + ("?..." if "?" in text else "")
    return text if len(text) <= 200 else text[:197] + "..."


def check_url(url: str, option: str = "--url") -> urllib.parse.SplitResult:
    """The parts of `url`, or one ValueError naming it (its secrets hidden) and what fetch accepts."""
    names = [f"{scheme}://" for scheme in SCHEMES]
    accepted = ", ".join(names[:-1]) + " or " + names[-1]
    try:
        parts = urllib.parse.urlsplit(str(url))
        parts.port  # noqa: B018 (raises ValueError for a port that is no number or out of range)
    except ValueError as error:
        raise ValueError(f"{option} {_shown(url)!r} is not a valid URL ({error}); pass an {accepted} URL") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"{option} {_shown(url)!r}: fetch does not download {parts.scheme or 'scheme-less'} URLs; "
                         f"pass an {accepted} URL")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise ValueError(f"{option} {_shown(url)!r} names no host; pass an {accepted} URL")
    return parts


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
    stall_s: float = STALL_S,
    max_time_s: float = MAX_TIME_S,
    backoff_s: float = 2.0,
    max_bytes: int | None = None,
) -> Path:
    """Download `corpus` (a corpus or dataset name) into directory `dest`; return the file's path.

    `url` replaces the registry's URLs (a mirror or a `file://` cache); `sha256` replaces the
    registry's checksum. A file already in place is verified, not downloaded again. A corpus
    without a published checksum (ACLW) has its sha256 pinned in `lock_file` (default
    `lightrnn/data/checksums.lock.json`, or $LIGHTRNN_CHECKSUM_LOCK) on the first download.
    `retries` is the number of resumptions after a dropped or stalled transfer, per URL;
    `stall_s`: no byte for this long is a stalled transfer; `max_time_s`: the whole fetch's bound;
    `max_bytes`: the largest file accepted (default: `max_size(corpus)`).
    """
    for name, value in (("--stall-s", stall_s), ("--max-time-s", max_time_s)):
        if not (isinstance(value, (int, float)) and 0 < value < 10 * 365 * 86400):  # NaN fails too
            raise ValueError(f"{name} must be a number of seconds > 0 (and under ten years), got {value!r}")
    if max_bytes is not None and not (isinstance(max_bytes, int) and 0 < max_bytes < 1 << 62):
        raise ValueError(f"--max-bytes must be a whole number of bytes > 0 (and under 2^62), got {max_bytes!r}")
    if url is not None:
        check_url(url)
    entry = get_corpus(corpus)
    if entry.archive_format == "manual":
        raise ValueError(f"corpus {entry.name!r} cannot be downloaded: {entry.note}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # One fetch per folder (DEST/.lock, as `lightrnn train`): two would write one .part at once.
    with out_dir_lock(dest, "lightrnn data fetch"):
        clock = _Clock(stall_s, max_time_s, max_size(entry) if max_bytes is None else max_bytes)
        return _fetch(entry, dest, url, sha256, lock_file, retries, clock, backoff_s)


def max_size(entry: Corpus) -> int:
    """The default size bound of `entry`'s download: SIZE_MARGIN x its published size, else DEFAULT_MAX_BYTES."""
    return SIZE_MARGIN * entry.size_bytes if entry.size_bytes else DEFAULT_MAX_BYTES


class _Clock:
    """The bounds of one fetch: `stall_s` per wait for a byte, `max_time_s` for the whole, and
    `max_bytes`, the size of the file (checked against Content-Length and every byte received)."""

    def __init__(self, stall_s: float, max_time_s: float, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.stall_s, self.max_time_s, self.max_bytes = float(stall_s), float(max_time_s), int(max_bytes)
        self.deadline = time.monotonic() + self.max_time_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self) -> float:
        """The socket timeout of the next wait: the stall bound, or less when the total bound is nearer."""
        return max(min(self.stall_s, self.left()), 0.001)

    def too_large(self, part: Path, size: int, what: str) -> TooLarge:
        """The size bound passed: the `.part` is removed (no prefix of the archive is that large)."""
        part.unlink(missing_ok=True)
        return TooLarge(
            f"{what} {size} bytes, more than the bound of {self.max_bytes} bytes (--max-bytes; by default "
            f"{SIZE_MARGIN} x the corpus's published size): not the archive; the partial file was removed"
        )

    def expired(self, part: Path) -> DeadlineExceeded:
        have = part.stat().st_size if part.exists() else 0
        return DeadlineExceeded(
            f"stopped after {self.max_time_s:g} s, the fetch's total-time bound (--max-time-s, the workflow's "
            f"fetch: max_time_s); {have} bytes are kept in {part} and the next fetch resumes"
        )


def _fetch(entry: Corpus, dest: Path, url: str | None, sha256: str | None, lock_file: Path | None, retries: int,
           clock: _Clock, backoff_s: float) -> Path:
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
            _download(candidate, part, retries=retries, clock=clock, backoff_s=backoff_s)
            break
        except DeadlineExceeded as error:
            raise ValueError(f"could not download corpus {entry.name!r} from {redact_url(candidate)}: {error}") from None
        except TooLarge as error:
            raise TooLarge(f"could not download corpus {entry.name!r} from {redact_url(candidate)}: {error}") from None
        except DiskFull:
            raise  # this machine's disk: no mirror helps
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            _raise_if_local(error, part)
            failures.append(f"{redact_url(candidate)}: {_describe(error)}")
            if candidate != urls[-1]:  # the final error lists every failure; this says a mirror comes next
                if clock.left() <= 0:
                    raise ValueError(f"could not download corpus {entry.name!r} ({'; '.join(failures)}): "
                                     f"{clock.expired(part)}") from None
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
        if isinstance(error.reason, (socket.timeout, TimeoutError)):
            return "no answer (timed out connecting)"
        return f"{error.reason}"
    if isinstance(error, HeadersStalled):
        return str(error)
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "no byte arrived within the stall deadline"
    return f"{type(error).__name__}: {error}"


def _download(url: str, part: Path, *, retries: int, clock: _Clock, backoff_s: float) -> None:
    """Append the bytes of `url` to `part` from its current size; resume after dropped or stalled transfers only."""
    scheme = check_url(url).scheme.lower()
    for attempt in range(retries + 1):
        if clock.left() <= 0:
            raise clock.expired(part)
        try:
            if scheme == "file":
                _copy_local(url, part, clock)
            else:
                _download_http(url, part, clock)
            return
        except urllib.error.URLError:
            raise  # HTTP errors, refused connections, unknown hosts, TLS: the caller tries the next mirror
        except _DROPPED as error:
            if attempt == retries:
                raise
            have = part.stat().st_size if part.exists() else 0
            wait = min(backoff_s * (2**attempt), max(clock.left(), 0.0))
            log.warning("%s: %s at byte %d; waiting %.0f s, then resuming from byte %d (attempt %d of %d; the "
                        "fetch stops %.0f s from now at the latest)", redact_url(url), _describe(error), have,
                        wait, have, attempt + 1, retries, max(clock.left(), 0.0))
            time.sleep(wait)
    raise clock.expired(part)


def _copy_local(url: str, part: Path, clock: _Clock) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        input_file(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"{redact_url(url)}: no such file {source}") from None
    offset = part.stat().st_size if part.exists() else 0
    total = source.stat().st_size
    if total > clock.max_bytes:
        raise clock.too_large(part, total, f"{source} holds")
    if offset > total:
        offset = 0  # a stale .part from some other file: start again
    with open(source, "rb") as reader, open(part, "r+b" if offset else "wb") as writer:
        reader.seek(offset)
        writer.seek(offset)
        writer.truncate()
        _copy_stream(reader, writer, offset, total, part.name)


class _SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follow redirects, sending the Authorization header only to the origin it was given for.

    A redirect to another scheme, host or port, or from https to http, drops the header (a
    warning names the new host); a redirect to anything but http(s) is refused.
    """

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001 (urllib's signature)
        try:
            return super().http_error_302(req, fp, code, msg, headers)
        except ValueError as error:  # urllib parses the Location before `redirect_request` sees it
            location = _shown(headers.get("Location") or headers.get("URI") or "")
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to an invalid URL refused ({location}: "
                                         f"{error})", headers, fp) from None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        try:
            new = urllib.parse.urlsplit(newurl)
            new.port  # noqa: B018 (raises ValueError for a port that is no number or out of range)
        except ValueError as error:
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to an invalid URL refused ({_shown(newurl)}: "
                                         f"{error})", headers, fp) from None
        if new.scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a {new.scheme or 'scheme-less'} URL "
                                         f"refused ({_shown(newurl)})", headers, fp)
        if new.username is not None:
            raise urllib.error.HTTPError(req.full_url, code, "redirect to a URL with user info refused", headers, fp)
        request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if request is not None and request.has_header("Authorization") and _origin(newurl) != _origin(req.full_url):
            request.remove_header("Authorization")
            log.warning("redirected to %s, another origin: the credentials are not sent there",
                        redact_url(newurl))
        return request


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


class _Watchdog:
    """Closes every socket of one transfer when the fetch's total-time bound passes.

    A socket timeout bounds one wait; a server that drips a byte every few seconds never trips
    it, so the total bound needs a timer that ends the transfer from outside.
    """

    def __init__(self, clock: _Clock) -> None:
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.timer = threading.Timer(max(clock.left(), 0.0), self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self.close_all()

    def close_all(self) -> None:
        """Shut every socket down without marking the total bound as passed (the header stall)."""
        for sock in list(self.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def watch(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        if self.fired:
            self._fire()
        return sock

    def connection(self, base: type) -> type:
        watchdog = self

        class Watched(base):
            def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
                super().__init__(*args, **kwargs)
                create = self._create_connection
                self._create_connection = lambda *a, **k: watchdog.watch(create(*a, **k))

        return Watched


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    class Http(urllib.request.HTTPHandler):
        def http_open(self, req):  # noqa: ANN001
            return self.do_open(watchdog.connection(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req):  # noqa: ANN001
            return self.do_open(watchdog.connection(http.client.HTTPSConnection), req, context=self._context)

    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), Http(), Https(), _SameOriginCredentials(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _open(request: urllib.request.Request, timeout: float, watchdog: _Watchdog):  # noqa: ANN202
    """The response to `request` through the opener of one transfer (tests replace this)."""
    return _opener(watchdog).open(request, timeout=timeout)


def _download_http(url: str, part: Path, clock: _Clock) -> None:
    watchdog = _Watchdog(clock)
    watchdog.timer.start()
    try:
        _transfer_http(url, part, clock, watchdog)
    except (OSError, http.client.HTTPException, ValueError):
        if watchdog.fired:
            raise clock.expired(part) from None
        raise
    finally:
        watchdog.timer.cancel()
    if watchdog.fired:
        raise clock.expired(part)


def _transfer_http(url: str, part: Path, clock: _Clock, watchdog: _Watchdog) -> None:
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
    # A socket timeout bounds one wait for a byte; headers dripped a byte a second never trip it,
    # so the whole status line and headers get one stall bound, enforced from outside.
    stalled = threading.Event()
    header_timer = threading.Timer(clock.wait(), lambda: (stalled.set(), watchdog.close_all()))
    header_timer.daemon = True
    header_timer.start()
    try:
        response = _open(request, clock.wait(), watchdog)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # the .part already holds every byte; the checksum decides
        raise
    except (OSError, http.client.HTTPException, ValueError):
        if stalled.is_set() and not watchdog.fired:
            raise HeadersStalled(f"the response headers did not arrive within the stall deadline "
                                 f"({clock.stall_s:g} s, --stall-s)") from None
        raise
    finally:
        header_timer.cancel()
    if stalled.is_set():  # http.client takes the end of a cut-off head for the end of the headers
        response.close()
        raise HeadersStalled(f"the response headers did not arrive within the stall deadline "
                             f"({clock.stall_s:g} s, --stall-s)")
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
        if total is not None and total > clock.max_bytes:
            raise clock.too_large(part, total, f"the server announces (Content-Length, from byte {offset})")
        if length is not None:
            _check_free_space(part, length)
        with open(part, "ab" if offset else "wb") as writer:
            received = _copy_stream(response, writer, offset, total, part.name, clock, part)
    if total is not None and received < total:
        # http.client returns b"" on a dropped connection rather than raising: check the count.
        raise IncompleteDownload(f"connection closed after {received} of {total} bytes")


def _check_free_space(part: Path, length: int) -> None:
    """A DiskFull before the first byte when the announced body cannot fit on `part`'s disk."""
    free = shutil.disk_usage(part.parent).free
    if length > free:
        have = part.stat().st_size if part.exists() else 0
        raise DiskFull(f"no space left to write {part}: the server announces {length} more bytes and "
                       f"{free} are free; nothing was written ({have} bytes kept for the next fetch): free space "
                       f"or fetch into another --dest")


def _copy_stream(reader, writer, offset: int, total: int | None, label: str, clock: _Clock | None = None,
                 part: Path | None = None) -> int:
    """Copy reader to writer in blocks of up to 1 MiB; return the byte position reached (offset + copied).

    With a `clock` (HTTP), each read returns what one wait brought (`read1`): `read(1 MiB)` would
    gather a dripping server's bytes for ever. Each wait's timeout is the stall bound (less when
    the total bound is nearer).
    """
    bar = None
    progress = Progress("fetch", label, initial_bytes=offset)  # lines in a log when stderr is no terminal
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label)
    position = offset
    try:
        read = getattr(reader, "read1", reader.read) if clock is not None else reader.read
        sock = _socket_of(reader) if clock is not None else None
        while True:
            if sock is not None:
                sock.settimeout(clock.wait())
            block = read(CHUNK_BYTES)
            if not block:
                break
            position += len(block)
            if clock is not None and part is not None and position > clock.max_bytes:
                raise clock.too_large(part, position, "the server sent at least")
            writer.write(block)
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


def _socket_of(response) -> socket.socket | None:  # noqa: ANN001
    """The socket under an HTTP response (to set each wait's timeout), None where it cannot be found."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
