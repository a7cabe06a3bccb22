"""Running Snakemake from the tests: the command, a dry run's job counts, a clean copy of the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    table = output[output.index("Job stats:") :]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M) if name != "total"}


def copy_repo(target: Path) -> Path:
    """A clean copy: the working tree without environments, caches, downloads or results."""
    ignore = shutil.ignore_patterns(".venv*", ".git", ".snakemake", "results", "resources", "__pycache__", "*.egg-info")
    shutil.copytree(REPO, target, ignore=ignore)
    return target
