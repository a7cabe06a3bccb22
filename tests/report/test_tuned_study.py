"""The tuned study's tables from generated run folders: chosen recipes, intervals, ratios, not run, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lightrnn.core.csvio import read_csv
from lightrnn.core.fileio import write_lines
from lightrnn.report.grid import variant_name
from lightrnn.report.tuned_study import NOT_RUN, write_tuned_study

GRID = {
    "tuning_seed": 0, "seeds": [0, 1, 2],
    "recipes": {"a": {"label": "recipe A"}, "b": {"label": "recipe B", "train": {"lr": 0.003}}},
    "models": {"full": {"model": "full_softmax", "label": "full", "group": "baseline"},
               "class": {"model": "class_softmax", "label": "class", "group": "baseline"},
               "lightrnn": {"model": "lightrnn", "label": "LightRNN", "group": "lightrnn"}},
    "parts": {"base-grid": {"models": ["full", "class"], "stage": "grid"},
              "base-seeds": {"models": ["full", "class"], "stage": "seeds"},
              "light-grid": {"models": ["lightrnn"], "stage": "grid"}},
}
TOKENS, BLOCK = 1000, 100


def _run(root: Path, model: str, recipe: str, seed: int, valids: list[float], nll_per_token: float,
         rev: str = "abc1234") -> None:
    folder = root / "ptb" / variant_name(model, recipe, seed)
    folder.mkdir(parents=True)
    registered = "lightrnn" if model.startswith("lightrnn") else GRID["models"][model]["model"]
    rows = [{"kind": "epoch", "dataset": "ptb", "model": registered, "seed": seed,
             "epoch": epoch, "valid_ppl": valid, "test_ppl": None, "params": 1000, "wall_s": 10.0 * epoch,
             "git_rev": rev, "device": "cpu"} for epoch, valid in enumerate(valids, start=1)]
    write_lines(folder / "metrics.jsonl", [json.dumps(row) for row in rows])
    (folder / "config.yaml").write_text(yaml.safe_dump({"patience": 2, "rounds": [5]}))
    noise = np.random.default_rng(seed).normal(0, 0.05, TOKENS // BLOCK)
    blocks = [(nll_per_token + value) * BLOCK for value in noise]
    (folder / "eval.json").write_text(json.dumps({
        "dataset": "ptb", "model": rows[0]["model"], "ppl": float(np.exp(sum(blocks) / TOKENS)),
        "nll_sum": sum(blocks), "tokens": TOKENS, "block_tokens": BLOCK, "block_nll": blocks, "git_rev": rev}))


def _study_with(tmp_path: Path, model: str, label: str, group: str) -> tuple[Path, Path]:
    """(study folder, config) of GRID plus one more LightRNN model, no run yet."""
    grid = {**GRID, "models": {**GRID["models"], model: {"model": "lightrnn", "label": label, "group": group}}}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"study_grid": grid}))
    return tmp_path / "study", config


@pytest.fixture
def study(tmp_path) -> tuple[Path, Path]:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"study_grid": GRID}))
    root = tmp_path / "study"
    # full: recipe b best on valid; class: recipe a; class is the best baseline (lower valid)
    _run(root, "full", "a", 0, [300, 250, 260, 270], 5.6)
    _run(root, "full", "b", 0, [280, 240, 245, 250], 5.5)
    _run(root, "class", "a", 0, [260, 220, 210, 209, 208], 5.3)
    _run(root, "class", "b", 0, [270, 230], 5.0)  # lower test, higher valid: must not be chosen
    for seed in (1, 2):
        _run(root, "full", "b", seed, [280, 241], 5.5)
        _run(root, "class", "a", seed, [255, 209], 5.3)
    return root, config


def test_tables_choose_on_valid_and_give_intervals_and_not_run(study):
    root, config = study
    write_tuned_study(root, config)
    models = {r["model"]: r for r in read_csv(root / "tables" / "study.csv")}
    assert models["full"]["recipe"] == "b" and models["class"]["recipe"] == "a"
    assert models["class"]["seeds"] == "0 1 2" and float(models["class"]["test_ppl_low"]) < float(
        models["class"]["test_ppl_mean"]) < float(models["class"]["test_ppl_high"])
    assert models["class"]["best_epochs"] == "5 2 2" and models["lightrnn"]["status"] == NOT_RUN
    grid = read_csv(root / "tables" / "study-grid.csv")
    at_max = {(r["model"], r["recipe"]): r["at_max"] for r in grid}
    assert at_max[("class", "a")] in (True, "True")  # 5 epochs of 5, still improving
    assert at_max[("full", "a")] in (False, "False")  # stopped: 2 epochs without improvement
    ratios = read_csv(root / "tables" / "study-ratios.csv")
    assert [r["status"] for r in ratios] == [NOT_RUN]
    assert "LightRNN / class" in (root / "tables" / "study-ratios.md").read_text()
    provenance = json.loads((root / "provenance.json").read_text())
    assert provenance["git_revisions"] == ["abc1234"] and provenance["parts"]["light-grid"]["status"] == NOT_RUN
    assert provenance["parts"]["base-seeds"]["runs"] == 4 and provenance["parts"]["base-seeds"]["status"] == "complete"
    assert (root / "plots" / "study.png").is_file()


def test_the_ratio_interval_and_word_once_lightrnn_has_run(study):
    root, config = study
    for recipe, nll in (("a", 5.6), ("b", 5.8)):
        _run(root, "lightrnn", recipe, 0, [300, 260], nll)
    for seed in (1, 2):
        _run(root, "lightrnn", "a", seed, [300, 261], 5.6)
    write_tuned_study(root, config)
    ratio = read_csv(root / "tables" / "study-ratios.csv")[0]
    assert ratio["numerator"] == "lightrnn" and ratio["denominator"] == "class"
    assert float(ratio["low"]) > 1 and ratio["word"] == "worse"  # 0.3 nats per token above, noise 0.05
    assert float(ratio["ratio"]) == pytest.approx(np.exp(0.3), rel=0.05)


def test_a_dirty_revision_is_refused(study):
    root, config = study
    _run(root, "full", "a", 1, [300], 5.6, rev="abc1234+dirty")
    with pytest.raises(ValueError, match=r"uncommitted revision \(abc1234\+dirty\)"):
        write_tuned_study(root, config)


def test_the_verdict_reads_the_tuned_study_and_says_not_run_until_lightrnn_has(study):
    from lightrnn.report.verdict import NOT_CONFIRMED, NOT_RUN as VERDICT_NOT_RUN
    from lightrnn.report.verdict import study_perplexity_row, study_reallocation_row

    root, config = study
    write_tuned_study(root, config)
    assert study_perplexity_row(root).word == VERDICT_NOT_RUN
    assert study_reallocation_row(root).word == VERDICT_NOT_RUN
    for seed in (0, 1, 2):
        _run(root, "lightrnn", "a", seed, [300, 260], 5.6)
    _run(root, "lightrnn", "b", 0, [300, 270], 5.8)
    write_tuned_study(root, config)
    row = study_perplexity_row(root)
    assert row.word == NOT_CONFIRMED and row.numbers["ratio_low"] > 1
    assert "below LightRNN's test perplexity" in row.measured and "class" in row.measured
    assert "abc1234"[:7] in row.source


def test_the_docs_block_names_one_revision_list_and_each_calls_time(study, tmp_path):
    from lightrnn.report.study import readme_block

    root, config = study
    (root / "parts.tsv").write_text("base-grid\t2026-12-07T18:00:00Z\t2026-12-07T18:42:00Z\t0\n")
    write_tuned_study(root, config)
    assert json.loads((root / "provenance.json").read_text())["calls"][0]["elapsed_s"] == 42 * 60
    page = tmp_path / "docs" / "study.md"
    body, copies = readme_block(root, page, tmp_path / "docs", "the command")
    assert "git revision abc1234;" in body and "| base-grid | 2026-12-07T18:00:00Z | 42 | 0 |" in body
    assert "**The verdict's ratios**" in body and copies == {root / "plots" / "study.png":
                                                          tmp_path / "docs" / "study-study.png"}


def test_the_spike_is_compared_with_no_reallocation_at_the_same_epoch(tmp_path):
    root, config = _study_with(tmp_path, "lightrnn-no-realloc", "no reallocation", "control")
    for recipe in ("a", "b"):
        _run(root, "lightrnn", recipe, 0, [300, 250, 240, 230], 5.6 if recipe == "a" else 5.9)
        _run(root, "lightrnn-no-realloc", recipe, 0, [300, 250, 220, 215], 5.5)
    # a reallocation after epoch 2 of the LightRNN run of recipe a (its chosen one: lower valid)
    path = root / "ptb" / "lightrnn--a--s0" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows.insert(2, {**rows[1], "kind": "realloc", "round": 1, "valid_ppl": 400.0})
    write_lines(path, [json.dumps(row) for row in rows])
    write_tuned_study(root, config)
    spike = read_csv(root / "tables" / "study-spike.csv")
    assert len(spike) == 1 and int(spike[0]["epoch"]) == 3
    assert float(spike[0]["difference"]) == pytest.approx(240 / 220 - 1)
    ratios = {(r["numerator"], r["denominator"]): r for r in read_csv(root / "tables" / "study-ratios.csv")}
    assert ratios[("lightrnn", "lightrnn-no-realloc")]["status"] == "run"  # one seed each: still a paired ratio


def test_a_model_whose_grid_is_unfinished_says_so(study):
    root, config = study
    _run(root, "lightrnn", "a", 0, [300, 260], 5.6)  # recipe b has not run: no recipe can be chosen
    write_tuned_study(root, config)
    models = {r["model"]: r for r in read_csv(root / "tables" / "study.csv")}
    assert models["lightrnn"]["status"] == "grid incomplete (1 of 2 recipes)"
    assert json.loads((root / "provenance.json").read_text())["parts"]["light-grid"]["status"] == "partial"


def test_the_size_frontier_keeps_the_best_model_at_each_size():
    # By increasing parameters, a model joins only if it beats every smaller model: here the 2M model
    # (ppl 260) is worse than the 1M one (250), so it is not "best at its size"; a failed run is skipped.
    from lightrnn.report.verdict import size_frontier

    records = [{"model": m, "status": s, "params": p, "test_ppl_mean": t} for m, s, p, t in (
        ("big", "run", 3e6, 200.0), ("small", "run", 3e5, 280.0), ("mid", "run", 1e6, 250.0),
        ("worse", "run", 2e6, 260.0), ("missing", "not run", "", ""))]
    assert [r["model"] for r in size_frontier(records)] == ["small", "mid", "big"]


def test_the_verdict_names_the_best_model_at_each_size_and_sizes_the_tuned_lightrnn(study):
    from lightrnn.report.verdict import study_perplexity_row, trade_off_table, variant_sizes_table

    root, config = study
    for seed in (0, 1, 2):
        _run(root, "lightrnn", "a", seed, [300, 260], 5.6)
    _run(root, "lightrnn", "b", 0, [300, 270], 5.8)
    write_tuned_study(root, config)
    models = {r["model"]: r for r in read_csv(root / "tables" / "study.csv")}
    assert models["lightrnn"]["label"] == "LightRNN" and models["lightrnn"]["variants"] == (
        "lightrnn--a--s0 lightrnn--a--s1 lightrnn--a--s2")
    row = study_perplexity_row(root)
    assert "the best model at each size, smallest first: " in row.verdict
    assert "LightRNN (1K) / class (1K)" in row.measured  # labels, not the grid's keys
    sizes = variant_sizes_table(root)
    assert [cells[0] for cells in sizes.cells] == ["LightRNN"]  # the tuned study's LightRNN model, plain options
    assert sizes.records[0]["test_ppl_mean"] == pytest.approx(float(models["lightrnn"]["test_ppl_mean"]))
    trade = {r["k"]: r for r in trade_off_table(root).records}
    assert trade[0]["study_label"] == "LightRNN" and trade[32]["test_ppl_mean"] is None


def test_the_readme_says_how_long_the_study_parts_took_from_its_calls(study):
    from lightrnn.report.readme import study_parts_sentence

    root, config = study
    (root / "parts.tsv").write_text("base-grid\t2026-12-07T18:00:00Z\t2026-12-07T18:42:00Z\t0\n"
                                    "base-seeds\t2026-12-07T18:42:00Z\t2026-12-07T18:50:00Z\t143\n"  # killed: left out
                                    "base-seeds\t2026-12-07T19:00:00Z\t2026-12-07T19:12:00Z\t0\n")
    write_tuned_study(root, config)
    text = " ".join(study_parts_sentence(root).split())
    assert "ran as 2 snakemake calls of 12 to 42 minutes each on a 2-core CPU machine (their wall times sum to 54 minutes" in text
    assert study_parts_sentence(None) == ""


def test_the_readme_gives_each_variant_its_size_at_the_paper_scale_and_its_speed(tmp_path):
    from lightrnn.core.csvio import write_csv
    from lightrnn.registry import param_count
    from lightrnn.report.readme import variants_sentence

    root, config = _study_with(tmp_path, "lightrnn-w", "LightRNN + word bias", "lightrnn")
    for model in ("full", "lightrnn", "lightrnn-w"):
        for recipe in ("a", "b"):
            _run(root, model, recipe, 0, [300, 260] if recipe == "a" else [300, 270], 5.6)
        options = {"word_bias": True} if model == "lightrnn-w" else {}
        (root / "ptb" / variant_name(model, "a", 0) / "config.yaml").write_text(
            yaml.safe_dump({"patience": 2, "rounds": [5], "model_options": options}))
    write_tuned_study(root, config)
    assert variants_sentence(None, None) == ""
    text = " ".join(variants_sentence(root, None).split())
    plain, bias = (param_count("lightrnn", 793_471, 1500, 1500, 2, **options) for options in ({}, {"word_bias": True}))
    from lightrnn.report.render import format_count

    assert f"plain LightRNN {format_count(plain)}" in text and f"LightRNN + word bias: {format_count(bias)}" in text
    assert "trains at" not in text  # no benchmark folder: no speed
    bench = tmp_path / "bench"
    bench.mkdir()
    write_csv([{"vocab_size": 793471, "model": model, "repeat": 0, "train_tokens_per_s": speed, "optimizer": "SGD"}
               for model, speed in (("lightrnn", 1000.0), ("lightrnn@words", 800.0))], bench / "word-terms-sgd-repeats.csv")
    text = " ".join(variants_sentence(root, bench).split())
    assert "At V = 793,471" in text and "0.80x plain LightRNN's training tokens/s with SGD" in text
