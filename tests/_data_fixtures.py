"""Fixtures for the data tests: a local HTTP server (127.0.0.1, port 0) that serves generated archives.

The server honours `Range: bytes=N-` (so resumption can be tested), can drop the connection
half-way through a file once, can ignore ranges, and can reject Python's default User-Agent the
way the WikiText host does. It records every request.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lightrnn.data import corpora
from lightrnn.data.tiny import make_tiny_archive


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    drop_once: set[str] = field(default_factory=set)  # paths whose next response is cut half-way
    honour_ranges: bool = True
    reject_python_agent: bool = True


class ArchiveServer:
    """A threaded HTTP server on 127.0.0.1; `url(name)` is the address of `files[name]`."""

    def __init__(self) -> None:
        self.state = ServerState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                return

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                name = self.path.lstrip("/").split("?", 1)[0]  # a signed URL's query is not part of the name
                agent = self.headers.get("User-Agent", "")
                range_header = self.headers.get("Range")
                state.requests.append({"path": name, "range": range_header, "agent": agent,
                                       "authorization": self.headers.get("Authorization")})
                if state.reject_python_agent and agent.startswith("Python-urllib"):
                    self.send_error(403, "Forbidden")
                    return
                if name not in state.files:
                    self.send_error(404, "Not Found")
                    return
                body = state.files[name]
                start = 0
                if range_header and state.honour_ranges:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if name in state.drop_once:
                    state.drop_once.discard(name)
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # the client sees EOF before Content-Length
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def archive_server():
    server = ArchiveServer()
    try:
        yield server
    finally:
        server.close()


FAMILIES = ("ptb", "wikitext2", "wikitext103", "aclw", "billionw")


def serve_tiny(server: ArchiveServer, corpus: str, tmp_path: Path, seed: int = 0) -> tuple[str, str]:
    """Generate the tiny archive of `corpus`, serve it, return (url, sha256)."""
    path, sha256 = make_tiny_archive(corpus, tmp_path / "generated" / corpus, seed=seed)
    server.state.files[path.name] = path.read_bytes()
    return server.url(path.name), sha256


def datasets_of(corpus: str) -> list[str]:
    return [name for name, spec in corpora.DATASETS.items() if spec.corpus == corpus]


class LoopbackTCPServer:
    """A raw TCP server on 127.0.0.1 for fetch's hostile-server tests: accepts in a thread, hands each
    connection to `_answer` (a subclass says what it sends), stops within 0.1 s of `close`."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple-examples.tgz"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
