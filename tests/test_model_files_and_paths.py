"""Hostile inputs where model files, data folders and paths meet: a model file is used only with the
data it was trained on; what is at an output path is never destroyed; a file argument that is a
folder, FIFO, device or socket is named as such; an empty path is refused. Each case: exit 2, one
line naming the cause, nothing at the path changed."""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

from lightrnn import cli
from lightrnn.config import TrainConfig
from lightrnn.core.errors import DataError
from lightrnn.core.fileio import atomic_path, output_target, save_npy, write_json, write_text
from lightrnn.core.loaders import input_file
from lightrnn.data.encode import encode
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive
from lightrnn.training.checkpoint import load_checkpoint, save_checkpoint
from lightrnn.training.train import train

TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.1", "batch_size=8", "bptt=12", "lr=0.01",
        "eval_batch_size=4", "device=cpu", "rounds=[1]", "max_steps_per_epoch=4", "log_every_s=0",
        "checkpoint_every_s=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A tiny PTB data dir, a LightRNN trained on it (best.pt), and the same file in the older layout."""
    root = tmp_path_factory.mktemp("files")
    make_tiny_archive("ptb", root / "raw")
    prepare("ptb", root / "raw", root / "text")
    encode(root / "text", root / "data")
    train(TrainConfig.from_yaml(None, [*TINY, "model=lightrnn"]), root / "data", root / "run")
    payload = load_checkpoint(root / "run" / "best.pt")
    assert "data" in payload and "vocab" in payload
    old = {key: value for key, value in payload.items() if key not in ("vocab", "format")}
    save_checkpoint(root / "old.pt", old)  # the older layout: no vocabulary inside, the data identity recorded
    return {"root": root, "data": root / "data", "best": root / "run" / "best.pt", "old": root / "old.pt",
            "text": root / "text" / "test.txt"}


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    """(exit status, stderr's lines); for argparse's refusals (usage, then one error line) the error line."""
    try:
        code = cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:
        lines = capsys.readouterr().err.strip().splitlines()
        return int(exit_.code), [line for line in lines if ": error: " in line]
    return code, capsys.readouterr().err.strip().splitlines()


def _other_data(run: dict[str, Path], tmp_path: Path, seed: int) -> Path:
    """A copy of the data dir whose vocab.tsv has two words swapped: same size, other ids."""
    other = tmp_path / f"other-{seed}"
    shutil.copytree(run["data"], other)
    lines = (other / "vocab.tsv").read_text(encoding="utf-8").splitlines()
    i, j = random.Random(seed).sample(range(len(lines)), 2)
    lines[i], lines[j] = lines[j], lines[i]
    (other / "vocab.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return other


# ----- 3. a model file is used only with the data it was trained on ---------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_command_refuses_a_data_dir_with_other_ids(run, tmp_path, capsys, seed) -> None:
    other = _other_data(run, tmp_path, seed)
    out = tmp_path / "model.pt"
    cases = [
        ("export", "--checkpoint", run["old"], "--data", other, "--out", out),
        ("export", "--checkpoint", run["best"], "--data", other, "--out", out),
        ("score", "--model", run["old"], "--data", other, "--text", run["text"], "--device", "cpu"),
        ("generate", "--model", run["old"], "--data", other, "--tokens", "3", "--device", "cpu"),
        ("score", "--model", run["best"], "--data", other, "--text", run["text"], "--device", "cpu"),
        ("generate", "--model", run["best"], "--data", other, "--tokens", "3", "--device", "cpu"),
        ("eval", "--checkpoint", run["best"], "--data", other, "--device", "cpu"),
        ("eval", "--checkpoint", run["old"], "--data", other, "--device", "cpu"),
    ]
    for argv in cases:
        code, err = _cli(capsys, *argv)
        assert code == 2 and len(err) == 1, (argv, err)
        assert str(other) in err[0] and "is not the data" in err[0] and str(argv[2]) in err[0], err[0]
    assert not out.exists()


def test_the_data_it_was_trained_on_is_accepted(run, tmp_path, capsys) -> None:
    out = tmp_path / "model.pt"
    assert _cli(capsys, "export", "--checkpoint", run["old"], "--data", run["data"], "--out", out)[0] == 0
    assert _cli(capsys, "eval", "--checkpoint", out, "--data", run["data"], "--device", "cpu")[0] == 0
    for command in (("score", "--text", run["text"]), ("generate", "--tokens", "3")):  # a self-contained model
        assert _cli(capsys, command[0], "--model", out, "--data", run["data"], *command[1:], "--device", "cpu")[0] == 0


@pytest.mark.parametrize("what", ["missing", "not a data dir"])
def test_score_and_generate_check_data_beside_a_self_contained_model(what, run, tmp_path, capsys) -> None:
    """--data is checked even when the model file holds its vocabulary (it was ignored before)."""
    data = tmp_path / "nodata"
    if what == "not a data dir":
        data.mkdir()
        (data / "notes.txt").write_text("hello\n")
    for argv in (("score", "--text", run["text"]), ("generate", "--tokens", "3")):
        code, err = _cli(capsys, argv[0], "--model", run["best"], "--data", data, *argv[1:], "--device", "cpu")
        assert code == 2 and len(err) == 1 and str(data) in err[0], (argv, err)


# ----- 4. writing an output never destroys what is at the path ---------------------------------------

def _writers(path: Path):
    yield lambda: write_text(path, "text\n")
    yield lambda: write_json(path, {"a": 1})
    yield lambda: save_npy(path, np.arange(3))

    def torch_like() -> None:
        with atomic_path(path) as temp:
            temp.write_bytes(b"bytes")
    yield torch_like


def _null_device(tmp_path: Path) -> Path:
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device, a node of our own
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return node


def test_a_device_is_written_to_directly_never_replaced(tmp_path) -> None:
    node = _null_device(tmp_path)
    for write in _writers(node):
        write()
        assert stat.S_ISCHR(os.stat(node).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temp file left beside it


def test_a_fifo_gets_the_bytes_and_stays_a_fifo_and_one_without_reader_is_one_error(tmp_path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the write
    try:
        write_text(fifo, "through the pipe\n")
        assert os.read(reader, 1000) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(OSError, match="FIFO that no process reads"):
        write_text(fifo, "nobody listens\n")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    for write in _writers(link):
        write()
        assert link.is_symlink() and target.is_file() and not target.is_symlink()
    assert target.read_bytes() == b"bytes"


def test_refused_outputs_leave_what_is_there(tmp_path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep").write_text("kept")
    server = socket.socket(socket.AF_UNIX)
    sock_path = tmp_path / "sock"
    server.bind(str(sock_path))
    cases: list[tuple[Path | str, type, str]] = [(folder, IsADirectoryError, "is a folder"),
                                                 (sock_path, DataError, "is a socket"), ("", DataError, "is empty")]
    try:
        block = tmp_path / "block"
        os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(4000, 0))  # a device number no driver has
        cases.append((block, DataError, "is a block device"))
    except PermissionError:
        pass
    try:
        for path, error, text in cases:
            for write in _writers(Path(path)) if path else [lambda: write_text("", "x")]:
                with pytest.raises(error, match=text):
                    write()
            if path:
                kind = os.stat(path).st_mode
                assert not stat.S_ISREG(kind)
        assert (folder / "keep").read_text() == "kept" and sorted(os.listdir(folder)) == ["keep"]
    finally:
        server.close()


def test_commands_write_to_a_device_and_refuse_bad_outputs_before_any_work(run, tmp_path, capsys) -> None:
    node = _null_device(tmp_path)
    for argv in (("eval", "--checkpoint", run["best"], "--data", run["data"], "--device", "cpu", "--out", node),
                 ("export", "--checkpoint", run["best"], "--out", node),
                 ("score", "--model", run["best"], "--text", run["text"], "--device", "cpu", "--summary", node)):
        code, err = _cli(capsys, *argv)
        assert code == 0, err
        assert stat.S_ISCHR(os.stat(node).st_mode)
    for option, argv in (("--out", ("eval", "--checkpoint", run["best"], "--data", run["data"], "--out")),
                         ("--out", ("export", "--checkpoint", run["best"], "--out")),
                         ("--summary", ("score", "--model", run["best"], "--text", run["text"], "--summary")),
                         ("--tensorboard", ("train", "--data", run["data"], "--model", "lightrnn", "--out",
                                            tmp_path / "t", "--tensorboard"))):
        for bad in ("", tmp_path) if option != "--tensorboard" else ("",):  # a folder is what --tensorboard takes
            code, err = _cli(capsys, *argv, bad)
            assert code == 2 and len(err) == 1 and (option in err[0] or str(tmp_path) in err[0]), err
    assert not (tmp_path / "t").exists() and not list(Path.cwd().glob("events.out.tfevents*"))


def test_stdout_as_an_output_keeps_what_was_printed_before(run, tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "rows.txt"
    with open(out, "w") as stream:
        subprocess.run([sys.executable, "-m", "lightrnn", "score", "--model", str(run["best"]), "--text",
                        str(run["text"]), "--device", "cpu", "--summary", "/dev/stdout"], stdout=stream, check=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    text = out.read_text()
    assert text.startswith("line\ttokens\tlog_prob") and '"ppl"' in text  # the rows, then the summary
    assert os.path.islink("/dev/stdout") or not Path("/dev/stdout").is_file()


# ----- 8. a file argument that is not a file is named for what it is ---------------------------------

def _not_files(tmp_path: Path) -> list[tuple[Path | str, str]]:
    folder = tmp_path / "a-folder"
    folder.mkdir(exist_ok=True)
    fifo = tmp_path / "a-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return [(folder, "is a folder"), (fifo, "is a FIFO"), (Path("/dev/zero"), "is a device"),
            (tmp_path / "missing.pt", "does not exist"), (blocker / "below", "is a file, not a folder"),
            (Path("/dev/null/below"), "/dev/null is a device, not a folder"),
            ("", "is empty")]


def test_input_file_names_what_is_there(tmp_path) -> None:
    for path, text in _not_files(tmp_path):
        with pytest.raises((OSError, DataError), match=text):
            input_file(path, "--checkpoint")
    assert input_file(tmp_path / "a-file") == tmp_path / "a-file"


def test_every_file_option_names_a_folder_fifo_or_device_for_what_it_is(run, tmp_path, capsys) -> None:
    for path, text in _not_files(tmp_path):
        for argv in (("train", "--data", run["data"], "--model", "lightrnn", "--out", tmp_path / "r", "--config"),
                     ("eval", "--data", run["data"], "--checkpoint"),
                     ("export", "--out", tmp_path / "m.pt", "--checkpoint"),
                     ("score", "--text", run["text"], "--model"),
                     ("generate", "--model")):
            code, err = _cli(capsys, *argv, path)
            assert code == 2 and len(err) == 1, (argv, path, err)
            assert text in err[0] or (text == "is empty" and "empty path" in err[0]), (argv, err[0])
    assert stat.S_ISFIFO(os.stat(tmp_path / "a-fifo").st_mode)


def test_output_target_is_checked_once_for_every_writer(tmp_path) -> None:
    assert output_target(tmp_path / "new.json") == (tmp_path / "new.json", False)
    assert output_target("/dev/stdout")[1] is True


# ----- 9. an output that cannot be written is named for what it is -----------------------------------

def test_a_folder_output_on_a_device_fifo_or_file_names_what_is_in_the_way(run, tmp_path, capsys) -> None:
    fifo, blocker = tmp_path / "a-fifo", tmp_path / "a-file"
    os.mkfifo(fifo)
    blocker.write_text("x")
    for out, kind in ((Path("/dev/null"), "a character device"), (fifo, "a FIFO"), (blocker, "a file")):
        for argv in (("train", "--data", run["data"], "--model", "lightrnn", "--out", out),
                     ("data", "encode", "--text", run["text"], "--out", out)):
            code, err = _cli(capsys, *argv)
            assert code == 2 and len(err) == 1 and f"{kind} is in the way" in err[0], (argv, err)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and blocker.read_text() == "x"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/tty"), reason="needs /dev/tty")
def test_dev_tty_without_a_terminal_is_a_device_that_cannot_be_opened_not_a_fifo(tmp_path) -> None:
    import subprocess
    import sys

    code = ("from lightrnn.core.fileio import write_text\n"
            "try:\n    write_text('/dev/tty', 'x')\nexcept OSError as error:\n    print(error)\n")
    # A new session has no controlling terminal: opening /dev/tty fails there (ENXIO), as under a batch system.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, start_new_session=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert "/dev/tty is a character device that cannot be opened" in result.stdout, result.stdout + result.stderr
    assert "FIFO" not in result.stdout


def test_train_refuses_tensorboard_curves_it_cannot_write_before_any_write(run, tmp_path, capsys) -> None:
    fifo, blocker = tmp_path / "a-fifo", tmp_path / "a-file"
    os.mkfifo(fifo)
    blocker.write_text("x")
    for log_dir, kind in ((blocker, "a file"), (blocker / "sub" / "tb", "a file"), (fifo, "a FIFO"),
                          (Path("/dev/null"), "a character device")):
        out = tmp_path / "out"
        code, err = _cli(capsys, "train", "--data", run["data"], "--model", "lightrnn", "--out", out,
                         "--tensorboard", log_dir)
        assert code == 2 and len(err) == 1 and f"{kind} is in the way" in err[0] and str(log_dir) in err[0], err
        assert not out.exists(), log_dir  # no folder, no config.yaml, no metrics.jsonl
    assert blocker.read_text() == "x" and stat.S_ISFIFO(os.stat(fifo).st_mode)
