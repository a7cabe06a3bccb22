"""Tables and plots from metrics rows: golden files for the renderers, plots, the CLI.

The fixture is a generated set of metrics.jsonl rows and eval.json records with the schema
`lightrnn.training.train` writes; the golden outputs live in tests/golden/ (readable text). After an
intended change of the renderers, regenerate them with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/report/test_report.py` and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from lightrnn import cli
from lightrnn.report import layout, render, tables
from lightrnn.report.build import write_report
from lightrnn.report.results import Results, find_results, load_metrics, summarize
from tests._report_fixtures import DATE, ROUNDS, RUNS, make_eval, make_rows, write_results

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "run")


@pytest.fixture
def loaded(results: Path):
    metrics_paths, eval_paths = find_results(results)
    from lightrnn.report.results import load_evals

    return load_metrics(metrics_paths), load_evals(eval_paths)


@pytest.mark.parametrize("name", list(tables.BUILDERS))
@pytest.mark.parametrize("fmt", list(render.RENDERERS))
def test_renderers_match_the_golden_files(loaded, name: str, fmt: str):
    rows, evals = loaded
    text = render.RENDERERS[fmt](tables.BUILDERS[name](Results(rows, evals), DATE))
    golden = GOLDEN / f"{name}.{fmt}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{golden} differs; see the module docstring to update"


def test_aclw_table_puts_the_paper_beside_ours_with_not_run_cells(loaded):
    table = tables.aclw_table(Results(*loaded), DATE)
    assert table.header[:5] == ["Language", "Model", "Our data", "Paper ppl", "Our ppl"]
    column = {title: index for index, title in enumerate(table.header)}
    lines = {(line[0], line[1]): line for line in table.cells}
    french = lines[("French", "LightRNN")]
    # Fixture: 176.0 with 17,512,944 params; the paper: 176 with 17M.
    assert french[column["Paper ppl"]] == "176" and french[column["Our ppl"]] == "176.0"
    assert french[column["Δ ppl"]] == "+0.0" and french[column["Δ ppl %"]] == "+0.0%"
    assert french[column["Paper params"]] == "17M" and french[column["Our params"]] == "17.5M"
    assert french[column["Δ params %"]] == f"{100 * (17_512_944 - 17e6) / 17e6:+.1f}%"
    # A paper model this suite does not have, and a language the fixture did not run: "not run".
    hsm = lines[("French", "HSM (word LSTM)")]
    assert hsm[column["Paper ppl"]] == "202" and hsm[column["Our ppl"]] == "not run"
    german = lines[("German", "LightRNN")]
    assert german[column["Paper ppl"]] == "281" and german[column["Our ppl"]] == "not run"
    assert lines[("German", "KN-5")][column["Paper ppl"]] == "463 (recalled)"
    # Our baseline the paper lacks: ours only.
    full = lines[("French", "Full softmax")]
    assert full[column["Paper ppl"]] == "not in paper" and full[column["Our ppl"]] == "190.5"
    # No blank cell anywhere.
    assert all(cell.strip() for line in table.cells for cell in line)
    assert (table.cells.index(french), column["Our ppl"]) in table.bold


def test_billion_word_table_compares_lightrnn_with_the_paper(loaded):
    table = tables.billion_word_table(Results(*loaded), DATE)
    column = {title: index for index, title in enumerate(table.header)}
    light = next(line for line in table.cells if line[1] == "LightRNN")
    assert light[column["Paper ppl"]] == "66" and light[column["Our ppl"]] == "66.2"
    assert light[column["Δ ppl"]] == "+0.2" and light[column["Δ ppl %"]] == f"{100 * 0.2 / 66:+.1f}%"
    hsm = next(line for line in table.cells if line[1] == "HSM (word LSTM)")
    assert hsm[column["Paper params"]] == "1.6G" and hsm[column["Our params"]] == "not run"
    record = next(r for r in table.records if r["paper_model"] == "lightrnn")
    assert record["paper_ppl_source"] == "paper" and record["test_ppl"] == pytest.approx(66.2)


def test_test_perplexity_prefers_eval_json_then_the_best_valid_row(loaded):
    summaries = summarize(*loaded)
    assert summaries[("aclw-fr", "lightrnn")].ppl_source == "eval.json"
    fallback = summaries[("ptb", "lightrnn")]
    assert fallback.ppl_source == "metrics.jsonl"
    assert fallback.test_ppl == pytest.approx(make_rows("ptb", "lightrnn")[-1]["test_ppl"])


def test_every_csv_row_carries_provenance(loaded):
    for name, builder in tables.BUILDERS.items():
        records = list(csv.DictReader(io.StringIO(render.to_csv(builder(Results(*loaded), DATE)))))
        assert records, name
        for record in records:
            assert record["date"] == DATE, (name, record)
            measured = record.get("test_ppl") or record.get("train_tokens_per_s")
            if measured or name not in ("aclw", "billionw", "billionw-speed"):
                assert record["git_rev"] == "abc1234" and record["device"], (name, record)
            else:  # a published row that this run lacks: its source instead
                source = record.get("paper_ppl_source") or record.get("paper_source")
                assert source in ("paper", "recalled", "cntk-readme"), (name, record)


def test_reallocation_table_has_one_line_per_round_with_the_gap(loaded):
    table = tables.reallocation_table(Results(*loaded), DATE)
    french = [line for line in table.cells if line[0] == "ACLW French"]
    assert [line[1] for line in french] == ["0", "1", "2"]
    assert french[0][7] == f"{100 * (1_234_567 - 1_200_000) / 1_234_567:.2f}%"
    assert french[2][5] == "–"  # no reallocation after the last round


def test_size_speed_ratios_are_to_the_full_softmax(loaded):
    table = tables.size_speed_table(Results(*loaded), DATE)
    record = next(r for r in table.records if r["dataset"] == "billionw" and r["model"] == "lightrnn")
    assert record["params_vs_full_softmax"] == pytest.approx(41_400_000 / 1_600_000_000)
    assert record["train_speed_vs_full_softmax"] > 1


def test_latex_is_booktabs_and_escaped(loaded):
    text = render.to_latex(tables.size_speed_table(Results(*loaded), DATE))
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "10^6" not in text and "10\\textasciicircum{}6" in text


def test_write_report_writes_exactly_the_planned_outputs(results: Path, tmp_path: Path):
    metrics_paths, eval_paths = find_results(results)
    out = tmp_path / "out"
    written = write_report(metrics_paths, eval_paths, out, "aclw-fr", DATE)
    datasets = sorted({dataset for dataset, _ in RUNS})
    models = sorted({model for _, model in RUNS})
    assert sorted(written) == sorted(out / p for p in layout.planned_outputs(datasets, models, "aclw-fr"))
    for path in written:
        assert path.stat().st_size > 0, path
    png = out / "plots" / "aclw-fr-vs-paper.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "aclw-fr-vs-paper.pdf").read_bytes()[:5] == b"%PDF-"


def test_planned_outputs_follow_the_run_matrix():
    outputs = layout.planned_outputs(["ptb"], ["full_softmax"], "aclw-fr")
    assert "tables/benchmarks.md" in outputs and "tables/size-speed.csv" in outputs
    assert not any("aclw" in path or "reallocation" in path for path in outputs)
    assert "plots/curves-ptb.pdf" in outputs
    assert layout.dataset_family("aclw-large-fr") == "aclw"
    assert layout.dataset_label("aclw-large-fr") == "ACLW French (large)"
    with pytest.raises(ValueError, match="at least one dataset"):
        layout.planned_outputs([], ["lightrnn"], None)


def test_cli_report_lists_what_it_wrote(results: Path, tmp_path: Path, capsys):
    assert cli.main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--date", DATE]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "out" / "tables" / "aclw.md") in printed


def test_cli_report_names_a_missing_results_folder(tmp_path: Path, capsys):
    assert cli.main(["report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "--results" in capsys.readouterr().err


def test_a_corrupt_metrics_line_is_named(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"dataset": "ptb", "model": "lightrnn"}\n{not json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        load_metrics([path])


# Subsets of the run matrix a user runs first: one dataset without a hyphen, no LightRNN, LightRNN
# alone, a baseline alone, One Billion Word alone, ACLW without the figure's model.
SUBSETS = [
    (["ptb"], ["lightrnn"]),
    (["ptb"], ["full_softmax"]),
    (["ptb", "aclw-fr"], ["full_softmax"]),
    (["aclw-fr"], ["lightrnn"]),
    (["aclw-es"], ["full_softmax", "lightrnn"]),
    (["billionw"], ["lightrnn"]),
    (["billionw"], ["full_softmax"]),
    (["aclw-fr", "aclw-es", "billionw", "ptb"], ["lightrnn", "full_softmax"]),
]


@pytest.mark.parametrize(("datasets", "models"), SUBSETS, ids=lambda v: "+".join(v))
def test_every_subset_of_the_run_matrix_renders(tmp_path: Path, datasets: list[str], models: list[str]):
    """The report of any datasets x models the schema accepts: exactly the planned files, no crash."""
    root = tmp_path / "run"
    for dataset in datasets:
        for model in models:
            run_dir = root / dataset / model
            run_dir.mkdir(parents=True)
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in make_rows(dataset, model)))
            (run_dir / "eval.json").write_text(json.dumps(make_eval(dataset, model)))
    metrics_paths, eval_paths = find_results(root)
    out = tmp_path / "out"
    written = write_report(metrics_paths, eval_paths, out, "auto", DATE)
    assert sorted(written) == sorted(out / p for p in layout.planned_outputs(datasets, models, "auto"))
    verdict = (out / "tables" / "verdict.csv").read_text()
    assert "not run here" in verdict or "confirmed" in verdict


@pytest.mark.parametrize("rounds", [[3, 3, 2], [2, 2, 2], [1, 1, 1, 1]], ids=lambda r: "-".join(map(str, r)))
def test_figures_print_no_text_on_top_of_other_text(monkeypatch, rounds: list[int]):
    """Every figure, measured with matplotlib's renderer: no two drawn texts (titles, tick labels,
    annotations, legend, footnote) overlap, also when reallocations are one or two epochs apart."""
    from lightrnn.report import plots

    monkeypatch.setitem(ROUNDS, "lightrnn", rounds)
    rows = [row for key in RUNS for row in make_rows(*key)]
    evals = [make_eval(*key) for key in RUNS]
    figures = [plots.perplexity_figure(Results(rows, evals), "aclw-fr", DATE, "paper"),
               plots.perplexity_figure(Results(rows, evals), "ptb", DATE, "curves"),
               plots.size_speed_figure(Results(rows, evals), DATE),
               # One decade of sizes (a smoke run): the log axis must not label every minor tick.
               plots.size_speed_figure(Results([{**row, "params": 2000 + row["params"] % 9000} for row in rows], evals), DATE)]
    import matplotlib.pyplot as plt

    try:
        for figure in figures:
            assert plots.text_overlaps(figure) == [], figure.axes[0].get_title(loc="left")
            assert plots.arrow_crossings(figure) == [], figure.axes[0].get_title(loc="left")
    finally:
        for figure in figures:
            plt.close(figure)


def test_the_arrow_check_sees_an_arrow_through_a_label():
    from lightrnn.report import plots

    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 10)
    axes.text(5, 5, "in the way", ha="center", va="center")
    axes.annotate("note", xy=(9, 9), xytext=(1, 1), arrowprops={"arrowstyle": "->"})
    try:
        assert ("note", "in the way") in plots.arrow_crossings(figure)
    finally:
        plt.close(figure)


def test_the_paper_figure_ticks_cover_the_data_and_stars_mark_one_epoch_after_each_reallocation():
    """The log axis is labelled above the highest point and below the lowest; each reallocation's
    open star sits on the first epoch trained on the new table (the paper's spike), over that point."""
    from lightrnn.report import plots

    import matplotlib.pyplot as plt

    rows = [row for key in RUNS for row in make_rows(*key)]
    figure = plots.perplexity_figure(Results(rows, [make_eval(*key) for key in RUNS]), "aclw-fr", DATE, "paper")
    try:
        axes = figure.axes[0]
        curves = [line for line in axes.get_lines() if len(set(line.get_xdata())) > 1 and len(set(line.get_ydata())) > 1]
        values = [y for line in curves for y in line.get_ydata()]  # not the reference lines (axes fractions)
        low, high = axes.get_ylim()
        ticks = [tick for tick in axes.get_yticks() if low <= tick <= high]
        labels = [label.get_text() for label in axes.get_yticklabels() if label.get_text()]
        assert ticks[0] <= min(values) and ticks[-1] >= max(values) and len(labels) >= 3
        stars = [line for line in axes.get_lines() if line.get_marker() == "*"]
        assert stars and all(line.get_markerfacecolor() == "none" for line in stars)
        ours = [row for row in rows if row["dataset"] == "aclw-fr" and row["model"] == "lightrnn"]
        after = [ours[i + 1] for i, row in enumerate(ours) if row["kind"] == "realloc"]
        valid = {x: y for x, y in zip(*(next(line for line in axes.get_lines()
                                              if line.get_label() == "LightRNN valid").get_data()))}
        assert [line.get_ydata()[0] for line in stars] == [row["valid_ppl"] for row in after]
        assert all(valid[line.get_xdata()[0]] == line.get_ydata()[0] for line in stars)  # on an epoch's point
        assert plots.arrow_crossings(figure) == []
    finally:
        plt.close(figure)


def test_the_size_chart_draws_dots_on_its_log_axis_and_says_tiny_speeds_are_not_measurements():
    from matplotlib.patches import Rectangle

    from lightrnn.report import plots

    import matplotlib.pyplot as plt

    rows = [row for key in RUNS for row in make_rows(*key)]
    evals = [make_eval(*key) for key in RUNS]
    tiny = plots.size_speed_figure(Results([{**row, "params": 2000 + row["params"] % 9000} for row in rows], evals), DATE)
    large = plots.size_speed_figure(Results([{**row, "params": 5_000_000 + row["params"]} for row in rows], evals), DATE)
    try:
        for figure in (tiny, large):
            size_axes = figure.axes[0]
            assert size_axes.get_xscale() == "log"
            assert not [patch for patch in size_axes.patches if isinstance(patch, Rectangle)]  # no bars
            low, high = size_axes.get_xlim()
            ticks = [tick for tick in size_axes.get_xticks() if low <= tick <= high]
            dots = [x for line in size_axes.get_lines() for x in line.get_xdata()]
            assert ticks[0] <= min(dots) and ticks[-1] >= max(dots)
        notes = lambda figure: " ".join(text.get_text() for text in figure.texts)  # noqa: E731
        assert plots.TINY_SPEED_NOTE in notes(tiny) and plots.TINY_SPEED_NOTE not in notes(large)
    finally:
        plt.close(tiny)
        plt.close(large)


def test_the_overlap_check_sees_overlapping_text():
    from lightrnn.report import plots

    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.text(0.5, 0.5, "one label")
    axes.text(0.5, 0.5, "another label")
    try:
        assert ("one label", "another label") in plots.text_overlaps(figure)
    finally:
        plt.close(figure)


def test_series_styles_are_distinct_beyond_the_colour_cycle():
    from lightrnn.report import plots

    styles = plots.series_styles(24)
    assert len({tuple(sorted(style.items())) for style in styles}) == 24


def test_the_paper_figure_draws_the_best_baseline_of_its_own_dataset():
    """The dashed line is aclw-fr's best baseline (adaptive softmax, 185.1), not the lowest test
    perplexity of any dataset in the run (One Billion Word's 85.0)."""
    from lightrnn.report import plots

    import matplotlib.pyplot as plt

    results = Results([row for key in RUNS for row in make_rows(*key)], [make_eval(*key) for key in RUNS])
    figure = plots.perplexity_figure(results, "aclw-fr", DATE, "paper")
    try:
        labels = [line.get_label() for line in figure.axes[0].get_lines()]
        assert any(label.startswith("best baseline test (Adaptive softmax: 185.1") for label in labels), labels
    finally:
        plt.close(figure)
