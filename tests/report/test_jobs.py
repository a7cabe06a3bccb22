"""tables/jobs.*: one line per job of every rule, from the run's benchmark files and the shared
data jobs' (tiny_archive, fetch, prepare under the resources folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightrnn.report.jobs import jobs_table, read_job_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t12.5\t20\t10\t11\t0\t0\t50\t{seconds / 2}\n")
    return path


def test_the_run_and_its_shared_data_jobs_each_get_a_line(tmp_path: Path) -> None:
    run, res = tmp_path / "results" / "smoke" / "benchmarks", tmp_path / "resources" / "benchmarks"
    _benchmark(run / "train" / "ptb" / "lightrnn.tsv", 9.0)
    _benchmark(run / "encode" / "ptb.tsv", 2.0)
    _benchmark(run / "render_report.tsv", 3.0)
    shared = [_benchmark(res / "tiny_archive" / "ptb" / "simple-examples.tgz.tsv", 1.0),
              _benchmark(res / "fetch" / "ptb" / "simple-examples.tgz.tsv", 1.5),
              _benchmark(res / "prepare" / "ptb.tsv", 0.5),
              res / "prepare" / "wikitext2.tsv"]  # not run (yet): no line, no error
    _benchmark(res / "prepare" / "other-run-dataset.tsv", 4.0)  # another run's: not passed, not shown
    records = read_job_benchmarks(run, shared)
    assert [(r["rule"], r["job"]) for r in records] == [
        ("tiny_archive", "ptb/simple-examples.tgz"), ("fetch", "ptb/simple-examples.tgz"), ("prepare", "ptb"),
        ("encode", "ptb"), ("train", "ptb/lightrnn"), ("render_report", "")]
    table = jobs_table(records, "2026-01-01")
    assert [line[:3] for line in table.cells] == [
        ["tiny_archive", "ptb", "1.0"], ["fetch", "ptb", "1.5"], ["prepare", "PTB", "0.5"], ["encode", "PTB", "2.0"],
        ["train", "PTB · LightRNN", "9.0"], ["render_report", "–", "3.0"]]
    assert "shared with other runs" in table.note


def test_no_benchmark_folder_says_what_to_run_and_a_foreign_file_is_named(tmp_path: Path) -> None:
    assert "run the workflow" in jobs_table(read_job_benchmarks(tmp_path / "none"), "d").cells[0][1]
    bad = tmp_path / "b" / "train" / "x.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="x.tsv: not a Snakemake benchmark file"):
        read_job_benchmarks(tmp_path / "b")
