"""The metrics row schema: one builder per row kind, every field declared in lightrnn/core/metrics.py."""

from __future__ import annotations

import json

from lightrnn.core.metrics import (
    EPOCH_EXTRAS, FIELDS, REALLOC_FIELDS, RUN_EXTRAS, epoch_row, realloc_row, row_to_line, run_fields, undeclared,
)

RUN = run_fields(dataset="ptb", model="lightrnn", seed=0, params=10, param_bytes=40, device="cpu",
                 config_hash="h" * 64, world_size=1, tf32=False)
PEAKS = {"peak_memory_bytes": 7, "peak_memory_train_bytes": 7, "peak_memory_eval_bytes": 3}


def test_epoch_rows_hold_the_schema_in_order() -> None:
    row = epoch_row(RUN, round=0, epoch=1, step=5, lr=1e-3, train={"ppl": 9.0, "tokens_per_s": 100.0},
                    valid={"ppl": 8.0, "tokens_per_s": 200.0}, test=None, peaks=PEAKS, wall_s=1.5,
                    allreduce_bytes_per_step=0)
    assert list(row) == [*FIELDS, "peak_memory_train_bytes", "peak_memory_eval_bytes", *RUN_EXTRAS, *EPOCH_EXTRAS]
    assert row["kind"] == "epoch" and row["test_ppl"] is None and row["realloc_objective"] is None
    assert row["train_ppl"] == 9.0 and row["eval_tokens_per_s"] == 200.0 and row["dataset"] == "ptb"
    assert undeclared(row) == []


def test_realloc_rows_copy_the_reallocation_and_null_what_it_lacks() -> None:
    realloc = {"realloc_objective": 3.0, "realloc_moved": 0.5, "realloc_s": float("inf")}
    row = realloc_row(RUN, round=1, epoch=1, step=5, lr=1e-3, valid={"ppl": 8.0, "tokens_per_s": 1.0},
                      peaks={"peak_memory_bytes": 0, "peak_memory_realloc_bytes": 0}, wall_s=2.0, realloc=realloc)
    assert list(row)[: len(FIELDS)] == list(FIELDS) and list(row)[-1] == "realloc_moved"
    assert row["kind"] == "realloc" and row["train_ppl"] is None and row["realloc_lower_bound"] is None
    assert row["realloc_s"] is None  # JSON has no inf
    assert set(REALLOC_FIELDS) < set(row) and json.loads(row_to_line(row)) == row


def test_undeclared_names_a_field_the_schema_lacks() -> None:
    assert undeclared({"valid_ppl": 1.0, "peak_memory_eval_bytes": 1, "made_up": 2}) == ["made_up"]
