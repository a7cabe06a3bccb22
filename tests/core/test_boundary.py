"""Every file and value the suite reads is parsed at the boundary (issue: typed loaders).

One test per class of the hostile-input probe, each with generated bad inputs, and a
property-style test that feeds seeded random mutations of a valid checkpoint, meta.json,
eval.json and config to their loaders: the answer is a correct result or one short line naming
the file (exit 2), never a traceback, a hang or a silently wrong number.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from lightrnn import cli
from lightrnn.training.checkpoint import check_payload, load_checkpoint, save_checkpoint
from lightrnn.config import TrainConfig
from lightrnn.data.encoded import check_meta, load_vocab, read_vocab
from lightrnn.data.prepare import prepare
from lightrnn.data.progress import Progress
from lightrnn.data.tiny import FIXED_MTIME, make_tiny_archive, pack, tiny_members
from lightrnn.core.errors import DataError, explain
from lightrnn.core.loaders import check_eval, load_eval, parse_yaml
from lightrnn.report.results import load_evals, load_metrics
from lightrnn.core.runlock import LOCK_NAME
from tests.conftest import markov_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "embed_dim=8", "--set", "hidden_dim=8", "--set", "num_layers=1", "--set", "batch_size=4",
        "--set", "bptt=6", "--set", "eval_batch_size=4", "--set", "rounds=[1]", "--set", "max_steps_per_epoch=2",
        "--set", "device=cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 20, (600, 200, 200), seed=0)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli.main(["train", "--data", str(corpus), "--model", "lightrnn", "--out", str(out), *TINY]) == 0
    return out


def run(capsys, *argv) -> tuple[int, str]:
    status = cli.main([str(arg) for arg in argv])
    return status, capsys.readouterr().err


def one_line(stderr: str, *needles: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and len(lines[0]) <= 800, lines[0][:300]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _payload(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _save(payload: dict, path: Path) -> Path:
    save_checkpoint(path, {key: value for key, value in payload.items() if key != "format"})
    return path


# ----- 1. checkpoints are checked beyond their format --------------------------------------------

@pytest.mark.parametrize("damage, field", [
    ("two words on one slot", "word table"),
    ("row out of range", "word table"),
    ("no vocab_size", "vocab_size: missing"),
    ("no model", "model: expected a JSON object"),
    ("metrics_rows not a list", "metrics_rows"),
    ("rng python state truncated", "rng.python"),
    ("step a string", "step: expected an integer"),
    ("config seed past 2**32", "seed"),
])
def test_damaged_checkpoint_is_refused_naming_file_and_field(trained, corpus, tmp_path, capsys, damage, field):
    payload = _payload(trained / "checkpoint.pt")
    if damage == "two words on one slot":
        payload["model"]["word_row"][1] = payload["model"]["word_row"][0]
        payload["model"]["word_col"][1] = payload["model"]["word_col"][0]
    elif damage == "row out of range":
        payload["model"]["word_row"][3] = 10**6
    elif damage == "no vocab_size":
        del payload["vocab_size"]
    elif damage == "no model":
        del payload["model"]
    elif damage == "metrics_rows not a list":
        payload["metrics_rows"] = "oops"
    elif damage == "rng python state truncated":
        payload["rng"]["python"] = [3, [1, 2, 3], None]
    elif damage == "step a string":
        payload["step"] = "12"
    else:
        payload["config"]["seed"] = 2**40
    bad = _save(payload, tmp_path / "bad.pt")
    status, stderr = run(capsys, "eval", "--checkpoint", bad, "--data", corpus, "--device", "cpu")
    assert status == 2
    one_line(stderr, str(bad), field)


def test_damaged_checkpoint_refused_on_resume_naming_it(trained, corpus, tmp_path, capsys):
    out = tmp_path / "resume"
    out.mkdir()
    payload = _payload(trained / "checkpoint.pt")
    payload["model"]["word_col"][2] = payload["model"]["word_col"][5]
    payload["model"]["word_row"][2] = payload["model"]["word_row"][5]
    _save(payload, out / "checkpoint.pt")
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", out, *TINY)
    assert status == 2
    one_line(stderr, str(out / "checkpoint.pt"), "word table")


def test_flipped_bit_in_a_weight_record_is_refused(trained, corpus, tmp_path, capsys):
    data = bytearray((trained / "best.pt").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = max(archive.infolist(), key=lambda entry: entry.file_size)  # the largest weight record
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0x10
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    status, stderr = run(capsys, "eval", "--checkpoint", bad, "--data", corpus, "--device", "cpu")
    assert status == 2
    one_line(stderr, str(bad), "CRC")


# ----- 2. option and config values are typed -----------------------------------------------------

@pytest.mark.parametrize("override, needle", [
    ("model_options={table: 5}", "table of model lightrnn is set by the run"),
    ("model_options={word_counts: 5}", "word_counts of model lightrnn is set by the run"),
    ("model_options={table_seed: abc}", "table_seed of model lightrnn: expected an integer"),
    ("seed=4294967296", "config key seed"),
    ("rounds=" + "[" * 5000, "nested too deeply"),
    ("num_layers=1000000000", "config key num_layers"),
    ("eval_batch_size=10000000000", "config key eval_batch_size"),
])
def test_bad_set_values_name_the_option(corpus, tmp_path, capsys, override, needle):
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "o",
                         *TINY, "--set", override)
    assert status == 2
    one_line(stderr, needle)
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_params_option_values_are_typed(capsys):
    base = ["params", "--model", "lightrnn", "--vocab-size", "100", "--embed-dim", "8", "--hidden-dim", "8",
            "--num-layers", "1"]
    status, stderr = run(capsys, *base, "--option", "initial_table=[1")
    assert status == 2
    one_line(stderr, "--option", "not valid YAML")
    status, stderr = run(capsys, *base, "--option", "table=5")
    assert status == 2
    one_line(stderr, "table of model lightrnn is set by the run")


def test_vocab_and_meta_values_are_typed(corpus, tmp_path):
    bad = tmp_path / "vocab.tsv"
    bad.write_text("a\t1\nb\t" + "1" * 30 + "\n", encoding="utf-8")  # 1e29: past int64
    with pytest.raises(DataError, match=r"vocab.tsv:2: the count"):
        read_vocab(bad)
    bad.write_text("a\t1\na\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match="appears twice"):
        read_vocab(bad)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("vocab.tsv", "train.npy", "valid.npy", "test.npy"):
        (mixed / name).write_bytes((corpus / name).read_bytes())
    meta = json.loads((corpus / "meta.json").read_text())
    meta["vocab_size"] = str(meta["vocab_size"])  # a string no longer skips the mixed-encoding check
    (mixed / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"meta.json: vocab_size: expected an integer"):
        load_vocab(mixed)


# ----- 3. report inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (b'{"dataset": "d", "model": "m", "ppl": null}', "ppl: missing"),
    (b'{"dataset": "d", "model": "m", "ppl": "low"}', "ppl: expected a number"),
    (b'{"dataset": "d", "model": "m", "ppl": NaN}', "NaN is not JSON"),
    (b'[1, 2]', "expected a JSON object"),
    (b'{"dataset": "d", "model": "m", "ppl": 5.0, "params": "many"}', "params: expected an integer"),
    (b'\xff\xfe{"ppl": 1}', "not UTF-8"),
])
def test_bad_eval_json_names_the_file(tmp_path, content, needle):
    path = tmp_path / "d" / "m" / "eval.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle) as caught:
        load_evals([path])
    assert str(path) in str(caught.value)
    assert explain(caught.value)[1] == 2


def test_bad_metrics_rows_name_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = {"kind": "epoch", "dataset": "d", "model": "m", "valid_ppl": 12.5, "epoch": 1}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "valid_ppl": "low"}) + "\n")
    with pytest.raises(DataError, match=rf"{path.name}:2: valid_ppl: expected a number"):
        load_metrics([path])
    path.write_text(json.dumps(good) + "\n")
    assert load_metrics([path])[0]["valid_ppl"] == 12.5


# ----- 4. bounded cost -----------------------------------------------------------------------------

def test_one_huge_line_is_refused_in_linear_time(tmp_path):
    members = [(name, data) for name, data in tiny_members("wikitext2")]
    target = next(i for i, (name, data) in enumerate(members) if data is not None and name.endswith("train.tokens"))
    members[target] = (members[target][0], b"x" * (40 << 20))  # one 40 MiB line, no newline
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "wikitext-2-v1.zip").write_bytes(pack("zip", members))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="longer than 16 MiB"):
        prepare("wikitext2", raw, tmp_path / "text")
    assert time.perf_counter() - start < 60  # quadratic joining took minutes at this size; this is seconds


def test_params_at_huge_vocabulary_allocates_no_word_table():
    # V = 4e9 words: the real table is 64 GB of int64; under a 3 GiB address-space limit it cannot exist.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from lightrnn.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run(
        [sys.executable, "-c", code, "params", "--model", "lightrnn", "--vocab-size", "4000000000",
         "--embed-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    result_json = json.loads(result.stdout)
    assert result_json["params"] == result_json["params_closed_form"] > 0


def test_yaml_alias_bomb_is_refused_without_expanding():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    assert len(bomb) < 1024
    start = time.perf_counter()
    with pytest.raises(DataError, match="expands to more than") as caught:
        parse_yaml(bomb, "--set model_options=...")
    assert time.perf_counter() - start < 5 and len(str(caught.value)) < 300
    with pytest.raises(DataError, match="refers to itself"):
        parse_yaml("a: &a [1, *a]", "config")
    assert parse_yaml("a: &a [1, 2]\nb: *a", "config") == {"a": [1, 2], "b": [1, 2]}


def test_huge_eval_batch_is_refused_before_training(corpus, tmp_path, capsys, monkeypatch):
    from lightrnn.training import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda device: 64 << 20)
    status, stderr = run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", tmp_path / "o",
                         *TINY, "--set", "eval_batch_size=2000000000")
    assert status == 1
    one_line(stderr, "eval batch size")
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


# ----- 5. archives ---------------------------------------------------------------------------------

def _zip_with_flags(flag: int | None = None, method: int | None = None) -> bytes:
    data = bytearray(pack("zip", tiny_members("wikitext2")))
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        position = data.find(signature)
        while position >= 0:
            if flag is not None:
                data[position + flag_at] |= flag
            if method is not None:
                data[position + method_at:position + method_at + 2] = method.to_bytes(2, "little")
            position = data.find(signature, position + 4)
    return bytes(data)


@pytest.mark.parametrize("kind, needle", [("encrypted", "is encrypted"), ("method", "compression method 99")])
def test_unreadable_zip_member_is_a_data_error_naming_it(tmp_path, capsys, kind, needle):
    raw = tmp_path / "raw"
    raw.mkdir()
    data = _zip_with_flags(flag=0x1) if kind == "encrypted" else _zip_with_flags(method=99)
    (raw / "wikitext-2-v1.zip").write_bytes(data)
    status, stderr = run(capsys, "data", "prepare", "wikitext2", "--raw", raw, "--out", tmp_path / "text")
    assert status == 2
    one_line(stderr, needle, "member 'wikitext-2/")


def test_symlink_members_are_refused_before_pinning(tmp_path, monkeypatch, capsys):
    members = [(name, data) for name, data in tiny_members("aclw") if data is not None]
    linked = next(name for name, _ in members if name.endswith("/train.in"))  # a member a dataset reads
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:bz2") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = FIXED_MTIME
            if name == linked:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    source = tmp_path / "icml14-data.tar.bz2"
    source.write_bytes(raw.getvalue())
    lock = tmp_path / "lock.json"
    monkeypatch.setenv("LIGHTRNN_CHECKSUM_LOCK", str(lock))
    status, stderr = run(capsys, "data", "fetch", "aclw", "--dest", tmp_path / "dest", "--url", source.as_uri())
    assert status == 2
    one_line(stderr, "symbolic link", linked)
    assert not lock.exists() and not (tmp_path / "dest" / "icml14-data.tar.bz2").exists()


# ----- 6. concurrency ------------------------------------------------------------------------------

def test_a_second_encode_or_fetch_into_a_held_folder_is_refused(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "data"
        out.mkdir()
        (out / LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename} lightrnn data encode\n")
        text = tmp_path / "text"
        text.mkdir()
        for split in ("train", "valid", "test"):
            (text / f"{split}.txt").write_text("a b c\n")
        status, stderr = run(capsys, "data", "encode", "--text", text, "--out", out)
        assert status == 2
        one_line(stderr, f"in use by lightrnn data encode process {holder.pid}")
        dest = tmp_path / "raw"
        dest.mkdir()
        (dest / LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename} lightrnn data fetch\n")
        status, stderr = run(capsys, "data", "fetch", "ptb", "--dest", dest, "--url", "file:nothing.tgz")
        assert status == 2
        one_line(stderr, f"in use by lightrnn data fetch process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_finishing_run_rewrites_metrics_whole_from_its_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", corpus, "--model", "lightrnn", "--out", out, *TINY]
    assert run(capsys, *args)[0] == 0
    rows = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").unlink()  # what a workflow manager's cleanup of a refused job did
    (out / "best.pt").unlink()
    assert run(capsys, *args)[0] == 0  # nothing left to train: the finishing run restores both
    assert (out / "metrics.jsonl").read_text() == rows and (out / "best.pt").is_file()


@pytest.mark.skipif(not Path(sys.executable).with_name("snakemake").exists(), reason="snakemake not installed")
def test_snakemake_refuses_a_train_job_of_a_locked_out_before_deleting(tmp_path):
    from tests._workflow_fixtures import copy_repo

    repo = copy_repo(tmp_path / "repo")
    out = repo / "results" / "smoke" / "ptb" / "lightrnn"
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"kind": "epoch"}\n')
    (out / "best.pt").write_bytes(b"live")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename} lightrnn train\n")
        result = subprocess.run(
            [str(Path(sys.executable).with_name("snakemake")), str(out.relative_to(repo) / "best.pt"), "--cores", "1",
             "--configfile", "config/smoke.yaml"],
            cwd=repo, capture_output=True, text=True, timeout=300,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    assert f"in use by lightrnn train process {holder.pid}" in result.stdout + result.stderr
    assert (out / "metrics.jsonl").is_file() and (out / "best.pt").read_bytes() == b"live"


# ----- 7. messages ---------------------------------------------------------------------------------

class _BadLength(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "abc")
        self.end_headers()
        self.wfile.write(b"data")


def test_bad_content_length_is_named(tmp_path, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadLength)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/simple-examples.tgz"
        status, stderr = run(capsys, "data", "fetch", "ptb", "--dest", tmp_path / "raw", "--url", url)
    finally:
        server.shutdown()
    assert status == 2
    one_line(stderr, "Content-Length 'abc'", "not a byte count")


def test_a_250_byte_out_name_works(corpus, tmp_path, capsys):
    out = tmp_path / ("r" * 250)
    assert run(capsys, "train", "--data", corpus, "--model", "lightrnn", "--out", out, *TINY)[0] == 0
    eval_out = out / ("e" * 250)
    assert run(capsys, "eval", "--checkpoint", out / "best.pt", "--data", corpus, "--device", "cpu",
               "--out", eval_out)[0] == 0
    assert load_eval(eval_out)["ppl"] > 1


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    from lightrnn.data import encode as encode_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode_module, "count_words", interrupted)
    text = tmp_path / "text"
    text.mkdir()
    for split in ("train", "valid", "test"):
        (text / f"{split}.txt").write_text("a b\n")
    status, stderr = run(capsys, "data", "encode", "--text", text, "--out", tmp_path / "out")
    assert status == 130
    one_line(stderr, "interrupted")
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # the lock went with it


def test_ctrl_c_of_a_real_process(tmp_path):
    code = ("import sys, time, os, signal; from lightrnn import cli; from lightrnn.commands import params; "
            "params.run = lambda args: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)); "
            "sys.exit(cli.main(['params', '--model', 'lightrnn', '--vocab-size', '9', '--embed-dim', '2', "
            "'--hidden-dim', '2', '--num-layers', '1']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 130
    one_line(result.stderr, "interrupted")


# ----- issue 20: progress lines and file: URLs -----------------------------------------------------

def test_progress_line_format(capsys):
    progress = Progress("encode", "text -> data", every_s=0)
    progress.add(bytes=2048, lines=10, tokens=55)
    progress.done()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[-1].startswith("encode: done: text -> data: 2.0 KiB (")
    assert "/s), 10 lines, 55 tokens" in err[-1]


def test_stage_progress_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIGHTRNN_PROGRESS_S", "0")
    archive, sha256 = make_tiny_archive("ptb", tmp_path / "gen")
    status, stderr = run(capsys, "data", "fetch", "ptb", "--dest", tmp_path / "raw", "--url", archive.as_uri(),
                         "--sha256", sha256)
    assert status == 0 and "fetch: done: " in stderr and "B/s)" in stderr
    status, stderr = run(capsys, "data", "prepare", "ptb", "--raw", tmp_path / "raw", "--out", tmp_path / "text")
    assert status == 0 and "prepare: done: " in stderr and " lines, " in stderr and " tokens " in stderr
    status, stderr = run(capsys, "data", "encode", "--text", tmp_path / "text", "--out", tmp_path / "data")
    assert status == 0 and "encode: done: " in stderr and " tokens " in stderr


def test_relative_file_url_is_recorded_as_written(tmp_path, monkeypatch, capsys):
    archive, _ = make_tiny_archive("aclw", tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "lock.json"
    monkeypatch.setenv("LIGHTRNN_CHECKSUM_LOCK", str(lock))
    assert run(capsys, "data", "fetch", "aclw", "--dest", "raw", "--url", "file:cache/" + archive.name)[0] == 0
    assert json.loads(lock.read_text())["aclw"]["url"] == "file:cache/" + archive.name


# ----- property: random mutations never end in a traceback, a hang or a wrong number ----------------

def _mutations(value, rng: random.Random, depth: int = 0):
    """One random mutation of a JSON-like value (keys dropped, types swapped, numbers pushed out)."""
    weird = [None, "", "x" * 5000, -1, 0, 2**64, 1e308, float("inf"), float("nan"), [], {}, True, [1] * 3, "12"]
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value, key=str))
        mutated = dict(value)
        action = rng.random()
        if action < 0.25:
            del mutated[key]
        elif action < 0.7 or depth > 2:
            mutated[key] = rng.choice(weird)
        else:
            mutated[key] = _mutations(value[key], rng, depth + 1)
        return mutated
    if isinstance(value, list) and value:
        mutated = list(value)
        mutated[rng.randrange(len(mutated))] = rng.choice(weird)
        return mutated
    return rng.choice(weird)


def _one_line_error(error: BaseException, name: str) -> None:
    explained = explain(error)
    assert explained is not None, f"{type(error).__name__}: {error}"  # None: a bug with a traceback
    message, status = explained
    assert status == 2 and "\n" not in message and len(message) <= 800, message[:300]
    assert name in message, message[:300]


def test_random_mutations_get_a_checked_result_or_one_line(trained, corpus):
    rng = random.Random(20260515)
    checkpoint = _payload(trained / "checkpoint.pt")
    meta = json.loads((corpus / "meta.json").read_text())
    evaluation = {"dataset": "d", "model": "lightrnn", "split": "test", "ppl": 17.5, "tokens": 200,
                  "tokens_per_s": 1000.0, "params": 746, "device": "cpu", "git_rev": None}
    config = TrainConfig().to_dict()
    start = time.perf_counter()
    outcomes = {"ok": 0, "refused": 0}
    for trial in range(240):
        kind = ("checkpoint", "meta", "eval", "config")[trial % 4]
        where = {"checkpoint": "cp.pt", "meta": "meta.json", "eval": "eval.json", "config": "config"}[kind]
        try:
            if kind == "checkpoint":
                mutated = dict(checkpoint)
                key = rng.choice(sorted(k for k in checkpoint if k != "format"))
                if isinstance(checkpoint[key], dict) and key not in ("model",) and rng.random() < 0.6:
                    mutated[key] = _mutations(checkpoint[key], rng)
                elif key == "model" and rng.random() < 0.6:
                    model = dict(checkpoint["model"])
                    tensor = rng.choice(sorted(model))
                    model[tensor] = rng.choice([torch.zeros(0), torch.full_like(model[tensor], 7), "x"])
                    mutated["model"] = model
                else:
                    mutated[key] = _mutations(checkpoint[key], rng)
                check_payload(mutated, where)
            elif kind == "meta":
                checked = check_meta(_mutations(meta, rng), where)
                assert isinstance(checked.vocab_size, int) and all(isinstance(v, int) for v in checked.tokens.values())
            elif kind == "eval":
                checked = check_eval(_mutations(evaluation, rng), where)
                assert isinstance(checked["ppl"], float) and checked["ppl"] >= 1 and checked["ppl"] < float("inf")
            else:
                TrainConfig.from_dict(_mutations(config, rng), source=where)
            outcomes["ok"] += 1
        except Exception as error:  # noqa: BLE001 (what is caught is checked right here)
            _one_line_error(error, where)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100 and outcomes["ok"] > 0, outcomes
    assert time.perf_counter() - start < 120


def test_mutated_checkpoint_files_load_or_refuse(trained, tmp_path):
    """Byte-level mutations of a real best.pt: loaded and checked, or one line naming the file."""
    rng = random.Random(7)
    original = (trained / "best.pt").read_bytes()
    for trial in range(12):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"m{trial}.pt"
        path.write_bytes(bytes(data[: rng.randrange(len(data) // 2, len(data) + 1)]) if trial % 3 == 0 else data)
        try:
            payload = load_checkpoint(path)
        except Exception as error:  # noqa: BLE001
            _one_line_error(error, str(path))
        else:
            assert isinstance(payload["vocab_size"], int)
