"""The paper run as a user starts it, from a clean copy of the repository: the profile is read,
the default config plans a run that can finish on downloadable data, and train jobs survive
reruns (forced, after a changed key, after re-encoded data) and refuse a GPU they cannot see."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tests._workflow_fixtures import job_counts, snakemake

REPO = Path(__file__).resolve().parents[2]



def test_the_default_profile_is_read_without_any_option(clean_copy: Path):
    result = snakemake("-n", "--quiet", "rules", cwd=clean_copy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using workflow specific profile profiles/default" in result.stdout + result.stderr


def test_the_default_config_reaches_the_report_with_no_manual_file(clean_copy: Path):
    assert not (clean_copy / "resources").exists()
    result = snakemake("-n", cwd=clean_copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    counts = job_counts(output)
    config = yaml.safe_load((clean_copy / "config" / "config.yaml").read_text())
    assert counts["render_report"] == 1
    assert counts["train"] == len(config["datasets_to_run"]) * len(config["models_to_run"])
    assert "aclw-large" not in output  # nothing that needs hand-placed files
    # The paper's figure falls back to the downloadable French set.
    assert "plots/aclw-fr-vs-paper.png" in output

    # The large sets are placed by hand: once their files are there, the plan adds their jobs.
    for lang in ("cs", "de", "en", "es", "fr", "ru"):
        for split in ("train", "valid", "test"):
            path = clean_copy / "resources" / "raw" / "aclw-large" / lang / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("a placed sentence\n")
    large = snakemake("-n", "--configfile", "config/aclw-large.yaml", cwd=clean_copy)
    output = large.stdout + large.stderr
    shutil.rmtree(clean_copy / "resources")
    assert large.returncode == 0, output[-3000:]
    assert job_counts(output)["prepare"] == counts["prepare"] + 6
    assert "plots/aclw-large-fr-vs-paper.png" in output and "plots/aclw-fr-vs-paper.png" not in output


def _write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_train_jobs_survive_reruns_and_refuse_a_gpu_they_cannot_see(clean_copy: Path):
    work = clean_copy
    one = {"datasets_to_run": ["ptb"], "models_to_run": ["lightrnn"]}
    base = ["--cores", "2", "--configfile", "config/smoke.yaml"]  # the extra files follow (one --configfile)
    target = "results/smoke/ptb/lightrnn/best.pt"
    run_dir = work / "results" / "smoke" / "ptb" / "lightrnn"

    def run(*extra: str, configs: tuple[dict, ...] = ()) -> None:
        files = [_write(work / f"extra-{i}.yaml", c) for i, c in enumerate((one, *configs))]
        # --configfile and --forcerun take several values: the target goes first.
        result = snakemake(target, *base, *files, *extra, cwd=work, timeout=900)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    def rows() -> list[dict]:
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    run()
    first = rows()
    assert (run_dir / "best.pt").is_file() and len(first) > 1

    # 1. A forced rerun: Snakemake deletes best.pt and metrics.jsonl first; nothing is left to train.
    run("--forcerun", "train")
    assert (run_dir / "best.pt").is_file()
    assert [row["valid_ppl"] for row in rows()] == [row["valid_ppl"] for row in first]

    # 2. A changed training key: the old run is kept beside, the new one starts afresh.
    changed = {"train_override": {"lr": 0.02}}
    run(configs=(changed,))
    old_hash = first[0]["config_hash"]
    kept = run_dir.parent / f"lightrnn.old-{old_hash[:12]}"
    assert [row["valid_ppl"] for row in (json.loads(x) for x in (kept / "metrics.jsonl").read_text().splitlines())] == [
        row["valid_ppl"] for row in first
    ]
    new_rows = rows()
    assert {row["config_hash"] for row in new_rows} != {old_hash} and len(new_rows) == len(first)

    # 3. Re-encoded data (another vocabulary rule) under the same config: kept beside, fresh run.
    recoded = {"datasets": {"ptb": {"encode": {"min_count": 2, "max_vocab": None}}}}
    run(configs=(changed, recoded))
    moved = sorted(p.name for p in run_dir.parent.glob("lightrnn.old-*"))
    assert len(moved) == 2, moved
    log = (work / "results" / "smoke" / "logs" / "train" / "ptb" / "lightrnn.log").read_text()
    assert "other data" in log and "starting afresh" in log
    assert (run_dir / "best.pt").is_file()

    # 4. A job that asks for a GPU in an environment whose torch has none fails at once, saying so.
    if torch.cuda.is_available():
        return
    gpu = {"resources": {"train": {"gpu": 1, "threads": 1, "mem_mb": 2000, "runtime": 10}}}
    files = [_write(work / f"gpu-{i}.yaml", c) for i, c in enumerate((one, changed, recoded, gpu))]
    result = snakemake(target, *base, *files, "--forcerun", "train", cwd=work, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "asked for 1 GPU(s)" in output and "sees 0 CUDA device(s)" in output and "Fix:" in output


def test_gpu_jobs_ask_slurm_for_the_cpus_each_process_uses(clean_copy: Path, tmp_path: Path):
    two = {"resources": {"train": {"gpu": 2, "threads": 8, "mem_mb": 1000, "runtime": 10}}}
    target = "results/paper-run/ptb/lightrnn/best.pt"
    # --resources gpu=2: the default profile's one-GPU limit would scale the job down to gpu=1.
    result = snakemake(target, "-n", "--resources", "gpu=2", "--configfile", _write(tmp_path / "two.yaml", two),
                       cwd=clean_copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    train_job = output[output.index("rule train:") :]
    assert "gpu=2" in train_job and "cpus_per_gpu=4" in train_job
    # workflow/scripts/train.py gives each process cpus_per_gpu threads
    assert 'snakemake.resources.get("cpus_per_gpu", 0)' in (REPO / "workflow" / "scripts" / "train.py").read_text()
    odd = {"resources": {"train": {"gpu": 3, "threads": 8, "mem_mb": 1000, "runtime": 10}}}
    result = snakemake("-n", "--configfile", _write(tmp_path / "odd.yaml", odd), cwd=clean_copy)
    assert result.returncode != 0 and "threads (8) must be a multiple of gpu (3)" in result.stdout + result.stderr


def test_slurm_jobs_keep_downloads_local_and_the_benchmark_on_cpus():
    bench = (REPO / "workflow" / "rules" / "bench.smk").read_text()
    # The benchmark's partition follows the GPUs it asks (config bench.resources.gpu: 0 -> CPU partition).
    assert 'slurm_partition=partition(config["bench"]["resources"]["gpu"])' in bench
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "set-resources" not in profile
    snakefile = (REPO / "Snakefile").read_text()
    local = snakefile[snakefile.index("localrules:") :].split("\n\n")[0]
    for rule in ("fetch", "render_report", "tiny_archive"):
        assert f"{rule}," in local  # run on the submit host, never submitted
