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
