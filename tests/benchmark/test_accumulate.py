"""`lightrnn bench accumulate` / `fraction`: the accumulation pass's speed and memory, and what a fraction of the data changes."""

from __future__ import annotations

import pytest

from lightrnn.benchmark import accumulate
from lightrnn.core.csvio import read_csv
from lightrnn.cli import main
from lightrnn.config import TrainConfig
from lightrnn.training.train import train
from tests.conftest import markov_corpus


def test_sums_at_one_billion_word_take_eleven_gigabytes() -> None:
    # Two float64 sums [793471, 891]: 8 * 793471 * 1782 bytes.
    assert accumulate.sums_bytes(793_471) == 8 * 793_471 * 2 * 891
    assert 11.3e9 < accumulate.sums_bytes(793_471) < 11.4e9


def test_accumulation_speed_measures_beside_training_and_adds_the_billion_word_row(tmp_path) -> None:
    out = tmp_path / "accumulate.csv"
    assert main(["bench", "accumulate", "--out", str(out), "--vocab-sizes", "400", "--batches", "2"]) == 0
    rows = read_csv(out)
    measured, arithmetic = rows
    assert measured["vocab_size"] == 400 and measured["measured"] == "yes"
    assert measured["accumulate_tokens_per_s"] > 0 and measured["train_tokens_per_s"] > 0
    assert measured["accumulate_over_train"] == pytest.approx(
        measured["accumulate_tokens_per_s"] / measured["train_tokens_per_s"])
    assert measured["sums_bytes"] == 8 * 400 * 2 * 20 and measured["git_rev"]
    assert arithmetic["vocab_size"] == 793_471 and arithmetic["measured"].startswith("no")
    assert arithmetic["billionw_hours_at_this_speed"] > 0


def test_fraction_effect_compares_each_fraction_with_all_batches(tmp_path_factory, tmp_path) -> None:
    data = markov_corpus(tmp_path_factory, 100, (4000, 400, 400), seed=3)
    config = TrainConfig.from_yaml(None, ["model=lightrnn", "embed_dim=8", "hidden_dim=12", "num_layers=1",
                                          "dropout=0.0", "batch_size=4", "bptt=8", "device=cpu", "rounds=[1]",
                                          "max_steps_per_epoch=5", "eval_batch_size=4"])
    train(config, data, tmp_path / "run")
    out = tmp_path / "fraction.csv"
    assert main(["bench", "fraction", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data),
                 "--out", str(out), "--fractions", "0.25", "0.5"]) == 0
    rows = read_csv(out)
    assert [row["fraction"] for row in rows] == [0.25, 0.5, 1.0]
    full = rows[-1]
    assert full["same_slot"] == 1.0 and full["objective_nll_over_full"] == 0.0
    for row in rows:
        # The table solved on all batches is (nearly) the best for all batches' losses.
        assert row["objective_nll_over_full"] >= -1e-3 * abs(full["objective_nll"])
        assert 0.0 <= row["same_slot"] <= row["same_row"] <= 1.0 and row["nll_after"] > 0
    assert rows[0]["tokens"] < rows[1]["tokens"] < full["tokens"]
