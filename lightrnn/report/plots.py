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

from lightrnn.core.fileio import atomic_path
from lightrnn.report import paper
from lightrnn.report.layout import (
    PLOT_FORMATS,
    aclw_language,
    dataset_label,
    model_label,
    model_sort_key,
)
from lightrnn.report.render import format_count
from lightrnn.report.results import Results, Row, RunSummary

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


def series_styles(count: int) -> list[dict[str, Any]]:
    """`count` distinct line styles (colour x line style x marker), for figures with more series
    than a colour cycle has colours: no two series look alike, whatever `count` is."""
    colors = (*MODEL_COLORS.values(), *_FALLBACK_COLORS[:3], "#555555")
    dashes = ("-", "--", "-.", ":")
    markers = ("o", "s", "^", "D", "v", "P", "X")
    return [
        {
            "color": colors[i % len(colors)],
            "linestyle": dashes[(i // len(colors)) % len(dashes)],
            "marker": markers[i % len(markers)],
        }
        for i in range(count)
    ]


def text_boxes(figure: Any) -> list[tuple[str, Any]]:
    """(text, window extent) of every non-empty text the renderer actually draws on `figure` (tick
    labels outside the view are never drawn, so they are not counted); a legend counts as one box
    (its entries are laid out by matplotlib and cannot collide)."""
    from unittest import mock

    from matplotlib.legend import Legend
    from matplotlib.text import Text

    drawn: list[Any] = []
    draw = Text.draw

    def recording(self: Any, renderer: Any) -> Any:
        drawn.append(self)
        return draw(self, renderer)

    renderer = figure.canvas.get_renderer()
    with mock.patch.object(Text, "draw", recording):
        figure.draw(renderer)
    legends = [artist for artist in figure.findobj(Legend) if artist.get_visible()]
    inside = {id(text) for legend in legends for text in legend.findobj(Text)}
    boxes = [("legend", legend.get_window_extent(renderer)) for legend in legends]
    for text in drawn:
        if id(text) in inside or not text.get_visible() or not text.get_text().strip():
            continue
        # The text's own box (an annotation's get_window_extent adds its arrow's extent).
        box = Text.get_window_extent(text, renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text.get_text(), box))
    return boxes


def text_overlaps(figure: Any, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of texts (and legends) of a drawn figure whose boxes overlap by more than
    `tolerance` pixels each way: what a reader would see printed on top of each other."""
    boxes = text_boxes(figure)
    overlaps = []
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1 :]:
            width = min(a.x1, b.x1) - max(a.x0, b.x0)
            height = min(a.y1, b.y1) - max(a.y0, b.y0)
            if width > tolerance and height > tolerance:
                overlaps.append((text_a, text_b))
    return overlaps


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
    """Write STEM.png and STEM.pdf atomically (`lightrnn.core.fileio.atomic_path`)."""
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
    results: Results, dataset: str, stem: Path | str, date: str, style: str = "paper"
) -> list[Path]:
    """Perplexity against epoch for one dataset; writes STEM.{png,pdf} and returns the paths."""
    plt = _pyplot()
    figure = perplexity_figure(results, dataset, date, style)
    try:
        return save_figure(figure, stem)
    finally:
        plt.close(figure)


def perplexity_figure(results: Results, dataset: str, date: str, style: str = "paper") -> Any:
    """The matplotlib Figure of `perplexity_plot` (the caller closes it).

    x = epochs completed (1, 2, ... across rounds); a reallocation sits at the epoch it followed,
    its marker at the validation perplexity measured right after the words moved. The paper style
    of an ACLW French dataset also shows the published curve (`paper.ACLW_FR_CURVE`).
    """
    if style not in ("paper", "curves"):
        raise ValueError(f"perplexity_plot: style must be 'paper' or 'curves', got {style!r}")
    runs = {model: run for (name, model), run in results.runs.items() if name == dataset}
    if not runs:
        raise ValueError(f"perplexity_plot: no metrics rows for dataset {dataset!r}")
    if style == "paper" and "lightrnn" not in runs:
        raise ValueError(f"perplexity_plot: the paper-style plot needs LightRNN rows for {dataset!r}")
    figure, axes = _pyplot().subplots(figsize=(7.5, 4.6))
    plotted = _draw_curves(axes, runs, results.summaries, dataset, style)
    marked, notes = _draw_reallocations(axes, runs, style)
    plotted += marked
    published = style == "paper" and published_curve_applies(dataset)
    if published:
        plotted += _draw_published_curve(axes)
    baseline = _draw_best_baseline(axes, results.summaries, dataset) if style == "paper" else None
    if baseline is not None:
        plotted.append(baseline[1])
    _style_axes(axes, plotted, baseline, f"{dataset_label(dataset)}: "
                + ("Perplexity during training" if style == "paper" else "Training curves"))
    # Below the axes: the curves keep the whole plotting area.
    legend = axes.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    axes.text(
        0.0, 1.01, _provenance_line([row for run in runs.values() for row in run.rows], date),
        transform=axes.transAxes, ha="left", va="bottom", fontsize=6, color="0.5",
    )
    _place_annotations(figure, axes, notes)
    if published:
        # Says where the grey points come from and which data ours are on, under the legend
        # (placed from the legend's drawn extent, so a longer legend pushes it down).
        renderer = figure.canvas.get_renderer()
        bottom = legend.get_window_extent(renderer).transformed(figure.transFigure.inverted()).y0
        figure.text(
            axes.get_position().x0, bottom - 0.02, f"Grey: official LightRNN example, {paper.CURVE_NOTE}; published "
            f"epoch e drawn at e + 1 epochs completed. {data_note(dataset)}", ha="left", va="top", fontsize=7,
            color="0.3", wrap=True,
        )
    return figure


def _draw_curves(axes: Any, runs: dict[str, Any], summaries: dict[tuple[str, str], RunSummary], dataset: str,
                 style: str) -> list[float]:
    """Valid (and, for the main models, test) perplexity per epoch; returns the plotted values."""
    plotted: list[float] = []
    for model in sorted(runs, key=model_sort_key):
        points = [(x, row) for x, row in runs[model].axis if row.get("kind", "epoch") == "epoch"]
        color = model_color(model)
        main = style == "curves" or model == "lightrnn"
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
                    linewidth=1.5, label=_test_label(model, summaries.get((dataset, model))), zorder=3,
                )
                plotted += ys
    return plotted


def _draw_reallocations(axes: Any, runs: dict[str, Any], style: str) -> tuple[list[float], list[tuple[int, float, str]]]:
    """A dotted line at each round boundary and a star at the valid ppl right after the words moved
    (LightRNN only in the paper style); returns the plotted values and the notes (x, y, text) to place."""
    plotted: list[float] = []
    notes: list[tuple[int, float, str]] = []
    for model in sorted(runs, key=model_sort_key):
        if style == "paper" and model != "lightrnn":
            continue
        previous_valid = None
        count = 0
        for x, row in runs[model].axis:
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
    return plotted, notes


def _draw_best_baseline(axes: Any, summaries: dict[tuple[str, str], RunSummary], dataset: str
                        ) -> tuple[str, float] | None:
    """A dashed line at the exact test perplexity of the dataset's best baseline; returns (model, ppl), or None."""
    baselines = [s for (name, model), s in summaries.items()
                 if name == dataset and model != "lightrnn" and s.test_ppl is not None]
    if not baselines:
        return None
    best = min(baselines, key=lambda summary: summary.test_ppl)  # type: ignore[arg-type,return-value]
    axes.axhline(
        best.test_ppl, color=model_color(best.model), linestyle=(0, (6, 3)), linewidth=1.3,
        label=f"best baseline test ({model_label(best.model)}: {best.test_ppl:.1f}, {format_count(best.params)} params)",
        zorder=2,
    )
    return best.model, float(best.test_ppl)  # type: ignore[arg-type]


def _style_axes(axes: Any, plotted: list[float], baseline: tuple[str, float] | None, title: str) -> None:
    """Log y axis when the values span more than 4x, integer epochs, labels, title, grid, and the
    best baseline's value written at the right end of its line."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # Early epochs of small runs can sit orders of magnitude above the end: a log axis keeps
    # the part that matters readable.
    if plotted and max(plotted) / max(min(plotted), 1e-9) > 4:
        axes.set_yscale("log")
        # Plain numbers (200, 300, 500) rather than 2x10^2 on the log axis.
        plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "1235" else "")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
        _nice_log_floor(axes)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Perplexity")
    # Title on the left, the provenance line between it and the axes.
    axes.set_title(title, loc="left", pad=14)
    axes.grid(True, which="major", color="0.9")
    axes.spines[["top", "right"]].set_visible(False)
    if baseline is not None:
        # Named on the line itself too, at its right end: the legend is far below.
        axes.annotate(
            f"{baseline[1]:.1f}", xy=(1.0, baseline[1]), xycoords=("axes fraction", "data"), xytext=(2, 0),
            textcoords="offset points", ha="left", va="center", fontsize=7, color=model_color(baseline[0]),
        )


def _count_ticks(axis: Any, values: list[float]) -> None:
    """Ticks of a log axis of counts labelled 10K, 20K, 50K, 1M: 1-2-5 per decade when the data span
    about one decade, powers of ten otherwise (the default labelled every minor tick of a narrow
    range, 2x10^3 3x10^3 ..., and the labels ran into each other)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not values:
        return
    span = math.log10(max(values) / min(values))
    subs = (1.0, 2.0, 5.0) if span <= 1.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda value, _: format_count(value)))
    axis.set_minor_formatter(NullFormatter())


def _nice_log_floor(axes: Any) -> None:
    """Lower a log y axis to the next 1, 2, 3 or 5 x 10^k below its data, so the lowest line
    (often the best baseline) sits above a labelled tick."""
    low, high = axes.get_ylim()
    exponent = math.floor(math.log10(low))
    nice = max(m * 10**exponent for m in (1, 2, 3, 5) if m * 10**exponent <= low)
    axes.set_ylim(nice, high)


# Where a reallocation's note may go, relative to its point (points), nearest first: the first
# that collides with no drawn text and stays inside the axes wins.
_NOTE_BOX = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
_NOTE_OFFSETS = tuple(
    sorted(((dx, dy) for dx in (14, 50, -90, -130) for dy in (18, -34, 46, -62, -90, -120)),
           key=lambda offset: abs(offset[0]) + abs(offset[1]))
)


def _overlap_area(box: Any, other: Any) -> float:
    width = min(box.x1, other.x1) - max(box.x0, other.x0)
    height = min(box.y1, other.y1) - max(box.y0, other.y0)
    return max(width, 0.0) * max(height, 0.0)


def _place_annotations(figure: Any, axes: Any, notes: list[tuple[int, float, str]]) -> None:
    """Annotate each reallocation where its text overlaps no other text and stays inside the axes
    (two reallocations a few epochs apart used to print on top of each other); where no place is
    free, the place that covers the least text and sticks out least."""
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    frame = axes.get_window_extent(renderer)
    taken = [box for _, box in text_boxes(figure)]
    for x, y, text in notes:
        best, best_cost = _NOTE_OFFSETS[0], math.inf
        for offset in _NOTE_OFFSETS:
            note = axes.annotate(text, xy=(x, y), xytext=offset, textcoords="offset points", fontsize=8)
            note.update_positions(renderer)  # where xytext puts the text (done at draw time otherwise)
            box = Text.get_window_extent(note, renderer)
            note.remove()
            outside = box.width * box.height - _overlap_area(box, frame)
            cost = outside + sum(_overlap_area(box, other) for other in taken)
            if cost < best_cost:
                best, best_cost = offset, cost
            if cost == 0:
                break
        note = axes.annotate(
            text, xy=(x, y), xytext=best, textcoords="offset points", fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "0.3"}, bbox=_NOTE_BOX,
        )
        note.update_positions(renderer)
        taken.append(Text.get_window_extent(note, renderer))


def size_speed_chart(results: Results, stem: Path | str, date: str) -> list[Path]:
    """Two bar panels per (dataset, model): parameters (log scale) and training tokens/s; writes
    STEM.{png,pdf} and returns the paths."""
    plt = _pyplot()
    figure = size_speed_figure(results, date)
    try:
        return save_figure(figure, stem)
    finally:
        plt.close(figure)


def size_speed_figure(results: Results, date: str) -> Any:
    """The matplotlib Figure of `size_speed_chart` (the caller closes it)."""
    summaries = results.summaries
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
    _count_ticks(size_axes.xaxis, [p for p in params if p > 0])
    size_axes.set_xlabel("Parameters (log scale)")
    speed_axes.barh(positions, speeds, color=colors)
    speed_axes.set_xlabel("Training tokens/s (median over epochs)")
    size_axes.set_yticks(positions, [f"{dataset_label(d)} · {model_label(m)}" for d, m in keys], fontsize=7)
    for axes in (size_axes, speed_axes):
        axes.grid(True, axis="x", color="0.9")
        axes.spines[["top", "right"]].set_visible(False)
        axes.set_axisbelow(True)
    figure.suptitle("Model size and training speed")
    figure.text(0.99, 0.005, _provenance_line(results.rows, date), ha="right", fontsize=6, color="0.5")
    figure.tight_layout()
    return figure
