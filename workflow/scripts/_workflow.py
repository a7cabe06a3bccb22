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

    The log is appended to, never truncated: a job that resumes (a train job after a SLURM time
    limit, a cancel or a rerun) keeps the earlier attempts' lines, each attempt under a header. A
    retry that the workflow marked as one that cannot succeed (workflow/rules/common.smk appended
    "... not retried ..." after the previous attempt: a cancel, or an error that would repeat)
    stops here at once, with that line as its error.
    """
    from lightrnn.core.slurm import NOT_RETRIED, last_verdict

    path = Path(snakemake.log[0])
    verdict = last_verdict(path)
    stop = verdict is not None and NOT_RETRIED in verdict and _after_last_header(path, verdict)
    log = open(path, "a", buffering=1, encoding="utf-8")
    where = f"SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else f"pid {os.getpid()}"
    log.write(f"{HEADER} {where} on {socket.gethostname()}, {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n")
    if stop:
        log.write(f"stopped at once: {verdict}\n")
        raise SystemExit(f"stopped at once: {verdict}")
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


HEADER = "---- lightrnn job:"


def _after_last_header(path: Path, line: str) -> bool:
    """Whether `line` (a verdict) was appended after the last attempt's header: about the attempt
    that just ended, not one of an earlier workflow run."""
    text = path.read_text(errors="replace")
    return text.rfind(line) > text.rfind(HEADER)
