"""Data-parallel training: 2 CPU processes under torchrun, gloo on 127.0.0.1.

Tolerance of "the same run": a 2-process run with batch B per rank against one process with
batch 2B (same data, same order; dropout 0) agrees to rel 1e-6 on every perplexity: only the
order of float additions differs (the gradient mean is an all-reduce of two half-batch means).
A killed and resumed 2-process run equals the uninterrupted one to rel 1e-9.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._distributed_worker import LIGHTRNN_RUN
from lightrnn.training.batches import TrainPairs, lm_batches, load_split, load_vocab, shard_bounds, shard_stream
from lightrnn.training.checkpoint import load_checkpoint
from lightrnn.config import TrainConfig
from lightrnn.data.markov import generate_markov_corpus
from lightrnn.training.evaluate import evaluate
from lightrnn.core.fileio import read_jsonl as read_metrics
from lightrnn.method.model import LightRNN
from lightrnn.registry import names
from lightrnn.method.reallocate import reallocate_model
from lightrnn.training.train import train

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parents[1] / "_distributed_worker.py"
COMPARED = ("train_ppl", "valid_ppl", "test_ppl", "realloc_objective", "realloc_nll_before", "realloc_nll_after")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *map(str, args)]


def _env() -> dict[str, str]:
    # One thread per process: on a loaded 2-core machine two threads per tiny op are much slower.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TORCHELASTIC_ERROR_FILE": ""}


def _cli_train(data: Path, out: Path) -> list[str]:
    overrides = [item for key_value in LIGHTRNN_RUN for item in ("--set", key_value)]
    return _torchrun("-m", "lightrnn", "train", "--data", data, "--model", "lightrnn", "--out", out, *overrides)


def _assert_rows_match(rows: list[dict], reference: list[dict], rel: float) -> None:
    assert [row["kind"] for row in rows] == [row["kind"] for row in reference]
    for row, expected in zip(rows, reference):
        assert (row["round"], row["epoch"], row["step"]) == (expected["round"], expected["epoch"], expected["step"])
        for key in COMPARED:
            if expected[key] is None:
                assert row[key] is None, key
            else:
                assert row[key] == pytest.approx(expected[key], rel=rel), (key, row["kind"], row["epoch"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "markov"
    generate_markov_corpus(out, vocab_size=30, successors=3, train_tokens=6000, valid_tokens=800, test_tokens=700, seed=1)
    return out


@pytest.fixture(scope="module")
def worker_run(corpus: Path, tmp_path_factory) -> Path:
    """One torchrun launch of tests/_distributed_worker.py; its output dir."""
    out = tmp_path_factory.mktemp("ddp")
    result = subprocess.run(_torchrun(WORKER, corpus, out), env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


# ----- shards (fast) -------------------------------------------------------------------------------

@pytest.mark.parametrize("length, batch_size, world, exact", [
    (103, 4, 2, False), (103, 3, 3, False), (50, 3, 2, True), (11, 4, 2, True), (7, 4, 3, True),
])
def test_shards_are_the_rows_of_the_global_batch(length: int, batch_size: int, world: int, exact: bool) -> None:
    stream = np.arange(length, dtype=np.int32)
    global_rows = [[] for _ in range(batch_size * world)]
    for batch in lm_batches(stream, batch_size * world, 5, exact=exact):
        mask = torch.ones_like(batch.targets, dtype=torch.bool) if batch.mask is None else batch.mask
        for row in range(batch_size * world):
            global_rows[row].extend(batch.targets[row][mask[row]].tolist())
    for rank in range(world):
        start, stop = shard_bounds(length, batch_size, rank, world, exact)
        shard = shard_stream(stream, batch_size, rank, world, exact)
        assert shard.shape[0] == stop - start and (shard.size == 0 or np.shares_memory(shard, stream))  # a view
        expected = global_rows[rank * batch_size : (rank + 1) * batch_size]
        if stop - start < 2:
            assert all(not row for row in expected)
            continue
        rows = [[] for _ in range(batch_size)]
        for batch in lm_batches(shard, batch_size, 5, exact=exact):
            mask = torch.ones_like(batch.targets, dtype=torch.bool) if batch.mask is None else batch.mask
            for row in range(batch_size):
                rows[row].extend(batch.targets[row][mask[row]].tolist())
        assert rows == expected


def test_shard_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(100, 4, 2, 2)
    with pytest.raises(ValueError, match="too short for batch_size 8 on 4 processes"):
        shard_stream(np.arange(20), 8, 0, 4)


# ----- two processes (slow) ------------------------------------------------------------------------

@pytest.mark.slow
def test_ddp_matches_one_process_with_the_global_batch(worker_run: Path, corpus: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rows = read_metrics(worker_run / "lightrnn" / "metrics.jsonl")
    assert [row["kind"] for row in rows] == ["epoch", "realloc", "epoch"]
    assert all(row["world_size"] == 2 for row in rows)
    assert not (worker_run / "lightrnn" / ".metrics.jsonl.tmp").exists()
    single = TrainConfig.from_yaml(None, [*LIGHTRNN_RUN, "model=lightrnn", "batch_size=8", "eval_batch_size=4"])
    reference = read_metrics(train(single, corpus, tmp_path / "one"))
    _assert_rows_match(rows, reference, rel=1e-6)
    epoch_rows = [row for row in rows if row["kind"] == "epoch"]
    assert all(row["allreduce_bytes_per_step"] == row["param_bytes"] for row in epoch_rows)  # every parameter gets a gradient
    assert all(row["allreduce_bytes_per_step"] == 0 for row in reference if row["kind"] == "epoch")
    checkpoint = load_checkpoint(worker_run / "lightrnn" / "checkpoint.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng_ranks"]) == 2


@pytest.mark.slow
def test_every_model_trains_data_parallel(worker_run: Path) -> None:
    for name in names():
        rows = read_metrics(worker_run / name / "metrics.jsonl")
        assert rows and rows[-1]["kind"] == "epoch" and rows[-1]["world_size"] == 2, name
        assert np.isfinite(rows[-1]["valid_ppl"]) and rows[-1]["allreduce_bytes_per_step"] > 0, name


@pytest.mark.slow
def test_reallocation_leaves_one_table_on_every_rank(worker_run: Path, corpus: Path) -> None:
    ranks = [json.loads((worker_run / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["table_rows"] == ranks[1]["table_rows"] and ranks[0]["table_cols"] == ranks[1]["table_cols"]
    assert ranks[0]["realloc"] == ranks[1]["realloc"]
    # The same model and the global batch in one process: the same objective and table.
    words, _ = load_vocab(corpus)
    torch.manual_seed(3)
    model = LightRNN(len(words), 8, 12, 1, 0.0)
    single = reallocate_model(model, TrainPairs(load_split(corpus, "train", len(words)), 8, 12), method="exact")
    for key, value in ranks[0]["realloc"].items():
        assert value == pytest.approx(single[key], rel=1e-9), key
    assert ranks[0]["table_rows"] == model.table.rows.tolist()
    # A replica that differs is caught on both ranks, naming the rank.
    assert all("rank(s) [1]" in rank["replica_check"] for rank in ranks)


@pytest.mark.slow
def test_allreduce_bytes_and_sharded_eval_are_exact(worker_run: Path, corpus: Path) -> None:
    ranks = [json.loads((worker_run / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    words, _ = load_vocab(corpus)
    torch.manual_seed(0)
    model = LightRNN(len(words), 8, 12, 1, 0.0)
    for rank in ranks:
        assert rank["gradient_bytes"] == rank["bucket_bytes"] == 4 * sum(p.numel() for p in model.parameters())
    valid = load_split(corpus, "valid", len(words))
    single = evaluate(model, valid, 4, 7, "cpu")  # 2 ranks x 2 rows
    for rank in ranks:
        assert rank["eval"]["tokens"] == len(valid) - 1
        assert rank["eval"]["nll_sum"] == pytest.approx(single["nll_sum"], rel=1e-9)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_metrics(worker_run: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(_cli_train(corpus, out), env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers, mid-run
        process.wait()
    assert (out / "checkpoint.pt").exists()
    written = read_metrics(out / "metrics.jsonl")
    assert 1 <= len(written) < 3, "the run must be killed before it finished"
    resumed = subprocess.run(_cli_train(corpus, out), env=_env(), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert resumed.stdout.strip().splitlines() == [str(out / "metrics.jsonl")]  # rank 0 alone prints
    _assert_rows_match(read_metrics(out / "metrics.jsonl"), read_metrics(worker_run / "lightrnn" / "metrics.jsonl"),
                       rel=1e-9)
