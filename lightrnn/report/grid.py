"""The study's tuning grid (`study_grid` in config/study.yaml): every compared model x every recipe x seeds.

One grid for every model the verdict compares, so each gets the same tuning: each model is trained
with every recipe at the tuning seed (a part of stage "grid"); the recipe with the lowest best
valid ppl is its chosen recipe; then the other seeds of that recipe alone (a part of stage
"seeds"). The choice reads valid ppl from metrics.jsonl only, never test (`chosen_recipe`).

A part is a name under `study_grid.parts`, run by naming it in `models_to_run`:

    snakemake --cores 2 --configfile config/study.yaml mirror.yaml --config 'models_to_run=[baselines-grid]'

`expand_parts` (called by workflow/rules/common.smk before any check) replaces each part name by
its variants and adds their specs under `models:`. A variant is named <model>--<recipe>--s<seed>
(its run folder); its spec holds `model`, `label`, `group`, `train` (the recipe's keys, then the
model's, merged) and `grid_model`, `recipe`, `seed` for the report. Light: no torch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lightrnn.core.loaders import read_metrics
from lightrnn.core.metrics import early_stop

STAGES = ("grid", "seeds")


def variant_name(model: str, recipe: str, seed: int) -> str:
    return f"{model}--{recipe}--s{seed}"


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def variant_spec(grid: dict[str, Any], model: str, recipe: str, seed: int) -> dict[str, Any]:
    """The `models:` entry of one grid cell: recipe keys, then the model's own, then the seed."""
    entry, recipe_entry = grid["models"][model], grid["recipes"][recipe]
    train = _merge(_merge(recipe_entry.get("train", {}), entry.get("train", {})), {"seed": seed})
    return {"model": entry["model"], "label": f"{entry.get('label', model)}: {recipe_entry.get('label', recipe)}",
            "group": entry.get("group", "baseline"), "train": train,
            "grid_model": model, "recipe": recipe, "seed": seed}


def all_specs(grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every cell the grid can hold (every model x recipe x seed): the report's specs."""
    return {variant_name(model, recipe, seed): variant_spec(grid, model, recipe, seed)
            for model in grid["models"] for recipe in grid["recipes"] for seed in grid["seeds"]}


def best_valid(metrics: Path) -> float | None:
    """The lowest valid ppl of a run's rows (the checkpoint best.pt holds); None without one."""
    values = [row["valid_ppl"] for row in read_metrics(metrics) if row.get("valid_ppl") is not None]
    return min(values) if values else None


def chosen_recipe(grid: dict[str, Any], model: str, run_dir: Path | str) -> str:
    """The recipe with the lowest best valid ppl at the tuning seed (ties: the recipe listed first).

    Reads RUN_DIR/<variant>/metrics.jsonl's valid_ppl only. Every recipe's run must have finished
    (its eval.json exists: the evaluate job runs after training; its content is not read).
    """
    scores = {}
    for recipe in grid["recipes"]:
        folder = Path(run_dir) / variant_name(model, recipe, grid["tuning_seed"])
        if not (folder / "eval.json").is_file():
            raise FileNotFoundError(f"{folder}: the grid run of model {model!r} with recipe {recipe!r} has not "
                                    f"finished; run the grid part holding {model!r} first")
        score = best_valid(folder / "metrics.jsonl")
        if score is None:
            raise ValueError(f"{folder / 'metrics.jsonl'}: no valid ppl; rerun that grid job")
        scores[recipe] = score
    return min(scores, key=lambda recipe: (scores[recipe], list(grid["recipes"]).index(recipe)))


def part_variants(grid: dict[str, Any], part: str, run_dir: Path | str) -> list[str]:
    """The variants one part trains: grid (every recipe at the tuning seed) or seeds (the chosen
    recipe's other seeds, which needs the grid part's finished runs under RUN_DIR)."""
    entry = grid["parts"][part]
    models, stage = entry["models"], entry["stage"]
    unknown = [model for model in models if model not in grid["models"]]
    if unknown:
        raise ValueError(f"study_grid.parts.{part}.models: {', '.join(unknown)} not under study_grid.models")
    if stage not in STAGES:
        raise ValueError(f"study_grid.parts.{part}.stage: {stage!r}; allowed: {', '.join(STAGES)}")
    if stage == "grid":
        return [variant_name(model, recipe, grid["tuning_seed"]) for model in models for recipe in grid["recipes"]]
    return [variant_name(model, chosen_recipe(grid, model, run_dir), seed)
            for model in models for seed in grid["seeds"] if seed != grid["tuning_seed"]]


def expand_parts(config: dict[str, Any], results: str) -> None:
    """Replace part names in config["models_to_run"] by their variants; add the specs under models.

    `results`: RESULTS (results_dir/run); a part's runs live in RESULTS/<dataset>/<variant>.
    """
    grid = config.get("study_grid")
    if not grid:
        return
    missing = [key for key in ("models", "recipes", "seeds", "tuning_seed", "parts") if key not in grid]
    if missing:
        raise ValueError(f"config: study_grid: missing {', '.join(missing)}; see config/study.yaml")
    if grid["tuning_seed"] not in grid["seeds"]:
        raise ValueError(f"config: study_grid.tuning_seed {grid['tuning_seed']} is not in study_grid.seeds")
    runs: list[str] = []
    for name in config["models_to_run"]:
        if name not in grid["parts"]:
            runs.append(name)
            continue
        for dataset in config["datasets_to_run"]:
            runs.extend(part_variants(grid, name, Path(results) / dataset))
    specs = all_specs(grid)
    config["models"] = {**config["models"], **{name: specs[name] for name in runs if name in specs}}
    config["models_to_run"] = list(dict.fromkeys(runs))


def stop_state(rows: list[dict[str, Any]], patience: int, max_epochs: int) -> dict[str, Any]:
    """best epoch, epochs trained, and whether the run stopped early or at the maximum."""
    best_epoch, _, stopped = early_stop(rows, patience)
    epochs = max((row["epoch"] for row in rows if row.get("kind", "epoch") == "epoch"), default=0)
    return {"best_epoch": best_epoch, "epochs": epochs, "stopped_early": stopped,
            "at_max": not stopped and epochs >= max_epochs}
