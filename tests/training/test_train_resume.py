"""Reruns of `train` that must not lose or mix runs: mid-epoch checkpoints resume to the same
metrics, best.pt survives a deleted output, another config or re-encoded data is refused (or
moved aside and kept), one process per --out, progress lines without a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lightrnn.training.epoch as epoch_module
from lightrnn import cli
from lightrnn.training.checkpoint import RunMismatch, load_checkpoint
from lightrnn.config import TrainConfig
from lightrnn.data.markov import generate_markov_corpus
from lightrnn.core.errors import UsageError
from lightrnn.core.fileio import read_jsonl
from lightrnn.core.runlock import LOCK_NAME, OutDirLocked
from lightrnn.training.preflight import require_gpus
from lightrnn.training.train import train
from tests.conftest import markov_corpus

TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.1", "batch_size=8", "bptt=12",
        "lr=0.01", "eval_batch_size=4", "device=cpu"]
COMPARED = ("kind", "round", "epoch", "step", "lr", "train_ppl", "valid_ppl", "test_ppl", "config_hash")



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 30, (4000, 600, 500), seed=1)


def _config(*overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(None, [*TINY, *overrides])


def _same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for row_got, row_want in zip(got, want):
        for key in COMPARED:
            assert row_got[key] == row_want[key], (key, row_got[key], row_want[key])


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not an Exception, so nothing catches it)."""


@pytest.mark.parametrize("model", ["lightrnn", "full_softmax"])
def test_a_kill_inside_an_epoch_resumes_at_the_next_batch_with_identical_metrics(corpus, tmp_path, monkeypatch, model):
    overrides = [f"model={model}", "rounds=[2,1]", "test_every_epoch=true"]
    train(_config(*overrides), corpus, tmp_path / "straight")
    expected = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    steps_per_epoch = expected[0]["step"]
    assert steps_per_epoch > 10

    # Checkpoint after every batch; die in the middle of the second epoch.
    killed = tmp_path / "killed"
    kill_at = steps_per_epoch + steps_per_epoch // 2
    real_step, calls = epoch_module.train_step, [0]

    def dying_step(*args, **kwargs):
        calls[0] += 1
        if calls[0] > kill_at:
            raise Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "train_step", dying_step)
    with pytest.raises(Killed):
        train(_config(*overrides, "checkpoint_every_s=1e-9"), corpus, killed)
    checkpoint = load_checkpoint(killed / "checkpoint.pt")
    assert checkpoint["epoch"]["batch"] == kill_at - steps_per_epoch  # the batch before the kill
    assert checkpoint["step"] == kill_at and checkpoint["next_event"] == 1
    assert len(read_jsonl(killed / "metrics.jsonl")) == 1

    monkeypatch.setattr(epoch_module, "train_step", real_step)
    train(_config(*overrides), corpus, killed)  # the resume, with the default checkpoint interval
    _same_rows(read_jsonl(killed / "metrics.jsonl"), expected)


def test_best_pt_is_restored_when_a_rerun_finds_nothing_left_to_train(corpus, tmp_path):
    out = tmp_path / "run"
    config = _config("rounds=[2]", "max_steps_per_epoch=3")
    train(config, corpus, out)
    rows = read_jsonl(out / "metrics.jsonl")
    best_bytes = (out / "best.pt").read_bytes()
    # What Snakemake does before rerunning a job: delete its declared outputs.
    (out / "best.pt").unlink()
    (out / "metrics.jsonl").unlink()
    before = (out / "checkpoint.pt").stat().st_mtime
    train(config, corpus, out)
    assert (out / "best.pt").read_bytes() == best_bytes
    assert (out / "best.pt").stat().st_mtime >= before  # written by this run, as far as make-like tools see
    _same_rows(read_jsonl(out / "metrics.jsonl"), rows)
    assert load_checkpoint(out / "best.pt")["best_valid"] == min(row["valid_ppl"] for row in rows)


def test_another_config_is_refused_by_default_and_moved_aside_on_request(corpus, tmp_path):
    out = tmp_path / "lightrnn"
    old = _config("rounds=[1]", "max_steps_per_epoch=2")
    train(old, corpus, out)
    old_rows = read_jsonl(out / "metrics.jsonl")
    new = _config("rounds=[1]", "max_steps_per_epoch=2", "lr=0.02")
    with pytest.raises(RunMismatch, match=r"another config .*changed: lr"):
        train(new, corpus, out)

    (out / "metrics.jsonl").unlink()  # Snakemake deletes a job's outputs before rerunning it
    (out / "best.pt").unlink()
    train(new, corpus, out, on_config_change="move-aside")
    kept = tmp_path / f"lightrnn.old-{old.config_hash[:12]}"
    assert read_jsonl(kept / "metrics.jsonl") == old_rows
    assert (kept / "best.pt").is_file() and (kept / "checkpoint.pt").is_file()
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["config_hash"] for row in rows] == [new.config_hash]  # a fresh run, not a continuation
    assert not (out / LOCK_NAME).exists()


def test_re_encoded_data_is_a_clear_error_naming_both_then_a_fresh_run_in_the_workflow(corpus, tmp_path):
    out = tmp_path / "run"
    config = _config("rounds=[2]", "max_steps_per_epoch=2")
    train(config, corpus, out)
    other = tmp_path / "re-encoded"
    generate_markov_corpus(other, vocab_size=30, successors=3, train_tokens=4000, valid_tokens=700, test_tokens=500, seed=5)
    with pytest.raises(RunMismatch, match=r"other data .*valid 600.* than this run's .*valid 700"):
        train(config, other, out)
    bigger = tmp_path / "bigger-vocab"
    generate_markov_corpus(bigger, vocab_size=40, successors=3, train_tokens=4000, valid_tokens=600, test_tokens=500, seed=1)
    result = subprocess.run(
        [sys.executable, "-m", "lightrnn", "train", "--data", str(bigger), "--model", "lightrnn", "--out", str(out),
         *[item for override in [*TINY, "rounds=[2]", "max_steps_per_epoch=2"] for item in ("--set", override)]],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr  # one line, not a size-mismatch traceback
    assert "other data" in result.stderr and "40 words" in result.stderr and "30 words" in result.stderr

    train(config, other, out, on_config_change="move-aside")
    assert (tmp_path / f"run.old-{config.config_hash[:12]}" / "metrics.jsonl").is_file()
    assert load_checkpoint(out / "checkpoint.pt")["data"]["split_tokens"]["valid"] == 700


def test_a_second_process_on_the_same_out_is_refused_naming_the_first_ones_pid(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(OutDirLocked, match=rf"in use by lightrnn train process {holder.pid}"):
            train(_config("rounds=[1]", "max_steps_per_epoch=1"), corpus, out)
        status = cli.main(["train", "--data", str(corpus), "--model", "lightrnn", "--out", str(out), "--set", "device=cpu"])
        assert status == 2 and str(holder.pid) in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "metrics.jsonl").exists()
    # The holder is dead now: its lock is stale and is taken over.
    train(_config("rounds=[1]", "max_steps_per_epoch=1"), corpus, out)
    assert (out / "metrics.jsonl").is_file() and not (out / LOCK_NAME).exists()


def test_without_a_terminal_progress_lines_name_tokens_per_s_ppl_and_eta(corpus, tmp_path, capsys):
    train(_config("rounds=[1]", "max_steps_per_epoch=4", "log_every_s=1e-9"), corpus, tmp_path / "run")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch 1: batch ")]
    assert len(lines) >= 3, err
    assert "tokens/s, running train ppl " in lines[-1] and "epoch ETA " in lines[-1]
    assert "epoch 1 done: train ppl " in err


def test_runtime_keys_do_not_change_the_config_hash():
    base = _config()
    assert _config("log_every_s=5", "checkpoint_every_s=7").config_hash == base.config_hash
    with pytest.raises(ValueError, match="checkpoint_every_s"):
        _config("checkpoint_every_s=-1")
    assert np.isfinite(base.log_every_s)


def test_a_job_that_asked_for_gpus_fails_at_once_where_torch_sees_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    require_gpus(0, "rule train (ptb, lightrnn)")  # a CPU job: nothing to check
    with pytest.raises(UsageError, match=r"rule train \(ptb, lightrnn\): the job asked for 2 GPU\(s\) .* sees 0") as error:
        require_gpus(2, "rule train (ptb, lightrnn)")
    assert sys.prefix in str(error.value) and "Fix: " in str(error.value)
