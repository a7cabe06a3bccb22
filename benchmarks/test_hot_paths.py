"""pytest-benchmark microbenchmarks of the hot paths; not collected by the default test run.

    python -m pytest benchmarks --benchmark-save=before          # .benchmarks/<machine>/0001_before.json
    python -m pytest benchmarks --benchmark-compare=0001         # after a change, against it
    python -m pytest benchmarks --benchmark-disable -q           # each body once (`make test` does this)

Sizes are small enough for a CPU core yet big enough that the measured path dominates Python
overhead: V = 20,000 words, E = H = 128, batch 16 x 16 tokens, one torch thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightrnn.benchmark.synthetic_losses import synthetic_losses
from lightrnn.benchmark.throughput import (
    ThroughputSettings, _train_steps, build_for_bench, make_optimizers, stream_windows, zipf_stream,
)
from lightrnn.data.encode import encode
from lightrnn.registry import names
from lightrnn.method.losses import accumulate_losses
from lightrnn.method.reallocate import solve

VOCAB, DIM, BATCH, BPTT = 20_000, 128, 16, 16
LOG_PROB_VOCAB = 44 * 44
SETTINGS = ThroughputSettings(vocab_sizes=(VOCAB,), embed_dim=DIM, hidden_dim=DIM, batch_size=BATCH, bptt=BPTT)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier timings on a shared machine
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def windows():
    stream = zipf_stream(VOCAB, 4 * BATCH * BPTT + 1, seed=0)
    return stream_windows(stream, BATCH, BPTT, torch.device("cpu"))


@pytest.mark.parametrize("name", names())
def test_training_step(benchmark, name: str, windows):
    torch.manual_seed(0)
    model = build_for_bench(name, VOCAB, SETTINGS)
    optimizers = make_optimizers(model, 1e-3)
    state = _train_steps(model, optimizers, windows[:1], None, SETTINGS, torch.device("cpu"))  # warm-up
    before = [p.detach().clone() for p in model.parameters()]
    benchmark(_train_steps, model, optimizers, windows[1:2], state, SETTINGS, torch.device("cpu"))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", names())
def test_log_prob(benchmark, name: str, windows):
    torch.manual_seed(0)
    # [B, T, V] output: keep V small; 44 x 44 so LightRNN's table has no empty slot (sums are 1).
    model = build_for_bench(name, LOG_PROB_VOCAB, SETTINGS).eval()
    tokens = windows[0][0][:4, :8] % LOG_PROB_VOCAB

    def run():
        with torch.no_grad():
            return model.log_prob(tokens)[0]

    log_probs = benchmark(run)
    assert log_probs.shape == (4, 8, LOG_PROB_VOCAB)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(4, 8), atol=1e-3)


def test_accumulate_losses(benchmark, windows):
    torch.manual_seed(0)
    model = build_for_bench("lightrnn", VOCAB, SETTINGS).eval()
    row_loss, col_loss, mean_nll = benchmark(accumulate_losses, model, windows[:2])
    assert row_loss.shape == (VOCAB, model.num_rows) and col_loss.shape == (VOCAB, model.num_cols)
    assert mean_nll > 0


@pytest.mark.parametrize("method", ["greedy", "refine"])
def test_solve(benchmark, method: str):
    row_loss, col_loss = synthetic_losses(VOCAB, seed=0)
    allocation = benchmark(solve, row_loss, col_loss, method=method, time_limit=10.0)
    slots = allocation.rows * col_loss.shape[1] + allocation.cols
    assert np.unique(slots).size == VOCAB and allocation.objective >= allocation.lower_bound


def test_encode(benchmark, tmp_path: Path):
    rng = np.random.default_rng(0)
    text = tmp_path / "text"
    text.mkdir()
    for split, sentences in (("train", 5_000), ("valid", 500), ("test", 500)):
        ids = zipf_stream(5_000, sentences * 20, seed=int(rng.integers(1 << 30)))
        lines = [" ".join(f"w{i}" for i in ids[s * 20 : (s + 1) * 20]) for s in range(sentences)]
        (text / f"{split}.txt").write_text("\n".join(lines) + "\n")
    meta = benchmark(encode, text, tmp_path / "data")
    assert meta["vocab_size"] > 1_000 and np.load(tmp_path / "data" / "train.npy").size == 5_000 * 21
