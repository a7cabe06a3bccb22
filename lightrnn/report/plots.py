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
    "valid": "published LightRNN valid (note below)",
    "test": "published LightRNN test",
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


SERIES_COLORS = (*MODEL_COLORS.values(), *_FALLBACK_COLORS[:3], "#555555")
SERIES_DASHES = ("-", "--", "-.", ":")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def series_styles(count: int, groups: list[str] | None = None) -> list[dict[str, Any]]:
    """`count` distinct line styles (colour x line style x marker), for figures with more series
    than a colour cycle has colours: no two series look alike, whatever `count` is. With `groups`
    (one name per series), the colour says the group and marker x dash the series within it."""
    if groups is None:
        return [
            {
                "color": SERIES_COLORS[i % len(SERIES_COLORS)],
                "linestyle": SERIES_DASHES[(i // len(SERIES_COLORS)) % len(SERIES_DASHES)],
                "marker": SERIES_MARKERS[i % len(SERIES_MARKERS)],
            }
            for i in range(count)
        ]
    order = list(dict.fromkeys(groups))
    seen: dict[str, int] = {}
    styles = []
    for group in groups:
        k = seen[group] = seen.get(group, -1) + 1
        group_index = order.index(group)
        styles.append({
            "color": SERIES_COLORS[group_index % len(SERIES_COLORS)],
            "linestyle": SERIES_DASHES[(k + group_index // len(SERIES_COLORS)) % len(SERIES_DASHES)],
            "marker": SERIES_MARKERS[k % len(SERIES_MARKERS)],
        })
    return styles


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


SPIKE_LABEL = "word reallocation: valid 1 epoch later (the paper's spike)"


def _draw_reallocations(axes: Any, runs: dict[str, Any], style: str) -> tuple[list[float], list[tuple[int, float, str]]]:
    """A dotted line at each round boundary and an open star at the valid ppl after one epoch on the
    new table, where the paper measures its spike (219 -> 246): the official code evaluates only after
    an epoch. The frozen model's ppl right after the words moved is in the reallocation table, not
    here. LightRNN only in the paper style; returns the plotted values and the notes (x, y, text)."""
    plotted: list[float] = []
    notes: list[tuple[int, float, str]] = []
    for model in sorted(runs, key=model_sort_key):
        if style == "paper" and model != "lightrnn":
            continue
        axis = runs[model].axis
        previous_valid = None
        count = 0
        for index, (x, row) in enumerate(axis):
            if row.get("kind", "epoch") == "epoch":
                previous_valid = row.get("valid_ppl", previous_valid)
                continue
            if row.get("kind") != "realloc":
                continue
            count += 1
            axes.axvline(x, color="0.6", linestyle=":", linewidth=1, zorder=1)
            later = next(((later_x, later_row) for later_x, later_row in axis[index + 1:]
                          if later_row.get("kind", "epoch") == "epoch"), None)
            if later is None or later[1].get("valid_ppl") is None:
                continue
            spike_x, spike = later[0], float(later[1]["valid_ppl"])
            # Open: the epoch's own point stays visible inside it.
            axes.plot(
                [spike_x], [spike], marker="*", markersize=15, markerfacecolor="none", markeredgewidth=1.3,
                markeredgecolor=model_color(model), linestyle="none", zorder=5,
                label=SPIKE_LABEL if count == 1 else None,
            )
            plotted.append(spike)
            if style == "paper":
                change = f"\n{previous_valid:.1f} → {spike:.1f} 1 epoch later" if previous_valid is not None else ""
                notes.append((spike_x, spike, f"word reallocation {count}{change}"))
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
    from matplotlib.ticker import MaxNLocator

    # Early epochs of small runs can sit orders of magnitude above the end: a log axis keeps
    # the part that matters readable.
    if plotted and max(plotted) / max(min(plotted), 1e-9) > 4:
        axes.set_yscale("log")
        set_log_ticks(axes, plotted)
    elif plotted:
        _set_linear_ticks(axes, plotted)
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
    """Ticks of a log axis of counts labelled 10K, 20K, 50K, 1M that cover the data (`log_ticks`: as
    dense as fits, powers of ten for a wide span; the default labelled every minor tick of a narrow
    range, 2x10^3 3x10^3 ..., and the labels ran into each other), the axis from first to last."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    if not values:
        return
    ticks = log_ticks(min(values), max(values), most=7)  # the first below the data, the last above
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _: format_count(value)))
    axis.set_minor_formatter(NullFormatter())
    # A little room beyond the first and last label: a dot on an edge would be cut in half.
    (axis.axes.set_xlim if axis is axis.axes.xaxis else axis.axes.set_ylim)(ticks[0] / 1.1, ticks[-1] * 1.1)


NICE_MANTISSAS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)


def log_ticks(low: float, high: float, most: int = 9) -> list[float]:
    """Labelled ticks of a log axis that cover [low, high]: the first is at or below `low`, the last
    at or above `high` (the data never run past the highest label), 1-1.5-2-3-5-7 x 10^k, thinned to
    1-2-5 and then powers of ten when there would be more than `most`."""
    for mantissas in (NICE_MANTISSAS, (1.0, 2.0, 5.0), (1.0,)):
        candidates = [m * 10.0**k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
                      for m in mantissas]
        bottom = max(c for c in candidates if c <= low * (1 + 1e-9))
        top = min(c for c in candidates if c >= high * (1 - 1e-9))
        ticks = [c for c in candidates if bottom <= c <= top]
        if len(ticks) <= most:
            break
    return ticks


def _set_linear_ticks(axes: Any, values: list[float]) -> None:
    """A linear y axis from a labelled tick at or below the data to one at or above it."""
    from matplotlib.ticker import MaxNLocator

    locator = MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10])
    ticks = list(locator.tick_values(min(values), max(values)))
    axes.yaxis.set_major_locator(locator)
    axes.set_ylim(max(t for t in ticks if t <= min(values)), min(t for t in ticks if t >= max(values)))


def set_log_ticks(axes: Any, values: list[float]) -> None:
    """A log y axis whose labelled ticks cover the data (`log_ticks`), plain numbers (200, 300, 500),
    the axis running from the lowest label to the highest."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = log_ticks(min(values), max(values))
    axes.yaxis.set_major_locator(FixedLocator(ticks))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.set_ylim(ticks[0], ticks[-1])


# Where a reallocation's note may go, relative to its point (points), nearest first: the first
# that collides with no drawn text and stays inside the axes wins.
_NOTE_BOX = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
_NOTE_OFFSETS = tuple(
    sorted(((dx, dy) for dx in (14, 50, 100, 160, -90, -130) for dy in (18, -34, 46, -62, 80, -90, -120)),
           key=lambda offset: abs(offset[0]) + abs(offset[1]))
)


def _overlap_area(box: Any, other: Any) -> float:
    width = min(box.x1, other.x1) - max(box.x0, other.x0)
    height = min(box.y1, other.y1) - max(box.y0, other.y0)
    return max(width, 0.0) * max(height, 0.0)


def _segment_inside(start: tuple[float, float], end: tuple[float, float], box: Any, samples: int = 24) -> float:
    """The share of the segment start -> end (display coordinates) that lies inside `box`."""
    inside = 0
    for step in range(1, samples):
        t = step / samples
        px, py = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
        inside += box.x0 <= px <= box.x1 and box.y0 <= py <= box.y1
    return inside / (samples - 1)


def arrow_crossings(figure: Any) -> list[tuple[str, str]]:
    """(arrow's annotation, text) pairs of a drawn figure where an annotation's arrow, drawn from its
    text box to its point, runs through another text or legend (measured on the drawn extents)."""
    from matplotlib.text import Annotation, Text

    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    boxes = text_boxes(figure)
    found = []
    for note in figure.findobj(Annotation):
        if note.arrow_patch is None or not note.get_visible():
            continue
        own = Text.get_window_extent(note, renderer)
        start = ((own.x0 + own.x1) / 2, (own.y0 + own.y1) / 2)
        end = tuple(note.axes.transData.transform(note.xy)) if note.axes else start
        for label, box in boxes:
            if label != note.get_text() and _segment_inside(start, end, box) > 0:
                found.append((note.get_text(), label))
    return found


def _place_annotations(figure: Any, axes: Any, notes: list[tuple[int, float, str]], beam: int = 64) -> None:
    """Annotate each reallocation where its text overlaps no other text, its arrow runs through no
    text and no other note's arrow runs through it, inside the axes (two reallocations a few epochs
    apart used to print on top of each other, or one's arrow across the other's label).

    The notes are placed together, not one after the other: a first note placed greedily can sit
    right over the second one's point, where no place for the second is free any more. A beam
    search over every note's candidate offsets (`_NOTE_OFFSETS`) keeps the `beam` cheapest partial
    placements; the cost is the area sticking out of the axes, the area over other text, and each
    box's area times the share of arrows that cross it. Where no placement is free, the cheapest.
    """
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    frame = axes.get_window_extent(renderer)
    fixed = [box for _, box in text_boxes(figure)]
    candidates = []  # per note: (offset, box, arrow start, point, cost against the fixed text)
    for x, y, text in notes:
        point = tuple(axes.transData.transform((x, y)))
        options = []
        for offset in _NOTE_OFFSETS:
            note = axes.annotate(text, xy=(x, y), xytext=offset, textcoords="offset points", fontsize=8)
            note.update_positions(renderer)  # where xytext puts the text (done at draw time otherwise)
            box = Text.get_window_extent(note, renderer)
            note.remove()
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            area = box.width * box.height
            cost = (area - _overlap_area(box, frame) + sum(_overlap_area(box, other) for other in fixed)
                    + area * sum(_segment_inside(centre, point, other) for other in fixed))
            options.append((offset, box, centre, point, cost))
        candidates.append(options)

    def joint_cost(option: tuple, placed: list[tuple]) -> float:
        _, box, centre, point, _ = option
        area = box.width * box.height
        cost = 0.0
        for _, other, other_centre, other_point, _ in placed:
            cost += _overlap_area(box, other)
            cost += area * _segment_inside(centre, point, other)  # this arrow through an earlier note
            cost += area * _segment_inside(other_centre, other_point, box)  # an earlier arrow through this note
        return cost

    partial: list[tuple[float, list[tuple]]] = [(0.0, [])]
    for options in candidates:
        grown = [(cost + option[4] + joint_cost(option, placed), placed + [option])
                 for cost, placed in partial for option in options]
        grown.sort(key=lambda item: item[0])  # stable: nearer offsets first among equal costs
        partial = grown[:beam]
    _, placement = partial[0]
    for (x, y, text), (offset, *_rest) in zip(notes, placement):
        axes.annotate(
            text, xy=(x, y), xytext=offset, textcoords="offset points", fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "0.3"}, bbox=_NOTE_BOX,
        )


TINY_PARAMS = 1_000_000  # below this a run's models are toys (the smoke run's): their tokens/s are noise
TINY_SPEED_NOTE = ("Tiny models trained for a few steps: these tokens/s are start-up time and the machine's "
                   "other load, not measurements of speed (make bench measures it: docs/performance.md).")


def size_speed_chart(results: Results, stem: Path | str, date: str) -> list[Path]:
    """Per (dataset, model): parameters (dots on a log axis: a bar's length means nothing there) and
    training tokens/s (bars); writes STEM.{png,pdf} and returns the paths."""
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
    # Dots, not bars: on a log axis a bar's length depends on where the axis starts.
    for position, value, (_, model) in zip(positions, params, keys):
        if value > 0:
            size_axes.plot([value], [position], marker="o", markersize=7, color=model_color(model), linestyle="none")
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
    tiny = max(params) < TINY_PARAMS
    figure.text(0.99, 0.005, _provenance_line(results.rows, date), ha="right", fontsize=6, color="0.5")
    if tiny:
        speed_axes.set_title("not a measurement: see the note", fontsize=8, color="0.3", loc="left")
        figure.text(0.01, 0.035, TINY_SPEED_NOTE, ha="left", fontsize=7, color="0.3", wrap=True)
    figure.tight_layout(rect=(0, 0.06 if tiny else 0.02, 1, 1))
    return figure
