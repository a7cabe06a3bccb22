"""fetch: HTTP and file:// downloads, resumption, checksums, pinning, and what a failure leaves behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lightrnn.data import fetch as fetch_module
from lightrnn.data.fetch import USER_AGENT, fetch
from tests._data_fixtures import archive_server, serve_tiny  # noqa: F401 (pytest fixture)


def test_fetch_over_http_sends_our_user_agent_and_verifies(archive_server, tmp_path):
    url, sha256 = serve_tiny(archive_server, "wikitext2", tmp_path)
    path = fetch("wikitext2", tmp_path / "raw", url=url, sha256=sha256)
    assert path == tmp_path / "raw" / "wikitext-2-v1.zip"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert archive_server.state.requests[0]["agent"] == USER_AGENT  # the host rejects Python-urllib
    assert not list((tmp_path / "raw").glob("*.part"))


def test_dropped_connection_is_resumed_with_a_range_request(archive_server, tmp_path):
    url, sha256 = serve_tiny(archive_server, "billionw", tmp_path)
    name = url.rsplit("/", 1)[1]
    archive_server.state.drop_once.add(name)
    path = fetch("billionw", tmp_path / "raw", url=url, sha256=sha256, backoff_s=0)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    ranges = [r["range"] for r in archive_server.state.requests]
    half = len(archive_server.state.files[name]) // 2
    assert ranges == [None, f"bytes={half}-"]


def test_interrupted_fetch_keeps_the_part_file_and_the_next_fetch_resumes(archive_server, tmp_path):
    url, sha256 = serve_tiny(archive_server, "ptb", tmp_path)
    name = url.rsplit("/", 1)[1]
    archive_server.state.drop_once.add(name)
    with pytest.raises(ValueError, match=r"bytes are kept in .*\.part and the next fetch resumes"):
        fetch("ptb", tmp_path / "raw", url=url, sha256=sha256, retries=0)
    part = tmp_path / "raw" / "simple-examples.tgz.part"
    half = len(archive_server.state.files[name]) // 2
    assert part.stat().st_size == half
    assert not (tmp_path / "raw" / "simple-examples.tgz").exists()
    path = fetch("ptb", tmp_path / "raw", url=url, sha256=sha256, retries=0)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert archive_server.state.requests[-1]["range"] == f"bytes={half}-"
    assert not part.exists()


def test_server_that_ignores_ranges_gets_a_clean_restart(archive_server, tmp_path):
    url, sha256 = serve_tiny(archive_server, "ptb", tmp_path)
    archive_server.state.honour_ranges = False
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "simple-examples.tgz.part").write_bytes(b"stale bytes from an older attempt")
    path = fetch("ptb", tmp_path / "raw", url=url, sha256=sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def test_checksum_mismatch_removes_the_partial_file_and_says_what_to_do(archive_server, tmp_path):
    url, _ = serve_tiny(archive_server, "ptb", tmp_path)
    wrong = "0" * 64
    with pytest.raises(ValueError, match=r"checksum mismatch for simple-examples\.tgz.*removed.*--sha256.*--url"):
        fetch("ptb", tmp_path / "raw", url=url, sha256=wrong)
    assert list((tmp_path / "raw").iterdir()) == []


def test_registry_md5_is_checked_when_no_override(archive_server, tmp_path):
    url, _ = serve_tiny(archive_server, "wikitext2", tmp_path)  # not the real file: its md5 differs
    with pytest.raises(ValueError, match="expected md5:542ccefacc6c27f945fb54453812b3cd"):
        fetch("wikitext2", tmp_path / "raw", url=url)


def test_http_errors_name_the_url_and_suggest_a_mirror(archive_server, tmp_path):
    with pytest.raises(ValueError, match=r"HTTP 404.*--url MIRROR"):
        fetch("ptb", tmp_path / "raw", url=archive_server.url("missing.tgz"), sha256="0" * 64)


def test_file_url_and_existing_file_is_verified_not_downloaded_again(tmp_path):
    from lightrnn.data.tiny import make_tiny_archive

    source, sha256 = make_tiny_archive("aclw", tmp_path / "cache")
    path = fetch("aclw-fr", tmp_path / "raw", url=source.as_uri(), sha256=sha256)
    assert path.read_bytes() == source.read_bytes()
    source.unlink()  # a second fetch must not need the source
    assert fetch("aclw", tmp_path / "raw", url=source.as_uri(), sha256=sha256) == path
    with pytest.raises(ValueError, match="exists but its sha256 is"):
        fetch("aclw", tmp_path / "raw", sha256="f" * 64)


def test_unpublished_checksum_is_pinned_then_enforced(tmp_path):
    from lightrnn.data.tiny import make_tiny_archive

    source, sha256 = make_tiny_archive("aclw", tmp_path / "cache")
    lock = tmp_path / "checksums.lock.json"
    fetch("aclw", tmp_path / "raw", url=source.as_uri(), lock_file=lock)
    pinned = json.loads(lock.read_text())
    assert pinned["aclw"]["sha256"] == sha256
    assert pinned["aclw"]["size_bytes"] == source.stat().st_size
    # A different file at a later fetch is refused because of the pin.
    other, _ = make_tiny_archive("aclw", tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match=f"expected sha256:{sha256}"):
        fetch("aclw", tmp_path / "raw2", url=other.as_uri(), lock_file=lock)


def test_lock_file_lives_outside_the_checkout(tmp_path, monkeypatch):
    # Pinning must not touch tracked files (a run's git_rev would turn +dirty).
    monkeypatch.delenv("LIGHTRNN_CHECKSUM_LOCK", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert fetch_module.lock_file_path() == tmp_path / "config" / "lightrnn" / "checksums.lock.json"
    monkeypatch.setenv("LIGHTRNN_CHECKSUM_LOCK", str(tmp_path / "mine.json"))
    assert fetch_module.lock_file_path() == tmp_path / "mine.json"
    assert not list(Path(fetch_module.__file__).parent.glob("*.lock.json"))


def test_unknown_names_and_manual_corpora_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'nope'.*ptb"):
        fetch("nope", tmp_path)
    with pytest.raises(ValueError, match=r"cannot be downloaded.*RAW/<lang>/\{train,valid,test\}\.txt"):
        fetch("aclw-large-fr", tmp_path)
    with pytest.raises(ValueError, match="http://, https:// or file://"):
        fetch("ptb", tmp_path, url="ftp://example.invalid/x.tgz", sha256="0" * 64)
