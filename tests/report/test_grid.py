"""The study's tuning grid: parts expand into variants, and the recipe is chosen on valid ppl alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lightrnn.core.fileio import write_lines
from lightrnn.report.grid import all_specs, chosen_recipe, expand_parts, part_variants, stop_state, variant_name

REPO = Path(__file__).resolve().parents[2]


def _grid() -> dict:
    return yaml.safe_load((REPO / "config" / "study.yaml").read_text())["study_grid"]


def _finished(run_dir: Path, variant: str, valids: list[float], tests: list[float], eval_text: str) -> None:
    folder = run_dir / variant
    folder.mkdir(parents=True)
    rows = [{"kind": "epoch", "dataset": "ptb", "model": "full_softmax", "epoch": epoch, "valid_ppl": valid,
             "test_ppl": test} for epoch, (valid, test) in enumerate(zip(valids, tests), start=1)]
    write_lines(folder / "metrics.jsonl", [json.dumps(row) for row in rows])
    (folder / "eval.json").write_text(eval_text)


def test_the_study_config_holds_one_grid_for_every_model():
    grid = _grid()
    assert set(grid["recipes"]) == {"adam-1e-3", "adam-3e-3", "sgd-20"} and len(grid["seeds"]) >= 3
    for part in grid["parts"].values():
        assert set(part["models"]) <= set(grid["models"])
    specs = all_specs(grid)
    assert len(specs) == len(grid["models"]) * len(grid["recipes"]) * len(grid["seeds"])
    spec = specs[variant_name("full-rank-32", "sgd-20", 2)]
    assert spec["train"] == {"optimizer": "sgd", "lr": 20, "clip": 0.25, "lr_decay": 0.25,
                             "model_options": {"rank": 32}, "seed": 2}
    assert spec["model"] == "full_softmax" and spec["recipe"] == "sgd-20"


def test_the_recipe_is_chosen_on_valid_and_never_reads_test(tmp_path):
    grid = _grid()
    # test ppl (rows and eval.json) would pick another recipe; eval.json is not even JSON: never read
    _finished(tmp_path, variant_name("full", "adam-1e-3", 0), [300, 200], [1, 1], "not json")
    _finished(tmp_path, variant_name("full", "adam-3e-3", 0), [250, 190, 195], [900, 900, 900], "not json")
    _finished(tmp_path, variant_name("full", "sgd-20", 0), [210], [2], "not json")
    assert chosen_recipe(grid, "full", tmp_path) == "adam-3e-3"
    grid["parts"]["p"] = {"models": ["full"], "stage": "seeds"}
    assert part_variants(grid, "p", tmp_path) == ["full--adam-3e-3--s1", "full--adam-3e-3--s2"]


def test_a_seeds_part_before_its_grid_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the grid part holding 'class' first"):
        chosen_recipe(_grid(), "class", tmp_path)


def test_expand_parts_puts_the_variants_and_their_specs_in_the_config(tmp_path):
    config = {"study_grid": _grid(), "models_to_run": ["baselines-grid"], "datasets_to_run": ["ptb"],
              "models": {}}
    expand_parts(config, str(tmp_path))
    assert len(config["models_to_run"]) == 6 * 3
    assert all(name.endswith("--s0") for name in config["models_to_run"])
    assert config["models"]["class--sgd-20--s0"]["train"]["optimizer"] == "sgd"


def test_stop_state_flags_a_run_at_its_maximum():
    rows = [{"kind": "epoch", "epoch": e, "valid_ppl": v} for e, v in enumerate([9, 8, 7], start=1)]
    assert stop_state(rows, 2, 3) == {"best_epoch": 3, "epochs": 3, "stopped_early": False, "at_max": True}
    rows += [{"kind": "epoch", "epoch": 4, "valid_ppl": 7.5}, {"kind": "epoch", "epoch": 5, "valid_ppl": 7.2}]
    assert stop_state(rows, 2, 10) == {"best_epoch": 3, "epochs": 5, "stopped_early": True, "at_max": False}
