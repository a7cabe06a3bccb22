"""Figures as pure functions of metrics rows: PNG and PDF through matplotlib's Agg backend.

- `perplexity_plot(..., style="paper")`: the ACLW-French figure of the paper / official code:
  LightRNN valid and test perplexity per epoch, each word reallocation marked and annotated with
  its effect, the baselines on the same axes (their validation curves, and a dashed line at the
  best baseline's test perplexity); on an ACLW French set also the published curve of the official
  example (markers, read from the published figure), its reallocations and its baseline line.
- `perplexity_plot(..., style="curves")`: every model's valid (solid) and test (dashed) curves.
- `size_speed_chart`: parameters and training tokens/s per dataset and model.
Every figure carries a provenance footer (git revision, device, date).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightrnn.fileio import atomic_path
from lightrnn.report import paper
from lightrnn.report.layout import (
    PLOT_FORMATS,
    aclw_language,
    dataset_label,
    model_label,
    model_sort_key,
)
from lightrnn.report.results import Row, RunSummary, runs_of, summarize
from lightrnn.report.render import format_count

# One colour per model, the same in every figure (colour-blind-safe Okabe-Ito palette).
MODEL_COLORS = {
    "lightrnn": "#0072B2",
    "full_softmax": "#D55E00",
    "class_softmax": "#009E73",
    "adaptive_softmax": "#CC79A7",
}
_FALLBACK_COLORS = ("#E69F00", "#56B4E9", "#F0E442", "#000000")
PUBLISHED_COLOR = "0.35"  # the published curve: grey markers, never a line (points read by eye)
PUBLISHED_LABELS = {
    "valid": f"published LightRNN valid, {paper.CURVE_NOTE}",
    "test": f"published LightRNN test, {paper.CURVE_NOTE}",
    "baseline": "published best baseline (~{value:g})",
}


def _draw_published_curve(axes: Any) -> list[float]:
    """The official example's ACLW-French curve on `axes`: valid and test markers, its reallocations
    (dash-dot lines) and its best-baseline line; returns the plotted perplexities."""
    curve = paper.ACLW_FR_CURVE
    xs = curve.epochs_completed()
    axes.plot(xs, curve.valid, linestyle="none", marker="x", markersize=5, color=PUBLISHED_COLOR,
              label=PUBLISHED_LABELS["valid"], zorder=2)
    axes.plot(xs, curve.test, linestyle="none", marker="o", markersize=4, markerfacecolor="none",
              color=PUBLISHED_COLOR, label=PUBLISHED_LABELS["test"], zorder=2)
    for index, x in enumerate(curve.realloc_after):
        axes.axvline(x, color=PUBLISHED_COLOR, linestyle="-.", linewidth=0.9, zorder=2,  # above the grid
                     label="published word reallocation" if index == 0 else None)
    axes.axhline(curve.baseline.value, color=PUBLISHED_COLOR, linestyle=(0, (2, 2)), linewidth=1.1, zorder=1,
                 label=PUBLISHED_LABELS["baseline"].format(value=curve.baseline.value))
    return [*curve.valid, *curve.test, curve.baseline.value]


def published_curve_applies(dataset: str) -> bool:
    """The published ACLW-French curve belongs on the figure of an ACLW French set (small or large)."""
    language = aclw_language(dataset)
    return language is not None and language[0] == "French"


def data_note(dataset: str) -> str:
    """Which ACLW set our curves come from, said on the figure (the published curve is on the large set)."""
    language = aclw_language(dataset)
    if language is None:
        return ""
    if language[1] == "large":
        return "Ours: the paper's large set."
    return "Ours: the small Botha & Blunsom set (~1M tokens), not the paper's large set (~56M)."


def model_color(model: str) -> str:
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    return _FALLBACK_COLORS[sum(map(ord, model)) % len(_FALLBACK_COLORS)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _provenance_line(rows: list[Row], date: str) -> str:
    revisions = sorted({str(row.get("git_rev")) for row in rows if row.get("git_rev")})
    devices = sorted({str(row.get("device")) for row in rows if row.get("device")})
    return f"git {', '.join(revisions) or 'unknown'} · {', '.join(devices) or 'unknown device'} · {date}"


def save_figure(figure: Any, stem: Path | str) -> list[Path]:
    """Write STEM.png and STEM.pdf atomically (`lightrnn.fileio.atomic_path`)."""
    stem = Path(stem)
    written = []
    for fmt in PLOT_FORMATS:
        target = stem.with_name(f"{stem.name}.{fmt}")
        # Fixed metadata keeps reruns byte-comparable (no creation dates in the files).
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_path(target) as temp:
            figure.savefig(temp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        written.append(target)
    return written


def _xy(points: list[tuple[int, Row]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(x, float(row[key])) for x, row in points if row.get(key) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _test_label(model: str, summary: RunSummary | None) -> str:
    """'LightRNN test (best checkpoint: 176.0, 17.5M params)' when the final numbers are known."""
    if summary is None or summary.test_ppl is None:
        return f"{model_label(model)} test"
    size = f", {format_count(summary.params)} params" if summary.params else ""
    return f"{model_label(model)} test (best checkpoint: {summary.test_ppl:.1f}{size})"


def perplexity_plot(
    rows: list[Row], evals: list[Row], dataset: str, stem: Path | str, date: str, style: str = "paper"
) -> list[Path]:
    """Perplexity against epoch for one dataset; writes STEM.{png,pdf} and returns the paths."""
    plt = _pyplot()
    figure = perplexity_figure(rows, evals, dataset, date, style)
    try:
        return save_figure(figure, stem)
    finally:
        plt.close(figure)


def perplexity_figure(rows: list[Row], evals: list[Row], dataset: str, date: str, style: str = "paper") -> Any:
    """The matplotlib Figure of `perplexity_plot` (the caller closes it).

    x = epochs completed (1, 2, ... across rounds); a reallocation sits at the epoch it followed,
    its marker at the validation perplexity measured right after the words moved. The paper style
    of an ACLW French dataset also shows the published curve (`paper.ACLW_FR_CURVE`).
    """
    if style not in ("paper", "curves"):
        raise ValueError(f"perplexity_plot: style must be 'paper' or 'curves', got {style!r}")
    runs = {model: run for (name, model), run in runs_of(rows).items() if name == dataset}
    if not runs:
        raise ValueError(f"perplexity_plot: no metrics rows for dataset {dataset!r}")
    if style == "paper" and "lightrnn" not in runs:
        raise ValueError(f"perplexity_plot: the paper-style plot needs LightRNN rows for {dataset!r}")
    summaries = summarize([row for run in runs.values() for row in run.rows], evals)
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    figure, axes = plt.subplots(figsize=(7.5, 4.6))
    plotted: list[float] = []
    notes: list[tuple[int, float, str]] = []  # (x, y, text) of the reallocation annotations
    for model in sorted(runs, key=model_sort_key):
        points = [(x, row) for x, row in runs[model].axis if row.get("kind", "epoch") == "epoch"]
        color = model_color(model)
        main = style == "curves" or model == "lightrnn"
        final = summaries.get((dataset, model))
        xs, ys = _xy(points, "valid_ppl")
        label = f"{model_label(model)} valid" if main else f"{model_label(model)} (valid)"
        axes.plot(
            xs, ys, color=color, marker="o" if main else None, markersize=4, linewidth=2 if main else 1.2,
            alpha=1.0 if main else 0.55, label=label, zorder=3 if main else 2,
        )
        plotted += ys
        if main:
            xs, ys = _xy(points, "test_ppl")
            if ys:
                axes.plot(
                    xs, ys, color=color, marker="s", markersize=4, markerfacecolor="white", linestyle="--",
                    linewidth=1.5, label=_test_label(model, final), zorder=3,
                )
                plotted += ys
    # Reallocations: a dotted line at the round boundary and the valid ppl right after the move.
    for model in sorted(runs, key=model_sort_key):
        if style == "paper" and model != "lightrnn":
            continue
        axis = runs[model].axis
        previous_valid = None
        count = 0
        for x, row in axis:
            if row.get("kind", "epoch") == "epoch":
                previous_valid = row.get("valid_ppl", previous_valid)
                continue
            if row.get("kind") != "realloc":
                continue
            count += 1
            axes.axvline(x, color="0.6", linestyle=":", linewidth=1, zorder=1)
            after = row.get("valid_ppl")
            if after is None:
                continue
            axes.plot(
                [x], [after], marker="*", markersize=13, color=model_color(model), markeredgecolor="black",
                linestyle="none", zorder=4, label="word reallocation (valid ppl right after)" if count == 1 else None,
            )
            plotted.append(float(after))
            if style == "paper":
                change = f"\n{previous_valid:.1f} → {after:.1f}" if previous_valid is not None else ""
                notes.append((x, float(after), f"word reallocation {count}{change}"))
    published = style == "paper" and published_curve_applies(dataset)
    if published:
        plotted += _draw_published_curve(axes)
    if style == "paper":
        baselines = [
            summary for (_, model), summary in summaries.items() if model != "lightrnn" and summary.test_ppl is not None
        ]
        if baselines:
            best = min(baselines, key=lambda summary: summary.test_ppl)  # type: ignore[arg-type,return-value]
            axes.axhline(
                best.test_ppl, color=model_color(best.model), linestyle=(0, (6, 3)), linewidth=1.3,
                label=f"best baseline test ({model_label(best.model)}: {best.test_ppl:.1f}, {format_count(best.params)} params)",
                zorder=2,
            )
            plotted.append(float(best.test_ppl))  # type: ignore[arg-type]
    # Early epochs of small runs can sit orders of magnitude above the end: a log axis keeps
    # the part that matters readable.
    if plotted and max(plotted) / max(min(plotted), 1e-9) > 4:
        axes.set_yscale("log")
        # Plain numbers (200, 300, 500) rather than 2x10^2 on the log axis.
        plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "1235" else "")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
    # Annotations go above-right of their point, or below-right in the top third of the axes,
    # so they never run into the title.
    low, high = (math.log(v) for v in axes.get_ylim()) if axes.get_yscale() == "log" else axes.get_ylim()
    for x, y, text in notes:
        height = ((math.log(y) if axes.get_yscale() == "log" else y) - low) / max(high - low, 1e-12)
        axes.annotate(
            text, xy=(x, y), xytext=(14, -34 if height > 0.66 else 18), textcoords="offset points", fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "0.3"},
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Perplexity")
    title = "Perplexity during training" if style == "paper" else "Training curves"
    # Title on the left, the provenance line between it and the axes.
    axes.set_title(f"{dataset_label(dataset)}: {title}", loc="left", pad=14)
    axes.grid(True, which="major", color="0.9")
    axes.spines[["top", "right"]].set_visible(False)
    # Below the axes: the curves keep the whole plotting area.
    axes.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    axes.text(
        0.0, 1.01, _provenance_line([row for run in runs.values() for row in run.rows], date), transform=axes.transAxes, ha="left",
        va="bottom", fontsize=6, color="0.5",
    )
    if published:
        # Says where the grey points come from and which data ours are on, under the legend.
        axes.text(
            0.0, -0.42, f"Grey: official LightRNN example, {paper.CURVE_NOTE}; published epoch e drawn at e + 1 "
            f"epochs completed. {data_note(dataset)}", transform=axes.transAxes, ha="left", va="top",
            fontsize=7, color="0.3", wrap=True,
        )
    return figure


def size_speed_chart(rows: list[Row], evals: list[Row], stem: Path | str, date: str) -> list[Path]:
    """Two bar panels per (dataset, model): parameters (log scale) and training tokens/s."""
    summaries = summarize(rows, evals)
    if not summaries:
        raise ValueError("size_speed_chart: no metrics rows")
    keys = sorted(summaries, key=lambda key: (dataset_label(key[0]), model_sort_key(key[1])))
    plt = _pyplot()
    height = max(2.5, 0.28 * len(keys) + 1.2)
    figure, (size_axes, speed_axes) = plt.subplots(1, 2, figsize=(9, height), sharey=True)
    positions = list(range(len(keys)))[::-1]
    colors = [model_color(model) for _, model in keys]
    params = [summaries[key].params or 0 for key in keys]
    speeds = [summaries[key].train_tokens_per_s or 0 for key in keys]
    size_axes.barh(positions, params, color=colors)
    size_axes.set_xscale("log")
    size_axes.set_xlabel("Parameters (log scale)")
    speed_axes.barh(positions, speeds, color=colors)
    speed_axes.set_xlabel("Training tokens/s (median over epochs)")
    size_axes.set_yticks(positions, [f"{dataset_label(d)} · {model_label(m)}" for d, m in keys], fontsize=7)
    for axes in (size_axes, speed_axes):
        axes.grid(True, axis="x", color="0.9")
        axes.spines[["top", "right"]].set_visible(False)
        axes.set_axisbelow(True)
    figure.suptitle("Model size and training speed")
    figure.text(0.99, 0.005, _provenance_line(rows, date), ha="right", fontsize=6, color="0.5")
    figure.tight_layout()
    try:
        return save_figure(figure, stem)
    finally:
        plt.close(figure)
