"""The paper-size GPU throughput read back: gpucheck's summary CSV -> the verdict's speed row and
the README's GPU block (report/ reads the CSV; it never imports benchmark/)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lightrnn.core.errors import DataError
from lightrnn.report import gpu_speed
from lightrnn.report.verdict import CONFIRMED, NOT_RUN, PARTLY, speed_row

from tests._report_fixtures import write_gpu_speed


def _folder(tmp_path: Path, light: float, adaptive: float, name: str = "gpu-nvidia-h200", **kwargs) -> Path:
    return write_gpu_speed(tmp_path / "paper" / name, light, adaptive, **kwargs)


def test_the_summary_gpucheck_writes_is_what_the_report_reads(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 90_000.0, 30_000.0)
    gpu = gpu_speed.load_gpu_speed(folder)
    assert [(row["embed_dim"], row["batch_size"]) for row in gpu.rows] == [(500, 100), (1000, 200), (1500, 200)]
    assert all(row["over_adaptive_softmax"] == pytest.approx(3.0) for row in gpu.rows)
    assert all(math.isnan(row["over_full_softmax"]) for row in gpu.rows)  # skipped: not measured
    assert gpu.rows[-1]["over_titan_x"] == pytest.approx(90_000 / 7_250)
    measured, verdict, every = gpu_speed.speed_judgement(gpu)
    assert every is True and "3.00x or more" in verdict and "V = 793,471" in measured


def test_the_verdict_speed_row_rests_on_the_gpu_ratios(tmp_path: Path) -> None:
    assert speed_row(None).word == NOT_RUN
    fast = speed_row(None, _folder(tmp_path, 90_000.0, 30_000.0))
    assert fast.word == CONFIRMED and "NVIDIA H200" in fast.source and "90,000 tokens/s" in fast.measured
    assert fast.numbers["gpu_speedup_1500_200_bf16"] == pytest.approx(3.0)
    slow = speed_row(None, _folder(tmp_path, 45_000.0, 30_000.0, name="gpu-slow"))
    assert slow.word == PARTLY and "0 of 3 GPU settings" in slow.verdict


def test_the_readme_block_shows_the_table_or_says_what_to_run(tmp_path: Path) -> None:
    block = gpu_speed.readme_block(gpu_speed.load_gpu_speed(_folder(tmp_path, 90_000.0, 30_000.0)), "cmd")
    assert "| 1500/1500 batch 200 bf16 | 90,000 | 3.00 | not measured | 7,250 | 12.4 |" in block
    assert "git abcdef1" in " ".join(block.split())
    assert "no GPU measurement is committed yet" in " ".join(gpu_speed.readme_block(None, "cmd").split())


def test_the_newest_measured_folder_is_found(tmp_path: Path) -> None:
    assert gpu_speed.find_gpu_dir(tmp_path / "paper") is None
    _folder(tmp_path, 1.0, 1.0, name="gpu-b", date="2026-11-01 09:00 UTC")
    newest = _folder(tmp_path, 1.0, 1.0, name="gpu-a", date="2026-12-01 09:00 UTC")
    assert gpu_speed.find_gpu_dir(tmp_path / "paper") == newest


@pytest.mark.parametrize(("column", "value", "message"), [
    ("lightrnn_tokens_per_s", "fast", "lightrnn_tokens_per_s must be a number"),
    ("batch_size", "0", "batch_size must be a positive integer"),
])
def test_a_damaged_summary_is_named_with_its_line(tmp_path: Path, column: str, value: str, message: str) -> None:
    folder = _folder(tmp_path, 90_000.0, 30_000.0)
    path = folder / "paper-speed-summary.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index(column)] = value
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}, line 3: {message}"):
        gpu_speed.load_gpu_speed(folder)
