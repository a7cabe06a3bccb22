"""Shared by the workflow's scripts: send stderr and logging to the job's log file, and import
this checkout's `lightrnn` (so a --use-conda environment needs only the dependencies).

Snakemake puts the script's folder on sys.path, so scripts `import _workflow` first.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if (REPO_ROOT / "lightrnn").is_dir() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def log_to_file(snakemake) -> None:
    """stdout, stderr (tracebacks, warnings, progress lines) and the `logging` root go to
    snakemake.log[0]: the console shows Snakemake's job lines only (`lightrnn eval` prints its
    JSON to stdout, 20 blocks in a smoke run otherwise).

    The log keeps its history: Snakemake deletes a job's log before each attempt, so every line
    also goes to a hidden history beside it (lightrnn.core.slurm.history_path), and each attempt's
    log starts with the earlier attempts' lines, then a header of its own. A job that resumes (a
    train job after a SLURM time limit, a cancel, a rerun) shows where each attempt stopped and
    took over. A retry that the workflow marked as one that cannot succeed (workflow/rules/
    common.smk appended "... not retried ..." after the previous attempt: a cancel, or an error
    that would repeat) stops here at once, with that line as its error.
    """
    from lightrnn.core.slurm import NOT_RETRIED, STOPPED, history_path, last_verdict

    path = Path(snakemake.log[0])
    history = history_path(path)
    verdict = last_verdict(path)
    stop = verdict is not None and NOT_RETRIED in verdict and _after_last_header(history, verdict)
    path.parent.mkdir(parents=True, exist_ok=True)
    if history.exists():
        path.write_text(history.read_text(errors="replace"), encoding="utf-8")
    log = _Tee(open(path, "a", buffering=1, encoding="utf-8"), open(history, "a", buffering=1, encoding="utf-8"))
    where = f"SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else f"pid {os.getpid()}"
    log.write(f"{HEADER} {where} on {socket.gethostname()}, {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n")
    if stop:
        log.write(f"{STOPPED} {verdict}\n")
        raise SystemExit(f"{STOPPED} {verdict}")
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


HEADER = "---- lightrnn job:"


class _Tee:
    """A text stream that writes to the job's log and its history (subprocesses given it as
    stdout/stderr write to the log's file descriptor, hence the history misses their lines)."""

    def __init__(self, log, history):
        self._log, self._history = log, history

    def write(self, text: str) -> int:
        self._history.write(text)
        return self._log.write(text)

    def flush(self) -> None:
        self._log.flush()
        self._history.flush()

    def fileno(self) -> int:
        return self._log.fileno()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self._log, name)


def _after_last_header(path: Path, line: str) -> bool:
    """Whether `line` (a verdict) was appended after the last attempt's header: about the attempt
    that just ended, not one of an earlier workflow run."""
    text = "\n" + path.read_text(errors="replace")
    return text.rfind("\n" + line) > text.rfind("\n" + HEADER)
