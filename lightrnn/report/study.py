"""The ablation study's tables and figure: which recipe, reallocation and table start give what.

A study run trains *variants* on one dataset: a variant is a registered model plus training keys
(`models.<variant>` in config/study.yaml: `model`, `label`, `group`, `train`). Variants that
share a label differ only in their seed; the table reports their mean and range. Everything
is computed from the variants' metrics.jsonl and eval.json files.

Outputs (`write_study`): tables/ablation.{md,csv} (one line per (group, label): best valid ppl,
exact test ppl of the best checkpoint, the ratio to the full softmax's best recipe),
tables/study-realloc.{md,csv} (every reallocation: words moved, NLL per token before, predicted
by the matching objective and measured after, valid ppl before / right after / at the end of the
next round) and plots/ablation.{png,pdf} (valid ppl per epoch of the best recipe of every model,
and of every LightRNN variant, reallocations marked).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightrnn.fileio import read_jsonl, write_text
from lightrnn.report.layout import model_label
from lightrnn.report.results import epoch_rows, realloc_rows
from lightrnn.report.render import Table, format_count, format_ppl, to_csv, to_markdown, wrap_prose

Row = dict[str, Any]
REFERENCE = "full_softmax"
GROUP_ORDER = ("recipe", "seeds", "reallocation", "table", "rounds", "size")


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
        rows = read_jsonl(run_dir / "metrics.jsonl")
        if not rows:
            raise ValueError(f"{run_dir / 'metrics.jsonl'} has no rows; rerun the training job")
        model = spec.get("model", rows[0].get("model", name))
        test_ppl = None
        evaluation = run_dir / "eval.json"
        if evaluation.is_file():
            test_ppl = float(json.loads(evaluation.read_text(encoding="utf-8"))["ppl"])
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
              "words moved per reallocation"]
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
        params = members[0].rows[0].get("params")
        is_best = best.get(model) == label
        cells.append([
            group, label + (" (best recipe)" if is_best else ""), model_label(model),
            ", ".join(str(v.seed) for v in members), format_count(params), _spread(valids), _spread(tests),
            "–" if ratio is None else f"{ratio:.3f}",
            "–" if not moved else f"{100 * statistics.fmean(moved):.0f}%",
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
            "realloc_moved_mean": _mean(moved), "git_rev": members[0].rows[0].get("git_rev"),
            "device": members[0].rows[0].get("device"),
            "dataset": members[0].rows[0].get("dataset"),
        })
    lightrnn_best, full_best = best.get("lightrnn"), best.get(REFERENCE)
    note = ("Test ppl: exact, over the whole test split, of each run's best checkpoint (lowest valid ppl); "
            "several seeds: mean ± half the range (count). Best recipe: the recipe-group variant with the lowest "
            "mean best valid ppl of its model (chosen on valid, not test).")
    if lightrnn_best and full_best and reference:
        lightrnn_tests = [v.test_ppl for v in variants if v.label == lightrnn_best and v.model == "lightrnn"
                          and v.test_ppl is not None]
        if lightrnn_tests:
            gap = statistics.fmean(lightrnn_tests) / reference - 1
            note += (f" Best against best: LightRNN ({lightrnn_best}) {statistics.fmean(lightrnn_tests):.1f} vs full "
                     f"softmax ({full_best}) {reference:.1f}: {100 * gap:+.1f}%.")
    return Table("ablation", "Ablation study: recipes, reallocation, initial table, rounds, size",
                 header, cells, records, frozenset(bold), note, left=4)


def _next_round_end(rows: list[Row], realloc: Row) -> Row | None:
    later = [row for row in epoch_rows(rows) if row.get("round") == realloc.get("round")]
    return later[-1] if later else None


def _epoch_before(rows: list[Row], realloc: Row) -> Row | None:
    earlier = [row for row in epoch_rows(rows) if row.get("epoch") == realloc.get("epoch")]
    return earlier[-1] if earlier else None


def realloc_table(variants: list[Variant]) -> Table:
    """Every reallocation of every variant: how many words moved and what it did to the loss."""
    header = ["variant", "round", "method", "words moved", "NLL/token before", "predicted", "measured after",
              "valid ppl before", "right after", "end of next round"]
    cells, records = [], []
    for variant in sorted(variants, key=lambda v: (v.group, v.label, v.name)):
        for row in realloc_rows(variant.rows):
            before, end = _epoch_before(variant.rows, row), _next_round_end(variant.rows, row)
            predicted = row.get("realloc_nll_predicted")
            values = {
                "variant": variant.name, "label": variant.label, "round": row.get("round"),
                "method": row.get("realloc_method"), "moved": row.get("realloc_moved"),
                "nll_before": row.get("realloc_nll_before"), "nll_predicted": predicted,
                "nll_after": row.get("realloc_nll_after"),
                "valid_before": before.get("valid_ppl") if before else None, "valid_right_after": row.get("valid_ppl"),
                "valid_end_of_next_round": end.get("valid_ppl") if end else None,
            }
            records.append(values)
            cells.append([
                variant.label, str(values["round"]), str(values["method"] or "–"),
                "–" if values["moved"] is None else f"{100 * values['moved']:.1f}%",
                *("–" if values[key] is None else f"{values[key]:.3f}" for key in ("nll_before", "nll_predicted",
                                                                                   "nll_after")),
                *(format_ppl(values[key]) for key in ("valid_before", "valid_right_after", "valid_end_of_next_round")),
            ])
    note = ("NLL per token (nats, row + column) on the training batches the reallocation read, with the model "
            "frozen: before (old table), predicted (the matching's objective: the old model's scores of the new "
            "slots) and measured after (the new table fed through the model). The difference between predicted "
            "and measured is what moving the input side costs: a moved word reads another row and column vector.")
    return Table("study-realloc", "Every reallocation of the study", header, cells, records, note=note, left=3)


def ablation_figure(variants: list[Variant], date: str) -> Any:
    """Valid ppl per epoch: (a) every model at its best recipe, (b) every LightRNN variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightrnn.report.plots import model_color, series_styles

    best = best_recipes(variants)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for model, label in best.items():
        members = [v for v in variants if v.label == label and v.model == model]
        run = min(members, key=lambda v: v.seed if v.seed is not None else 0)
        points = [(row["epoch"], row["valid_ppl"]) for row in run.epochs if row.get("valid_ppl") is not None]
        left.plot(*zip(*points), marker="o", color=model_color(model), label=f"{model_label(model)}: {label}")
    left.set_title("(a) every model at its best recipe (valid)")
    lightrnn = [v for v in variants if v.model == "lightrnn" and (v.group != "seeds")]
    shown: dict[str, Variant] = {}  # one curve per label (the first seed)
    for variant in sorted(lightrnn, key=lambda v: (v.group, v.label, v.seed or 0)):
        shown.setdefault(variant.label, variant)
    # More variants than a colour cycle has colours: colour x dash x marker keeps every curve distinct.
    for variant, style in zip(shown.values(), series_styles(len(shown))):
        points = [(row["epoch"], row["valid_ppl"]) for row in variant.epochs if row.get("valid_ppl") is not None]
        line, = right.plot(*zip(*points), markersize=4, label=f"{variant.group}: {variant.label}", **style)
        spikes = [(row["epoch"] + 0.5, row["valid_ppl"]) for row in realloc_rows(variant.rows)
                  if row.get("valid_ppl") is not None and math.isfinite(row["valid_ppl"])]
        if spikes:
            right.scatter(*zip(*spikes), marker="*", s=60, color=line.get_color())
    right.set_title("(b) LightRNN variants (valid; * right after a reallocation)")
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
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


# ----------------------------------------------------------------------------- README block
README_SECTION = "study"


def readme_block(study_dir: Path | str, readme: Path | str, docs: Path | str, command: str) -> tuple[str, dict[Path, Path]]:
    """The README's generated study block (figure, ablation table, reallocation table) and the PNG copy."""
    from lightrnn.csvio import read_csv

    study_dir, readme, docs = Path(study_dir), Path(readme), Path(docs)
    tables = [study_dir / "tables" / f"{name}.md" for name in ("ablation", "study-realloc")]
    figure = study_dir / "plots" / "ablation.png"
    for path in [*tables, figure, study_dir / "tables" / "ablation.csv"]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; render the study (snakemake --configfile config/study.yaml)")
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
