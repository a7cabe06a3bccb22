"""Every model file is checked for every model kind, and is self-contained (issue 35, classes 2 and 3).

Damaged files are generated from real ones (every registered model): non-finite weights, the
class softmax's layout buffers, a mid-epoch state of the wrong types or shapes; each is refused
by every command that reads it (score, generate, eval, export, a resume) with one line naming the
file, exit 2. A model trained from an `initial_table: T.npy` works once T.npy is gone, and a
finished run restores best.pt only from a kept copy that loads and checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightrnn import cli, registry
from lightrnn.core.sampling import sample_logits
from lightrnn.data.encode import encode
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive
from lightrnn.method.word_table import WordTable
from lightrnn.training.checkpoint import save_checkpoint

MODELS = registry.names()
TINY = ["--set", "embed_dim=16", "--set", "hidden_dim=24", "--set", "num_layers=1", "--set", "batch_size=4",
        "--set", "bptt=6", "--set", "eval_batch_size=4", "--set", "rounds=[1]", "--set", "max_steps_per_epoch=3",
        "--set", "device=cpu", "--set", "log_every_s=0", "--set", "checkpoint_every_s=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    make_tiny_archive("ptb", root / "raw")
    prepare("ptb", root / "raw", root / "text")
    encode(root / "text", root / "data")
    (root / "s.txt").write_text("the N of\nlobo to the\n")
    return {"root": root, "data": root / "data", "text": root / "s.txt"}


@pytest.fixture(scope="module")
def trained(corpus) -> dict[str, Path]:
    """A finished run of every registered model (seconds)."""
    runs = {}
    for name in MODELS:
        out = corpus["root"] / name
        assert cli.main(["train", "--data", str(corpus["data"]), "--model", name, "--out", str(out), *TINY]) == 0
        runs[name] = out
    return runs


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _save(payload: dict, path: Path) -> Path:
    save_checkpoint(path, {key: value for key, value in payload.items() if key != "format"})
    return path


def _readers(path: Path, corpus: dict[str, Path]) -> list[list]:
    """Every command that reads a model file, on `path`."""
    return [
        ["score", "--model", path, "--text", corpus["text"], "--device", "cpu"],
        ["generate", "--model", path, "--tokens", "5", "--device", "cpu"],
        ["eval", "--checkpoint", path, "--data", corpus["data"], "--device", "cpu"],
        ["export", "--checkpoint", path, "--out", path.with_name(path.stem + "-exported.pt")],
    ]


# ----- class 2: every model file checked, for every model kind ------------------------------------

def _class_softmax_damages() -> list[str]:
    return ["word_class out of range", "sorted_words repeated", "class_start shifted", "row_class swapped",
            "word_row not the inverse"]


def _damage_class_softmax(model: dict, damage: str) -> None:
    if damage == "word_class out of range":
        model["word_class"][0] = 10**6
    elif damage == "sorted_words repeated":
        model["sorted_words"][1] = model["sorted_words"][0]
    elif damage == "class_start shifted":
        model["class_start"][1] += 1
    elif damage == "row_class swapped":
        model["row_class"][0], model["row_class"][-1] = model["row_class"][-1].clone(), model["row_class"][0].clone()
    else:
        model["word_row"][0], model["word_row"][1] = model["word_row"][1].clone(), model["word_row"][0].clone()


@pytest.mark.parametrize("damage", _class_softmax_damages())
def test_class_softmax_buffers_are_checked_by_every_reader(damage, trained, corpus, tmp_path, capsys) -> None:
    payload = torch.load(trained["class_softmax"] / "best.pt", weights_only=True)
    _damage_class_softmax(payload["model"], damage)
    bad = _save(payload, tmp_path / "bad.pt")
    for argv in _readers(bad, corpus):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and out == "", (argv[0], err)
        _one_line(err, str(bad), "class softmax buffer")


@pytest.mark.parametrize("damage", ["nan", "-inf", "complex"])
@pytest.mark.parametrize("name", MODELS)
def test_weights_that_are_not_finite_reals_are_refused_for_every_model(name, damage, trained, corpus, tmp_path,
                                                                        capsys) -> None:
    payload = torch.load(trained[name] / "best.pt", weights_only=True)
    key = [key for key, tensor in payload["model"].items() if tensor.is_floating_point()][-1]
    if damage == "complex":
        payload["model"][key] = payload["model"][key].to(torch.complex64)
    else:
        payload["model"][key].view(-1)[-1] = float(damage)
    bad = _save(payload, tmp_path / "bad.pt")
    for argv in _readers(bad, corpus):
        code, _, err = _run(capsys, *argv)
        assert code == 2, (argv[0], err)
        _one_line(err, str(bad), key, "a real tensor" if damage == "complex" else "NaN or infinite")


@pytest.mark.parametrize("name", MODELS)
def test_a_tiny_temperature_picks_the_most_likely_outcome(name, trained, capsys) -> None:
    texts = set()
    for seed in (1, 2):
        code, out, err = _run(capsys, "generate", "--model", trained[name] / "best.pt", "--tokens", "8",
                              "--temperature", "1e-30", "--seed", seed, "--device", "cpu")
        assert code == 0, err
        texts.add(out)
    assert len(texts) == 1  # greedy: the seed no longer matters


def test_sampling_is_stable_at_any_temperature_and_refuses_non_finite_scores() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, -50.0], [0.0, 0.0, 5.0, 5.0]])
    allowed = torch.tensor([True, True, True, False])
    for temperature in (1e-300, 1e-30, 1e-6):
        assert sample_logits(logits, temperature).tolist()[0] == 1
        assert sample_logits(logits, temperature).tolist()[1] in (2, 3)
    assert sample_logits(logits, 1e300).shape == (2,)  # flat: uniform, still a distribution
    assert sample_logits(logits[:1] * torch.tensor([1.0, 1.0, 1.0, -1e6]), 1e-30, allowed=allowed).item() == 1
    for bad in (float("nan"), float("inf")):
        damaged = logits.clone()
        damaged[0, 2] = bad
        with pytest.raises(FloatingPointError, match="diverged"):
            sample_logits(damaged, 1.0)


@pytest.mark.parametrize("carried, needle", [
    ([{"state": "x", "nll": 1.0, "tokens": 4}], "epoch.carried[0].state"),
    ([{"state": None, "nll": "1.0", "tokens": 4}], "epoch.carried[0].nll"),
    ([{"state": None, "nll": 1.0, "tokens": "4"}], "epoch.carried[0].tokens"),
    ([{"state": [torch.zeros(1, 4, 24), "c"], "nll": 1.0, "tokens": 4}], "epoch.carried[0].state"),
    (["rank 0"], "epoch.carried[0]"),
    ([], "epoch.carried"),
    ([{"state": [torch.zeros(3, 5, 7), torch.zeros(3, 5, 7)], "nll": 1.0, "tokens": 4}], "carried LSTM state"),
])
def test_a_mid_epoch_state_of_the_wrong_types_is_refused_on_resume(carried, needle, trained, corpus, tmp_path,
                                                                 capsys) -> None:
    payload = torch.load(trained["full_softmax"] / "checkpoint.pt", weights_only=True)
    payload.update(next_event=0, step=1, metrics_rows=[],
                   epoch={"batch": 1, "seconds": 0.5, "carried": carried})
    out = tmp_path / "run"
    out.mkdir()
    _save(payload, out / "checkpoint.pt")
    code, _, err = _run(capsys, "train", "--data", corpus["data"], "--model", "full_softmax", "--out", out, *TINY)
    assert code == 2, err
    _one_line(err, needle)


# ----- class 3: self-contained model files, and best.pt restored only from what checks -----------

@pytest.mark.parametrize("where", ["config key", "model option"])
def test_a_model_trained_from_a_table_file_works_once_the_file_is_gone(where, corpus, tmp_path, capsys) -> None:
    table = tmp_path / "T.npy"
    WordTable.random(401, seed=5).save(table)
    option = f"initial_table={table}" if where == "config key" else f"model_options={{initial_table: {table}}}"
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(corpus["data"]), "--model", "lightrnn", "--out", str(out), *TINY,
                     "--set", option]) == 0
    table.unlink()
    for argv in _readers(out / "best.pt", corpus):
        code, out_text, err = _run(capsys, *argv)
        assert code == 0 and out_text, (argv[0], err)


@pytest.mark.parametrize("damage", ["NaN weight", "truncated", "class layout"])
def test_best_pt_is_restored_only_from_a_kept_copy_that_checks(damage, corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", corpus["data"], "--model", "class_softmax", "--out", out, *TINY]
    assert _run(capsys, *argv)[0] == 0
    kept = out / "checkpoint-best.pt"
    (out / "best.pt").unlink()
    if damage == "truncated":
        data = kept.read_bytes()
        kept.unlink()  # a new inode: the hard link best.pt was is gone already
        kept.write_bytes(data[: len(data) // 2])
    else:
        payload = torch.load(kept, weights_only=True)
        if damage == "NaN weight":
            payload["model"]["class_decoder.weight"][0, 0] = float("nan")
        else:
            _damage_class_softmax(payload["model"], "sorted_words repeated")
        kept.unlink()
        _save(payload, kept)
    code, _, err = _run(capsys, *argv)
    assert code == 2 and not (out / "best.pt").exists(), err
    _one_line(err, "best.pt is missing and its kept copy cannot restore it", str(kept))


def test_best_pt_is_restored_from_a_kept_copy_that_checks(trained, corpus, tmp_path, capsys) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained["adaptive_softmax"], out)
    (out / "best.pt").unlink()
    code, _, err = _run(capsys, "train", "--data", corpus["data"], "--model", "adaptive_softmax", "--out", out, *TINY)
    assert code == 0, err
    code, _, err = _run(capsys, "score", "--model", out / "best.pt", "--text", corpus["text"], "--device", "cpu")
    assert code == 0, err


# ----- class 6: messages that keep their cause ------------------------------------------------------

class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this should never run",))


def test_the_refusal_of_a_pickle_that_runs_code_keeps_its_warning(corpus, tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "model": _RunsCode()}, evil)
    for argv in _readers(evil, corpus):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and "should never run" not in out, err
        _one_line(err, str(evil), "system", "weights_only=False can run arbitrary code", "trust")


def test_a_library_that_cannot_load_under_a_low_memory_limit_is_one_line(trained, corpus) -> None:
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (300 << 20, 300 << 20))

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "lightrnn", "score", "--model", str(trained["full_softmax"] / "best.pt"), "--text",
         str(corpus["text"]), "--device", "cpu"],
        capture_output=True, text=True, cwd=root, preexec_fn=limit, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "could not be loaded" in lines[0] or "memory" in lines[0], lines[0]
