"""The tuned study's tables, figure and provenance (config/study.yaml `study_grid`; `lightrnn.report.grid`).

Reads STUDY_DIR/<dataset>/<model>--<recipe>--s<seed>/{metrics.jsonl, eval.json, config.yaml}
(whatever parts have run) and writes, under STUDY_DIR:

- tables/study-grid.{md,csv}: every model x recipe at the tuning seed: best valid ppl, the epoch of
  the best checkpoint, epochs trained, stopped at the maximum or not; the chosen recipe (on valid);
- tables/study.{md,csv}: every model at its chosen recipe: parameters, seeds, best valid and test
  ppl as mean with a 95% t interval over the seeds, best epochs, runs stopped at the maximum;
- tables/study-ratios.{md,csv}: every verdict ratio (LightRNN and each LightRNN model over the best
  baseline, the variant over its controls) with its paired bootstrap interval over test blocks and
  the word that follows from it (`lightrnn.report.intervals.RULE`, written beside the table);
  "not run" for a model whose part has not run;
- tables/study-spike.{md,csv}: LightRNN's valid ppl after each reallocation against the
  no-reallocation run of the same recipe and seed at the same epoch;
- plots/study.{png,pdf}: valid ppl of every model's chosen recipe against epochs and wall time;
- provenance.json: the one list of git revisions (figure title and README block read it), the
  devices, and every part's runs with their summed training wall time. A `+dirty` revision is an
  error: a committed result comes from a committed revision.
Test ppl is read only from eval.json (the evaluate job's one reading of test, on best.pt).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightrnn.core.fileio import write_text
from lightrnn.core.loaders import load_eval, read_metrics
from lightrnn.report.grid import all_specs, chosen_recipe, stop_state, variant_name
from lightrnn.report.intervals import RULE, block_tokens, mean_interval, paired_ratio, verdict_word
from lightrnn.report.render import Table, format_count, format_ppl, to_csv, to_markdown
from lightrnn.report.results import epoch_rows, realloc_rows

NOT_RUN = "not run"
BASELINE_GROUP, LIGHTRNN_GROUP = "baseline", "lightrnn"
NO_REALLOC = "lightrnn-no-realloc"
TABLES = ("study-grid", "study", "study-ratios", "study-spike")


@dataclass
class GridRun:
    """One finished run of the grid (a variant folder)."""

    name: str
    spec: dict[str, Any]
    rows: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    patience: int
    max_epochs: int

    @property
    def best_valid(self) -> float | None:
        values = [row["valid_ppl"] for row in self.rows if row.get("valid_ppl") is not None]
        return min(values) if values else None

    @property
    def stop(self) -> dict[str, Any]:
        return stop_state(self.rows, self.patience, self.max_epochs)

    @property
    def test_ppl(self) -> float | None:
        return self.evaluation["ppl"] if self.evaluation else None

    @property
    def revision(self) -> str | None:
        return self.rows[0].get("git_rev") if self.rows else None


@dataclass
class Study:
    grid: dict[str, Any]
    dataset_dir: Path
    runs: dict[str, GridRun] = field(default_factory=dict)

    def runs_of(self, model: str, recipe: str) -> list[GridRun]:
        return [self.runs[name] for seed in self.grid["seeds"]
                if (name := variant_name(model, recipe, seed)) in self.runs]

    def chosen(self, model: str) -> str | None:
        try:
            return chosen_recipe(self.grid, model, self.dataset_dir)
        except (FileNotFoundError, ValueError):
            return None


def _run_config(folder: Path) -> tuple[int, int]:
    """(patience, maximum epochs) from the run's config.yaml (written by training)."""
    import yaml

    values = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    return int(values.get("patience", 0)), int(sum(values.get("rounds", [0])))


def load_study(study_dir: Path | str, grid: dict[str, Any], dataset: str = "ptb") -> Study:
    """Every finished grid run under STUDY_DIR/<dataset>/ (a folder with metrics.jsonl and eval.json)."""
    dataset_dir = Path(study_dir) / dataset
    study = Study(grid, dataset_dir)
    for name, spec in all_specs(grid).items():
        folder = dataset_dir / name
        if not (folder / "metrics.jsonl").is_file() or not (folder / "eval.json").is_file():
            continue
        rows = read_metrics(folder / "metrics.jsonl")
        patience, max_epochs = _run_config(folder)
        study.runs[name] = GridRun(name, spec, rows, load_eval(folder / "eval.json"), patience, max_epochs)
    return study


def _interval_text(values: list[float]) -> str:
    if not values:
        return "–"
    mean, low, high = mean_interval(values)
    if low is None:
        return f"{mean:.1f} (1 seed)"
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def _label(grid: dict[str, Any], model: str) -> str:
    return grid["models"][model].get("label", model)


def grid_table(study: Study) -> Table:
    grid = study.grid
    header = ["model", "recipe", "best valid ppl (seed 0)", "best epoch", "epochs", "stopped", "chosen"]
    cells, records = [], []
    for model in grid["models"]:
        chosen = study.chosen(model)
        for recipe in grid["recipes"]:
            run = study.runs.get(variant_name(model, recipe, grid["tuning_seed"]))
            if run is None:
                continue
            stop = run.stop
            cells.append([_label(grid, model), grid["recipes"][recipe].get("label", recipe), format_ppl(run.best_valid),
                          str(stop["best_epoch"]), str(stop["epochs"]),
                          "at the maximum" if stop["at_max"] else "early", "yes" if recipe == chosen else ""])
            records.append({"model": model, "registered_model": run.spec["model"], "recipe": recipe,
                            "seed": grid["tuning_seed"], "best_valid_ppl": run.best_valid, **stop,
                            "chosen": recipe == chosen, "params": run.rows[0].get("params"),
                            "git_rev": run.revision})
    note = ("Every model with every recipe at the tuning seed; the chosen recipe has the lowest best valid ppl "
            "(test is not read). Stopped: early (valid ppl did not improve for the run's patience) or at the "
            "maximum number of epochs (a run that may not have converged).")
    return Table("study-grid", "The tuning grid (valid ppl)", header, cells, records, note=note, left=2)


def model_table(study: Study) -> Table:
    grid = study.grid
    header = ["group", "model", "recipe (chosen on valid)", "params", "seeds", "best valid ppl [95%]",
              "test ppl [95%]", "best epochs", "at the maximum"]
    cells, records = [], []
    for model, entry in grid["models"].items():
        chosen = study.chosen(model)
        runs = study.runs_of(model, chosen) if chosen else []
        if not runs:
            tuned = sum(variant_name(model, recipe, grid["tuning_seed"]) in study.runs for recipe in grid["recipes"])
            status = f"grid incomplete ({tuned} of {len(grid['recipes'])} recipes)" if tuned else NOT_RUN
            cells.append([entry.get("group", BASELINE_GROUP), _label(grid, model), status, *["–"] * 6])
            records.append({"model": model, "label": _label(grid, model), "group": entry.get("group", BASELINE_GROUP),
                            "status": status})
            continue
        valids = [run.best_valid for run in runs]
        tests = [run.test_ppl for run in runs]
        stops = [run.stop for run in runs]
        at_max = sum(stop["at_max"] for stop in stops)
        test_mean, test_low, test_high = mean_interval(tests)
        valid_mean, valid_low, valid_high = mean_interval(valids)
        cells.append([entry.get("group", BASELINE_GROUP), _label(grid, model),
                      grid["recipes"][chosen].get("label", chosen), format_count(runs[0].rows[0].get("params")),
                      ", ".join(str(run.spec["seed"]) for run in runs), _interval_text(valids), _interval_text(tests),
                      ", ".join(str(stop["best_epoch"]) for stop in stops), f"{at_max} of {len(runs)}"])
        records.append({"model": model, "label": _label(grid, model), "group": entry.get("group", BASELINE_GROUP),
                        "status": "run", "registered_model": runs[0].spec["model"], "recipe": chosen,
                        "variants": " ".join(run.name for run in runs),
                        "params": runs[0].rows[0].get("params"), "seeds": " ".join(str(r.spec["seed"]) for r in runs),
                        "best_valid_ppl_mean": valid_mean, "best_valid_ppl_low": valid_low,
                        "best_valid_ppl_high": valid_high, "test_ppl_mean": test_mean, "test_ppl_low": test_low,
                        "test_ppl_high": test_high, "best_epochs": " ".join(str(s["best_epoch"]) for s in stops),
                        "runs_at_max": at_max, "git_rev": " ".join(sorted({str(r.revision) for r in runs}))})
    note = ("Each model at its recipe chosen on valid ppl at the tuning seed; mean over its seeds with a 95% "
            "Student t interval; test ppl exact over the whole test split, read once per run from the checkpoint "
            "with the lowest valid ppl; best epochs: per seed; at the maximum: runs whose training ended at the "
            "maximum number of epochs without an early stop (may not have converged).")
    return Table("study", "Every model at its chosen recipe", header, cells, records, note=note, left=3)


def best_baseline(study: Study) -> str | None:
    """The baseline (group baseline) with the lowest mean best valid ppl at its chosen recipe."""
    scores = {}
    for model, entry in study.grid["models"].items():
        chosen = study.chosen(model)
        runs = study.runs_of(model, chosen) if chosen else []
        if entry.get("group", BASELINE_GROUP) == BASELINE_GROUP and runs:
            scores[model] = statistics.fmean(run.best_valid for run in runs)
    return min(scores, key=scores.get) if scores else None


def _blocks(run: GridRun) -> list[float] | None:
    return run.evaluation.get("block_nll") if run.evaluation else None


def ratio_table(study: Study) -> Table:
    """LightRNN-group models over the best baseline, and over each control; paired bootstrap intervals."""
    grid = study.grid
    baseline = best_baseline(study)
    pairs = [(model, baseline) for model, entry in grid["models"].items() if entry.get("group") == LIGHTRNN_GROUP]
    controls = [model for model, entry in grid["models"].items() if entry.get("group") == "control"
                and grid["models"][model]["model"] != "lightrnn"]
    pairs += [(model, control) for model, entry in grid["models"].items()
              if entry.get("group") == LIGHTRNN_GROUP and entry.get("train", {}).get("model_options")
              for control in controls]
    if NO_REALLOC in grid["models"] and "lightrnn" in grid["models"]:
        pairs.append(("lightrnn", NO_REALLOC))  # the reallocation's worth: the same model keeping its table
    header = ["ratio (test ppl, mean of seeds)", "ratio", "95% interval (paired bootstrap)", "word"]
    cells, records = [], []
    for numerator, denominator in pairs:
        label = f"{_label(grid, numerator)} / {_label(grid, denominator) if denominator else 'best baseline'}"
        sides = []
        for model in (numerator, denominator):
            chosen = study.chosen(model) if model else None
            sides.append(study.runs_of(model, chosen) if chosen else [])
        blocks = [[_blocks(run) for run in side] for side in sides]
        if not all(sides) or any(block is None for side in blocks for block in side):
            cells.append([label, NOT_RUN, "–", NOT_RUN])
            records.append({"numerator": numerator, "denominator": denominator, "status": NOT_RUN})
            continue
        first = sides[0][0].evaluation
        sizes = block_tokens(first["tokens"], first["block_tokens"])
        ratio, low, high = paired_ratio(blocks[0], blocks[1], sizes)
        word = verdict_word(low, high)
        cells.append([label, f"{ratio:.3f}", f"[{low:.3f}, {high:.3f}]", word])
        records.append({"numerator": numerator, "denominator": denominator, "status": "run", "ratio": ratio,
                        "low": low, "high": high, "word": word, "numerator_seeds": len(sides[0]),
                        "denominator_seeds": len(sides[1])})
    note = RULE + (f" Best baseline: {_label(grid, baseline)} (lowest mean best valid ppl of the baselines)."
                   if baseline else " No baseline has run.")
    return Table("study-ratios", "The verdict's ratios", header, cells, records, note=note, left=1)


def spike_table(study: Study) -> Table:
    """After each reallocation: LightRNN's valid ppl against the no-reallocation run at the same epoch."""
    header = ["seed", "round", "epoch", "LightRNN valid ppl", "no reallocation, same epoch", "difference"]
    cells, records = [], []
    chosen = study.chosen("lightrnn")
    for run in study.runs_of("lightrnn", chosen) if chosen else []:
        control = study.runs.get(variant_name(NO_REALLOC, chosen, run.spec["seed"]))
        if control is None:
            continue
        control_valid = {row["epoch"]: row["valid_ppl"] for row in epoch_rows(control.rows)}
        epochs = epoch_rows(run.rows)
        for realloc in realloc_rows(run.rows):
            after = next((row for row in epochs if row["epoch"] > realloc["epoch"]), None)
            if after is None or after["epoch"] not in control_valid:
                continue
            difference = after["valid_ppl"] / control_valid[after["epoch"]] - 1
            cells.append([str(run.spec["seed"]), str(realloc.get("round")), str(after["epoch"]),
                          format_ppl(after["valid_ppl"]), format_ppl(control_valid[after["epoch"]]),
                          f"{100 * difference:+.1f}%"])
            records.append({"seed": run.spec["seed"], "recipe": chosen, "round": realloc.get("round"),
                            "epoch": after["epoch"], "valid_ppl": after["valid_ppl"],
                            "valid_ppl_no_realloc": control_valid[after["epoch"]], "difference": difference})
    note = ("The epoch after each reallocation against the run that keeps its first table, same recipe, seed and "
            "epoch (not against the end of the round before, while valid ppl still falls each epoch)."
            + ("" if records else f" {NOT_RUN}: the LightRNN parts (lightrnn-grid, lightrnn-seeds)."))
    return Table("study-spike", "The reallocation against no reallocation at the same epoch", header, cells,
                 records, note=note, left=3)


def revisions(study: Study) -> list[str]:
    """The one list of git revisions of every run and evaluation; a `+dirty` one is an error."""
    found = set()
    for run in study.runs.values():
        found.update(str(row["git_rev"]) for row in run.rows if row.get("git_rev"))
        if run.evaluation and run.evaluation.get("git_rev"):
            found.add(str(run.evaluation["git_rev"]))
    dirty = sorted(rev for rev in found if rev.endswith("+dirty"))
    if dirty:
        raise ValueError(f"{study.dataset_dir}: runs of an uncommitted revision ({', '.join(dirty)}): rerun them "
                         "from a commit; a committed result must name the code that made it")
    return sorted(found)


def study_figure(study: Study, title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightrnn.report.plots import series_styles, set_log_ticks

    figure, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    plotted: list[float] = []
    shown = [(model, chosen) for model in study.grid["models"]
             if (chosen := study.chosen(model)) and study.runs_of(model, chosen)]
    for (model, chosen), style in zip(shown, series_styles(len(shown))):
        run = study.runs_of(model, chosen)[0]
        rows = [row for row in epoch_rows(run.rows) if row.get("valid_ppl") is not None]
        label = f"{_label(study.grid, model)}: {study.grid['recipes'][chosen].get('label', chosen)}"
        by_epoch.plot([row["epoch"] for row in rows], [row["valid_ppl"] for row in rows], label=label, **style)
        by_time.plot([row["wall_s"] / 60 for row in rows], [row["valid_ppl"] for row in rows], label=label, **style)
        plotted += [row["valid_ppl"] for row in rows]
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training wall time (minutes, one CPU thread)")
    by_epoch.set_ylabel("valid perplexity (log scale)")
    by_epoch.set_title("(a) every model at its chosen recipe, seed 0, by epoch", fontsize=9)
    by_time.set_title("(b) the same runs by wall time", fontsize=9)
    for axis in (by_epoch, by_time):
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    if plotted:
        set_log_ticks(by_epoch, plotted)  # labelled ticks below the lowest point and above the highest
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    if shown:  # one legend for both panels, below them: outside the data, whatever the curves do
        handles, labels = by_epoch.get_legend_handles_labels()
        figure.subplots_adjust(bottom=0.12 + 0.035 * math.ceil(len(labels) / 2))
        figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    return figure


def schedule(study_dir: Path) -> list[dict[str, Any]]:
    """STUDY_DIR/parts.tsv (part, start, end, exit status: one line per snakemake call, written by the
    script that ran it, benchmarks/run_study_part.sh) with each call's elapsed seconds."""
    import datetime

    path = study_dir / "parts.tsv"
    if not path.is_file():
        return []
    calls = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"{path}:{number}: expected part, start, end, status separated by tabs")
        start, end = (datetime.datetime.fromisoformat(value.replace("Z", "+00:00")) for value in fields[1:3])
        calls.append({"part": fields[0], "start": fields[1], "end": fields[2], "status": int(fields[3]),
                      "elapsed_s": (end - start).total_seconds()})
    return calls


def provenance(study: Study, parts: dict[str, list[str]], calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The generated provenance: one revision list, devices, every part's runs and wall time, the calls."""
    record: dict[str, Any] = {"git_revisions": revisions(study),
                              "devices": sorted({str(r.rows[0].get("device")) for r in study.runs.values()}),
                              "calls": calls or []}
    record["parts"] = {}
    for part, names in parts.items():
        done = [name for name in names if name in study.runs]
        entry = study.grid["parts"][part]
        expected = len(entry["models"]) * (len(study.grid["recipes"]) if entry["stage"] == "grid"
                                           else len(study.grid["seeds"]) - 1)
        record["parts"][part] = {
            "runs": len(done), "of": expected,
            "status": "complete" if len(done) == expected else "partial" if done else NOT_RUN,
            "training_wall_s_sum": round(sum(max(row.get("wall_s") or 0 for row in study.runs[name].rows)
                                             for name in done), 1),
        }
    return record


def part_runs(grid: dict[str, Any], study: Study) -> dict[str, list[str]]:
    """part -> the variants it trains (a seeds part: of the recipe chosen so far; none before its grid)."""
    parts = {}
    for part, entry in grid["parts"].items():
        if entry["stage"] == "grid":
            parts[part] = [variant_name(m, r, grid["tuning_seed"]) for m in entry["models"] for r in grid["recipes"]]
        else:
            parts[part] = [variant_name(m, chosen, seed) for m in entry["models"] if (chosen := study.chosen(m))
                           for seed in grid["seeds"] if seed != grid["tuning_seed"]]
    return parts


def write_tuned_study(study_dir: Path | str, config: Path | str = "config/study.yaml", dataset: str = "ptb",
                      extra: dict[str, Any] | None = None) -> list[Path]:
    """Write the tables, the figure and provenance.json of a tuned study folder (see the module docstring).

    `extra`: provenance keys that no run file holds (the corpus's sha256, the command), kept beside
    the generated ones; by default those of an existing provenance.json.
    """
    import yaml

    from lightrnn.report.plots import save_figure

    study_dir = Path(study_dir)
    grid = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("study_grid")
    if not grid:
        raise ValueError(f"{config}: no study_grid; pass the tuned study's config (config/study.yaml)")
    study = load_study(study_dir, grid, dataset)
    if not study.runs:
        raise FileNotFoundError(f"{study_dir / dataset}: no finished <model>--<recipe>--s<seed> run; run a part first")
    written = []
    for table in (grid_table(study), model_table(study), ratio_table(study), spike_table(study)):
        written.append(write_text(study_dir / "tables" / f"{table.name}.md", to_markdown(table)))
        written.append(write_text(study_dir / "tables" / f"{table.name}.csv", to_csv(table)))
    record = provenance(study, part_runs(grid, study), schedule(study_dir))
    devices = ", ".join(record["devices"])
    title = (f"Tuned study on {dataset} · git {', '.join(rev[:7] for rev in record['git_revisions'])} · {devices}")
    figure = study_figure(study, title)
    written += save_figure(figure, study_dir / "plots" / "study")
    import matplotlib.pyplot as plt

    plt.close(figure)
    path = study_dir / "provenance.json"
    if extra is None and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        extra = {key: value for key, value in old.items() if key not in record}
    written.append(write_text(path, json.dumps({**(extra or {}), **record}, indent=2) + "\n"))
    return written


def readme_block(study_dir: Path | str, page: Path | str, docs: Path | str, command: str) -> tuple[str, dict[Path, Path]]:
    """The generated block of a tuned study (docs/study.md): the one revision list, the time each call
    took, the figure and the tables; and the figure's copy into DOCS."""
    import os

    from lightrnn.report.render import markdown_table, wrap_prose

    study_dir, page, docs = Path(study_dir), Path(page), Path(docs)
    tables = [study_dir / "tables" / f"{name}.md" for name in ("study", "study-ratios", "study-grid", "study-spike")]
    figure = study_dir / "plots" / "study.png"
    for path in [*tables, figure, study_dir / "provenance.json"]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; render the study (lightrnn.report.tuned_study."
                                    "write_tuned_study) after running a part")
    record = json.loads((study_dir / "provenance.json").read_text(encoding="utf-8"))
    target = docs / f"{study_dir.name}-study.png"
    sentence = (f"Generated by `{command}` from `{study_dir.as_posix()}/` (git revision "
                f"{', '.join(record['git_revisions'])}; device {', '.join(record['devices'])}); do not edit by hand.")
    image = Path(os.path.relpath(target.resolve(), page.parent.resolve())).as_posix()
    lines = wrap_prose([sentence]) + [""]
    parts = [[part, f"{entry['runs']} of {entry['of']}", entry["status"], f"{entry['training_wall_s_sum'] / 60:.0f}"]
             for part, entry in record["parts"].items()]
    lines += ["**The parts** (runs finished; summed training time of their runs, minutes of one CPU thread)", ""]
    lines += markdown_table(["part", "runs", "status", "training minutes (sum)"], parts) + [""]
    if record.get("calls"):
        lines += ["**The snakemake calls that ran them** (`parts.tsv`; elapsed wall time; `--cores 2` unless "
                  "provenance.json's command says otherwise)", ""]
        lines += markdown_table(["call", "start (UTC)", "elapsed (minutes)", "exit status"],
                                [[c["part"], c["start"], f"{c['elapsed_s'] / 60:.0f}", str(c["status"])]
                                 for c in record["calls"]]) + [""]
    lines += [f"![tuned study]({image})", ""]
    lines += [path.read_text(encoding="utf-8").strip() + "\n" for path in tables]
    return "\n".join(lines), {figure: target}


def is_tuned_study(study_dir: Path | str) -> bool:
    """A folder written by `write_tuned_study` (the verdict reads its tables) rather than the first study."""
    return (Path(study_dir) / "tables" / "study-ratios.csv").is_file()


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


__all__ = ["write_tuned_study", "load_study", "is_tuned_study", "NOT_RUN", "TABLES"]
