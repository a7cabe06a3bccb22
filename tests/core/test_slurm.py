"""lightrnn.core.slurm: the cause of an attempt's end, read from SLURM's own log of it (the lines
slurmstepd writes, as Debian's slurm-wlm 22.05 wrote them on the test cluster)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightrnn.core.slurm import NOT_RETRIED, PREFIX, STOPPED, append_line, attempt_logs, history_path, last_verdict, read_outcome

BANNER = "Building DAG of jobs...\nrule train:\n    wildcards: dataset=ptb, model=lightrnn\n"
ENDINGS = {
    "memory": "slurmstepd-vm: error: StepId=7.batch exceeded memory limit (415367168 > 314572800), being killed\n"
              "slurmstepd-vm: error: Exceeded job memory limit\n"
              "slurmstepd-vm: error: *** JOB 7 ON vm CANCELLED AT 2026-12-07T17:56:51 ***\n",
    "time": "slurmstepd-vm: error: *** JOB 7 ON vm CANCELLED AT 2026-12-07T17:59:17 DUE TO TIME LIMIT ***\n",
    "preempted": "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-12-07T17:59:17 DUE TO PREEMPTION ***\n",
    "node": "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-12-07T17:59:17 DUE TO NODE FAILURE ***\n",
    "cancelled": "slurmstepd-vm: error: *** JOB 7 ON vm CANCELLED AT 2026-12-07T17:56:35 ***\n",
    "failed": "Traceback (most recent call last):\nValueError: boom\nError in rule train:\n",
}


@pytest.mark.parametrize("kind", ENDINGS)
def test_each_ending_is_read_from_slurms_log(tmp_path: Path, kind: str):
    log = tmp_path / "7.log"
    log.write_text(BANNER + ENDINGS[kind])
    outcome = read_outcome(log)
    assert (outcome.kind, outcome.job_id, outcome.log) == (kind, "7", log)
    # The memory limit SLURM killed at, in MB (314572800 bytes = 300 MB).
    assert outcome.asked_mb == (300 if kind == "memory" else None)


def test_the_description_names_what_was_asked(tmp_path: Path):
    log = tmp_path / "7.log"
    log.write_text(ENDINGS["memory"])
    assert read_outcome(log).describe() == "out of memory (asked 300 MB)"
    log.write_text("slurmstepd: error: Detected 1 oom_kill event in StepId=7.batch\n")  # a cgroup kill
    assert read_outcome(log).describe(asked_mb=2000) == "out of memory (asked 2000 MB)"
    log.write_text(ENDINGS["time"])
    assert read_outcome(log).describe(asked_min=1440) == "time limit (1440 min)"


def test_attempt_logs_are_this_runs_in_job_order(tmp_path: Path):
    for job, mtime in (("12", 100.0), ("9", 200.0), ("100", 300.0), ("old", 300.0)):
        (tmp_path / f"{job}.log").write_text("")
        os.utime(tmp_path / f"{job}.log", (mtime, mtime))
    assert [p.stem for p in attempt_logs(tmp_path)] == ["9", "12", "100"]
    assert [p.stem for p in attempt_logs(tmp_path, since=150.0)] == ["9", "100"]
    assert attempt_logs(tmp_path / "missing") == []


def test_the_last_verdict_is_the_workflows_last_line(tmp_path: Path):
    log = tmp_path / "train.log"
    assert last_verdict(log) is None
    first = f"{PREFIX} train ptb_lightrnn: SLURM job 3 time limit (1 min) (SLURM's log: x); the retry resumes"
    second = f"{PREFIX} train ptb_lightrnn: SLURM job 4 cancelled (scancel) (SLURM's log: y); {NOT_RETRIED}: ..."
    append_line(log, "epoch 1")
    append_line(log, first)
    log.unlink()  # Snakemake deletes the log before the next attempt; the history stays
    append_line(log, second)
    assert last_verdict(log) == second and history_path(log).name == ".train.log.history"
    assert history_path(log).read_text() == f"epoch 1\n{first}\n{second}\n" and log.read_text() == second + "\n"


def test_an_attempt_stopped_at_once_is_told_apart(tmp_path: Path):
    """The retry after a "not retried" line fails at its first line; that is no new cause."""
    log = tmp_path / "8.log"
    log.write_text(BANNER + f"SystemExit: {STOPPED} {PREFIX} train ptb_lightrnn: SLURM job 7 cancelled\n")
    assert (read_outcome(log).kind, read_outcome(log).stopped) == ("failed", True)
    log.write_text(BANNER + ENDINGS["failed"])
    assert read_outcome(log).stopped is False


def test_slurms_state_names_the_cause_when_its_log_does_not(tmp_path: Path):
    """A job stopped at its time limit while it ended: no kill line, squeue says TIMEOUT."""
    log = tmp_path / "9.log"
    log.write_text(BANNER + "Elapsed time: 0:00:56\n")
    assert read_outcome(log, "TIMEOUT").kind == "time"
    assert read_outcome(log, "OUT_OF_MEMORY").kind == "memory"
    assert read_outcome(log, "CANCELLED by 0").kind == "cancelled"
    assert read_outcome(log, "FAILED").kind == read_outcome(log).kind == "failed"
    log.write_text(ENDINGS["memory"])  # the log's own line wins
    assert read_outcome(log, "CANCELLED").kind == "memory"
