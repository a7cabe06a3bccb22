"""Every fault and bad input: one line on stderr naming the cause and the fix, exit 2 (usage/data)
or 1 (environment), nothing half-written. One section per class of the error audit."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from lightrnn import cli
from lightrnn.core import fileio
from lightrnn.training.checkpoint import save_checkpoint
from lightrnn.data import encode as encode_module
from lightrnn.data import encoded as encoded_module
from lightrnn.data import fetch as fetch_module
from lightrnn.data import prepare as prepare_module
from lightrnn.data.encode import encode
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive
from lightrnn.core.errors import DiskFull, explain
from lightrnn.core.metrics import perplexity
from lightrnn.method.word_table import WordTable
from tests._data_fixtures import archive_server  # noqa: F401 (pytest fixture)
from tests.conftest import markov_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "embed_dim=8", "--set", "hidden_dim=8", "--set", "num_layers=1", "--set", "batch_size=4",
        "--set", "bptt=6", "--set", "eval_batch_size=4", "--set", "rounds=[1]", "--set", "max_steps_per_epoch=2",
        "--set", "device=cpu"]



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 20, (600, 200, 200), seed=0)


def run(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI; return (exit status, stderr)."""
    status = cli.main([str(arg) for arg in argv])
    return status, capsys.readouterr().err


def one_line(stderr: str, *needles: str) -> str:
    """The single stderr line; it must contain every needle."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in stderr
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Temp files, .part files and staging folders anywhere under `folder`."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name.startswith(".staging")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def write_text_dir(folder: Path, train: str, valid: str = "a b\n", test: str = "b c\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


class FailingWriter:
    """A binary file whose writes fail with ENOSPC once `budget` bytes are written (a disk filling up)."""

    def __init__(self, handle, budget: int) -> None:
        self.handle, self.budget = handle, budget

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.budget:
            self.handle.write(bytes(memoryview(data).cast("B")[: self.budget]))
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= size
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


# ----- 1. crash safety of encode and prepare ---------------------------------------------------

def test_encode_disk_full_mid_file_keeps_the_old_set_whole(tmp_path, monkeypatch, capsys) -> None:
    text = write_text_dir(tmp_path / "text", "a b c\n" * 2000)
    out = tmp_path / "data"
    encode(text, out)
    (out / "run").mkdir()  # a training run beside the data: never touched
    before = snapshot(out)
    write_text_dir(text, "x y z w\n" * 3000)  # new text: a new vocabulary and longer streams
    opened = []

    def failing_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "b" in mode and "w" in mode:
            opened.append(path)
            if len(opened) == 1:  # train.npy, after the new vocab.tsv is complete
                return FailingWriter(handle, budget=1000)
        return handle

    monkeypatch.setattr(encoded_module, "open", failing_open, raising=False)
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", out)
    assert status == 1
    one_line(stderr, str(out), "no space left", "free space")
    assert snapshot(out) == before  # wholly old: not the new vocab beside the old streams
    assert leftovers(out) == [] and (out / "run").is_dir()


def test_encode_checks_free_space_before_writing(tmp_path, monkeypatch, capsys) -> None:
    text = write_text_dir(tmp_path / "text", "a b c\n" * 100)
    usage = fileio.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "data")
    assert status == 1
    one_line(stderr, "needs about", str(tmp_path / "data"), "free some space")
    assert not (tmp_path / "data").exists()


def test_encode_under_a_file_size_limit_fails_cleanly(tmp_path) -> None:
    # A real write failure (EFBIG from RLIMIT_FSIZE) in a separate process: no SIGBUS, one line.
    text = write_text_dir(tmp_path / "text", "a b c d e f g h\n" * 20000)  # train.npy ~720 KB
    out = tmp_path / "data"
    out.mkdir()
    (out / "vocab.tsv").write_text("old\t1\n")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        from lightrnn import cli
        sys.exit(cli.main(["data", "encode", "--text", {str(text)!r}, "--out", {str(out)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr
    one_line(result.stderr, str(out), "free space")
    assert (out / "vocab.tsv").read_text() == "old\t1\n" and leftovers(out) == []


def test_prepare_disk_full_keeps_the_old_splits(tmp_path, monkeypatch, capsys) -> None:
    make_tiny_archive("ptb", tmp_path / "raw")
    prepare("ptb", tmp_path / "raw", tmp_path / "text")
    before = snapshot(tmp_path / "text")
    make_tiny_archive("ptb", tmp_path / "raw", seed=1)

    def failing_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if Path(path).name == "test.txt" and "w" in mode:
            handle.write = lambda data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
        return handle

    monkeypatch.setattr(prepare_module, "open", failing_open, raising=False)
    status, stderr = run(capsys, "data", "prepare", "ptb", "--raw", tmp_path / "raw", "--out", tmp_path / "text")
    assert status == 1
    one_line(stderr, str(tmp_path / "text"), "no space left")
    assert snapshot(tmp_path / "text") == before and leftovers(tmp_path / "text") == []
    # A prepare killed between its renames: no prepare.json and its staging folder; encode refuses.
    (tmp_path / "text" / "prepare.json").unlink()
    (tmp_path / "text" / ".staging.x1.tmp").mkdir()
    status, stderr = run(capsys, "data", "encode", "--text", tmp_path / "text", "--out", tmp_path / "data")
    assert status == 2
    one_line(stderr, "a prepare was interrupted", "lightrnn data prepare")


def test_staged_dir_commits_the_manifest_last_and_rolls_back(tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    with fileio.staged_dir(out, last="meta.json") as staging:
        (staging / "a.txt").write_text("new")
        (staging / "meta.json").write_text("{}")
    assert snapshot(out) == {"a.txt": b"new", "meta.json": b"{}"} and leftovers(out) == []
    moves = []
    real_replace = os.replace

    def replace(source, target):
        moves.append((Path(source).parent.name, Path(target).name))
        if Path(target) == out / "meta.json" and Path(source).parent.name.startswith(".staging"):
            raise OSError(errno.EIO, "I/O error")  # the last rename fails: everything goes back
        real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(OSError):
        with fileio.staged_dir(out, last="meta.json") as staging:
            (staging / "a.txt").write_text("newer")
            (staging / "meta.json").write_text('{"v": 2}')
    assert snapshot(out) == {"a.txt": b"new", "meta.json": b"{}"} and leftovers(out) == []
    assert moves[0][1] == "meta.json"  # the old manifest leaves first


# ----- 2. fetch: pin only a real archive; no credentials in logs or the lock file ----------------

def test_html_page_is_not_pinned_and_the_real_archive_then_is(archive_server, tmp_path, monkeypatch, capsys) -> None:
    lock = tmp_path / "lock.json"
    monkeypatch.setenv("LIGHTRNN_CHECKSUM_LOCK", str(lock))
    archive_server.state.files["icml14-data.tar.bz2"] = b"<html><body>Sign in to continue</body></html>"
    url = archive_server.url("icml14-data.tar.bz2")
    status, stderr = run(capsys, "data", "fetch", "aclw", "--dest", tmp_path / "raw", "--url", url)
    assert status == 2
    one_line(stderr, "is not the aclw tar.bz2 archive", "nothing was pinned", "--url")
    assert not lock.exists() and list((tmp_path / "raw").iterdir()) == []
    real, sha256 = make_tiny_archive("aclw", tmp_path / "cache")
    archive_server.state.files["icml14-data.tar.bz2"] = real.read_bytes()
    status, _ = run(capsys, "data", "fetch", "aclw", "--dest", tmp_path / "raw", "--url", url)
    assert status == 0 and json.loads(lock.read_text())["aclw"]["sha256"] == sha256


def test_archive_without_the_members_is_not_pinned(tmp_path, monkeypatch) -> None:
    from lightrnn.data.tiny import write_archive

    wrong = tmp_path / "cache" / "icml14-data.tar.bz2"
    write_archive(wrong, "tar.bz2", [("readme.txt", b"not the corpus\n")])
    with pytest.raises(ValueError, match="it lacks en-cs/1m-mono/finaltest.in"):
        fetch_module.fetch("aclw", tmp_path / "raw", url=wrong.as_uri(), lock_file=tmp_path / "lock.json")
    assert not (tmp_path / "lock.json").exists()


def test_credentials_never_reach_logs_or_the_lock_file(archive_server, tmp_path, caplog) -> None:
    real, _ = make_tiny_archive("aclw", tmp_path / "cache")
    archive_server.state.files[real.name] = real.read_bytes()
    archive_server.state.drop_once.add(real.name)  # a resume: its log line carries the URL
    port = archive_server.httpd.server_address[1]
    url = f"http://alice:hunter2@127.0.0.1:{port}/{real.name}?X-Signature=topsecret"
    lock = tmp_path / "lock.json"
    with caplog.at_level(logging.INFO):
        fetch_module.fetch("aclw", tmp_path / "raw", url=url, lock_file=lock, backoff_s=0)
    assert "resuming" in caplog.text
    for secret in ("hunter2", "alice", "topsecret"):
        assert secret not in caplog.text and secret not in lock.read_text()
    assert json.loads(lock.read_text())["aclw"]["url"] == f"http://127.0.0.1:{port}/{real.name}?..."
    assert archive_server.state.requests[0]["authorization"].startswith("Basic ")  # sent as a header
    assert fetch_module.redact_url("https://u:p@h.org:8443/a/b.tgz?sig=1#f") == "https://h.org:8443/a/b.tgz?..."


def test_a_foreign_file_already_in_place_is_not_pinned(tmp_path, capsys, monkeypatch) -> None:
    lock = tmp_path / "lock.json"
    monkeypatch.setenv("LIGHTRNN_CHECKSUM_LOCK", str(lock))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "icml14-data.tar.bz2").write_text("<html>error</html>")
    status, stderr = run(capsys, "data", "fetch", "aclw", "--dest", tmp_path / "raw")
    assert status == 2
    one_line(stderr, str(tmp_path / "raw" / "icml14-data.tar.bz2"), "nothing was pinned", "delete it")
    assert not lock.exists()


def test_fetch_on_a_full_disk_keeps_the_part_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    source, sha256 = make_tiny_archive("ptb", tmp_path / "cache")

    def copy_stream(reader, writer, offset, total, label):
        writer.write(reader.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_module, "_copy_stream", copy_stream)
    status, stderr = run(capsys, "data", "fetch", "ptb", "--dest", tmp_path / "raw", "--url", source.as_uri(),
                         "--sha256", sha256)
    assert status == 1
    one_line(stderr, str(tmp_path / "raw" / "simple-examples.tgz.part"), "100 bytes so far are kept", "free space")


# ----- 3. fetch: a refused connection or an unknown host is an error at once ---------------------

def test_connection_refused_is_not_retried(tmp_path, capsys, caplog) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    with caplog.at_level(logging.INFO):
        status, stderr = run(capsys, "data", "fetch", "ptb", "--dest", tmp_path / "raw",
                             "--url", f"http://127.0.0.1:{port}/simple-examples.tgz", "--sha256", "0" * 64)
    assert status == 2 and time.perf_counter() - start < 5  # retries would back off 2+4+8+16+32 s
    one_line(stderr, "could not download", "refused", "--url MIRROR")
    assert "resuming" not in caplog.text


def test_unknown_host_is_not_retried(tmp_path, monkeypatch) -> None:
    calls = []

    def urlopen(request, timeout, watchdog):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(fetch_module, "_open", urlopen)
    with pytest.raises(ValueError, match="Name or service not known"):
        fetch_module.fetch("ptb", tmp_path / "raw", url="https://no-such-host.invalid/x.tgz", sha256="0" * 64)
    assert len(calls) == 1


# ----- 4. divergence: huge losses, lr=inf, and no claim of a checkpoint that is not there --------

def test_perplexity_overflows_to_inf_and_evaluation_reports_divergence() -> None:
    assert perplexity(1e6, 10) == float("inf") and perplexity(0.0, 5) == 1.0
    from types import SimpleNamespace

    from lightrnn.training.evaluate import evaluate

    class Huge(torch.nn.Module):
        def forward(self, tokens, targets, state):
            return SimpleNamespace(nll=torch.full(targets.shape, 1e5), state=())

    with pytest.raises(FloatingPointError, match="the model has diverged"):
        evaluate(Huge(), np.arange(50) % 7, 4, 5, "cpu")


def test_huge_lr_stops_with_the_divergence_error(corpus, tmp_path, capsys) -> None:
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "full_softmax", "--out", tmp_path / "run",
                         *TINY, "--set", "lr=1e6", "--set", "clip=0")
    assert status == 1
    line = one_line(stderr, "diverged" if "evaluation" in stderr else "training loss", "no checkpoint was written yet")
    assert "OverflowError" not in line and "is kept" not in line


@pytest.mark.parametrize("value", ["inf", ".nan", "1e400"])
def test_non_finite_lr_is_refused(corpus, tmp_path, capsys, value) -> None:
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "run",
                         *TINY, "--set", f"lr={value}")
    assert status == 2
    one_line(stderr, "config key lr: must be a finite number")
    assert not (tmp_path / "run").exists()


# ----- 5. the CLI: every environment and usage error as one line ---------------------------------

def test_out_that_is_a_file_and_eval_out_that_is_a_folder(corpus, tmp_path, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    status, stderr = run(capsys, "data", "encode", "--text", write_text_dir(tmp_path / "t", "a\n"), "--out", blocker)
    assert status == 2
    one_line(stderr, str(blocker), "pass another path")
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", blocker / "run", *TINY)
    assert status == 2
    one_line(stderr, str(blocker), "folder")
    status, _ = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 0
    status, stderr = run(capsys, "eval", "--checkpoint", tmp_path / "run" / "best.pt", "--data", corpus,
                         "--device", "cpu", "--out", tmp_path)
    assert status == 2
    one_line(stderr, str(tmp_path), "is a folder where a file is expected")


@pytest.mark.parametrize("device", ["cuda:abc", "meta", "tpu"])
def test_bad_device_strings(corpus, tmp_path, capsys, device) -> None:
    checkpoint = _trained(corpus, tmp_path, capsys)
    status, stderr = run(capsys, "eval", "--checkpoint", checkpoint, "--data", corpus, "--device", device)
    assert status == 2
    one_line(stderr, repr(device), "cpu")


def _trained(corpus: Path, tmp_path: Path, capsys, *extra: str) -> Path:
    status, _ = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "run", *TINY, *extra)
    assert status == 0
    capsys.readouterr()
    return tmp_path / "run" / "best.pt"


def test_size_mismatch_in_a_checkpoint_names_it(corpus, tmp_path, capsys) -> None:
    checkpoint = _trained(corpus, tmp_path, capsys)
    payload = torch.load(checkpoint, weights_only=True)
    name = next(key for key in payload["model"] if payload["model"][key].dim() == 2 and "embedding" not in key)
    payload["model"][name] = torch.zeros(3, 3)
    save_checkpoint(tmp_path / "bad.pt", {k: v for k, v in payload.items() if k != "format"})
    status, stderr = run(capsys, "eval", "--checkpoint", tmp_path / "bad.pt", "--data", corpus, "--device", "cpu")
    assert status == 2
    one_line(stderr, str(tmp_path / "bad.pt"), "does not fit the model", "size mismatch")


def test_memory_error_permission_and_debug_traceback(corpus, tmp_path, capsys, monkeypatch) -> None:
    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(encode_module, "count_words", out_of_memory)
    text = write_text_dir(tmp_path / "t", "a\n")
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "o")
    assert status == 1
    one_line(stderr, "out of memory", "smaller")
    monkeypatch.setenv("LIGHTRNN_DEBUG", "1")
    with pytest.raises(MemoryError):
        cli.main(["data", "encode", "--text", str(text), "--out", str(tmp_path / "o")])
    # Root ignores file modes, so the permission case is checked on the mapping itself.
    message, status = explain(PermissionError(errno.EACCES, "Permission denied", "/results/ptb/vocab.tsv"))
    assert status == 1 and message.startswith("/results/ptb/vocab.tsv: permission denied") and "chmod" in message
    message, status = explain(OSError(errno.ENOSPC, "No space left on device", "/results/x"))
    assert status == 1 and "/results/x" in message and "free space" in message
    message, status = explain(OSError(errno.EIO, "Input/output error", "/results/x"))
    assert status == 1 and message.startswith("/results/x: Input/output error")


def test_torch_save_on_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch) -> None:
    def full(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0\nbasic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFull, match=r"no space left to write .*checkpoint\.pt.*free space"):
        save_checkpoint(tmp_path / "checkpoint.pt", {"config": {}})
    assert list(tmp_path.iterdir()) == []


def test_malformed_prepare_json_names_the_file(tmp_path, capsys) -> None:
    text = write_text_dir(tmp_path / "t", "a b\n")
    for content in ('["ptb"]', '{"dataset": 3}', '{"dataset": "nope"}', "{not json", "\xff\xfe"):
        (text / "prepare.json").write_bytes(content.encode("latin-1"))
        status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "o")
        assert status == 2
        one_line(stderr, str(text / "prepare.json"), "lightrnn data prepare")


# ----- 6. damaged inputs: the message names the file and never suggests unsafe loading ------------

def _copy(corpus: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(corpus, tmp_path / "copy"))


@pytest.mark.parametrize("damage, expected", [
    ("pickle", "not a plain .npy array"),
    ("truncate", "truncated"),
    ("garbage", "not a valid .npy file"),
    ("text", "not a plain .npy array"),
])
def test_damaged_npy(corpus, tmp_path, capsys, damage, expected) -> None:
    data = _copy(corpus, tmp_path)
    path = data / "valid.npy"
    if damage == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY garbage" * 10)
    else:
        path.write_text("this is not an array\n")
    status, stderr = run(capsys, "train", "--data", data, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 2
    line = one_line(stderr, str(path), expected, "lightrnn data encode")
    assert "allow_pickle" not in line


def test_non_utf8_vocab_and_binary_config(corpus, tmp_path, capsys) -> None:
    data = _copy(corpus, tmp_path)
    (data / "vocab.tsv").write_bytes(b"caf\xe9\t3\n")
    status, stderr = run(capsys, "train", "--data", data, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 2
    one_line(stderr, str(data / "vocab.tsv"), "not UTF-8")
    config = tmp_path / "config.yaml"
    config.write_bytes(bytes(range(256)))
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "run",
                         "--config", config)
    assert status == 2
    one_line(stderr, str(config), "not UTF-8")


def test_bad_utf8_in_a_split_is_reported_at_its_line(tmp_path, capsys) -> None:
    text = write_text_dir(tmp_path / "t", "a b\n" * 5, test="ok\nfine\ncaf\xe9 au lait\n")
    (text / "test.txt").write_bytes(b"ok\nfine\ncaf\xe9 au lait\n")
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "o")
    assert status == 2
    one_line(stderr, f"{text / 'test.txt'}: line 3 is not valid UTF-8", "lightrnn data prepare")


# ----- 7. too big for the machine: refused before anything is allocated ------------------------

def test_huge_model_is_refused_before_building(corpus, tmp_path, capsys) -> None:
    start = time.perf_counter()
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "full_softmax", "--out", tmp_path / "run",
                         *TINY, "--set", "hidden_dim=10000000")
    assert status == 1 and time.perf_counter() - start < 30
    one_line(stderr, "parameters", "need at least", "lower hidden_dim")


def test_huge_batch_is_refused_before_allocating(corpus, tmp_path, capsys) -> None:
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "run",
                         *TINY, "--set", "batch_size=1000000000")
    assert status == 2
    one_line(stderr, "too short for batch_size 1000000000", "smaller batch size")
    checkpoint = _trained(corpus, tmp_path / "ok", capsys)
    status, stderr = run(capsys, "eval", "--checkpoint", checkpoint, "--data", corpus, "--device", "cpu",
                         "--batch-size", "1000000000")
    assert status == 1
    one_line(stderr, "need at least", "batch size")


def test_the_size_check_counts_the_model_exactly_and_fits_a_normal_run() -> None:
    from lightrnn import registry
    from lightrnn.config import TrainConfig
    from lightrnn.training.preflight import check_fits, count_parameters

    config = TrainConfig(model="lightrnn", device="cpu")
    assert count_parameters(config, 10_000) == registry.param_count("lightrnn", 10_000, 512, 512, 2)
    assert 0 < check_fits(config, 10_000, None, torch.device("cpu"), train_tokens=100_000) < 2**30


# ----- 8. stale temp files of a killed run are swept --------------------------------------------

def test_train_start_removes_stale_checkpoint_temps(corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".best.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    _trained(corpus, tmp_path, capsys)
    assert not stale.exists() and leftovers(out) == []


# ----- 9. eval: a checkpoint without its table file, batch size 0, the data it was given ----------

def test_eval_without_the_initial_table_file_and_labels_the_data(corpus, tmp_path, capsys) -> None:
    words = (corpus / "vocab.tsv").read_text().splitlines()
    table_path = tmp_path / "start.npy"
    WordTable.random(len(words), seed=3).save(table_path)
    checkpoint = _trained(corpus, tmp_path, capsys, "--set", f"initial_table={table_path}")
    table_path.unlink()
    other = _copy(corpus, tmp_path)
    status, _ = run(capsys, "eval", "--checkpoint", checkpoint, "--data", other, "--device", "cpu",
                    "--out", tmp_path / "eval.json")
    assert status == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["dataset"] == "copy" and result["data"] == str(other) and result["trained_on"] == "markov"
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage line, then the error
        cli.main(["eval", "--checkpoint", str(checkpoint), "--data", str(other), "--batch-size", "0"])
    assert exit_info.value.code == 2 and "--batch-size: must be >= 1, got 0" in capsys.readouterr().err


# ----- 10. blank lines are not sentences; meta.json must match vocab.tsv ---------------------------

def test_whitespace_only_lines_are_skipped(tmp_path, capsys) -> None:
    text = write_text_dir(tmp_path / "t", "a b\n   \n\t\nc\n \u3000\n", valid="a\n\n", test="b\n")
    meta = encode(text, tmp_path / "o")
    assert meta["sentences"] == {"train": 2, "valid": 1, "test": 1} and meta["tokens"]["train"] == 5
    words = (tmp_path / "o" / "vocab.tsv").read_text().splitlines()
    eos = [line.split("\t")[0] for line in words].index("<eos>")
    assert (np.load(tmp_path / "o" / "train.npy") == eos).sum() == 2
    write_text_dir(text, "a b\n", valid="  \n\n\t\n")
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "o2")
    assert status == 2
    one_line(stderr, str(text / "valid.txt"), "is empty", "blank lines do not count")


def test_meta_json_is_cross_checked_with_vocab_and_streams(corpus, tmp_path, capsys) -> None:
    data = _copy(corpus, tmp_path)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "vocab_size": meta["vocab_size"] + 1}))
    status, stderr = run(capsys, "train", "--data", data, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 2
    one_line(stderr, str(data / "meta.json"), str(data / "vocab.tsv"), "lightrnn data encode")
    (data / "meta.json").write_text(json.dumps({**meta, "tokens": {**meta["tokens"], "test": 5}}))
    status, stderr = run(capsys, "train", "--data", data, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 2
    one_line(stderr, str(data / "test.npy"), "mixes two encodings")
    # An encode killed between its renames leaves no meta.json and its staging folder: refused.
    (data / "meta.json").unlink()
    (data / ".staging.x1.tmp").mkdir()
    status, stderr = run(capsys, "train", "--data", data, "--model", "lightrnn", "--out", tmp_path / "run", *TINY)
    assert status == 2
    one_line(stderr, "interrupted", "lightrnn data encode")


# ----- 11. results are readable by colleagues (umask modes) ---------------------------------------

def test_checkpoints_and_metrics_get_umask_modes(corpus, tmp_path, capsys) -> None:
    previous = os.umask(0o027)
    try:
        _trained(corpus, tmp_path, capsys)
        fileio.append_line(tmp_path / "new.jsonl", "{}")
    finally:
        os.umask(previous)
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "config.yaml", "table-0.npy"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o640, name
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o640


