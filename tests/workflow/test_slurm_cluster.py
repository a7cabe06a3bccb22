"""The workflow on a real one-node SLURM cluster (.ci/slurm-cluster: munge, slurmctld, slurmd on
127.0.0.1), through the shipped profile with only the cluster's names set.

One workflow run meets each way an attempt ends: a train job killed by its time limit (resumes),
an evaluate job killed for memory (retried with twice the memory), a train job cancelled with
scancel (not retried; the next run resumes it); the rerun's metrics equal those of an uninterrupted
local run. Skipped where the cluster cannot start (not root, no slurm-wlm/munge, no plugin);
.ci/run installs them. A few minutes: SLURM's smallest time limit is one minute, and the time-limited
job must outlast it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests._workflow_fixtures import REPO, SNAKEMAKE, copy_repo

pytestmark = pytest.mark.slow

CLUSTER = REPO / ".ci" / "slurm-cluster"
# The ppl columns of a metrics row: what an interrupted run must reproduce (times differ).
PPL_FIELDS = ("kind", "round", "epoch", "step", "train_ppl", "valid_ppl", "test_ppl")


def _cluster_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (slurmd starts jobs as their user)"
    for tool in ("munged", "slurmctld", "slurmd"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            return f"{tool} is not installed (apt-get install slurm-wlm munge)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment that reaches the cluster (its client wrappers first on PATH)."""
    if reason := _cluster_missing():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    up = subprocess.run([str(CLUSTER), "up", str(folder)], capture_output=True, text=True, timeout=60)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        path = f"{folder / 'bin'}{os.pathsep}{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"
        yield {**os.environ, "PATH": path}
    finally:
        down = subprocess.run([str(CLUSTER), "down", str(folder)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        for name in ("munged.pid", "slurmctld.pid", "slurmd.pid"):
            assert not (folder / name).exists(), f"{name} left behind"


def _config(path: Path, run: str) -> Path:
    """A smoke subset: ptb x {lightrnn, full_softmax}. lightrnn trains past one minute (the time
    limit), full_softmax long enough to be cancelled after its first checkpoint; evaluate asks
    less memory than it needs (the retry asks twice as much)."""
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    override = smoke["train_override"]
    epochs = {key: override.pop(key) for key in ("max_steps_per_epoch", "rounds")}
    config = {
        **smoke,
        "run": run,
        "datasets_to_run": ["ptb"],
        "models_to_run": ["lightrnn", "full_softmax"],
        "train_override": {**override, "checkpoint_every_s": 5},
        "models": {
            "lightrnn": {"train": {**epochs, "rounds": [600], "max_steps_per_epoch": 60}},  # > 1 min on an idle CPU
            "full_softmax": {"train": {**epochs, "rounds": [30], "max_steps_per_epoch": 60}},
        },
        "resources": {
            **smoke["resources"],
            "train": {"gpu": 0, "threads": 1, "mem_mb": 2000, "runtime": 1},
            "evaluate": {"gpu": 0, "threads": 1, "mem_mb": 400, "runtime": 10},
        },
        "slurm": {"cpu_partition": "cpu", "gpu_partition": "gpu"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [tuple(row.get(field) for field in PPL_FIELDS) for row in rows]


def _squeue(env: dict, fmt: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", fmt], env=env, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def test_the_shipped_profile_runs_a_smoke_subset_and_says_why_attempts_ended(cluster, tmp_path):
    work = copy_repo(tmp_path / "repo")
    config = _config(tmp_path / "cluster.yaml", "cluster")
    command = [str(SNAKEMAKE), "--workflow-profile", "profiles/slurm", "--configfile", str(config),
               "--keep-going", "--slurm-init-seconds-before-status-checks", "2"]
    # A partition the cluster lacks: one line naming the key, before anything is submitted.
    wrong = subprocess.run([*command, "--config", "slurm={gpu_partition: a100}"], cwd=work, env=cluster,
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and not _squeue(cluster, "%i")
    assert "config slurm.gpu_partition: 'a100' is not a partition of this cluster (sinfo lists cpu, gpu)" in wrong.stderr

    # The reference: the same run on this machine, uninterrupted (profiles/default), in its own copy.
    local = copy_repo(tmp_path / "local")
    processes = []
    try:
        reference = subprocess.Popen([str(SNAKEMAKE), "--cores", "1", "--configfile", str(config)],
                                     cwd=local, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(reference)
        first = subprocess.Popen(command, cwd=work, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        processes.append(first)
        output, cancelled = _cancel_full_softmax_once_it_checkpoints(first, work, cluster)
        assert cancelled is not None, output[-4000:]
        assert first.returncode != 0, output[-4000:]  # the cancelled job was not retried
        _check_first_run(work, output, cancelled)

        # The rerun resumes the cancelled job and finishes the run.
        second = subprocess.run(command, cwd=work, env=cluster, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        full_log = (work / "results" / "cluster" / "logs" / "train" / "ptb" / "full_softmax.log").read_text()
        assert "lightrnn train: resumed from" in full_log.rsplit(f"SLURM job {cancelled} cancelled (scancel)", 1)[1]
        ref_output, _ = reference.communicate(timeout=600)
        assert reference.returncode == 0, ref_output[-4000:]
        for model in ("lightrnn", "full_softmax"):
            assert _rows(work / "results" / "cluster" / "ptb" / model) == _rows(local / "results" / "cluster" / "ptb" / model)
    finally:
        for process in processes:  # a failed assertion leaves no workflow running
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)


def _cancel_full_softmax_once_it_checkpoints(first: subprocess.Popen, work: Path, cluster: dict):
    checkpoint = work / "results" / "cluster" / "ptb" / "full_softmax" / "checkpoint.pt"
    cancelled = None
    deadline = time.monotonic() + 300
    while cancelled is None and time.monotonic() < deadline and first.poll() is None:
        running = [job for job, comment, state in _squeue(cluster, "%i|%k|%T")
                   if comment == "rule_train_wildcards_ptb_full_softmax" and state == "RUNNING"]
        if running and checkpoint.exists():
            subprocess.run(["scancel", running[0]], env=cluster, check=True)
            cancelled = running[0]
        time.sleep(0.5)
    output, _ = first.communicate(timeout=900)
    return output, cancelled


def _check_first_run(work: Path, output: str, cancelled: str) -> None:
    logs = work / "results" / "cluster" / "logs"
    slurm_logs = Path(".snakemake") / "slurm_logs"
    # The cancel: one line on the console and in the job's log, naming SLURM's log; the retry
    # stopped at its first line and was the last attempt.
    line = (f"lightrnn workflow: train ptb_full_softmax: SLURM job {cancelled} cancelled (scancel) "
            f"(SLURM's log: {slurm_logs / 'rule_train' / 'ptb_full_softmax' / f'{cancelled}.log'}); not retried")
    full_log = (logs / "train" / "ptb" / "full_softmax.log").read_text()
    assert line in output and line in full_log, output[-4000:]
    assert f"stopped at once: {line}" in full_log
    # SLURM's logs of failed attempts stay (the plugin deletes those of jobs that succeeded).
    attempts = sorted(path.name for path in (work / slurm_logs / "rule_train" / "ptb_full_softmax").glob("*.log"))
    assert len(attempts) == 2, attempts
    # The time limit: lightrnn's first attempt was killed at 1 minute, the retry resumed and finished.
    lightrnn_log = (logs / "train" / "ptb" / "lightrnn.log").read_text()
    assert "lightrnn workflow: train ptb_lightrnn: SLURM job" in output, output[-4000:]
    assert "time limit (1 min)" in output and "the retry resumes from the checkpoint" in lightrnn_log
    assert "lightrnn train: resumed from" in lightrnn_log and lightrnn_log.count("---- lightrnn job:") >= 2
    # The memory kill: evaluate asked 400 MB (its peak is 550-650 MB: torch and the model), was killed, and the retry
    # with 800 MB finished.
    assert "lightrnn workflow: evaluate ptb_lightrnn: SLURM job" in output
    assert "out of memory (asked 400 MB)" in output
    assert "the retry asks 800 MB" in (logs / "evaluate" / "ptb" / "lightrnn.log").read_text()
    assert (work / "results" / "cluster" / "ptb" / "lightrnn" / "eval.json").exists()
