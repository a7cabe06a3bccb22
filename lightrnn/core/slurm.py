"""Why a SLURM job attempt ended, read from SLURM's own log of it, and whether a retry can cure it.

The executor plugin (snakemake-executor-plugin-slurm) writes each job's SLURM output to
`.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log`; slurmstepd writes the cause of a kill
there and nowhere the user looks (the plugin says "FAILED" or "CANCELLED"). The workflow
(workflow/rules/common.smk) reads it before a retry and when the run fails, appends `line()` to
the job's own log and prints it, and scales the retry's memory or time when that is the cure.
Light: no torch, no Snakemake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The prefix of every line the workflow appends to a job's log about an attempt's end;
# workflow/scripts/_workflow.py reads the last one to skip a retry that cannot succeed.
PREFIX = "lightrnn workflow:"
NOT_RETRIED = "not retried"
STOPPED = "stopped at once:"  # the first line of an attempt that a "not retried" line stopped

# Causes a retry can cure, and how: the same request again (the job resumes or the node is
# replaced), more memory, or more time (a job that cannot resume).
RETRY_SAME = ("time", "preempted", "node")
_MEMORY = re.compile(r"exceeded memory limit \((\d+) > (\d+)\)|oom[_-]kill event|Exceeded job memory limit", re.I)
_KILLED = re.compile(r"\*\*\* JOB (\d+) ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))? \*\*\*")


@dataclass(frozen=True)
class Outcome:
    """One ended attempt: kind is memory, time, preempted, node, cancelled or failed (an exit
    status other than 0 with no kill: the job's own error, which a retry repeats)."""

    kind: str
    job_id: str
    log: Path
    asked_mb: int | None = None  # the memory limit the job was killed at, when SLURM says it
    stopped: bool = False  # an attempt that stopped at its first line (after a "not retried" line)

    def describe(self, asked_mb: int | None = None, asked_min: int | None = None) -> str:
        asked = self.asked_mb or asked_mb
        return {
            "memory": f"out of memory (asked {asked} MB)" if asked else "out of memory",
            "time": f"time limit ({asked_min} min)" if asked_min else "time limit",
            "preempted": "preempted",
            "node": "node failure",
            "cancelled": "cancelled (scancel)",
            "failed": "failed with the error above",
        }[self.kind]


# SLURM's job states (squeue %T, sacct State) for a log that names no cause: a job can be
# stopped at its time limit while it ends, before slurmstepd writes the line.
_STATES = {"TIMEOUT": "time", "OUT_OF_MEMORY": "memory", "PREEMPTED": "preempted", "NODE_FAIL": "node",
           "CANCELLED": "cancelled", "DEADLINE": "time"}


def read_outcome(log: Path, state: str = "") -> Outcome:
    """The cause SLURM wrote into its log of one job attempt; else the job's final state
    (`state`, as squeue prints it), else `failed`."""
    text = log.read_text(errors="replace") if log.exists() else ""
    job_id = log.stem
    if match := _MEMORY.search(text):
        limit = match.group(2)
        return Outcome("memory", job_id, log, int(limit) // (1024 * 1024) if limit else None)
    if match := _KILLED.search(text):
        reason = (match.group(2) or "").strip()
        kind = {"TIME LIMIT": "time", "PREEMPTION": "preempted", "NODE FAILURE": "node"}.get(reason, "cancelled")
        return Outcome(kind, job_id, log)
    kind = _STATES.get(state.split()[0].upper() if state.strip() else "", "failed")
    return Outcome(kind, job_id, log, stopped=kind == "failed" and STOPPED in text)


def attempt_logs(log_dir: Path, since: float = 0.0) -> list[Path]:
    """SLURM's logs of one job's attempts (one folder per rule and wildcards), oldest first;
    only those written at or after `since` (a Unix time: this workflow run's start)."""
    if not log_dir.is_dir():
        return []
    logs = [path for path in log_dir.glob("*.log") if path.stem.isdigit() and path.stat().st_mtime >= since]
    return sorted(logs, key=lambda path: int(path.stem))


def history_path(job_log: Path) -> Path:
    """Where a job's log keeps its earlier attempts: Snakemake deletes a job's log before each
    attempt, so every line goes here too and each attempt's log starts with a copy of it."""
    job_log = Path(job_log)
    return job_log.with_name(f".{job_log.name}.history")


def append_line(job_log: Path, line: str) -> None:
    """One line at the end of a job's log and of its history."""
    for path in (Path(job_log), history_path(job_log)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")


def last_verdict(job_log: Path) -> str | None:
    """The last line the workflow appended to a job's log (its history) about an attempt's end."""
    history = history_path(job_log)
    if not history.exists():
        return None
    lines = [line for line in history.read_text(errors="replace").splitlines() if line.startswith(PREFIX)]
    return lines[-1] if lines else None
