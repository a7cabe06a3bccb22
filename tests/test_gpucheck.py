"""`make gpu-check`'s own logic without a GPU: the budget, the plan, the paper-size throughput step and its CSV."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightrnn import gpucheck
from lightrnn.benchmark import paper_speed
from lightrnn.core.csvio import read_csv

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightrnn.gpucheck", "--dry-run", "--out", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_budget_keeps_each_later_step_its_share() -> None:
    budget = gpucheck.Budget(100.0, list(gpucheck.STEPS))
    assert sum(budget.share.values()) == pytest.approx(100.0)
    first = budget.step_deadline("tests") - budget.start
    later = sum(budget.share[step] for step in gpucheck.STEPS[1:])
    assert first == pytest.approx(100.0 - later, abs=0.5)
    # The last step may use everything that is left.
    assert budget.step_deadline("peak") == pytest.approx(budget.deadline, abs=0.5)
    plan = budget.plan()
    assert "budget 100 s" in plan and all(step in plan for step in gpucheck.STEPS)
    assert plan.index("tests") < plan.index("paper") < plan.index("train")  # order of value


def test_titan_x_figures_come_from_the_published_table() -> None:
    figures = gpucheck.titan_x_figures()
    assert [paper_speed.titan_x_tokens_per_s(e, h, b, figures) for e, h, b in paper_speed.CONFIGS] == [24_615, 13_000, 7_250]
    assert paper_speed.titan_x_tokens_per_s(16, 16, 2, figures) is None
    from lightrnn.report.paper import BILLIONW_VOCAB

    assert paper_speed.PaperSpeedPlan().vocab_size == BILLIONW_VOCAB


def test_memory_estimate_refuses_the_full_softmax_where_it_cannot_fit() -> None:
    vocab = paper_speed.PaperSpeedPlan().vocab_size
    full = paper_speed.estimate_bytes("full_softmax", vocab, 1500, 1500, 2, 200, 32, "bf16")
    light = paper_speed.estimate_bytes("lightrnn", vocab, 1500, 1500, 2, 200, 32, "bf16")
    # 2.4B parameters x 16 bytes plus [6400, 793471] logits x 12 bytes: about 96 GB, not a 12 GB Titan X.
    assert 80e9 < full < 130e9
    assert light < full / 50


def test_paper_speed_skips_by_memory_and_budget_and_summarises(monkeypatch, tmp_path) -> None:
    plan = paper_speed.PaperSpeedPlan(vocab_size=300, configs=((16, 16, 2),), dtypes=("fp32",), bptt=4,
                                      device="cpu", min_seconds=0.0, timed_steps=1, warmup_steps=0)
    real_free = paper_speed.free_bytes
    # The full softmax's estimate is the largest: leave just enough memory for the other two.
    needed = {name: paper_speed.estimate_bytes(name, 300, 16, 16, 2, 2, 4, "fp32")
              for name in ("lightrnn", "adaptive_softmax", "full_softmax")}
    assert needed["full_softmax"] > max(needed["lightrnn"], needed["adaptive_softmax"])
    monkeypatch.setattr(paper_speed, "free_bytes",
                        lambda device: int(max(needed["lightrnn"], needed["adaptive_softmax"]) / paper_speed.MEMORY_HEADROOM) + 1)
    rows = paper_speed.run_paper_speed(plan, progress=None, first_guess_s={})
    status = {row["model"]: row for row in rows}
    assert status["lightrnn"]["status"] == "ok" and status["lightrnn"]["train_tokens_per_s"] > 0
    assert status["adaptive_softmax"]["status"] == "ok"
    assert status["full_softmax"]["status"] == "skipped" and status["full_softmax"]["reason"].startswith("memory")
    monkeypatch.setattr(paper_speed, "free_bytes", real_free)
    # A deadline already past: every measurement is skipped for the budget, none runs.
    late = paper_speed.run_paper_speed(plan, deadline=time.perf_counter() - 1, progress=None)
    assert {row["status"] for row in late} == {"skipped"} and all("budget" in row["reason"] for row in late)
    path = paper_speed.write_paper_speed(rows, tmp_path / "gpu-test")
    back = paper_speed.read_paper_speed(path.parent)
    assert {"device", "date", "torch_version", "cuda_version", "git_rev"} <= set(back[0])
    assert paper_speed.find_paper_speed(tmp_path) == [path]
    (summary,) = paper_speed.speed_summary(back)
    assert summary["over_adaptive_softmax"] == pytest.approx(
        status["lightrnn"]["train_tokens_per_s"] / status["adaptive_softmax"]["train_tokens_per_s"])
    assert summary["over_full_softmax"] != summary["over_full_softmax"]  # NaN: not measured


def test_dry_run_needs_an_out_folder(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "lightrnn.gpucheck", "--dry-run"], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "--out" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_dry_run_with_no_time_left_skips_every_step_and_says_so(tmp_path) -> None:
    result = _dry_run(tmp_path, "--budget-s", "0.001")
    assert result.returncode == 0, result.stderr
    assert "gpu-check plan: budget" in result.stdout
    rows = read_csv(tmp_path / "out" / "summary.csv")
    assert rows and all(row["status"] == "SKIP" and "budget" in row["result"] for row in rows)


@pytest.mark.slow
def test_dry_run_exercises_every_step(tmp_path) -> None:
    result = _dry_run(tmp_path, "--budget-s", "600")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.index("gpu-check plan") < result.stdout.index("--- tests")
    rows = read_csv(tmp_path / "out" / "summary.csv")
    checks = {row["check"] for row in rows if row["status"] == "ok"}
    assert {"tests", "paper", "train", "resume", "eval", "bench", "matmul peak"} <= checks
    speed = paper_speed.read_paper_speed(tmp_path / "out")
    assert {row["model"] for row in speed if row["status"] == "ok"} == {"lightrnn", "adaptive_softmax", "full_softmax"}


# ----- its own promises (issue 35, class 5): one line, nothing written, SKIP for a budget stop ------

def _refused(result: subprocess.CompletedProcess, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("budget", ["nan", "inf", "-inf", "1e9", "0", "-5", "abc", "1e400"])
def test_a_budget_that_is_not_seconds_is_refused_before_anything_is_written(budget, tmp_path) -> None:
    _refused(_dry_run(tmp_path, "--budget-s", budget), "--budget-s")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["a file", "under a file", "empty"])
def test_an_out_that_cannot_be_a_folder_is_one_line(where, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    out = {"a file": str(tmp_path / "file"), "under a file": str(tmp_path / "file" / "sub" / "out"), "empty": ""}[where]
    result = subprocess.run([sys.executable, "-m", "lightrnn.gpucheck", "--dry-run", "--out", out],
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _refused(result, out, "empty path" if where == "empty" else "not a folder")
    assert (tmp_path / "file").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# A Python where `import torch` fails as it does where torch is not installed.
_NO_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[2:]; "
             "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def test_the_module_says_in_one_line_where_torch_is_missing(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-c", _NO_TORCH, "-m", "lightrnn.gpucheck", "--dry-run", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _refused(result, "torch", "not installed", ".venv/bin/python")
    assert not (tmp_path / "out").exists()


def test_a_step_the_budget_stops_is_skip_not_fail(tmp_path) -> None:
    summary = gpucheck.Summary()
    gpucheck.check_tests(summary, tmp_path, time.perf_counter() + 0.2)  # pytest cannot finish in 0.2 s
    assert [row["status"] for row in summary.rows] == ["SKIP"] and "budget" in summary.rows[0]["result"]
    assert summary.failed == 0


def _make(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", "gpu-check", *[f"{k}={v}" for k, v in variables.items()]],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_gpu_check_runs_the_venv_python_and_reports_a_refusal_once(tmp_path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    # PYTHON names no program: the refusal can only come from the venv's python.
    result = _make(tmp_path, VENV=str(venv), PYTHON="/nonexistent/python3", BUDGET="nan", DRY_RUN="1",
                   OUT=str(tmp_path / "out"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--budget-s (BUDGET) must be" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    result = _make(tmp_path, VENV=str(venv), DRY_RUN="1", OUT=str(tmp_path / "file"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "not a folder" in result.stderr
    # No venv: $(PYTHON), here one without torch: the module's line, and make's is the same line.
    wrapper = tmp_path / "python-without-torch"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{_NO_TORCH}" "$@"\n')
    wrapper.chmod(0o755)
    result = _make(tmp_path, VENV=str(tmp_path / "none"), PYTHON=str(wrapper), DRY_RUN="1", OUT=str(tmp_path / "o2"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "torch" in lines[0] and "not installed" in lines[0], result.stderr
