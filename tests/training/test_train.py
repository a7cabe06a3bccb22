"""The shared training loop: batching, exact evaluation, rounds, metrics rows, resume, divergence."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightrnn import cli, registry
from lightrnn.training.batches import TrainPairs, lm_batches, load_split, load_vocab, num_batches
from lightrnn.training.checkpoint import load_checkpoint
from lightrnn.config import TrainConfig
from lightrnn.data.markov import entropy_rate, generate_markov_corpus
from lightrnn.training.evaluate import evaluate
from lightrnn.core.fileio import read_jsonl as read_metrics
from lightrnn.core.metrics import FIELDS, undeclared
from lightrnn.method.model import LightRNN
from lightrnn.method.word_table import WordTable
from lightrnn.training.train import TrainingDiverged, train
from tests.conftest import markov_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.1", "batch_size=8", "bptt=12",
        "lr=0.01", "eval_batch_size=4", "device=cpu"]



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 30, (6000, 800, 700), seed=1)


def _config(*overrides: str) -> TrainConfig:
    return TrainConfig.from_yaml(None, [*TINY, *overrides])


# ----- batches and evaluation --------------------------------------------------------------------

@pytest.mark.parametrize("length, batch_size, bptt", [(50, 3, 7), (11, 4, 3), (9, 8, 5), (100, 1, 200)])
def test_exact_batches_count_every_target_once(length: int, batch_size: int, bptt: int) -> None:
    stream = np.arange(length, dtype=np.int32) + 1000
    seen = {row: [] for row in range(batch_size)}
    for batch in lm_batches(stream, batch_size, bptt, exact=True):
        mask = torch.ones_like(batch.tokens, dtype=torch.bool) if batch.mask is None else batch.mask
        assert torch.equal(batch.targets[mask], (batch.tokens + 1)[mask])  # consecutive ids: targets follow tokens
        for row in range(batch_size):
            seen[row].extend(batch.targets[row][mask[row]].tolist())
    assert sum(seen.values(), []) == (stream[1:]).tolist()
    assert num_batches(length, batch_size, bptt, exact=True) == len(list(lm_batches(stream, batch_size, bptt, exact=True)))


def test_training_batches_are_contiguous_rows() -> None:
    stream = np.arange(103, dtype=np.int32)
    batches = list(lm_batches(stream, 4, 5))
    assert all(batch.mask is None for batch in batches)
    rows = torch.cat([batch.tokens for batch in batches], dim=1)  # [4, 25]
    assert torch.equal(rows, torch.arange(100).reshape(4, 25))
    pairs = TrainPairs(stream, 4, 5, max_batches=2)
    assert len(pairs) == 2 and len(list(pairs)) == 2 and len(list(pairs)) == 2  # re-iterable


def test_evaluate_is_exact_and_independent_of_padding(corpus: Path) -> None:
    words, _ = load_vocab(corpus)
    stream = load_split(corpus, "valid", len(words))
    assert isinstance(stream, np.memmap)
    torch.manual_seed(0)
    model = LightRNN(len(words), 8, 12, 1, 0.0).double()
    whole = torch.from_numpy(np.asarray(stream, dtype=np.int64)).unsqueeze(0)
    reference = model(whole[:, :-1], whole[:, 1:]).nll.sum().item()  # one row, no batching at all
    result = evaluate(model, stream, batch_size=1, bptt=37, device="cpu")
    assert result["tokens"] == len(stream) - 1
    assert result["nll_sum"] == pytest.approx(reference, rel=1e-10)
    assert result["ppl"] == pytest.approx(math.exp(reference / (len(stream) - 1)))
    for batch_size in (3, 7):
        assert evaluate(model, stream, batch_size, 10, "cpu")["tokens"] == len(stream) - 1


def test_load_split_rejects_out_of_vocab_ids(tmp_path) -> None:
    np.save(tmp_path / "valid.npy", np.array([0, 5, 9], dtype=np.int32))
    with pytest.raises(ValueError, match=r"word ids must be in \[0, 5\)"):
        load_split(tmp_path, "valid", vocab_size=5)
    with pytest.raises(FileNotFoundError, match="test.npy does not exist"):
        load_split(tmp_path, "test")


# ----- the loop ----------------------------------------------------------------------------------

def test_loss_falls_and_rows_follow_the_schema(corpus: Path, tmp_path) -> None:
    metrics_path = train(_config("rounds=[3]"), corpus, tmp_path / "run")
    rows = read_metrics(metrics_path)
    assert [row["kind"] for row in rows] == ["epoch"] * 3
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert list(row)[: len(FIELDS)] == list(FIELDS)
        assert undeclared(row) == [], "declare every row field in lightrnn/core/metrics.py"
        assert row["dataset"] == "markov" and row["model"] == "lightrnn" and row["device"] == "cpu"
        assert row["params"] == LightRNN.param_count(30, 16, 24, 1) and row["param_bytes"] == 4 * row["params"]
        assert row["train_tokens_per_s"] > 0 and row["eval_tokens_per_s"] > 0 and row["peak_memory_bytes"] > 0
        assert row["realloc_objective"] is None and len(row["config_hash"]) == 64
    assert rows[-1]["valid_ppl"] < rows[0]["valid_ppl"] < 30
    assert rows[0]["test_ppl"] is None and rows[-1]["test_ppl"] is not None  # test at the end of the round
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "best.pt", "metrics.jsonl", "config.yaml", "table-0.npy"}
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["config"]["rounds"] == [3]
    assert WordTable.load(out / "table-0.npy") == WordTable.random(30, seed=0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_sparse_embedding_baselines_train_through_the_loop_and_resume(corpus: Path, tmp_path, optimizer) -> None:
    # Sparse embedding gradients need SparseAdam beside Adam and a clip that takes sparse norms.
    overrides = ("model=full_softmax", "rounds=[2]", f"optimizer={optimizer}", "lr=0.01", "clip=0.5",
                 "model_options={sparse_embedding: true}")
    metrics_path = train(_config(*overrides), corpus, tmp_path / "run")
    rows = read_metrics(metrics_path)
    assert all(math.isfinite(row["valid_ppl"]) for row in rows)
    assert rows[-1]["valid_ppl"] < rows[0]["valid_ppl"]
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer"]["optimizers"]
    assert len(saved) == (2 if optimizer == "adam" else 1)
    # Rerunning the finished run resumes from the checkpoint (optimizers included) and adds nothing.
    train(_config(*overrides), corpus, tmp_path / "run")
    assert read_metrics(metrics_path) == rows


class FakeRealloc(LightRNN):
    """LightRNN whose between-round step is a fixed permutation: the round mechanics without the solver."""

    def between_rounds(self, batches, **options):
        self.seen = (len(batches), options)
        table = self.table
        self.set_table(WordTable(table.rows[::-1].copy(), table.cols[::-1].copy(), table.num_rows, table.num_cols))
        return {"realloc_objective": 12.5, "realloc_lower_bound": 10.0, "realloc_s": 0.01,
                "realloc_method": "fake", "realloc_nll_before": 2.0, "realloc_nll_after": 1.9, "realloc_moved": 1.0}


class NoRealloc(LightRNN):
    """A model whose between-round hook returns nothing (every baseline)."""

    def between_rounds(self, batches, **options):
        return {}


class Diverges(LightRNN):
    """Training loss turns NaN at the 7th training step."""

    calls = 0

    def forward(self, tokens, targets, state=None):
        output = super().forward(tokens, targets, state)
        if self.training:
            type(self).calls += 1
            if type(self).calls >= 7:
                return output._replace(nll=output.nll * float("nan"))
        return output


@pytest.fixture
def fake_models(monkeypatch):
    for name in ("FakeRealloc", "NoRealloc", "Diverges"):
        monkeypatch.setitem(registry.REGISTRY, name.lower(), f"{__name__}:{name}")


def test_rounds_reallocate_between_rounds_and_write_realloc_rows(corpus: Path, tmp_path, fake_models) -> None:
    config = _config("model=fakerealloc", "rounds=[1, 2]", "max_steps_per_epoch=5", "realloc_fraction=0.5", "realloc_method=greedy")
    rows = read_metrics(train(config, corpus, tmp_path / "run"))
    assert [(row["kind"], row["round"], row["epoch"]) for row in rows] == [
        ("epoch", 0, 1), ("realloc", 1, 1), ("epoch", 1, 2), ("epoch", 1, 3)]
    realloc = rows[1]
    assert undeclared(realloc) == [] and list(realloc)[: len(FIELDS)] == list(FIELDS)
    assert realloc["realloc_objective"] == 12.5 and realloc["realloc_lower_bound"] == 10.0
    assert realloc["realloc_method"] == "fake" and realloc["valid_ppl"] > 0 and realloc["test_ppl"] is None
    assert [row["test_ppl"] is not None for row in rows] == [True, False, False, True]
    assert rows[2]["step"] == 10  # max_steps_per_epoch
    first, second = WordTable.load(tmp_path / "run" / "table-0.npy"), WordTable.load(tmp_path / "run" / "table-1.npy")
    assert np.array_equal(second.rows, first.rows[::-1])
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert torch.equal(checkpoint["model"]["word_row"], torch.from_numpy(first.rows[::-1].copy()))


def test_models_without_a_between_round_step_write_no_realloc_row(corpus: Path, tmp_path, fake_models) -> None:
    rows = read_metrics(train(_config("model=norealloc", "rounds=[1, 1]", "max_steps_per_epoch=3"), corpus, tmp_path / "run"))
    assert [row["kind"] for row in rows] == ["epoch", "epoch"]
    assert [row["round"] for row in rows] == [0, 1]


def test_nan_loss_names_epoch_and_step_and_keeps_the_checkpoint(corpus: Path, tmp_path, fake_models) -> None:
    Diverges.calls = 0
    with pytest.raises(TrainingDiverged, match=r"at epoch 2, step 7 \(batch 2 of the epoch\)"):
        train(_config("model=diverges", "rounds=[3]", "max_steps_per_epoch=5"), corpus, tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["next_event"] == 1 and len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 1


def test_resume_refuses_another_config(corpus: Path, tmp_path) -> None:
    train(_config("rounds=[1]", "max_steps_per_epoch=2"), corpus, tmp_path / "run")
    with pytest.raises(ValueError, match="belongs to a run with another config"):
        train(_config("rounds=[1]", "max_steps_per_epoch=2", "lr=0.5"), corpus, tmp_path / "run")


COMPARED = ("kind", "round", "epoch", "step", "lr", "train_ppl", "valid_ppl", "test_ppl")


@pytest.mark.slow
def test_sigkill_and_rerun_ends_with_the_same_metrics(tmp_path) -> None:
    data = tmp_path / "markov"
    generate_markov_corpus(data, vocab_size=30, successors=3, train_tokens=10000, valid_tokens=800, test_tokens=700, seed=2)
    overrides = [*TINY, "rounds=[3]", "test_every_epoch=true", "lr_decay=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def command(out: Path) -> list[str]:
        sets = [item for override in overrides for item in ("--set", override)]
        return [sys.executable, "-m", "lightrnn", "train", "--data", str(data), "--model", "lightrnn", "--out", str(out), *sets]

    subprocess.run(command(tmp_path / "straight"), env=env, check=True, capture_output=True)
    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = len(read_metrics(metrics))
    assert 1 <= rows_at_kill < 3, "the kill must land mid-run"

    subprocess.run(command(killed), env=env, check=True, capture_output=True)
    resumed = read_metrics(metrics)
    assert len(resumed) == len(expected) == 3
    for got, want in zip(resumed, expected):
        for key in COMPARED:
            if isinstance(want[key], float):
                assert got[key] == pytest.approx(want[key], rel=1e-6), key
            else:
                assert got[key] == want[key], key
    assert resumed[-1]["wall_s"] > 0


def test_cli_train_then_eval_best_checkpoint(corpus: Path, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text("\n".join(item.replace("=", ": ") for item in TINY) + "\nrounds: [2]\n")
    assert cli.main(["train", "--data", str(corpus), "--model", "lightrnn", "--out", str(out),
                     "--config", str(config_file), "--dataset", "tiny-markov"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[0]["dataset"] == "tiny-markov"
    best = min(rows, key=lambda row: row["valid_ppl"])
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out / "best.pt"), "--data", str(corpus), "--split", "valid",
                     "--device", "cpu", "--out", str(out / "eval.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "eval.json").read_text())
    assert printed["ppl"] == pytest.approx(best["valid_ppl"], rel=1e-9)
    assert printed["tokens"] == 799 and printed["model"] == "lightrnn" and printed["split"] == "valid"
    # the paired bootstrap's input: NLL sums of blocks of block_tokens targets, adding up to nll_sum
    assert printed["block_tokens"] == 100 and len(printed["block_nll"]) == 8
    assert sum(printed["block_nll"]) == pytest.approx(printed["nll_sum"], rel=1e-6)


class _TargetCost(torch.nn.Module):
    """A stand-in model whose NLL of a target is target / 100: the per-token order is checkable."""

    def forward(self, tokens, targets, state):
        from lightrnn.core.lm import LMOutput

        return LMOutput(targets.double() / 100, (torch.zeros(1),))  # the state: any tuple of tensors


@pytest.mark.parametrize("batch_size, bptt", [(1, 7), (4, 5), (7, 30)])
def test_per_token_nll_follows_the_stream_order(batch_size: int, bptt: int) -> None:
    from lightrnn.training.evaluate import block_sums

    stream = np.random.default_rng(0).integers(0, 500, size=253).astype(np.int64)
    result = evaluate(_TargetCost(), stream, batch_size, bptt, "cpu", per_token=True)
    assert np.allclose(result["token_nll"], stream[1:] / 100)  # exactly the N - 1 targets, in order
    blocks = block_sums(result["token_nll"], 100)
    assert len(blocks) == 3 and blocks[2] == pytest.approx(stream[201:].sum() / 100)


def test_cli_params_prints_the_paper_sizes(capsys) -> None:
    assert cli.main(["params", "--model", "lightrnn", "--vocab-size", "793471", "--embed-dim", "1500",
                     "--hidden-dim", "1500", "--num-layers", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == result["params_closed_form"] == 41_371_782
    assert result["param_bytes_fp32"] == 4 * 41_371_782


def test_markov_generator_writes_an_encoded_dir(tmp_path) -> None:
    meta = generate_markov_corpus(tmp_path / "m", vocab_size=20, successors=4, train_tokens=5000,
                                  valid_tokens=3000, test_tokens=3000, seed=3)
    words, counts = load_vocab(tmp_path / "m")
    assert len(words) == 20 and "</s>" in words and (np.diff(counts) <= 0).all()
    train_stream = np.load(tmp_path / "m" / "train.npy")
    assert train_stream.dtype == np.int32 and np.array_equal(np.bincount(train_stream, minlength=20), counts)
    assert meta["ppl_floor"] == pytest.approx(math.exp(entropy_rate(4, 1.0)))
    assert meta["oracle_ppl"]["test"] == pytest.approx(meta["ppl_floor"], rel=0.05)  # law of large numbers

