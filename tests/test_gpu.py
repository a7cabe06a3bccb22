"""The CUDA paths on a real GPU: marked `gpu`, skipped without one; `make gpu-check` runs them.

bf16 autocast (the LSTM float32, the heads bf16), float32 state, the CUDA peak-memory counter
per phase, `accumulate_losses` flushing float32 blocks into float64, exact evaluation against
the CPU, checkpoints and RNG state on CUDA, the chunked `LightRNN.log_prob`, the matmul peak.

LIGHTRNN_GPU_TEST_DEVICE=cpu runs the device-independent part of them on the CPU (a dry run of
the tests themselves; the CUDA-only assertions are then skipped).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lightrnn.training.batches import TrainPairs
from lightrnn.benchmark.machine import matmul_flops_per_s
from lightrnn.training.checkpoint import Progress, resume_training, rng_state, save_training, set_rng_state
from lightrnn.config import TrainConfig
from lightrnn.training.evaluate import evaluate
from lightrnn.registry import build, names
from lightrnn.training.optim import Optimizers
from lightrnn.method.losses import accumulate_losses
from lightrnn.core.runtime import PhasePeaks, use_fp32_matmul
from lightrnn.training.step import train_step
from lightrnn.training.optim import PlateauDecay

DEVICE = torch.device(os.environ.get("LIGHTRNN_GPU_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
ON_CUDA = DEVICE.type == "cuda"
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="asserts what only CUDA does")
SIZES = dict(embed_dim=32, hidden_dim=64, num_layers=2, dropout=0.1)


@pytest.fixture(autouse=True)
def true_fp32():
    use_fp32_matmul()  # as every run does: comparisons with the CPU are float32 against float32


def _bf16():
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16)


def _batch(vocab_size: int, seed: int = 0, shape: tuple[int, int] = (8, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (shape[0], shape[1] + 1), generator=generator)
    ids[:, -4:] = vocab_size - 1 - torch.arange(4)  # rare words: the adaptive softmax's tail clusters
    return ids[:, :-1].to(DEVICE), ids[:, 1:].to(DEVICE)


@pytest.mark.parametrize("name", names())
def test_bf16_training_keeps_the_lstm_and_the_state_float32(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, 500, **SIZES).to(DEVICE)
    lstm_dtypes, linear_dtypes = [], []
    for module in model.modules():
        if isinstance(module, nn.LSTM):
            module.register_forward_hook(lambda _, inputs, output: lstm_dtypes.append((inputs[0].dtype, output[0].dtype)))
        elif isinstance(module, nn.Linear):
            module.register_forward_hook(lambda _, inputs, output: linear_dtypes.append(output.dtype))
    optimizer = Optimizers(model, "adam", 1e-3)
    tokens, targets = _batch(500)
    with torch.no_grad():  # the bf16 loss is close to the float32 one (only the heads are bf16)
        reference = model.eval()(tokens, targets).nll.mean()
        with _bf16():
            low = model(tokens, targets).nll.mean()
    assert float(low) == pytest.approx(float(reference), rel=0.02)
    lstm_dtypes.clear()
    linear_dtypes.clear()
    model.train()
    nll, state = train_step(model, optimizer, tokens, targets, None, clip=1.0, bf16=True)
    nll, state = train_step(model, optimizer, tokens, targets, state, clip=1.0, bf16=True)
    assert lstm_dtypes and set(lstm_dtypes) == {(torch.float32, torch.float32)}
    assert all(part.dtype == torch.float32 for part in state)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    if ON_CUDA:  # train_step's autocast is CUDA-only: the heads ran bf16 (the adaptive softmax float32)
        expected = {torch.float32} if name == "adaptive_softmax" else {torch.bfloat16}
        assert set(linear_dtypes) == expected


def test_adaptive_softmax_tail_targets_forward_and_backward_under_bf16() -> None:
    torch.manual_seed(0)
    model = build("adaptive_softmax", 1000, **SIZES, cutoffs=[50, 300]).to(DEVICE)
    tokens, targets = _batch(1000, seed=1)
    with _bf16():
        nll = model(tokens, targets).nll
    nll.mean().backward()
    assert torch.isfinite(nll).all() and model.decoder.tail[1][1].weight.grad is not None
    with torch.no_grad(), _bf16():
        logp = model.eval().log_prob(tokens)[0]
    assert logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(-1), torch.ones((), device=DEVICE), atol=1e-4)


@pytest.mark.parametrize("num_classes", [None, 400])
def test_class_softmax_nll_is_never_negative_under_bf16(num_classes: int | None) -> None:
    torch.manual_seed(0)
    model = build("class_softmax", 400, **SIZES, num_classes=num_classes).to(DEVICE).eval()
    with torch.no_grad():
        model.word_decoder.weight.mul_(30.0)
        tokens, targets = _batch(400, seed=2, shape=(16, 32))
        with _bf16():
            nll = model(tokens, targets).nll
    assert (nll >= 0).all()


@cuda_only
def test_the_cuda_peak_memory_counter_is_reset_per_phase() -> None:
    peaks = PhasePeaks(DEVICE)
    with peaks.phase("realloc"):
        big = torch.empty(64 << 20, dtype=torch.uint8, device=DEVICE)  # 64 MiB
        del big
    with peaks.phase("eval"):
        small = torch.empty(1 << 20, dtype=torch.uint8, device=DEVICE)
        del small
    fields = peaks.row_fields()
    assert fields["peak_memory_realloc_bytes"] - fields["peak_memory_eval_bytes"] >= 60 << 20
    assert fields["peak_memory_bytes"] == fields["peak_memory_realloc_bytes"]


def test_accumulate_losses_on_the_device_matches_the_cpu_float64_sums() -> None:
    torch.manual_seed(0)
    cpu_model = build("lightrnn", 300, **SIZES).eval()
    device_model = build("lightrnn", 300, **SIZES).to(DEVICE).eval()
    device_model.load_state_dict(cpu_model.state_dict())
    stream = np.random.default_rng(0).integers(0, 300, 40 * 4 * 8 + 1)
    # 40 batches: more than the 16 after which float32 blocks are flushed into float64.
    row_cpu, col_cpu, nll_cpu = accumulate_losses(cpu_model, TrainPairs(stream, 4, 8))
    row_dev, col_dev, nll_dev = accumulate_losses(device_model, TrainPairs(stream, 4, 8, device=DEVICE))
    assert row_dev.dtype == col_dev.dtype == np.float64
    np.testing.assert_allclose(row_dev, row_cpu, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(col_dev, col_cpu, rtol=1e-5, atol=1e-4)
    assert nll_dev == pytest.approx(nll_cpu, rel=1e-5)


@pytest.mark.parametrize("name", names())
def test_evaluation_on_the_device_matches_the_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, 500, **SIZES).eval()
    stream = np.random.default_rng(1).integers(0, 500, 3001)
    on_cpu = evaluate(model, stream, 4, 20, "cpu")
    on_device = evaluate(model.to(DEVICE), stream, 4, 20, DEVICE)
    assert on_device["tokens"] == on_cpu["tokens"]
    assert on_device["ppl"] == pytest.approx(on_cpu["ppl"], rel=1e-4)


def test_a_checkpoint_written_on_the_device_resumes_there(tmp_path) -> None:
    config = TrainConfig.from_yaml(None, ["embed_dim=32", "hidden_dim=64", "num_layers=2", "model=lightrnn",
                                          f"device={DEVICE.type}"])
    torch.manual_seed(0)
    model = build("lightrnn", 500, **SIZES).to(DEVICE)
    optimizer = Optimizers(model, "adam", 1e-3)
    tokens, targets = _batch(500)
    train_step(model, optimizer, tokens, targets, None, clip=1.0)
    scheduler = PlateauDecay(optimizer, 0.5, 0)
    save_training(tmp_path / "checkpoint.pt", config, "test", 500, model, optimizer, scheduler,
                  Progress(next_event=1, step=1), [rng_state()])
    expected = torch.rand(3, device=DEVICE)
    resumed = build("lightrnn", 500, **SIZES).to(DEVICE)
    resumed_optimizer = Optimizers(resumed, "adam", 1e-3)
    progress = resume_training(tmp_path / "checkpoint.pt", config, resumed, resumed_optimizer,
                               PlateauDecay(resumed_optimizer, 0.5, 0))
    assert progress.step == 1
    assert torch.equal(torch.rand(3, device=DEVICE), expected)  # the device's RNG continues where it was
    for state in resumed_optimizer.optimizers[0].state.values():
        assert state["exp_avg"].device.type == DEVICE.type
    # One more step from the restored state equals one more step of the original (no dropout).
    model.eval(), resumed.eval()
    train_step(model, optimizer, tokens, targets, None, clip=1.0)
    train_step(resumed, resumed_optimizer, tokens, targets, None, clip=1.0)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_rng_state_round_trip_on_the_device() -> None:
    saved = rng_state()
    first = torch.rand(5, device=DEVICE)
    set_rng_state(saved)
    assert torch.equal(torch.rand(5, device=DEVICE), first)


def test_lightrnn_log_prob_chunks_agree_on_the_device() -> None:
    torch.manual_seed(0)
    model = build("lightrnn", 1000, **SIZES).to(DEVICE).eval()
    tokens, _ = _batch(1000, seed=3, shape=(4, 12))
    whole = model.log_prob(tokens, max_candidates=10**9)[0]
    chunked = model.log_prob(tokens, max_candidates=4 * 32 * 5)[0]  # 5 positions per call
    assert torch.allclose(chunked, whole, atol=1e-5)
    # 1000 words in a 32 x 32 table: both softmaxes skip the 24 empty slots, so it sums to 1.
    assert ((whole.exp().sum(-1) - 1).abs() <= 1e-4).all()


def test_the_matmul_peak_times_batches_of_products() -> None:
    dtype = torch.bfloat16 if ON_CUDA else torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on CUDA: the batch is captured as a CUDA graph, no fallback
        batched = matmul_flops_per_s(1024, dtype, DEVICE, min_seconds=0.2)
    one_per_sync = matmul_flops_per_s(1024, dtype, DEVICE, min_seconds=0.2, min_batch_seconds=0.0)
    assert batched > 0 and one_per_sync > 0
    if ON_CUDA:  # launch and synchronize dominate a single product: batching can only raise the peak
        assert batched >= 0.9 * one_per_sync
