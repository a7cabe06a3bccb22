"""profiles/slurm as documented: the resources each documented command resolves for each job (a dry
run through the profile and the executor plugin), the packaging extras, and the job logs that keep
their history. The real cluster: tests/workflow/test_slurm_cluster.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests._workflow_fixtures import REPO, copy_repo, snakemake

PROFILE = ["--workflow-profile", "profiles/slurm", "-n"]
NAMES = "slurm={account: abc, cpu_partition: short, gpu_partition: a100}"
needs_plugin = pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
                                  reason="snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")


def resolved(output: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, as the dry run prints them."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"^(?:local)?rule ", output, flags=re.M)[1:]:
        name = block.split(":", 1)[0]
        line = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        pairs = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        jobs.setdefault(name, []).append(pairs)
    return jobs


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("slurm-profile") / "repo")


@needs_plugin
def test_the_documented_cluster_command_sends_each_job_to_its_partition(clean_copy: Path):
    """README: the paper run with the cluster's names set (the only values a user sets)."""
    result = snakemake(*PROFILE, "--config", NAMES, cwd=clean_copy)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = resolved(result.stdout)
    for rule in ("prepare", "encode"):
        assert {job["slurm_partition"] for job in jobs[rule]} == {"short"}
        assert {job["slurm_account"] for job in jobs[rule]} == {"abc"}
    for rule in ("train", "evaluate"):  # gpu: 1 in the paper config
        assert {(job["gpu"], job["slurm_partition"], job["slurm_account"]) for job in jobs[rule]} == {("1", "a100", "abc")}
    train = jobs["train"][0]
    # Each attempt asks slurm.time_limit (24 h), not the 7 days config.yaml asks locally; one task, one node.
    assert (train["runtime"], train["mem_mb"], train["nodes"], train["tasks_per_gpu"]) == ("1440", "64000", "1", "0")
    assert "fetch" in jobs and "slurm_partition" not in jobs["fetch"][0]  # a local rule: the submit host


@needs_plugin
def test_the_data_parallel_command_keeps_the_rest_of_the_profile(clean_copy: Path):
    """README: data-parallel training on 4 GPUs adds to the config; partition, nodes=1,
    tasks_per_gpu=0, runtime and the other rules' resources stay."""
    result = snakemake(*PROFILE, "--config", NAMES, "resources={train: {gpu: 4, threads: 16}}", cwd=clean_copy)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = resolved(result.stdout)
    train = {tuple(sorted(job.items())) for job in jobs["train"]}
    assert len(train) == 1
    train = dict(next(iter(train)))
    assert (train["gpu"], train["cpus_per_gpu"], train["nodes"], train["tasks_per_gpu"]) == ("4", "4", "1", "0")
    assert (train["slurm_partition"], train["slurm_account"], train["runtime"], train["mem_mb"]) == ("a100", "abc", "1440", "64000")
    assert {(job["gpu"], job["slurm_partition"]) for job in jobs["evaluate"]} == {("1", "a100")}
    assert {job["slurm_partition"] for job in jobs["encode"]} == {"short"}


@needs_plugin
def test_cpu_only_jobs_never_ask_the_gpu_partition(clean_copy: Path):
    """README: the smoke run through the profile (gpu: 0 everywhere) asks little, on the CPU partition."""
    result = snakemake(*PROFILE, "--configfile", "config/smoke.yaml", "--config", NAMES, cwd=clean_copy)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = resolved(result.stdout)
    for rule in ("prepare", "encode", "train", "evaluate"):
        assert {job["slurm_partition"] for job in jobs[rule]} == {"short"}, rule
    assert {(job["mem_mb"], job["runtime"]) for job in jobs["train"]} == {("2000", "10")}


def test_the_profile_names_no_cluster_and_sets_what_the_docs_say():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # Names and resources live in the config; a --set-resources or --default-resources given on
    # the command line would replace a block here, so there is none.
    assert not {"set-resources", "default-resources"} & set(profile)
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["slurm"] == {"account": "", "cpu_partition": "", "gpu_partition": "", "time_limit": 1440}
    # The chain of attempts covers the longest train job the config asks for.
    assert profile["retries"] * config["slurm"]["time_limit"] >= config["resources"]["train"]["runtime"]


def test_the_library_installs_without_snakemake():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("snakemake") for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(dep.startswith("snakemake>=") for dep in extras["workflow"])
    assert "lightrnn[workflow]" in extras["slurm"] and any(
        dep.startswith("snakemake-executor-plugin-slurm") for dep in extras["slurm"])
    assert "lightrnn[workflow,slurm]" in extras["test"]
    # Every module of the library imports with Snakemake absent.
    code = (
        "import sys, pkgutil, importlib; sys.modules['snakemake'] = None\n"
        "import lightrnn, baselines\n"
        "for package in (lightrnn, baselines):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "from lightrnn.cli import main\n"
        "try:\n    main(['score', '--help'])\nexcept SystemExit as stop:\n    sys.exit(stop.code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_make_says_what_to_install_when_snakemake_is_missing(tmp_path: Path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "lightrnn").write_text("")  # the venv target is up to date (-o); no snakemake in it
    result = subprocess.run(["make", "-s", "-o", f"{venv}/bin/lightrnn", "smoke", f"VENV={venv}"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"make: Snakemake is not installed in {venv}: {venv}/bin/python -m pip install -e '.[workflow]'" in result.stderr


def _log_to_file(log: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """workflow/scripts/_workflow.log_to_file in a process of its own (it takes over stdout)."""
    code = (
        "import sys, types; sys.path.insert(0, 'workflow/scripts'); import _workflow\n"
        f"_workflow.log_to_file(types.SimpleNamespace(log=[{str(log)!r}]))\n"
        "print('this attempt ran')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=env)


def test_job_logs_keep_history_and_a_retry_that_cannot_succeed_stops_at_once(tmp_path: Path):
    from lightrnn.core.slurm import NOT_RETRIED, PREFIX, append_line

    log = tmp_path / "train.log"
    assert _log_to_file(log).returncode == 0
    log.unlink()  # Snakemake deletes a job's log before each attempt
    assert _log_to_file(log).returncode == 0
    text = log.read_text()
    assert text.count("---- lightrnn job:") == 2 and text.count("this attempt ran") == 2
    # The workflow marks the attempt that ended as not worth a retry: the retry stops at once.
    verdict = f"{PREFIX} train ptb_lightrnn: SLURM job 7 cancelled (scancel) (SLURM's log: x); {NOT_RETRIED}: run again"
    append_line(log, verdict)
    log.unlink()
    stopped = _log_to_file(log)
    assert stopped.returncode == 1 and stopped.stderr.strip() == f"stopped at once: {verdict}"
    # The next workflow run (a fresh attempt after that one) runs: the verdict is before its header.
    log.unlink()
    assert _log_to_file(log).returncode == 0
    assert log.read_text().count("this attempt ran") == 3 and verdict in log.read_text()
