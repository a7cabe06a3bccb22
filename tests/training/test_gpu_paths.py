"""The CUDA-only code paths, checked on CPU: each test emulates what a GPU changes.

- a checkpoint loaded for a GPU run: `torch.load` patched to put every tensor that is not asked
  for on the CPU on the meta device (which, like CUDA, cannot become a numpy array);
- bf16 autocast: CPU autocast with dtype=bfloat16, which like CUDA's casts nn.LSTM and the
  linear layers to the low dtype and leaves some log-softmaxes in another dtype;
- CUDA's RNG and peak-memory counters: `torch.cuda` functions replaced by fakes;
- NCCL: only the device type matters to the refusal; the finite-loss agreement runs on gloo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lightrnn.training.checkpoint as checkpoint_module
from lightrnn.core import distributed, runtime
from lightrnn.training import step
from lightrnn.benchmark import machine
from lightrnn.training.checkpoint import resume_training, rng_state, set_rng_state
from lightrnn.config import TrainConfig
from lightrnn.training.evaluate import evaluate_checkpoint
from lightrnn.core.fileio import read_jsonl
from lightrnn.registry import build, names
from lightrnn.training.optim import Optimizers
from lightrnn.training.optim import PlateauDecay
from lightrnn.training.train import train
from tests.conftest import markov_corpus

ROOT = Path(__file__).resolve().parents[2]
TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.0", "batch_size=4", "bptt=8",
        "lr=0.01", "eval_batch_size=4", "device=cpu", "max_steps_per_epoch=3"]
SIZES = dict(embed_dim=8, hidden_dim=16, num_layers=2, dropout=0.0)



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory, 30, (3000, 400, 400), seed=2)


def _batch(vocab_size: int, seed: int = 0, shape: tuple[int, int] = (3, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (shape[0], shape[1] + 1), generator=generator)
    return ids[:, :-1], ids[:, 1:]


def _cpu_bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


# ----- 1. resume and evaluate load on the CPU ------------------------------------------------------


def test_resume_and_evaluate_load_the_checkpoint_on_cpu(corpus: Path, tmp_path, monkeypatch) -> None:
    config = TrainConfig.from_yaml(None, [*TINY, "model=lightrnn", "rounds=[1]"])
    train(config, corpus, tmp_path / "run")
    real_load = torch.load
    asked: list[str] = []

    def device_load(path, map_location=None, **kwargs):
        # A GPU run's tensors: anything not explicitly loaded on the CPU lands where numpy cannot go.
        asked.append(str(map_location))
        return real_load(path, map_location=map_location if str(map_location) == "cpu" else "meta", **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", device_load)
    torch.manual_seed(0)
    model = build("lightrnn", 30, 16, 24, 1, 0.0)  # the sizes of TINY
    optimizer = Optimizers(model, config.optimizer, config.lr)
    scheduler = PlateauDecay(optimizer, config.lr_decay, config.lr_patience)
    progress = resume_training(tmp_path / "run" / "checkpoint.pt", config, model, optimizer, scheduler)
    assert progress.next_event == 1 and asked == ["cpu"]
    steps = [state["step"] for state in optimizer.optimizers[0].state.values()]
    assert steps and all(value.device.type == "cpu" and float(value) == 3 for value in steps)
    result = evaluate_checkpoint(str(tmp_path / "run" / "best.pt"), str(corpus), split="valid", device="cpu")
    assert asked == ["cpu", "cpu"] and np.isfinite(result["ppl"])


# ----- 2, 3, 9. bf16 autocast ---------------------------------------------------------------------


@pytest.mark.parametrize("name", names())
def test_the_lstm_runs_in_float32_under_bf16_autocast(name: str, monkeypatch) -> None:
    torch.manual_seed(0)
    model = build(name, 40, **SIZES)
    seen: list[tuple[torch.dtype, torch.dtype, bool]] = []
    for module in model.modules():
        if isinstance(module, nn.LSTM):
            module.register_forward_hook(lambda _, inputs, output: seen.append(
                (inputs[0].dtype, output[0].dtype, torch.is_autocast_enabled("cpu"))))
    # The training step with CUDA's bf16 autocast rules (CPU autocast casts nn.LSTM to bf16 too).
    monkeypatch.setattr(step, "autocast_context", lambda device, bf16: _cpu_bf16() if bf16 else torch.no_grad())
    optimizer = Optimizers(model, "adam", 0.01)
    tokens, targets = _batch(40)
    nll, state = step.train_step(model, optimizer, tokens, targets, None, clip=1.0, bf16=True)
    nll, state = step.train_step(model, optimizer, tokens, targets, state, clip=1.0, bf16=True)
    assert seen and all(entry == (torch.float32, torch.float32, False) for entry in seen)
    assert all(part.dtype == torch.float32 for part in state)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
    assert all(p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad.to_dense()).all()
               for p in model.parameters() if p.grad is not None)


def test_adaptive_softmax_takes_tail_targets_under_autocast() -> None:
    torch.manual_seed(0)
    model = build("adaptive_softmax", 60, **SIZES, cutoffs=[5, 20]).eval()
    tokens, targets = _batch(60, seed=1)
    targets[:, 0] = 59  # the last tail cluster, which allocation-dtype mismatch used to break
    with torch.no_grad():
        reference = model(tokens, targets).nll
        reference_logp = model.log_prob(tokens)[0]
        with _cpu_bf16():
            nll = model(tokens, targets).nll
            logp = model.log_prob(tokens)[0]
    # The LSTM and the adaptive softmax both run float32 with autocast off: the same numbers.
    assert nll.dtype == torch.float32 and torch.allclose(nll, reference, atol=1e-6)
    assert torch.allclose(logp, reference_logp, atol=1e-6)


@pytest.mark.parametrize("num_classes", [None, 50])
def test_class_softmax_nll_is_never_negative_under_autocast(num_classes: int | None) -> None:
    torch.manual_seed(0)
    model = build("class_softmax", 50, **SIZES, num_classes=num_classes).eval()
    with torch.no_grad():
        model.word_decoder.weight.mul_(40.0)  # large scores: bf16 rounding of several nats
        tokens, targets = _batch(50, seed=3, shape=(8, 16))
        class_only = None
        with _cpu_bf16():
            nll = model(tokens, targets).nll
            if num_classes == 50:  # one word per class: the within-class term is exactly 0
                hidden = model.trunk(tokens)[0].flatten(0, 1)
                class_logp = torch.log_softmax(model.class_decoder(hidden).float(), dim=-1)
                class_only = -class_logp.gather(1, model.word_class[targets.flatten()][:, None]).view_as(targets)
    assert (nll >= 0).all()
    if class_only is not None:
        assert torch.equal(nll, class_only)


# ----- 4. the matmul peak -------------------------------------------------------------------------


def test_products_per_timing_covers_the_minimum_batch() -> None:
    assert machine.products_per_timing(1e-5, 0.01) == 1000
    assert machine.products_per_timing(3e-3, 0.01) == 4
    assert machine.products_per_timing(0.5, 0.01) == 1
    assert machine.products_per_timing(0.0, 0.01) == machine.MAX_BATCH_PRODUCTS


def test_matmul_peak_times_many_products_per_synchronize(monkeypatch) -> None:
    counts = {"mm": 0, "sync": 0}
    real_mm = torch.mm

    def counting_mm(*args, **kwargs):
        counts["mm"] += 1
        return real_mm(*args, **kwargs)

    monkeypatch.setattr(machine.torch, "mm", counting_mm)
    monkeypatch.setattr(machine, "synchronize", lambda device: counts.__setitem__("sync", counts["sync"] + 1))
    flops = machine.matmul_flops_per_s(16, min_seconds=0.05, min_batch_seconds=0.005)
    assert flops > 0
    # A 16^3 product takes microseconds: one synchronize per product would time mostly overhead.
    assert counts["mm"] > 20 * counts["sync"]


# ----- 5. TF32 ------------------------------------------------------------------------------------


@pytest.fixture
def tf32_flags():
    """Restore the process-wide TF32 flags (properties, not plain attributes: no monkeypatch)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_training_turns_tf32_off_and_rows_record_it(corpus: Path, tmp_path, tf32_flags) -> None:
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for cuDNN
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = read_jsonl(train(TrainConfig.from_yaml(None, [*TINY, "model=full_softmax", "rounds=[1]"]),
                            corpus, tmp_path / "run"))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert rows and all(row["tf32"] is False for row in rows)
    assert machine.machine_info(torch.device("cpu"))["tf32"] is False


# ----- 6. sparse gradients and NCCL ---------------------------------------------------------------


def test_sparse_embedding_is_refused_for_multi_gpu_runs() -> None:
    model = build("full_softmax", 20, **SIZES, sparse_embedding=True)
    with pytest.raises(ValueError, match="sparse_embedding=false"):
        distributed.refuse_sparse_gradients(model, torch.device("cuda", 0))
    distributed.refuse_sparse_gradients(model, torch.device("cpu"))  # gloo all-reduces sparse tensors
    distributed.refuse_sparse_gradients(build("full_softmax", 20, **SIZES), torch.device("cuda", 0))


# ----- 7. a non-finite loss on one rank -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_rank_with_a_non_finite_loss_stops_every_rank(tmp_path) -> None:
    worker = Path(__file__).resolve().parents[1] / "_diverge_worker.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(worker), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TORCHELASTIC_ERROR_FILE": "",
           "LIGHTRNN_COLLECTIVE_TIMEOUT_S": "60"}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=240)
    reports = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["raised"] == "TrainingDiverged"
        assert "on rank(s) 1" in report["message"]
        assert report["after"] == "a collective still works"  # nobody is stuck in backward's all-reduce


def test_ranks_where_in_one_process() -> None:
    assert distributed.ranks_where(True) == [0] and distributed.ranks_where(False) == []


# ----- 8. the CUDA RNG state of the current device only ------------------------------------------


def test_rng_state_keeps_only_the_current_cuda_device(monkeypatch) -> None:
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.arange(4, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was saved"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append(state))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("every GPU's state restored"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    state = rng_state()
    assert torch.equal(state["cuda"], torch.arange(4, dtype=torch.uint8))
    set_rng_state(state)
    assert len(restored) == 1 and torch.equal(restored[0], state["cuda"])
    # An older checkpoint with one GPU's list, resumed on device 1: nothing to restore, no IndexError.
    set_rng_state({**state, "cuda": [torch.zeros(4, dtype=torch.uint8)]})
    assert len(restored) == 1
    set_rng_state({**state, "cuda": [torch.zeros(4, dtype=torch.uint8), torch.ones(4, dtype=torch.uint8)]})
    assert torch.equal(restored[-1], torch.ones(4, dtype=torch.uint8))


# ----- 10. LightRNN.log_prob in chunks ------------------------------------------------------------


def test_lightrnn_log_prob_in_chunks_equals_one_call() -> None:
    torch.manual_seed(0)
    model = build("lightrnn", 23, **SIZES).eval()  # a 5 x 5 table with 2 empty slots
    tokens, _ = _batch(23, seed=4, shape=(3, 7))
    whole, whole_state = model.log_prob(tokens, max_candidates=10**9)
    for max_candidates in (1, 16, 40):  # one position per call, one, three (a ragged last chunk)
        chunked, state = model.log_prob(tokens, max_candidates=max_candidates)
        assert torch.allclose(chunked, whole, atol=1e-6)
        assert all(torch.equal(a, b) for a, b in zip(state, whole_state))
    with pytest.raises(ValueError, match="max_candidates"):
        model.log_prob(tokens, max_candidates=0)


# ----- 11. peak memory per phase ------------------------------------------------------------------


def test_phase_peaks_reset_the_cuda_counter_per_phase(monkeypatch) -> None:
    counter = {"allocated": 0, "peak": 0}

    def allocate(nbytes: int) -> None:
        counter["peak"] = max(counter["peak"], counter["allocated"] + nbytes)

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: counter.update(peak=counter["allocated"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: counter["peak"])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    peaks = runtime.PhasePeaks(torch.device("cuda", 0))
    with peaks.phase("realloc"):
        allocate(1000)  # the loss matrices
    with peaks.phase("eval"):
        allocate(30)
    assert peaks.row_fields() == {"peak_memory_bytes": 1000, "peak_memory_realloc_bytes": 1000,
                                  "peak_memory_eval_bytes": 30}
    with peaks.phase("train"):
        allocate(50)
    with peaks.phase("eval"):
        allocate(20)
    with peaks.phase("eval"):
        allocate(40)
    # The realloc peak no longer dominates: each later row has its own phases' peaks.
    assert peaks.row_fields() == {"peak_memory_bytes": 50, "peak_memory_train_bytes": 50, "peak_memory_eval_bytes": 40}


def test_training_rows_carry_peaks_per_phase(corpus: Path, tmp_path) -> None:
    rows = read_jsonl(train(TrainConfig.from_yaml(None, [*TINY, "model=lightrnn", "rounds=[1,1]",
                                                          "realloc_method=exact"]), corpus, tmp_path / "run"))
    assert [row["kind"] for row in rows] == ["epoch", "realloc", "epoch"]
    for row in rows:
        phases = ["realloc", "eval"] if row["kind"] == "realloc" else ["train", "eval"]
        assert all(row[f"peak_memory_{phase}_bytes"] > 0 for phase in phases)
        assert row["peak_memory_bytes"] == max(row[f"peak_memory_{phase}_bytes"] for phase in phases)


# ----- the GPU check on a machine without one -----------------------------------------------------


def test_gpu_check_says_there_is_no_cuda_device(tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `make gpu-check` runs for real")
    result = subprocess.run([sys.executable, "-m", "lightrnn.gpucheck", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
