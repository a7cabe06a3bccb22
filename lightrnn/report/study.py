"""The ablation study's tables and figure: which recipe, reallocation and table start give what.

A study run trains *variants* on one dataset: a variant is a registered model plus training keys
(`models.<variant>` in config/study-v1.yaml: `model`, `label`, `group`, `train`). Variants that
share a label differ only in their seed; the table reports their mean and range. Everything
is computed from the variants' metrics.jsonl and eval.json files.

Outputs (`write_study`): tables/ablation.{md,csv} (one line per (group, label): best valid ppl,
exact test ppl of the best checkpoint, the ratio to the full softmax's best recipe),
tables/study-realloc.{md,csv} (every reallocation: words moved, NLL per token before, the
matching's objective per token and the NLL measured after, valid ppl before / right after / after
one epoch on the new table / at the end of the next round, test ppl before and after one epoch)
and plots/ablation.{png,pdf} (valid ppl per epoch of the best recipe of every model, and of every
LightRNN variant, each reallocation marked right after it and after one epoch on the new table).

Where the spike is measured: the official code evaluates only after a training epoch, so the
paper's spike (ACLW-French: 219 at the end of round 1, 246 one epoch after the reallocation) is
the perplexity after one epoch on the new table. `first_epoch_after` pairs every realloc row with
that epoch row; "right after" (the frozen model on the new table) is a number the paper never shows.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightrnn.core.fileio import write_text
from lightrnn.core.loaders import input_file, load_eval, read_metrics
from lightrnn.report.layout import model_label
from lightrnn.report.render import Table, format_count, format_ppl, to_csv, to_markdown, wrap_prose
from lightrnn.report.results import epoch_rows, realloc_rows

Row = dict[str, Any]
REFERENCE = "full_softmax"
GROUP_ORDER = ("recipe", "seeds", "reallocation", "capacity", "table", "rounds", "size")


@dataclass(frozen=True)
class Variant:
    """One trained variant: its spec from the study config and what its files say."""

    name: str
    model: str
    label: str
    group: str
    rows: list[Row]
    test_ppl: float | None  # exact, best checkpoint (eval.json); else the test ppl at the best valid epoch

    @property
    def epochs(self) -> list[Row]:
        return epoch_rows(self.rows)

    @property
    def best_valid(self) -> float | None:
        values = [row["valid_ppl"] for row in self.epochs if row.get("valid_ppl") is not None]
        return min(values) if values else None

    @property
    def seed(self) -> int | None:
        return self.rows[0].get("seed") if self.rows else None


def load_variants(run_dirs: Iterable[Path | str], specs: dict[str, dict[str, Any]]) -> list[Variant]:
    """Read DIR/metrics.jsonl and DIR/eval.json of every variant folder (its name is the variant's)."""
    variants = []
    for run_dir in map(Path, run_dirs):
        name = run_dir.name
        spec = specs.get(name, {})
        rows = read_metrics(run_dir / "metrics.jsonl")  # checked rows (lightrnn.core.loaders)
        if not rows:
            raise ValueError(f"{run_dir / 'metrics.jsonl'} has no rows; rerun the training job")
        model = spec.get("model", rows[0].get("model", name))
        test_ppl = None
        evaluation = run_dir / "eval.json"
        if evaluation.is_file():
            test_ppl = load_eval(evaluation)["ppl"]  # checked: a finite number >= 1
        else:
            best = min((row for row in epoch_rows(rows) if row.get("valid_ppl") is not None),
                       key=lambda row: row["valid_ppl"], default=None)
            test_ppl = best.get("test_ppl") if best else None
        variants.append(Variant(name, model, spec.get("label", name), spec.get("group", "recipe"), rows, test_ppl))
    return variants


def _spread(values: list[float]) -> str:
    """'104.9' for one value, '104.9 ± 0.6 (2)' for several: mean ± half the range, and the count."""
    if not values:
        return "–"
    if len(values) == 1:
        return format_ppl(values[0])
    half_range = (max(values) - min(values)) / 2
    return f"{statistics.fmean(values):.1f} ± {half_range:.1f} ({len(values)})"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _by_label(variants: list[Variant]) -> dict[tuple[str, str, str], list[Variant]]:
    """Variants by (group, label, model): those sharing a key differ only in their seed."""
    grouped: dict[tuple[str, str, str], list[Variant]] = {}
    for variant in variants:
        grouped.setdefault((variant.group, variant.label, variant.model), []).append(variant)
    return grouped


def best_recipes(variants: list[Variant]) -> dict[str, str]:
    """model -> the label of its recipe-group variant with the lowest mean best valid ppl."""
    scores: dict[str, dict[str, list[float]]] = {}
    for (group, label, _), members in _by_label(variants).items():
        if group not in ("recipe", "seeds"):
            continue
        for member in members:
            if member.best_valid is not None:
                scores.setdefault(member.model, {}).setdefault(label, []).append(member.best_valid)
    return {model: min(labels, key=lambda label: statistics.fmean(labels[label])) for model, labels in scores.items()}


def ablation_table(variants: list[Variant]) -> Table:
    """One line per (group, label); test ppl relative to the full softmax's best recipe."""
    best = best_recipes(variants)
    grouped = _by_label(variants)
    reference_label = best.get(REFERENCE)
    reference = None
    if reference_label is not None:
        tests = [v.test_ppl for (_, label, model), members in grouped.items() for v in members
                 if label == reference_label and model == REFERENCE and v.test_ppl is not None]
        reference = _mean(tests)
    header = ["group", "variant", "model", "seeds", "params", "best valid ppl", "test ppl", "test / full softmax (best)",
              "words moved per reallocation", "valid spike after 1 epoch per reallocation"]
    cells, records, bold = [], [], set()
    order = sorted(grouped, key=lambda key: (GROUP_ORDER.index(key[0]) if key[0] in GROUP_ORDER else 99,
                                             key[2] != "lightrnn", key[2], key[1]))
    for group, label, model in order:
        members = grouped[(group, label, model)]
        valids = [v.best_valid for v in members if v.best_valid is not None]
        tests = [v.test_ppl for v in members if v.test_ppl is not None]
        moved = [row["realloc_moved"] for v in members for row in realloc_rows(v.rows)
                 if row.get("realloc_moved") is not None]
        ratio = _mean(tests) / reference if reference and tests else None
        by_round: dict[int, list[float]] = {}
        for member in members:
            for round_index, growth in spikes_by_round(member).items():
                by_round.setdefault(round_index, []).append(growth)
        spikes = {round_index: statistics.fmean(values) for round_index, values in sorted(by_round.items())}
        params = members[0].rows[0].get("params")
        is_best = best.get(model) == label
        cells.append([
            group, label + (" (best recipe)" if is_best else ""), model_label(model),
            ", ".join(str(v.seed) for v in members), format_count(params), _spread(valids), _spread(tests),
            "–" if ratio is None else f"{ratio:.3f}",
            "–" if not moved else f"{100 * statistics.fmean(moved):.0f}%",
            "–" if not spikes else ", ".join(f"{100 * value:+.0f}%" for value in spikes.values()),
        ])
        if is_best:
            bold.add((len(cells) - 1, 6))
        records.append({
            "group": group, "label": label, "model": model, "variants": " ".join(v.name for v in members),
            "seeds": " ".join(str(v.seed) for v in members), "params": params,
            "best_valid_ppl_mean": _mean(valids), "best_valid_ppl_min": min(valids, default=None),
            "best_valid_ppl_max": max(valids, default=None), "test_ppl_mean": _mean(tests),
            "test_ppl_min": min(tests, default=None), "test_ppl_max": max(tests, default=None),
            "test_over_full_softmax_best": ratio, "best_recipe": is_best,
            "realloc_moved_mean": _mean(moved),
            "valid_spike_one_epoch": " ".join(f"{value:.4f}" for value in spikes.values()), "git_rev": members[0].rows[0].get("git_rev"),
            "device": members[0].rows[0].get("device"),
            "dataset": members[0].rows[0].get("dataset"),
        })
    lightrnn_best, full_best = best.get("lightrnn"), best.get(REFERENCE)
    paper_spike = ", ".join(f"{100 * r['valid_spike_one_epoch']:+.0f}%" for r in paper_spikes())
    note = ("Test ppl: exact, over the whole test split, of each run's best checkpoint (lowest valid ppl); "
            "several seeds: mean ± half the range (count). Best recipe: the recipe-group variant with the lowest "
            "mean best valid ppl of its model (chosen on valid, not test). Valid spike: valid ppl one epoch after "
            "each reallocation over the one at the end of the round before, as the paper measures it (its "
            f"figure, ACLW-French: {paper_spike}).")
    if lightrnn_best and full_best and reference:
        lightrnn_tests = [v.test_ppl for v in variants if v.label == lightrnn_best and v.model == "lightrnn"
                          and v.test_ppl is not None]
        if lightrnn_tests:
            gap = statistics.fmean(lightrnn_tests) / reference - 1
            note += (f" Best against best: LightRNN ({lightrnn_best}) {statistics.fmean(lightrnn_tests):.1f} vs full "
                     f"softmax ({full_best}) {reference:.1f}: {100 * gap:+.1f}%.")
        note += _best_beyond_the_paper(grouped, reference, full_best)
    return Table("ablation", "Ablation study: recipes, reallocation, initial table, rounds, size",
                 header, cells, records, frozenset(bold), note, left=4)


def first_epoch_after(rows: list[Row], realloc: Row) -> Row | None:
    """The first epoch row trained on the table a realloc row made (where the paper measures its spike).

    It is the first epoch row after `realloc` in the file, checked to belong to the new round;
    None when training stopped before it.
    """
    position = next((index for index, row in enumerate(rows) if row is realloc), None)
    if position is None:
        return None
    following = epoch_rows(rows[position + 1:])
    if not following or following[0].get("round") != realloc.get("round"):
        return None
    return following[0]


def _growth(after: float | None, before: float | None) -> float | None:
    return after / before - 1 if after is not None and before else None


def paper_spikes() -> list[Row]:
    """The published reallocations (ACLW-French, the official figure read by eye), as realloc_table records."""
    from lightrnn.report.paper import ACLW_FR_CURVE as curve

    records = []
    for round_index, first_new in enumerate(curve.realloc_after, start=1):
        last_new = (curve.realloc_after[round_index] if round_index < len(curve.realloc_after) else len(curve.epochs)) - 1
        record = {"variant": "paper", "label": "paper (ACLW-French, read from its figure)", "group": "paper",
                  "model": "lightrnn", "round": round_index, "method": "greedy", "columns": "separable",
                  "valid_before": curve.valid[first_new - 1], "valid_right_after": None,
                  "valid_after_one_epoch": curve.valid[first_new], "valid_end_of_next_round": curve.valid[last_new],
                  "test_before": curve.test[first_new - 1], "test_after_one_epoch": curve.test[first_new]}
        record["valid_spike_one_epoch"] = _growth(record["valid_after_one_epoch"], record["valid_before"])
        record["test_spike_one_epoch"] = _growth(record["test_after_one_epoch"], record["test_before"])
        records.append(record)
    return records


def spikes_by_round(variant: Variant) -> dict[int, float]:
    """round -> valid ppl growth from the end of the round before to one epoch on the new table."""
    spikes = {}
    for row in realloc_rows(variant.rows):
        before, epoch = _epoch_before(variant.rows, row), first_epoch_after(variant.rows, row)
        growth = _growth(epoch.get("valid_ppl") if epoch else None, before.get("valid_ppl") if before else None)
        if growth is not None:
            spikes[int(row.get("round") or 0)] = growth
    return spikes


def _best_beyond_the_paper(grouped: dict[tuple[str, str, str], list[Variant]], reference: float,
                           full_best: str) -> str:
    """The LightRNN variant of the groups beyond the paper (capacity, consistent reallocation) with the
    lowest mean best valid ppl among those run with two seeds or more, against the full softmax's best."""
    candidates = [(statistics.fmean(valids), label, tests, members[0].rows[0].get("params"))
                  for (group, label, model), members in grouped.items()
                  if model == "lightrnn" and group in ("capacity", "reallocation") and len(members) >= 2
                  for valids in [[v.best_valid for v in members if v.best_valid is not None]]
                  for tests in [[v.test_ppl for v in members if v.test_ppl is not None]]
                  if len(valids) >= 2 and len(tests) >= 2]
    if not candidates:
        return ""
    _, label, tests, params = min(candidates)
    return (f" Best LightRNN beyond the paper (two seeds or more, chosen on valid): {label} "
            f"({format_count(params)} parameters) {statistics.fmean(tests):.1f} vs full softmax ({full_best}) "
            f"{reference:.1f}: {statistics.fmean(tests) / reference:.3f}x.")


def _next_round_end(rows: list[Row], realloc: Row) -> Row | None:
    later = [row for row in epoch_rows(rows) if row.get("round") == realloc.get("round")]
    return later[-1] if later else None


def _epoch_before(rows: list[Row], realloc: Row) -> Row | None:
    earlier = [row for row in epoch_rows(rows) if row.get("epoch") == realloc.get("epoch")]
    return earlier[-1] if earlier else None


def realloc_table(variants: list[Variant]) -> Table:
    """Every reallocation of every variant: how many words moved and what it did to the loss."""
    header = ["variant", "round", "method", "words moved", "NLL/token before", "objective/token", "measured after",
              "valid ppl before", "right after", "after 1 epoch", "spike (1 epoch)", "end of next round",
              "test ppl before", "test after 1 epoch"]
    cells, records = [], []
    for record in paper_spikes():
        records.append(record)
        cells.append([record["label"], str(record["round"]), "greedy (official)", *["–"] * 4,
                      format_ppl(record["valid_before"]), "–", format_ppl(record["valid_after_one_epoch"]),
                      f"{100 * record['valid_spike_one_epoch']:+.1f}%", format_ppl(record["valid_end_of_next_round"]),
                      format_ppl(record["test_before"]), format_ppl(record["test_after_one_epoch"])])
    for variant in sorted(variants, key=lambda v: (v.group, v.label, v.name)):
        for row in realloc_rows(variant.rows):
            before, end = _epoch_before(variant.rows, row), _next_round_end(variant.rows, row)
            epoch = first_epoch_after(variant.rows, row)
            predicted = row.get("realloc_nll_predicted")
            values = {
                "variant": variant.name, "label": variant.label, "group": variant.group, "model": variant.model,
                "round": row.get("round"), "method": row.get("realloc_method"),
                "columns": row.get("realloc_columns") or "separable", "moved": row.get("realloc_moved"),
                "nll_before": row.get("realloc_nll_before"), "nll_predicted": predicted,
                "nll_after": row.get("realloc_nll_after"),
                "valid_before": before.get("valid_ppl") if before else None, "valid_right_after": row.get("valid_ppl"),
                "valid_after_one_epoch": epoch.get("valid_ppl") if epoch else None,
                "valid_end_of_next_round": end.get("valid_ppl") if end else None,
                "test_before": before.get("test_ppl") if before else None,
                "test_after_one_epoch": epoch.get("test_ppl") if epoch else None,
            }
            values["valid_spike_one_epoch"] = _growth(values["valid_after_one_epoch"], values["valid_before"])
            values["test_spike_one_epoch"] = _growth(values["test_after_one_epoch"], values["test_before"])
            records.append(values)
            spike = values["valid_spike_one_epoch"]
            cells.append([
                variant.label, str(values["round"]), str(values["method"] or "–"),
                "–" if values["moved"] is None else f"{100 * values['moved']:.1f}%",
                *("–" if values[key] is None else f"{values[key]:.3f}" for key in ("nll_before", "nll_predicted",
                                                                                   "nll_after")),
                *(format_ppl(values[key]) for key in ("valid_before", "valid_right_after", "valid_after_one_epoch")),
                "–" if spike is None else f"{100 * spike:+.1f}%",
                *(format_ppl(values[key]) for key in ("valid_end_of_next_round", "test_before", "test_after_one_epoch")),
            ])
    note = ("NLL per token (nats, row + column) on the training batches the reallocation read, with the model "
            "frozen: before (old table), the matching's objective per token, and measured after (the new table fed "
            "through the model). With the paper's separable objective the objective is not the NLL of any model: "
            "each word's column loss was scored under its OLD row (the column step read the old row's vector), "
            "so over the V words at their new slots the probabilities do not sum to 1; the rise from it to "
            "measured-after is the column head meeting rows it was never trained after (the history reading the "
            "new table is the smaller part: at most ~0.3 nats in an audit's decomposition). With consistent columns (rows first, then the columns "
            "scored under the new rows) the predicted NLL prices the final table's column normalisers exactly and the gap "
            "is the history's input side (rows written before the normalised model used the paper's leaky softmaxes and, with "
            "per-word terms, a slot map with collisions, so their predicted NLL is off). The paper measures its spike after one epoch on the new table (ACLW-French 219 -> 246, +12%): "
            "compare it with 'after 1 epoch' and 'spike (1 epoch)', not with 'right after' (the frozen model "
            "before any training on the new table, a number the paper never shows).")
    return Table("study-realloc", "Every reallocation of the study", header, cells, records, note=note, left=3)


def ablation_figure(variants: list[Variant], date: str) -> Any:
    """Valid ppl per epoch: (a) every model at its best recipe, (b) every LightRNN variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightrnn.report.plots import model_color, series_styles, set_log_ticks

    best = best_recipes(variants)
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6.2), sharey=True)
    plotted: list[float] = []  # every value drawn: the y axis covers them, and only them
    for model, label in best.items():
        members = [v for v in variants if v.label == label and v.model == model]
        run = min(members, key=lambda v: v.seed if v.seed is not None else 0)
        points = [(row["epoch"], row["valid_ppl"]) for row in run.epochs if row.get("valid_ppl") is not None]
        left.plot(*zip(*points), marker="o", color=model_color(model), label=f"{model_label(model)}: {label}")
        plotted += [y for _, y in points]
    left.set_title("(a) every model at its best recipe (valid)", fontsize=10)
    lightrnn = [v for v in variants if v.model == "lightrnn" and (v.group != "seeds")]
    shown: dict[str, Variant] = {}  # one curve per label (the first seed)
    for variant in sorted(lightrnn, key=lambda v: (v.group, v.label, v.seed or 0)):
        shown.setdefault(variant.label, variant)
    # More variants than a colour cycle has colours: the colour says the group, marker x dash the
    # variant within it, so every curve is distinct and related curves look related.
    chosen = list(shown.values())
    for variant, style in zip(chosen, series_styles(len(chosen), [v.group for v in chosen])):
        points = [(row["epoch"], row["valid_ppl"]) for row in variant.epochs if row.get("valid_ppl") is not None]
        line, = right.plot(*zip(*points), markersize=4, label=f"{variant.group}: {variant.label}", **style)
        plotted += [y for _, y in points]
        # Where the paper measures the spike: the first epoch trained on the new table (open: the
        # epoch's point stays visible). The frozen model right after a reallocation is far above every
        # curve (table study-realloc, 'right after'): drawn, it would squash them all.
        paired = [first_epoch_after(variant.rows, row) for row in realloc_rows(variant.rows)]
        after = [(row["epoch"], row["valid_ppl"]) for row in paired if row and row.get("valid_ppl") is not None]
        if after:
            right.scatter(*zip(*after), marker="o", s=90, facecolors="none", edgecolors=line.get_color(),
                          linewidths=1.2, zorder=4)
    right.set_title("(b) LightRNN variants (valid); open circles: one epoch after a reallocation,\n"
                    "where the paper measures its spike (right after one: table study-realloc)", fontsize=9)
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.grid(True, which="major", alpha=0.3)
    if plotted:
        set_log_ticks(left, plotted)  # shared y: both panels
    # Legends below their panels, never over the curves.
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False, ncol=2)
    left.set_ylabel("perplexity (log scale)")
    rows = [row for v in variants for row in v.rows]
    revisions = sorted({str(row.get("git_rev"))[:7] for row in rows if row.get("git_rev")})
    devices = sorted({str(row.get("device")) for row in rows if row.get("device")})
    datasets = sorted({str(row.get("dataset")) for row in rows if row.get("dataset")})
    figure.suptitle(f"Ablation study on {', '.join(datasets)} · git {', '.join(revisions)} · "
                    f"{', '.join(devices)} · {date}", fontsize=9)
    figure.tight_layout()
    return figure


def write_study(run_dirs: Iterable[Path | str], specs: dict[str, dict[str, Any]], out_dir: Path | str,
                date: str) -> list[Path]:
    """Write tables/ablation.{md,csv}, tables/study-realloc.{md,csv} and plots/ablation.{png,pdf}."""
    from lightrnn.report.plots import save_figure

    variants = load_variants(run_dirs, specs)
    out_dir = Path(out_dir)
    written = []
    for table in (ablation_table(variants), realloc_table(variants)):
        written.append(write_text(out_dir / "tables" / f"{table.name}.md", to_markdown(table)))
        written.append(write_text(out_dir / "tables" / f"{table.name}.csv", to_csv(table)))
    figure = ablation_figure(variants, date)
    written += save_figure(figure, out_dir / "plots" / "ablation")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return written


def write_study_folder(study_dir: Path | str, config: Path | str = "config/study-v1.yaml", date: str | None = None) -> list[Path]:
    """Re-render a copied study folder (e.g. results/paper/study-cpu) from its own variant folders.

    STUDY_DIR/<dataset>/<variant>/{metrics.jsonl, eval.json} are read with the variants' specs
    from CONFIG (`models:`), and STUDY_DIR/tables and STUDY_DIR/plots are rewritten: what the rule
    render_study does for a fresh run, for a folder that holds runs of several sessions.
    """
    import datetime

    import yaml

    study_dir = Path(study_dir)
    specs = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("models", {})
    run_dirs = sorted(path.parent for path in study_dir.glob("*/*/metrics.jsonl"))
    if not run_dirs:
        raise FileNotFoundError(f"{study_dir}: no <dataset>/<variant>/metrics.jsonl below it; copy a study run there")
    date = date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return write_study(run_dirs, specs, study_dir, date)


# ----------------------------------------------------------------------------- README block
README_SECTION = "study"


def readme_block(study_dir: Path | str, readme: Path | str, docs: Path | str, command: str) -> tuple[str, dict[Path, Path]]:
    """The generated study block (docs/study.md) (figure, ablation table, reallocation table) and the PNG copy.

    A tuned study folder (`lightrnn.report.tuned_study`) gets its own block (its tables, figure and
    the time each part took).
    """
    from lightrnn.core.csvio import read_csv
    from lightrnn.report import tuned_study

    if tuned_study.is_tuned_study(study_dir):
        return tuned_study.readme_block(study_dir, readme, docs, command)
    study_dir, readme, docs = Path(study_dir), Path(readme), Path(docs)
    tables = [study_dir / "tables" / f"{name}.md" for name in ("ablation", "study-realloc")]
    figure = study_dir / "plots" / "ablation.png"
    for path in [*tables, figure, study_dir / "tables" / "ablation.csv"]:
        input_file(path, fix="render the study (snakemake --configfile config/study-v1.yaml)")
    records = read_csv(study_dir / "tables" / "ablation.csv")
    revisions = sorted({str(r["git_rev"]) for r in records if r.get("git_rev")})
    devices = sorted({str(r["device"]) for r in records if r.get("device")})
    target = docs / f"{study_dir.name}-ablation.png"
    sentence = (f"Generated by `{command}` from `{study_dir.as_posix()}/` (git revision {', '.join(revisions)}; "
                f"device {', '.join(devices)}); do not edit by hand.")
    image = Path(os.path.relpath(target.resolve(), readme.parent.resolve())).as_posix()
    lines = wrap_prose([sentence]) + ["", f"![ablation study]({image})", ""]
    lines += [path.read_text(encoding="utf-8").strip() + "\n" for path in tables]
    return "\n".join(lines), {figure: target}
