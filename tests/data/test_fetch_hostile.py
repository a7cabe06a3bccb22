"""fetch against hostile servers and URLs: credentials stay with their origin, every wait is bounded
and announced, a bad URL is one line naming it (secrets hidden), the workflow schema agrees with fetch.

Every server here is started by the test on 127.0.0.1 and stopped at its end; every fetch runs
under deadlines of a few seconds and the test checks how long it took.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from lightrnn.cli import main
from lightrnn.data import fetch as fetch_module
from lightrnn.data.fetch import SCHEMES, check_url, fetch, url_pattern
from tests._data_fixtures import LoopbackTCPServer, archive_server, serve_tiny  # noqa: F401 (pytest fixture)

ROOT = Path(__file__).resolve().parents[2]


class Redirector:
    """An HTTP server on 127.0.0.1 that answers every GET with a redirect to `target(path)`."""

    def __init__(self, target, code: int = 302) -> None:
        self.requests: list[dict] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802
                requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
                self.send_response(code)
                self.send_header("Location", target(self.path.lstrip("/")))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("other_host", ["127.0.0.1", "localhost"])
def test_credentials_are_dropped_on_a_redirect_to_another_origin(archive_server, tmp_path, other_host, caplog):
    url, sha256 = serve_tiny(archive_server, "ptb", tmp_path)
    name = url.rsplit("/", 1)[1]
    port = archive_server.httpd.server_address[1]
    redirector = Redirector(lambda path: f"http://{other_host}:{port}/{path}")  # another port: another origin
    try:
        caplog.set_level(logging.WARNING)
        path = fetch("ptb", tmp_path / "raw", url=f"http://user:s3cret@127.0.0.1:{redirector.port}/{name}",
                     sha256=sha256, backoff_s=0, stall_s=5, max_time_s=30)
    finally:
        redirector.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert redirector.requests[0]["authorization"] == _basic("user", "s3cret")  # its own origin gets them
    assert [r["authorization"] for r in archive_server.state.requests] == [None]  # the other origin never does
    assert "another origin: the credentials are not sent there" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("target", ["http://127.0.0.1:8080/b", "/c?x=1", "HTTP://127.0.0.1:8080/d"])
def test_credentials_are_kept_on_a_same_origin_redirect(target):
    request = urllib.request.Request("http://127.0.0.1:8080/a", headers={"Authorization": "Basic x"})
    new = fetch_module._SameOriginCredentials().redirect_request(
        request, None, 302, "Found", {}, urllib.parse.urljoin(request.full_url, target))
    assert new.get_header("Authorization") == "Basic x"


@pytest.mark.parametrize("source, target", [
    ("https://h.example/a", "http://h.example/a"),  # https -> http: dropped
    ("https://h.example/a", "https://h.example:8443/a"),  # another port
    ("http://h.example/a", "http://evil.example/a"),  # another host
    ("http://h.example/a", "https://h.example/a"),  # another scheme (an upgrade is still another origin)
    ("http://h.example:80/a", "http://h.example.evil.example/a"),
])
def test_every_cross_origin_or_downgrading_redirect_drops_the_header(source, target):
    request = urllib.request.Request(source, headers={"Authorization": "Basic c2VjcmV0"})
    new = fetch_module._SameOriginCredentials().redirect_request(request, None, 302, "Found", {}, target)
    assert new is not None and new.get_header("Authorization") is None
    assert new.full_url == target


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/x.tgz", "file:///etc/passwd", "gopher://h/x",
                                    "http://user:pw@127.0.0.1/x", "http://[::1/x", "http://127.0.0.1:99999/x",
                                    "SELF"])
def test_a_redirect_to_another_scheme_or_with_user_info_is_refused_in_one_line(tmp_path, target, capsys):
    holder: list[Redirector] = []
    redirector = Redirector(lambda path: f"http://127.0.0.1:{holder[0].port}/{path}" if target == "SELF" else target)
    holder.append(redirector)  # SELF: a redirect loop
    try:
        start = time.monotonic()
        status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url",
                       f"http://127.0.0.1:{redirector.port}/simple-examples.tgz", "--stall-s", "5",
                       "--max-time-s", "20"])
        elapsed = time.monotonic() - start
    finally:
        redirector.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert any(word in err[0] for word in ("refused", "not allowed", "infinite loop")), err
    assert "pw" not in err[0] and elapsed < 20
    assert not (tmp_path / "raw" / "simple-examples.tgz").exists()


class Silent(LoopbackTCPServer):
    """A TCP server on 127.0.0.1 that accepts and then answers nothing, or drips a response a byte at a time."""

    def __init__(self, drip_s: float | None = None, length: int = 10_000) -> None:
        self.drip_s, self.length = drip_s, length
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            if self.drip_s is None:
                self.stop.wait()  # accept, read nothing, answer nothing
                return
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.length}\r\n\r\n".encode()
            try:
                conn.sendall(head)
                while not self.stop.is_set():
                    conn.sendall(b"x")
                    self.stop.wait(self.drip_s)
            except OSError:
                return


def test_a_server_that_never_answers_is_a_stall_retried_with_announced_waits_then_one_line(tmp_path, caplog, capsys):
    server = Silent()
    caplog.set_level(logging.WARNING)
    try:
        start = time.monotonic()
        with pytest.raises(ValueError) as raised:
            fetch("ptb", tmp_path / "raw", url=server.url, retries=2, backoff_s=0.1, stall_s=0.5, max_time_s=30)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    message = str(raised.value)
    # Either bound may fire first: the socket's wait for a byte, or the headers' (the same stall_s).
    assert ("no byte arrived within the stall deadline" in message
            or "the response headers did not arrive within the stall deadline" in message)
    assert "\n" not in message
    assert elapsed < 5  # three waits of 0.5 s and two short backoffs, not the OS's TCP timeout
    assert server.connections == 3
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) == 2 and all("then resuming from byte 0" in w and "stops" in w for w in waits)


def test_a_dripping_server_is_stopped_by_the_total_time_bound_and_the_part_is_kept(tmp_path):
    server = Silent(drip_s=0.05)  # a byte every 50 ms: never a stall
    try:
        start = time.monotonic()
        status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", server.url,
                       "--stall-s", "1", "--max-time-s", "1.5"])
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert status == 2
    assert elapsed < 4
    part = tmp_path / "raw" / "simple-examples.tgz.part"
    assert part.is_file() and 0 < part.stat().st_size < 10_000  # what came is kept for the next fetch


def test_the_total_bound_message_names_the_option_and_the_part(tmp_path, capsys):
    server = Silent(drip_s=0.05)
    try:
        main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", server.url,
              "--stall-s", "1", "--max-time-s", "1"])
    finally:
        server.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "total-time bound (--max-time-s" in err[0] and ".part and the next fetch resumes" in err[0]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e12"])
def test_deadlines_must_be_finite_positive_seconds(tmp_path, value, capsys):
    for option in ("--stall-s", "--max-time-s"):
        status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", "http://127.0.0.1:9/x",
                       option, value])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and option in err[0], err
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("url, cause", [
    ("http://user:pw@127.0.0.1:99999/x.tgz", "Port out of range"),
    ("http://127.0.0.1:port/x.tgz", "Port could not be cast"),
    ("http://[::1/x.tgz", "Invalid IPv6 URL"),
    ("ftp://user:pw@mirror.example/x.tgz", "does not download ftp URLs"),
    ("gopher://mirror.example/x", "does not download gopher URLs"),
    ("mirror.example/x.tgz", "scheme-less"),
    ("http:///x.tgz?token=pw", "names no host"),
])
def test_a_url_fetch_cannot_use_is_one_line_naming_it_without_its_secrets(tmp_path, url, cause, capsys):
    status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "--url" in err[0] and cause in err[0] and "pw" not in err[0], err[0]
    assert not (tmp_path / "raw").exists()  # refused before anything is created


def test_the_workflow_schema_takes_exactly_the_schemes_fetch_takes():
    jsonschema = pytest.importorskip("jsonschema")
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    url_schema = schema["properties"]["corpora"]["additionalProperties"]["properties"]["url"]
    assert url_schema["pattern"] == url_pattern()
    for scheme in ("http", "https", "file", "ftp", "ftps", "gopher", "sftp", "data", "s3"):
        url = f"{scheme}://h.example/x.tgz" if scheme != "file" else "file:///tmp/x.tgz"
        valid = jsonschema.Draft202012Validator(url_schema).is_valid(url)
        try:
            check_url(url)
            taken = True
        except ValueError:
            taken = False
        assert valid == taken == (scheme in SCHEMES), scheme
