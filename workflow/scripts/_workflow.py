"""Shared by the workflow's scripts: send stderr and logging to the job's log file, and import
this checkout's `lightrnn` (so a --use-conda environment needs only the dependencies).

Snakemake puts the script's folder on sys.path, so scripts `import _workflow` first.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if (REPO_ROOT / "lightrnn").is_dir() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def log_to_file(snakemake) -> None:
    """stdout, stderr (tracebacks, warnings, progress lines) and the `logging` root go to
    snakemake.log[0]: the console shows Snakemake's job lines only (`lightrnn eval` prints its
    JSON to stdout, 20 blocks in a smoke run otherwise)."""
    log = open(snakemake.log[0], "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
