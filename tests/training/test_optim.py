"""The learning-rate schedule (`lightrnn.training.optim.PlateauDecay`); the optimizers themselves are timed and
checked by the throughput benchmark's tests (tests/benchmark/test_bench.py)."""

from __future__ import annotations

import torch

from lightrnn.training.optim import Optimizers, PlateauDecay


def test_plateau_decay_restarts_its_count_after_a_reallocation() -> None:
    optimizer = Optimizers(torch.nn.Linear(2, 2), "adam", 1.0)
    scheduler = PlateauDecay(optimizer, decay=0.5, patience=0)
    scheduler.step(10.0)
    scheduler.step(11.0)  # no improvement: decay
    assert scheduler.lr == 0.5
    scheduler.new_round()
    scheduler.step(30.0)  # the spike right after a reallocation is the new round's first value
    assert scheduler.lr == 0.5
    scheduler.step(31.0)
    assert scheduler.lr == 0.25


def test_the_fast_sparse_adam_equals_torch_sparse_adam() -> None:
    """lightrnn.training.optim.SparseAdam: torch's update value for value (uncoalesced gradients, repeats)."""
    from lightrnn.training.optim import SparseAdam

    generator = torch.Generator().manual_seed(0)
    start = torch.randn(50, 4, generator=generator)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    fast, reference = SparseAdam([ours], lr=0.01), torch.optim.SparseAdam([theirs], lr=0.01)
    for _ in range(4):
        ids = torch.randint(0, 50, (30,), generator=generator)  # repeated ids: an uncoalesced gradient
        values = torch.randn(30, 4, generator=generator)
        for param, optimizer in ((ours, fast), (theirs, reference)):
            param.grad = torch.sparse_coo_tensor(ids[None], values, (50, 4), check_invariants=True)
            optimizer.step()
    assert torch.equal(ours, theirs)
    assert torch.equal(fast.state[ours]["exp_avg_sq"], reference.state[theirs]["exp_avg_sq"])
    fresh = SparseAdam([torch.nn.Parameter(start.clone())], lr=0.01)
    fresh.load_state_dict(reference.state_dict())  # the same state: either's checkpoint loads
    assert fresh.state_dict()["state"][0]["step"] == 4


def test_the_memory_estimate_counts_the_per_word_vectors_read_per_position() -> None:
    from lightrnn.config import TrainConfig
    from lightrnn.training.preflight import word_term_bytes

    plain = TrainConfig(model="lightrnn", batch_size=16, bptt=32)
    variant = TrainConfig(model="lightrnn", batch_size=16, bptt=32, model_options={"word_bias": True, "word_dim": 32})
    assert word_term_bytes(plain, 793_471, 512) == 0
    assert word_term_bytes(variant, 793_471, 512) == (512 * 891 * 32 + 512 * 891) * 4  # rows' vectors, terms
    assert word_term_bytes(variant, 793_471, 2000) == (891 * 891 * 32 + 2000 * 891) * 4  # at most R rows
