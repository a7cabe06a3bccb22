"""The replication verdict and the published numbers beside ours: sizes from the closed form, speed
from a generated `lightrnn bench` folder, perplexity and reallocation from the generated run of
test_report, and the published ACLW-French curve on the figure (checked through matplotlib's
artists, not pixels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightrnn import cli, registry
from lightrnn.report import paper, plots
from lightrnn.report.results import Results, find_results, load_evals, load_metrics
from lightrnn.report.render import to_markdown
from lightrnn.report.verdict import verdict_rows, verdict_table
from tests._report_fixtures import DATE, make_rows, write_bench, write_results

# Training tokens/s per (V, model) of the generated bench: LightRNN 3x the full softmax at the
# largest V, slower than the adaptive softmax at the smallest.
@pytest.fixture
def loaded(tmp_path: Path):
    metrics, evals = find_results(write_results(tmp_path / "run"))
    return load_metrics(metrics), load_evals(evals)


def by_claim(rows, evals, bench=None):
    return {verdict.claim.key: verdict for verdict in verdict_rows(Results(rows, evals), bench, "fixture")}


def test_size_claims_come_from_the_closed_form_and_match_the_paper():
    verdicts = by_claim([], [])
    sizes = verdicts["sizes"]
    billion = registry.param_count("lightrnn", 793_471, 1500, 1500, 2)
    french = registry.param_count("lightrnn", 136_912, 1000, 1000, 2)
    assert sizes.numbers == {"params_One Billion Word": billion, "params_ACLW-French": french}
    # The paper writes 41M and 17M: ours round to them (within one unit of the last digit).
    assert abs(billion - 41e6) < 1e6 and abs(french - 17e6) < 1e6
    assert f"{billion / 1e6:.2f}M" in sizes.measured and sizes.word == "confirmed"
    ratio = verdicts["size-ratio"]
    full = registry.param_count("full_softmax", 793_471, 1500, 1500, 2) / billion
    assert ratio.numbers["full_over_lightrnn_1500"] == pytest.approx(full)
    assert 40 <= full <= 100 and ratio.word == "confirmed"


def test_speed_is_not_run_without_a_bench_and_partly_on_cpu_with_one(tmp_path: Path):
    assert by_claim([], [])["speed"].word == "not run here"
    speed = by_claim([], [], write_bench(tmp_path / "bench"))["speed"]
    assert speed.numbers["speedup_50000_full_softmax"] == pytest.approx(3.0)
    assert speed.numbers["speedup_1000_adaptive_softmax"] == pytest.approx(0.9)
    # 2x or more at the largest V against both, but on a CPU at a small size: partly, and it says why.
    assert speed.verdict.startswith("partly") and "CPU" in speed.verdict and "GPU" in speed.verdict
    assert "below 2x at V = 1,000" in speed.verdict
    assert "Test CPU" in speed.source and "device cpu" in speed.source


def test_perplexity_and_reallocation_rows_state_the_run_and_its_scale(loaded):
    rows, evals = loaded
    verdicts = by_claim(rows, evals)
    perplexity = verdicts["perplexity"]
    # Fixture: LightRNN 176.0 vs the best baseline 185.1 on French, 66.2 vs 85.0 on One Billion Word.
    assert perplexity.numbers["ratio_aclw-fr"] == pytest.approx(176.0 / 185.1)
    assert perplexity.numbers["ratio_billionw"] == pytest.approx(66.2 / 85.0)
    assert "run fixture" in perplexity.source and "cuda:0" in perplexity.source
    assert perplexity.word == "confirmed"  # fixture models are the paper's size
    realloc = verdicts["reallocation"]
    assert realloc.numbers == {"runs_falling": 4, "runs": 4}
    assert realloc.verdict.startswith("partly") and "control" in realloc.verdict
    # Nothing trained: both say so instead of leaving a blank.
    empty = by_claim([], [])
    assert empty["perplexity"].word == "not run here" and empty["reallocation"].word == "not run here"


def test_a_small_run_is_called_small(loaded):
    rows, _ = loaded
    tiny = [{**row, "params": 4000} for row in rows]
    perplexity = by_claim(tiny, [])["perplexity"]
    assert "small scale" in perplexity.verdict and "not the paper's perplexity" in perplexity.source
    assert perplexity.word in ("partly", "not confirmed")


def test_verdict_table_has_one_row_per_claim_in_the_paper_order(loaded, tmp_path: Path):
    table = verdict_table(Results(*loaded), DATE, write_bench(tmp_path / "bench"), run="fixture")
    assert table.header[0] == "Claim" and table.header[-1] == "Verdict"
    assert [line[0] for line in table.cells] == [claim.claim for claim in paper.CLAIMS]
    assert [record["claim"] for record in table.records] == [claim.key for claim in paper.CLAIMS]
    assert all(cell.strip() for line in table.cells for cell in line)
    assert "| sizes 41M (One Billion Word) and 17M (ACLW-French) |" in to_markdown(table)


def test_the_front_page_names_the_evidence_of_each_verdict_and_renders_code(loaded, tmp_path: Path):
    """The report's front page: claim, verdict and the evidence it was read from, and a note on why the
    README's answer (committed study and benchmark) can differ; Markdown `code` shown as <code>."""
    from lightrnn.report.render import to_html
    from lightrnn.report.verdict import verdict_summary

    table = verdict_table(Results(*loaded), DATE, write_bench(tmp_path / "bench"), run="fixture")
    summary = verdict_summary(table)
    assert summary.header == ["Claim", "Verdict", "Evidence (run, device, scale)"]
    assert [line[2] for line in summary.cells] == [line[3] for line in table.cells]
    assert "README's answer" in summary.note and "results/paper/" in summary.note
    page = to_html(summary)
    assert "<code>lightrnn.registry.param_count</code>" in page and "`" not in page


def test_report_writes_the_verdict_first(tmp_path: Path, capsys):
    results = write_results(tmp_path / "run")
    assert cli.main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--date", DATE]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(tmp_path / "out" / "tables" / "verdict.md")
    assert "not run here" in (tmp_path / "out" / "tables" / "verdict.md").read_text()  # no bench folder
    assert cli.main(["report", "--results", str(results), "--out", str(tmp_path / "o2"),
                     "--bench-dir", str(tmp_path / "none")]) == 2
    assert "--bench-dir" in capsys.readouterr().err


def test_the_figure_has_the_published_curve_and_ours(loaded):
    rows, evals = loaded
    figure = plots.perplexity_figure(Results(rows, evals), "aclw-fr", DATE)
    try:
        axes = figure.axes[0]
        lines = {line.get_label(): line for line in axes.get_lines()}
        curve = paper.ACLW_FR_CURVE
        published_valid = lines[plots.PUBLISHED_LABELS["valid"]]
        published_test = lines[plots.PUBLISHED_LABELS["test"]]
        assert list(published_valid.get_xdata()) == [epoch + 1 for epoch in curve.epochs]
        assert list(published_valid.get_ydata()) == list(curve.valid)
        assert list(published_test.get_ydata()) == list(curve.test)
        assert published_valid.get_linestyle() == "None"  # markers only: points read by eye
        ours = lines["LightRNN valid"]
        expected = [row["valid_ppl"] for row in make_rows("aclw-fr", "lightrnn") if row["kind"] == "epoch"]
        assert list(ours.get_ydata()) == expected
        # The published best baseline and both sets of reallocation epochs.
        baseline = lines[plots.PUBLISHED_LABELS["baseline"].format(value=190)]
        assert list(baseline.get_ydata()) == [190, 190]
        vertical = [line.get_xdata()[0] for line in axes.get_lines()
                    if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
        assert {10, 20} <= set(vertical)  # the published reallocations
        assert {3, 6} <= set(vertical)  # ours: after rounds of 3 epochs
        notes = [text.get_text() for text in [*axes.texts, *figure.texts]]
        assert any("read from the published figure" in note for note in notes)
        assert any("small Botha & Blunsom set" in note for note in notes)
        assert plots.text_overlaps(figure) == []
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_only_an_aclw_french_figure_gets_the_published_curve(loaded):
    rows, evals = loaded
    figure = plots.perplexity_figure(Results(rows, evals), "aclw-es", DATE)
    try:
        labels = [line.get_label() for line in figure.axes[0].get_lines()]
        assert plots.PUBLISHED_LABELS["valid"] not in labels and "LightRNN valid" in labels
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_every_published_number_names_a_known_source():
    values = [result.ppl for results in paper.ACLW.values() for result in results.values()]
    values += [result.params for results in paper.ACLW.values() for result in results.values() if result.params]
    values += [result.ppl for result in paper.BILLIONW.values()]
    values += [row.tokens_per_s_1gpu for row in paper.SPEED]
    assert all(value.source in paper.SOURCES for value in values)
    assert [value.flag for value in (paper.ACLW["fr"]["kn5"].ppl, paper.BILLIONW["kn5"].ppl)] == ["recalled"] * 2
    assert paper.ACLW_FR_CURVE.baseline.approximate
    assert len(paper.ACLW_FR_CURVE.valid) == len(paper.ACLW_FR_CURVE.test) == len(paper.ACLW_FR_CURVE.epochs)
    with pytest.raises(ValueError, match="unknown source"):
        paper.Published(1.0, "a blog")


def test_speed_table_shows_ours_only_for_a_run_of_the_published_size(loaded):
    from lightrnn.report.tables import billion_word_speed_table

    rows, evals = loaded
    table = billion_word_speed_table(Results(rows, evals), DATE)
    column = {title: index for index, title in enumerate(table.header)}
    assert [line[column["Our tokens/s"]] for line in table.cells] == ["not run"] * len(paper.SPEED)
    assert table.cells[-1][column["Paper tokens/s"]] == "7,250" and table.cells[-1][column["Paper params"]] == "41M"
    # A LightRNN run with exactly the closed-form count of 1500/1500 at V = 793,471 fills both 1500 rows.
    count = registry.param_count("lightrnn", 793_471, 1500, 1500, 2)
    resized = [{**row, "params": count} if row["dataset"] == "billionw" else row for row in rows]
    resized_evals = [{**e, "params": count} if e["dataset"] == "billionw" else e for e in evals]
    table = billion_word_speed_table(Results(resized, resized_evals), DATE)
    filled = [line for line in table.cells if line[column["Our tokens/s"]] != "not run"]
    assert [line[0] for line in filled] == ["1500/1500", "1500/1500"]
    assert filled[0][column["Closed-form params"]] == "41.4M" and "H200" in filled[0][column["Our device"]]


def test_the_figure_dataset_is_the_large_french_set_when_the_run_has_it():
    from lightrnn.report import layout

    both = layout.planned_outputs(["aclw-fr", "aclw-large-fr", "billionw"], ["lightrnn"], "auto")
    assert "plots/aclw-large-fr-vs-paper.png" in both and "plots/aclw-fr-vs-paper.png" not in both
    small = layout.planned_outputs(["aclw-fr"], ["lightrnn"], "auto")
    assert "plots/aclw-fr-vs-paper.png" in small
    assert not any("perplexity.png" in path for path in layout.planned_outputs(["ptb"], ["lightrnn"], "auto"))
    # The verdict opens every report; the speed table comes with One Billion Word.
    assert both[0] == "tables/verdict.md" and "tables/billionw-speed.csv" in both
    assert "tables/billionw-speed.csv" not in small
