"""Early stopping (config key `patience`) and a training run that never reads the test split."""

from __future__ import annotations

from pathlib import Path

import pytest

import lightrnn.training.epoch as epoch_module
from lightrnn.config import TrainConfig
from lightrnn.core.fileio import read_jsonl
from lightrnn.core.metrics import early_stop
from lightrnn.training.run import Run
from lightrnn.training.train import train
from tests.conftest import markov_corpus

TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.1", "batch_size=8", "bptt=12",
        "lr=0.01", "eval_batch_size=4", "device=cpu", "max_steps_per_epoch=3", "model=full_softmax"]
# valid ppl after epoch e (index e): best at epoch 2, then two epochs without a lower one.
SCRIPTED = {1: 50.0, 2: 40.0, 3: 45.0, 4: 41.0, 5: 30.0, 6: 20.0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 30, (2000, 300, 300), seed=2)


@pytest.fixture
def scripted_valid(monkeypatch):
    """Valid ppl from SCRIPTED by the epoch just trained (3 steps an epoch); every split read is logged."""
    real, splits = Run.evaluate, []

    def evaluate(self, split):
        splits.append(split)
        result = dict(real(self, split))
        if split == "valid":
            result["ppl"] = SCRIPTED[self.step // 3]
        return result

    monkeypatch.setattr(Run, "evaluate", evaluate)
    return splits


def _config(*overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(None, [*TINY, *overrides])


def test_early_stop_reads_the_rows():
    rows = [{"kind": "epoch", "epoch": e, "valid_ppl": SCRIPTED[e]} for e in (1, 2, 3, 4)]
    assert early_stop(rows, 2) == (2, 2, True)
    assert early_stop(rows, 3) == (2, 2, False)
    assert early_stop(rows, 0) == (2, 2, False)  # 0: never stops early
    # a reallocation row that sets a new best restarts the count (best.pt holds it)
    realloc = {"kind": "realloc", "epoch": 3, "valid_ppl": 39.0}
    assert early_stop([*rows[:3], realloc, rows[3]], 2) == (3, 1, False)


def test_a_run_stops_after_patience_epochs_without_improvement(corpus, tmp_path, scripted_valid):
    out = tmp_path / "run"
    train(_config("rounds=[6]", "patience=2"), corpus, out)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]  # stopped: epochs 3 and 4 did not beat epoch 2
    assert early_stop(rows, 2) == (2, 2, True)
    # without patience the same run trains all 6 epochs (the maximum)
    train(_config("rounds=[6]"), corpus, tmp_path / "full")
    assert len(read_jsonl(tmp_path / "full" / "metrics.jsonl")) == 6
    # a rerun of the stopped run trains nothing more
    train(_config("rounds=[6]", "patience=2"), corpus, out)
    assert read_jsonl(out / "metrics.jsonl") == rows


class Killed(BaseException):
    """Stands in for SIGKILL."""


def test_a_killed_run_resumes_to_the_same_stop(corpus, tmp_path, scripted_valid, monkeypatch):
    config = _config("rounds=[6]", "patience=2")
    train(config, corpus, tmp_path / "straight")
    expected = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    real_step, calls = epoch_module.train_step, [0]

    def dying_step(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 10:  # inside epoch 4
            raise Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "train_step", dying_step)
    with pytest.raises(Killed):
        train(config, corpus, tmp_path / "killed")
    assert len(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == 3
    monkeypatch.setattr(epoch_module, "train_step", real_step)
    train(config, corpus, tmp_path / "killed")
    got = read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    keys = ("epoch", "step", "train_ppl", "valid_ppl", "config_hash")
    assert [[row[k] for k in keys] for row in got] == [[row[k] for k in keys] for row in expected]


def test_test_during_training_false_never_reads_the_test_split(corpus, tmp_path, scripted_valid):
    train(_config("rounds=[2, 1]", "test_during_training=false"), corpus, tmp_path / "run")
    assert "test" not in scripted_valid and "valid" in scripted_valid
    assert all(row["test_ppl"] is None for row in read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    with pytest.raises(ValueError, match="test_every_epoch=true needs test_during_training=true"):
        _config("test_every_epoch=true", "test_during_training=false")
