"""The benchmark code on tiny sizes: FLOP formulas against torch's counter, the measurement loop,
CSV / plot / README generation and the CLI. Numbers are never asserted, only their consistency."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightrnn.benchmark.flops import flops_per_token, lstm_flops_per_step, output_flops_per_token
from lightrnn.benchmark.machine import PeakMemory, machine_info, matmul_flops_per_s
from lightrnn.benchmark.scaling import model_sizes
from lightrnn.benchmark.suite import run_suite
from lightrnn.benchmark.throughput import (
    ThroughputSettings, build_for_bench, make_optimizers, run_phases, run_throughput,
    stream_windows, zipf_probs, zipf_stream,
)
from lightrnn.cli import main
from lightrnn.core.csvio import read_csv, write_csv
from lightrnn.registry import build, model_class, names
from lightrnn.training.optim import clip_grad_norm
from lightrnn.report.performance import paired_ratio, paired_ratios, performance_markdown
from lightrnn.report.readme import write_performance_section

TINY = dict(vocab_sizes=(50, 120), embed_dim=8, hidden_dim=16, num_layers=1, batch_size=2, bptt=4,
            warmup_steps=1, timed_steps=1, min_seconds=0.0, repeats=2, threads=1)


@pytest.mark.parametrize("name", names())
def test_output_flops_equal_torch_flop_counter_on_a_batch(name: str):
    # torch's counter sees the output layer's matmuls (the fused CPU LSTM is invisible to it);
    # with the batch's own target histogram the analytic count is exact for that batch.
    torch.manual_seed(0)
    vocab_size, batch, steps = 300, 3, 7
    model = build(name, vocab_size, embed_dim=16, hidden_dim=24, num_layers=2, dropout=0.0)
    stream = torch.as_tensor(zipf_stream(vocab_size, batch * steps + 1, seed=1))
    tokens, targets = stream[:-1].view(batch, steps), stream[1:].view(batch, steps)
    histogram = np.bincount(targets.flatten().numpy(), minlength=vocab_size) / targets.numel()
    with FlopCounterMode(display=False) as counter:
        model(tokens, targets)
    analytic, _ = output_flops_per_token(model, histogram)
    assert counter.get_total_flops() / targets.numel() == pytest.approx(analytic, rel=1e-9)
    with FlopCounterMode(display=False) as counter:
        model(tokens, targets).nll.mean().backward()
    assert counter.get_total_flops() / targets.numel() == pytest.approx(3 * analytic, rel=1e-9)


def test_lightrnn_word_term_flops_equal_torch_flop_counter():
    """The per-word terms are counted: 2Hk + 2Ck (output vectors) and 2kE (input vectors) per token."""
    torch.manual_seed(0)
    vocab_size, batch, steps = 300, 3, 7
    model = build("lightrnn", vocab_size, embed_dim=16, hidden_dim=24, num_layers=2, dropout=0.0,
                  word_bias=True, word_dim=5, word_input_dim=3, sparse_embedding=True)
    stream = torch.as_tensor(zipf_stream(vocab_size, batch * steps + 1, seed=1))
    tokens, targets = stream[:-1].view(batch, steps), stream[1:].view(batch, steps)
    analytic, _ = output_flops_per_token(model, zipf_probs(vocab_size))
    assert analytic == 2 * 24 * (18 + 18) + 2 * 5 * (24 + 18) + 2 * 3 * 16
    with FlopCounterMode(display=False) as counter:
        model(tokens, targets)
    assert counter.get_total_flops() / targets.numel() == pytest.approx(analytic, rel=1e-9)
    with FlopCounterMode(display=False) as counter:
        model(tokens, targets).nll.mean().backward()
    # A row read by one position gets its gradient as a rank-1 broadcast multiply, not a matmul
    # (the counter counts matmuls only): the 2 C k a matmul would count for it are added here.
    _, reads = torch.unique(model.word_row[targets], return_counts=True)
    elementwise = int((reads == 1).sum()) * 2 * model.num_cols * 5
    assert elementwise > 0
    assert (counter.get_total_flops() + elementwise) / targets.numel() == pytest.approx(3 * analytic, rel=1e-9)


def test_flops_count_lightrnn_two_lstm_steps_per_word_and_train_is_three_forwards():
    model = build("lightrnn", 100, embed_dim=8, hidden_dim=12, num_layers=2, dropout=0.0)
    flops = flops_per_token(model, zipf_probs(100), bptt=4)
    assert flops.lstm == pytest.approx((2 + 1 / 4) * lstm_flops_per_step(8, 12, 2))
    assert flops.output == 2 * 12 * (10 + 10)
    assert flops.train == 3 * flops.forward == 3 * (flops.lstm + flops.output)
    full = flops_per_token(build("full_softmax", 100, embed_dim=8, hidden_dim=12, num_layers=2, dropout=0.0),
                           zipf_probs(100), bptt=4)
    assert full.lstm == lstm_flops_per_step(8, 12, 2) and full.output == 2 * 12 * 100
    with pytest.raises(ValueError, match="target_probs"):
        flops_per_token(model, np.ones(99) / 99, bptt=4)


def test_zipf_stream_follows_its_distribution_and_windows_are_next_token_pairs():
    stream = zipf_stream(1000, 200_000, seed=0)
    assert stream.min() >= 0 and stream.max() < 1000
    observed = np.bincount(stream, minlength=1000)[:3] / stream.size
    assert observed == pytest.approx(zipf_probs(1000)[:3], rel=0.05)
    windows = stream_windows(stream[:41], batch_size=2, bptt=5, device=torch.device("cpu"))
    assert len(windows) == 4
    for tokens, targets in windows:
        assert tokens.shape == targets.shape == (2, 5)
        assert torch.equal(tokens[:, 1:], targets[:, :-1])


def test_sparse_embeddings_get_sparse_adam_and_clipping_covers_them():
    settings = ThroughputSettings(**TINY)
    model = build_for_bench("adaptive_softmax", 50, settings)
    optimizers = make_optimizers(model, 1e-3)
    assert optimizers.label == "Adam+SparseAdam"
    tokens = torch.randint(0, 50, (2, 4))
    model(tokens, tokens).nll.mean().mul(1e4).backward()
    parameters = list(model.parameters())
    assert any(p.grad is not None and p.grad.is_sparse for p in parameters)
    clip_grad_norm(parameters, 1.0)
    squares = sum(float((p.grad.coalesce().values() if p.grad.is_sparse else p.grad).pow(2).sum()) for p in parameters
                  if p.grad is not None)
    assert math.sqrt(squares) == pytest.approx(1.0, rel=1e-4)
    dense = build_for_bench("lightrnn", 50, settings)
    assert make_optimizers(dense, 1e-3).label == "Adam"


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert peak.bytes >= 60 * 2**20 or peak.method == "process_peak_rss"


def test_matmul_peak_and_machine_info():
    assert matmul_flops_per_s(64, min_seconds=0.0) > 0
    info = machine_info(torch.device("cpu"))
    assert info["device"] == "cpu" and info["cores"] >= 1 and info["torch_version"] == torch.__version__


def test_run_throughput_interleaves_every_model_and_reports_consistent_numbers():
    settings = ThroughputSettings(**TINY)
    summary, raw = run_throughput(settings, progress=None)
    assert len(summary) == 2 * 4 and len(raw) == 2 * 4 * 2
    # Repeat 1 runs the models in an order rotated by one.
    first_v = [row["model"] for row in raw if row["vocab_size"] == 50]
    assert first_v[:4] == list(settings.models) and first_v[4:] == list(settings.models[1:]) + [settings.models[0]]
    for row in summary:
        assert row["train_tokens_per_s_min"] <= row["train_tokens_per_s"] <= row["train_tokens_per_s_max"]
        assert row["utilisation"] == pytest.approx(
            row["train_tokens_per_s"] * row["flops_per_token_train"] / row["peak_flops_per_s"])
        assert row["params"] == model_class(row["model"]).param_count(
            row["vocab_size"], embed_dim=8, hidden_dim=16, num_layers=1)
        assert row["threads"] == 1 and row["batch_size"] == 2
    ratio = paired_ratio(raw, 50, "lightrnn", "full_softmax")  # the report's reading of the CSV rows
    assert ratio > 0 and math.isnan(paired_ratio(raw, 50, "lightrnn", "missing"))


def test_phase_breakdown_adds_up_and_counts_the_sparse_rows(tmp_path: Path, capsys):
    """`lightrnn bench phases`: forward + backward + clip + optimizer = the step, for every model; the
    variant's sparse gradient rows are the table rows a step updates, C (k + 1) values each (none for plain LightRNN)."""
    settings = ThroughputSettings(**{**TINY, "models": ("lightrnn", "lightrnn@words")},
                                  model_options={"lightrnn@words": {"word_bias": True, "word_dim": 3}})
    rows = run_phases(settings, progress=None)
    assert len(rows) == 2 * 2 * 5
    for vocab_size in (50, 120):
        for name in settings.models:
            mine = {row["phase"]: row for row in rows if row["vocab_size"] == vocab_size and row["model"] == name}
            assert set(mine) == {"forward", "backward", "clip", "optimizer", "step"}
            assert sum(mine[phase]["seconds_per_step"] for phase in ("forward", "backward", "clip", "optimizer")) \
                == pytest.approx(mine["step"]["seconds_per_step"])
            assert all(row["seconds_per_step"] > 0 and row["baseline"] == "lightrnn" for row in mine.values())
            if name == "lightrnn":
                assert mine["step"]["sparse_rows_per_step"] == 0 and mine["step"]["over_baseline_s"] == 0
            else:  # bias + vectors (k = 3) of at least one full table row of ceil(sqrt V) slots, stored by slot
                side = math.ceil(math.sqrt(vocab_size))
                assert mine["step"]["sparse_rows_per_step"] >= 2
                assert mine["step"]["sparse_values_per_step"] >= side * (1 + 3)
                assert mine["step"]["sparse_values_per_step"] == pytest.approx(
                    mine["step"]["sparse_rows_per_step"] / 2 * side * (1 + 3))  # as many bias rows as vector rows
    out = tmp_path / "phases.csv"
    assert main(["bench", "phases", "--vocab-sizes", "50", "--models", "lightrnn", "--embed-dim", "8",
                 "--hidden-dim", "8", "--num-layers", "1", "--batch-size", "2", "--bptt", "3", "--repeats", "1",
                 "--min-seconds", "0", "--out", str(out)]) == 0
    assert [row["phase"] for row in read_csv(out)] == ["forward", "backward", "clip", "optimizer", "step"]
    assert main(["bench", "phases", "--models", "lightrnn", "--out", str(tmp_path / "phases.txt")]) == 2
    assert "expected a .csv path" in capsys.readouterr().err


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="unknown model"):
        ThroughputSettings(models=("nope",))
    with pytest.raises(ValueError, match="bf16 needs a CUDA device"):
        ThroughputSettings(dtype="bf16")
    with pytest.raises(ValueError, match="batch_size"):
        ThroughputSettings(batch_size=0)


def test_model_sizes_need_no_allocation_and_lightrnn_is_far_smaller_at_billionw():
    rows = model_sizes()
    billion = {r["model"]: r for r in rows if r["config"] == "billionw-1500"}
    assert billion["lightrnn"]["params"] == model_class("lightrnn").param_count(793_471, 1500, 1500, 2)
    assert 40e6 < billion["lightrnn"]["params"] < 43e6  # the paper's 41M
    assert billion["full_softmax"]["params_over_lightrnn"] > 20
    assert all(r["param_bytes_fp32"] == 4 * r["params"] for r in rows)


def test_suite_csv_plot_and_readme_from_the_csvs(tmp_path: Path):
    out = tmp_path / "bench"
    written = run_suite(out, ThroughputSettings(**TINY), realloc_sizes=(), progress=None)
    for path in written.values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    write_csv([{"V": 100, "method": "greedy", "seconds": 0.5, "cpu_s": 0.5, "gap": 0.01, "peak_rss_mb": 100}],
              out / "realloc.csv")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- section:performance -->\n<!-- /section:performance -->\ntail\n")
    write_performance_section(out, readme)
    text = readme.read_text()
    assert text.startswith("# x\n<!-- section:performance -->\nGenerated by `lightrnn bench readme`") and text.endswith("tail\n")
    rows = read_csv(out / "throughput.csv")
    assert f"{rows[0]['torch_version']}" in text and "V = 120:" in text and "billionw-1500" in text
    assert "--benchmark-compare" in text and "1.00%" in text
    assert performance_markdown(out, tmp_path) in text and "](bench/throughput.png)" in text
    # In the split documentation the section is in docs/performance.md, found from the README's folder.
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "README.md").write_text("# x\nSee docs/performance.md.\n")
    (site / "docs" / "performance.md").write_text("# Performance\n<!-- section:performance -->\n<!-- /section:performance -->\n")
    assert write_performance_section(out, site / "README.md") == site / "docs" / "performance.md"
    page = (site / "docs" / "performance.md").read_text()
    assert performance_markdown(out, site / "docs") in page and "](../../bench/throughput.png)" in page
    assert (site / "README.md").read_text() == "# x\nSee docs/performance.md.\n"


def test_cli_throughput_measures_a_labelled_variant_beside_its_model(tmp_path: Path, capsys):
    """NAME@LABEL: the same registry model with options of its own, in the same run, under its own rows."""
    out = tmp_path / "w.csv"
    code = main(["bench", "throughput", "--out", str(out), "--vocab-sizes", "40", "--models", "lightrnn",
                 "lightrnn@words", "--embed-dim", "4", "--hidden-dim", "4", "--num-layers", "1", "--batch-size", "2",
                 "--bptt", "3", "--timed-steps", "1", "--repeats", "1", "--min-seconds", "0",
                 "--option", "lightrnn@words:word_bias=true", "--option", "lightrnn@words:word_dim=2"])
    assert code == 0
    rows = {r["model"]: r for r in read_csv(out)}
    assert set(rows) == {"lightrnn", "lightrnn@words"}
    assert rows["lightrnn@words"]["model_options"] == '{"word_bias": true, "word_dim": 2}'
    assert rows["lightrnn@words"]["optimizer"] == "Adam+SparseAdam" and rows["lightrnn"]["optimizer"] == "Adam"
    slots = 7 * 7  # V = 40 in a 7 x 7 table: the output terms are stored by slot
    assert int(rows["lightrnn@words"]["params"]) == int(rows["lightrnn"]["params"]) + slots + 2 * (slots + 4)
    assert float(rows["lightrnn@words"]["flops_per_token_output"]) > float(rows["lightrnn"]["flops_per_token_output"])
    assert main(["bench", "throughput", "--out", str(out), "--option", "nosuch@x:k=1"]) == 2
    assert "NAME@LABEL" in capsys.readouterr().err


def test_cli_throughput_and_errors(tmp_path: Path, capsys):
    out = tmp_path / "t.csv"
    code = main(["bench", "throughput", "--out", str(out), "--vocab-sizes", "40", "--models", "lightrnn",
                 "adaptive_softmax", "--embed-dim", "4", "--hidden-dim", "4", "--num-layers", "1", "--batch-size",
                 "2", "--bptt", "3", "--timed-steps", "1", "--repeats", "1",
                 "--option", "adaptive_softmax:div_value=2"])
    assert code == 0
    rows = read_csv(out)
    assert [r["model"] for r in rows] == ["lightrnn", "adaptive_softmax"]
    assert rows[1]["model_options"] == '{"div_value": 2}'
    assert (tmp_path / "t-repeats.csv").is_file()
    assert main(["bench", "throughput", "--out", str(out), "--option", "broken"]) == 2
    assert "MODEL:KEY=VALUE" in capsys.readouterr().err
    assert main(["bench", "readme", "--bench-dir", str(tmp_path / "missing"), "--readme", str(out)]) == 2


def test_the_word_terms_block_is_read_from_the_word_terms_files(tmp_path: Path):
    """docs/performance.md's per-word-terms lines come from word-terms.csv, -repeats.csv and -phases.csv:
    the paired ratios of the repeats file and the phase table, nothing typed; absent files, no lines."""
    from lightrnn.report.performance import word_terms_markdown

    assert word_terms_markdown(tmp_path) == []
    models = ("lightrnn", "lightrnn@words", "adaptive_softmax")
    options = {"lightrnn@words": {"word_bias": True, "word_dim": 3}}
    settings = ThroughputSettings(**{**TINY, "models": models}, model_options=options)
    summary, raw = run_throughput(settings, progress=None)
    write_csv(summary, tmp_path / "word-terms.csv")
    write_csv(raw, tmp_path / "word-terms-repeats.csv")
    text = "\n".join(word_terms_markdown(tmp_path))
    over_plain = paired_ratio(raw, 120, "lightrnn@words", "lightrnn")
    spread = paired_ratios(raw, 120, "lightrnn@words", "lightrnn")
    assert len(spread) == TINY["repeats"] and min(spread) <= over_plain <= max(spread)
    assert "| 120 | lightrnn@words |" in text and "phases" in text
    shown = text.replace("\\[", "[").replace("\\]", "]")  # markdown_table escapes brackets
    assert f"{over_plain:.3g}x [{min(spread):.3g}, {max(spread):.3g}]" in shown
    phases = run_phases(ThroughputSettings(**{**TINY, "models": models[:2]}, model_options=options), progress=None)
    write_csv(phases, tmp_path / "word-terms-phases.csv")
    text = "\n".join(word_terms_markdown(tmp_path))
    mine = {r["phase"]: r for r in phases if r["vocab_size"] == 120 and r["model"] == "lightrnn@words"}
    plain = next(r for r in phases if r["vocab_size"] == 120 and r["model"] == "lightrnn" and r["phase"] == "step")
    missed = mine["step"]["over_baseline_s"] > plain["seconds_per_step"] * (1 / 0.8 - 1)  # the goal's allowance
    assert (f"takes {1e3 * mine['step']['over_baseline_s']:.1f} ms more" in text) == missed
    assert ("misses 0.8x at V = 120" in text) == missed
    # An SGD run beside the Adam one: its rows are labelled with its optimizer.
    sgd = ThroughputSettings(**{**TINY, "models": models}, model_options=options, optimizer="sgd")
    summary, raw = run_throughput(sgd, progress=None)
    write_csv(summary, tmp_path / "word-terms-sgd.csv")
    write_csv(raw, tmp_path / "word-terms-sgd-repeats.csv")
    text = "\n".join(word_terms_markdown(tmp_path))
    assert "| 120 | lightrnn@words | SGD |" in text and "| 120 | lightrnn@words | Adam+SparseAdam |" in text
    assert "--optimizer sgd" in text
    assert "| 120 | lightrnn@words |" in text.split("Where a training step's time goes")[1]
