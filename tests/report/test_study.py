"""The ablation study: its tables and figure from variant folders, the informed initial table,
and the study config planned by the DAG from a clean copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests._workflow_fixtures import job_counts, snakemake

from lightrnn.config import TrainConfig
from lightrnn.core.fileio import write_lines
from lightrnn.method.initial_table import context_table
from lightrnn.registry import build_from_config
from lightrnn.report.study import ablation_figure, ablation_table, load_variants, realloc_table, write_study

REPO = Path(__file__).resolve().parents[2]


def _run(folder: Path, model: str, seed: int, valids: list[float], test: float, reallocs: dict[int, dict] = None):
    """A variant folder: epoch rows with these valid ppls, realloc rows after the given epochs, eval.json."""
    rows = []
    for epoch, valid in enumerate(valids, start=1):
        round_index = (epoch - 1) // 2
        rows.append({"kind": "epoch", "dataset": "ptb", "model": model, "seed": seed, "round": round_index,
                     "epoch": epoch, "valid_ppl": valid, "test_ppl": valid * 1.01, "params": 1000,
                     "git_rev": "abc", "device": "cpu"})
        if reallocs and epoch in reallocs:
            rows.append({"kind": "realloc", "dataset": "ptb", "model": model, "seed": seed, "round": round_index + 1,
                         "epoch": epoch, "params": 1000, "git_rev": "abc", "device": "cpu", **reallocs[epoch]})
    folder.mkdir(parents=True)
    write_lines(folder / "metrics.jsonl", [json.dumps(row) for row in rows])
    (folder / "eval.json").write_text(json.dumps({"ppl": test, "dataset": "ptb", "model": model}))
    return folder


@pytest.fixture
def study(tmp_path: Path):
    realloc = {2: {"valid_ppl": 900.0, "realloc_moved": 0.99, "realloc_nll_before": 5.0, "realloc_nll_after": 7.0,
                   "realloc_nll_predicted": 4.0, "realloc_tokens": 1000, "realloc_method": "refine"},
               4: {"valid_ppl": 300.0, "realloc_moved": 0.5, "realloc_nll_before": 4.5, "realloc_nll_after": 5.0,
                   "realloc_nll_predicted": 4.2, "realloc_tokens": 1000, "realloc_method": "refine"}}
    folders = [
        _run(tmp_path / "full-a", "full_softmax", 0, [200, 150, 120, 110, 105, 100], 100.0),
        _run(tmp_path / "full-a-s1", "full_softmax", 1, [200, 150, 120, 110, 105, 102], 104.0),
        _run(tmp_path / "full-b", "full_softmax", 0, [210, 160, 130, 120, 115, 112], 112.0),
        _run(tmp_path / "lrnn-a", "lightrnn", 0, [250, 180, 140, 125, 118, 108], 110.0, realloc),
        _run(tmp_path / "lrnn-off", "lightrnn", 0, [250, 180, 160, 150, 145, 140], 139.0),
    ]
    specs = {
        "full-a": {"model": "full_softmax", "group": "recipe", "label": "Adam"},
        "full-a-s1": {"model": "full_softmax", "group": "recipe", "label": "Adam"},
        "full-b": {"model": "full_softmax", "group": "recipe", "label": "SGD"},
        "lrnn-a": {"model": "lightrnn", "group": "recipe", "label": "Adam"},
        "lrnn-off": {"model": "lightrnn", "group": "reallocation", "label": "no reallocation"},
    }
    return folders, specs


def test_ablation_table_compares_best_recipes_and_aggregates_seeds(study):
    folders, specs = study
    table = ablation_table(load_variants(folders, specs))
    by_label = {(record["model"], record["label"]): record for record in table.records}
    adam = by_label[("full_softmax", "Adam")]
    assert adam["seeds"] == "0 1" and adam["test_ppl_mean"] == pytest.approx(102.0)
    assert adam["test_ppl_min"] == 100.0 and adam["test_ppl_max"] == 104.0
    assert adam["best_recipe"] and not by_label[("full_softmax", "SGD")]["best_recipe"]  # chosen on valid
    lightrnn = by_label[("lightrnn", "Adam")]
    assert lightrnn["test_over_full_softmax_best"] == pytest.approx(110.0 / 102.0)
    assert by_label[("lightrnn", "no reallocation")]["test_over_full_softmax_best"] == pytest.approx(139.0 / 102.0)
    assert lightrnn["realloc_moved_mean"] == pytest.approx(0.745)
    # The displayed cell shows mean ± half range and the count; the note states best against best.
    assert any("102.0 ± 2.0 (2)" in cell for line in table.cells for cell in line)
    assert "Best against best: LightRNN (Adam) 110.0 vs full softmax (Adam) 102.0: +7.8%" in table.note


def test_realloc_table_reports_predicted_and_measured_loss_and_the_valid_ppl_around_it(study):
    folders, specs = study
    table = realloc_table(load_variants(folders, specs))
    paper, ours = table.records[:2], table.records[2:]
    assert [record["variant"] for record in paper] == ["paper", "paper"]  # the published spikes come first
    assert paper[0]["valid_before"] == 219 and paper[0]["test_after_one_epoch"] == 246  # read from its figure
    assert [record["round"] for record in ours] == [1, 2]
    first, second = ours
    assert first["nll_predicted"] == pytest.approx(4.0) and first["nll_after"] == 7.0
    assert first["valid_before"] == 180 and first["valid_right_after"] == 900.0
    # where the paper measures the spike: the first epoch on the new table (epoch 3), valid and test
    assert first["valid_after_one_epoch"] == 140 and first["test_after_one_epoch"] == pytest.approx(141.4)
    assert first["valid_spike_one_epoch"] == pytest.approx(140 / 180 - 1)
    assert first["test_spike_one_epoch"] == pytest.approx(140 / 180 - 1)
    assert first["valid_end_of_next_round"] == 125  # the last epoch of round 1 (epochs 3 and 4)
    assert second["valid_after_one_epoch"] == 118 and second["valid_before"] == 125
    assert any("+12.8%" in cell for cell in table.cells[0])  # the paper's 219 -> 247 (valid)


def test_first_epoch_after_pairs_a_realloc_row_with_the_next_epoch_of_its_round():
    from lightrnn.report.study import first_epoch_after

    realloc = {"kind": "realloc", "round": 1, "epoch": 2}
    rows = [{"kind": "epoch", "round": 0, "epoch": 2}, realloc, {"kind": "epoch", "round": 1, "epoch": 3},
            {"kind": "epoch", "round": 1, "epoch": 4}]
    assert first_epoch_after(rows, realloc) is rows[2]
    assert first_epoch_after(rows[:2], realloc) is None  # training stopped before it
    assert first_epoch_after(rows, {"kind": "realloc", "round": 1, "epoch": 2}) is None  # not one of these rows


def test_ablation_figure_draws_every_best_recipe_and_every_lightrnn_variant(study):
    folders, specs = study
    figure = ablation_figure(load_variants(folders, specs), "2026-12-01")
    left, right = figure.axes
    assert {line.get_label() for line in left.get_lines()} == {"Full softmax: Adam", "LightRNN: Adam"}
    assert {line.get_label() for line in right.get_lines()} == {"recipe: Adam", "reallocation: no reallocation"}
    adam = next(line for line in right.get_lines() if line.get_label() == "recipe: Adam")
    assert list(adam.get_ydata()) == [250, 180, 140, 125, 118, 108]
    # Every reallocation marked after one epoch on the new table (open: the point stays visible);
    # the frozen model's 900 right after one is in the table only: drawn, it would squash the curves.
    (one_epoch,) = (collection.get_offsets().tolist() for collection in right.collections)
    assert one_epoch == [[3, 140], [5, 118]]
    assert list(right.collections[0].get_facecolors()) == []
    low, high = left.get_ylim()
    values = [y for axes in (left, right) for line in axes.get_lines() for y in line.get_ydata()]
    assert low <= min(values) and max(values) <= high < 2 * max(values)  # the y range is the curves'
    ticks = [tick for tick in left.get_yticks() if low <= tick <= high]
    assert ticks[0] <= min(values) and ticks[-1] >= max(values)  # labelled ticks cover the data
    # Legends outside the panels, and every curve of (b) in a style of its own.
    from lightrnn.report.plots import text_boxes

    renderer = figure.canvas.get_renderer()
    for axes in (left, right):
        legend_box = axes.get_legend().get_window_extent(renderer)
        assert legend_box.y1 <= axes.get_window_extent(renderer).y0
    styles = [(line.get_color(), line.get_linestyle(), line.get_marker()) for line in right.get_lines()]
    assert len(set(styles)) == len(styles)
    assert [label for label, _ in text_boxes(figure)]  # drawn


def test_write_study_writes_every_output(study, tmp_path):
    folders, specs = study
    written = write_study(folders, specs, tmp_path / "out", "2026-12-01")
    names = sorted(path.relative_to(tmp_path / "out").as_posix() for path in written)
    assert names == ["plots/ablation.pdf", "plots/ablation.png", "tables/ablation.csv", "tables/ablation.md",
                     "tables/study-realloc.csv", "tables/study-realloc.md"]


def test_context_table_groups_words_that_follow_the_same_words():
    # Words 0, 1, 2 are each followed by one class of 5 words ({3..7}, {8..12}, {13..17}); a class
    # shares its previous word, so an informed table gives each class a row of its own (5 slots).
    rng = np.random.default_rng(0)
    stream = []
    for _ in range(6000):
        first = int(rng.integers(3))
        stream += [first, 3 + 5 * first + int(rng.integers(5))]
    table = context_table(np.array(stream), 18, seed=0, method="exact")  # the informed optimum
    assert table.num_rows == 5 and len(set(zip(table.rows.tolist(), table.cols.tolist()))) == 18
    for first in range(3):
        members = range(3 + 5 * first, 8 + 5 * first)
        assert len({int(table.rows[word]) for word in members}) == 1, [table.rows[word] for word in members]
    # The default solver (refine, fast at any V) gets most of each class into one row.
    default = context_table(np.array(stream), 18, seed=0)
    for first in range(3):
        rows = [int(default.rows[word]) for word in range(3 + 5 * first, 8 + 5 * first)]
        assert max(rows.count(row) for row in rows) >= 4, rows


def test_context_initial_table_is_built_from_the_training_stream():
    config = TrainConfig(model="lightrnn", embed_dim=4, hidden_dim=4, num_layers=1, initial_table="context")
    stream = np.tile(np.arange(30), 20)
    model = build_from_config(config, 30, np.bincount(stream), train_stream=stream)
    expected = context_table(stream, 30, seed=0)
    assert np.array_equal(model.table.rows, expected.rows) and np.array_equal(model.table.cols, expected.cols)
    # Without a stream (counting parameters, rebuilding a checkpoint) a random table stands in.
    assert build_from_config(config, 30).vocab_size == 30



def test_the_first_study_config_plans_every_variant_and_the_study_outputs(clean_copy: Path):
    result = snakemake("-n", "--configfile", "config/study-v1.yaml", cwd=clean_copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    study = yaml.safe_load((clean_copy / "config" / "study-v1.yaml").read_text())
    counts = job_counts(output)
    assert counts["train"] == len(study["models_to_run"]) and counts["render_study"] == 1
    assert "render_report" not in counts
    for variant in study["models_to_run"]:
        assert f"results/study/ptb/{variant}/metrics.jsonl" in output


def test_the_study_grid_plans_its_default_part(clean_copy: Path):
    # config/study.yaml's default part: every baseline and control x every recipe at the tuning seed
    result = snakemake("-n", "--configfile", "config/study.yaml", cwd=clean_copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    grid = yaml.safe_load((clean_copy / "config" / "study.yaml").read_text())["study_grid"]
    models = grid["parts"]["baselines-grid"]["models"]
    assert job_counts(output)["train"] == len(models) * len(grid["recipes"])
    for model in models:
        for recipe in grid["recipes"]:
            assert f"results/study/ptb/{model}--{recipe}--s0/metrics.jsonl" in output
    # a seeds part before its grid part has run: one clear line
    result = snakemake("-n", "--configfile", "config/study.yaml", "--config", "models_to_run=[baselines-seeds]",
                       cwd=clean_copy)
    assert result.returncode != 0 and "run the grid part holding" in result.stdout + result.stderr


def test_a_large_keep_bonus_keeps_every_word_and_none_moves_without_gain():
    from lightrnn.method.reallocate import apply_keep_bonus, solve
    from lightrnn.method.word_table import WordTable

    rng = np.random.default_rng(1)
    table = WordTable.random(12, seed=3)
    row_loss, col_loss = rng.random((12, 4)), rng.random((12, 4))
    free = solve(row_loss.copy(), col_loss.copy(), method="exact")
    assert np.any(free.rows != table.rows) or np.any(free.cols != table.cols)  # the losses want moves
    bonus = np.full(12, 10.0)  # far more than any difference of losses
    kept_rows, kept_cols = row_loss.copy(), col_loss.copy()
    apply_keep_bonus(kept_rows, kept_cols, table, bonus)
    kept = solve(kept_rows, kept_cols, method="exact")
    assert np.array_equal(kept.rows, table.rows) and np.array_equal(kept.cols, table.cols)


def test_reallocation_rows_report_the_predicted_nll_and_the_bonus(tmp_path):
    import torch

    from lightrnn.registry import build
    from lightrnn.method.reallocate import reallocate_model

    torch.manual_seed(0)
    model = build("lightrnn", 30, 8, 8, 1, table_seed=0)
    tokens = torch.randint(0, 30, (4, 10))
    batches = [(tokens, torch.roll(tokens, -1, dims=1))]
    free = reallocate_model(model, batches, method="exact")
    assert free["realloc_tokens"] == 40 and free["realloc_keep_bonus"] == 0.0
    assert free["realloc_nll_predicted"] == pytest.approx(free["realloc_objective"] / 40)
    assert free["realloc_nll_predicted"] <= free["realloc_nll_before"] + 1e-9  # the old table was a candidate
    kept = reallocate_model(model, batches, method="exact", keep_bonus=100.0)
    assert kept["realloc_moved"] == 0.0 and kept["realloc_nll_after"] == pytest.approx(kept["realloc_nll_before"])


def test_the_verdict_reads_perplexity_and_reallocation_from_the_study(study, tmp_path):
    from lightrnn.report.verdict import study_perplexity_row, study_reallocation_row

    folders, specs = study
    specs["lrnn-a"]["label"] = "Adam 1e-3 (default)"
    write_study(folders, specs, tmp_path / "study", "2026-12-01")
    perplexity = study_perplexity_row(tmp_path / "study")
    assert perplexity.numbers["ratio_best_baseline"] == pytest.approx(110.0 / 102.0)
    assert perplexity.word == "not confirmed" and "small scale" in perplexity.verdict
    assert "LightRNN (Adam 1e-3 (default)) 110.0" in perplexity.measured
    reallocation = study_reallocation_row(tmp_path / "study")
    assert reallocation.word == "confirmed"
    spikes = reallocation.numbers.pop("valid_spike_one_epoch")
    assert reallocation.numbers == {"ppl_with_realloc": 110.0, "ppl_without_realloc": 139.0}
    # the spike compared like for like: one epoch on the new table, ours against the paper's
    assert [float(value) for value in spikes.split()] == pytest.approx([140 / 180 - 1, 118 / 125 - 1], abs=1e-4)
    assert "valid -22%, -6%, test -22%, -6% (paper: valid +13%, +14%, test +12%, +15%: 219 -> 246)" \
        in reallocation.measured
    assert "valid 180 -> 900" in reallocation.measured  # right after, shown as what it is
    assert "no spike where the paper measures it" in reallocation.verdict


def test_the_readme_block_is_generated_from_the_study_folder(study, tmp_path):
    from lightrnn.report.readme import write_study_block

    folders, specs = study
    write_study(folders, specs, tmp_path / "study-cpu", "2026-12-01")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- section:study -->\n## Study\n<!-- generated:study-cpu -->\nSTALE BLOCK\n"
                      "<!-- /generated:study-cpu -->\n<!-- /section:study -->\n")
    written = write_study_block(tmp_path / "study-cpu", readme, tmp_path / "docs", "lightrnn report readme ...")
    text = readme.read_text()
    assert "STALE BLOCK" not in text and "![ablation study](docs/study-cpu-ablation.png)" in text
    assert "**Ablation study" in text and "**Every reallocation of the study**" in text
    assert (tmp_path / "docs" / "study-cpu-ablation.png").read_bytes() == (tmp_path / "study-cpu/plots/ablation.png").read_bytes()
    assert readme in written


def test_the_ablation_note_names_the_best_lightrnn_beyond_the_paper_with_two_seeds(study, tmp_path):
    folders, specs = study
    extra = tmp_path / "extra"
    folders = folders + [
        _run(extra / "cap", "lightrnn", 0, [240, 170, 130, 115, 108, 104], 106.0),
        _run(extra / "cap-s1", "lightrnn", 1, [240, 170, 130, 115, 108, 100], 108.0),
        _run(extra / "one-seed", "lightrnn", 0, [240, 170, 130, 115, 108, 90], 90.0),  # one seed: not named
    ]
    specs = {**specs, "cap": {"model": "lightrnn", "group": "capacity", "label": "word bias"},
             "cap-s1": {"model": "lightrnn", "group": "capacity", "label": "word bias"},
             "one-seed": {"model": "lightrnn", "group": "capacity", "label": "one seed"}}
    note = ablation_table(load_variants(folders, specs)).note
    assert "Best LightRNN beyond the paper (two seeds or more, chosen on valid): word bias" in note
    assert f"107.0 vs full softmax (Adam) 102.0: {107 / 102:.3f}x." in note


def test_a_copied_study_folder_is_rerendered_from_its_own_variants(study, tmp_path):
    from lightrnn.report.study import write_study_folder

    folders, specs = study
    folder = tmp_path / "study-copy"
    for source in folders:
        target = folder / "ptb" / source.name
        target.mkdir(parents=True)
        for name in ("metrics.jsonl", "eval.json"):
            (target / name).write_bytes((source / name).read_bytes())
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"models": specs}))
    written = write_study_folder(folder, config, "2026-12-01")
    assert folder / "tables" / "ablation.csv" in written
    assert "lrnn-a lrnn-off" not in (folder / "tables" / "ablation.csv").read_text()  # one line per label
    assert "no reallocation" in (folder / "tables" / "ablation.md").read_text()
    with pytest.raises(FileNotFoundError, match="no <dataset>/<variant>/metrics.jsonl"):
        write_study_folder(tmp_path / "empty", config)


def test_the_verdict_gives_each_variant_its_size_at_the_paper_scale_and_a_trade_off_over_k(study, tmp_path):
    from lightrnn.registry import param_count
    from lightrnn.report.verdict import TRADE_OFF_DIMS, trade_off_table, variant_sizes_table

    folders, specs = study
    folders.append(_run(tmp_path / "lrnn-w32", "lightrnn", 0, [240, 170, 130, 115, 108, 100], 101.0))
    specs["lrnn-w32"] = {"model": "lightrnn", "group": "capacity", "label": "word bias + output and input vectors k=32"}
    write_study(folders, specs, tmp_path / "study", "2026-12-01")
    options = {"lrnn-a": {}, "lrnn-off": {}, "lrnn-w32": {"word_bias": True, "word_dim": 32, "word_input_dim": 32}}
    for variant, model_options in options.items():  # the run folders as the study copies them: <dataset>/<variant>
        run = tmp_path / "study" / "ptb" / variant
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"model": "lightrnn", "lr": 0.003,
                                                         "model_options": model_options}))
    paper_size = {k: param_count("lightrnn", 793_471, 1500, 1500, 2,
                                 **({"word_bias": True, "word_dim": k, "word_input_dim": k} if k else {}))
                  for k in TRADE_OFF_DIMS}
    sizes = variant_sizes_table(tmp_path / "study")
    by_label = {record["label"]: record for record in sizes.records}
    assert set(by_label) == {"Adam", "no reallocation", "word bias + output and input vectors k=32"}
    assert by_label["Adam"]["params_billionw_1500"] == paper_size[0] < paper_size[8] < paper_size[32]
    assert by_label["word bias + output and input vectors k=32"]["params_billionw_1500"] == paper_size[32]
    assert by_label["word bias + output and input vectors k=32"]["test_ppl_mean"] == 101.0
    trade = trade_off_table(tmp_path / "study")
    assert [r["k"] for r in trade.records] == list(TRADE_OFF_DIMS)
    assert [r["params_billionw_1500"] for r in trade.records] == [paper_size[k] for k in TRADE_OFF_DIMS]
    assert [r["test_ppl_mean"] for r in trade.records] == [110.0, None, None, 101.0]
    assert [line[3] for line in trade.cells] == ["110.0", "not run", "not run", "101.0"]
