"""fetch's size bound, free-space check and header stall, against loopback servers the tests start.

Each server speaks raw HTTP on 127.0.0.1 (a head, then a body the test chooses: endless, huge by
its Content-Length only, or the head itself dripped a byte at a time); every fetch runs under a
deadline of seconds, and the test checks what was written to disk and how long it took.
"""

from __future__ import annotations

import socket
import time

import pytest

from lightrnn.cli import main
from lightrnn.data.corpora import get_corpus
from lightrnn.data.fetch import fetch, max_size
from tests._data_fixtures import LoopbackTCPServer


class RawServer(LoopbackTCPServer):
    """A TCP server on 127.0.0.1 that sends `head` (dripped one byte per `drip_s` when given), then
    `body_block` over and over until the client goes away or the test ends."""

    def __init__(self, head: bytes, body_block: bytes = b"", drip_s: float | None = None) -> None:
        self.head, self.body_block, self.drip_s = head, body_block, drip_s
        self.sent = 0
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request
                if self.drip_s is None:
                    conn.sendall(self.head)
                else:
                    for byte in self.head:
                        if self.stop.wait(self.drip_s):
                            return
                        conn.sendall(bytes([byte]))
                while self.body_block and not self.stop.is_set():
                    conn.sendall(self.body_block)
                    self.sent += len(self.body_block)
                self.stop.wait()
            except OSError:
                return


def _fetch_cli(server: RawServer, dest, *options: str) -> tuple[int, float]:
    start = time.monotonic()
    try:
        status = main(["data", "fetch", "ptb", "--dest", str(dest), "--url", server.url,
                       "--stall-s", "2", "--max-time-s", "20", *options])
    finally:
        server.close()
    return status, time.monotonic() - start


ENDLESS = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"  # no Content-Length: the body ends when the server closes


@pytest.mark.parametrize("options, bound", [(("--max-bytes", "300000"), 300_000), ((), None)])
def test_an_endless_body_stops_at_the_size_bound_and_its_part_is_removed(options, bound, tmp_path, capsys):
    bound = bound or max_size(get_corpus("ptb"))  # by default 2 x ptb's published size, about 9 MB
    server = RawServer(ENDLESS, b"x" * 65536)
    status, elapsed = _fetch_cli(server, tmp_path / "raw", *options)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert f"more than the bound of {bound} bytes (--max-bytes" in err[0] and "partial file was removed" in err[0]
    assert not list((tmp_path / "raw").glob("simple-examples.tgz*"))  # nothing left: not the archive
    assert elapsed < 15
    assert server.connections == 1  # not retried


def test_a_content_length_beyond_the_bound_is_refused_before_any_byte_is_written(tmp_path, capsys):
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n", b"x" * 65536)
    status, elapsed = _fetch_cli(server, tmp_path / "raw")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "announces (Content-Length, from byte 0) 1000000000000000000 bytes" in err[0]
    assert not list((tmp_path / "raw").glob("simple-examples.tgz*"))
    assert elapsed < 10


def test_a_content_length_beyond_the_free_space_is_refused_before_any_byte_is_written(tmp_path, capsys):
    # Inside a raised bound (2^61), but more than any disk of this machine holds (2^60 bytes).
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1152921504606846976\r\n\r\n", b"x" * 65536)
    status, elapsed = _fetch_cli(server, tmp_path / "raw", "--max-bytes", str(1 << 61))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert "no space left to write" in err[0] and "1152921504606846976 more bytes" in err[0]
    assert "nothing was written" in err[0]
    assert not (tmp_path / "raw" / "simple-examples.tgz.part").exists()
    assert server.sent < 1 << 24 and elapsed < 10


def test_headers_dripped_a_byte_at_a_time_are_a_stall_retried_then_one_line(tmp_path):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Padding: " + b"p" * 200 + b"\r\n\r\n"
    server = RawServer(head, drip_s=0.02)  # a byte every 20 ms: no socket wait ever reaches the stall bound
    start = time.monotonic()
    try:
        with pytest.raises(ValueError) as raised:
            fetch("ptb", tmp_path / "raw", url=server.url, retries=1, backoff_s=0.1, stall_s=0.5, max_time_s=30)
    finally:
        server.close()
    elapsed = time.monotonic() - start
    message = str(raised.value)
    assert "the response headers did not arrive within the stall deadline (0.5 s, --stall-s)" in message
    assert "\n" not in message
    assert server.connections == 2  # the first try and one resumption
    assert elapsed < 5  # two stall bounds and a short backoff, not 2 x 250 bytes x 20 ms = 10 s


@pytest.mark.parametrize("value", ["0", "-5", str(1 << 62)])
def test_max_bytes_must_be_a_positive_byte_count(value, tmp_path, capsys):
    status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", "http://127.0.0.1:9/x",
                   "--max-bytes", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--max-bytes" in err[0], err
    assert not (tmp_path / "raw").exists()


def test_a_local_file_larger_than_the_bound_is_refused_before_copying(tmp_path, capsys):
    source = tmp_path / "big.tgz"
    source.write_bytes(b"x" * 5000)
    status = main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", source.as_uri(),
                   "--max-bytes", "4096"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "holds 5000 bytes, more than the bound of 4096" in err[0], err
    assert not list((tmp_path / "raw").glob("simple-examples.tgz*"))
    assert source.stat().st_size == 5000  # the source is only read
