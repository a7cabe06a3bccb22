"""Several processes that never all arrive: every rank says at once what it waits for, the wait is
bounded by the config key rendezvous_timeout_s, and a RANK outside the world is refused at once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(tmp_path: Path, env: dict[str, str], timeout_s: float) -> tuple[int, list[str], float]:
    """`lightrnn train` in a child process with this torchrun-like environment; (status, stderr lines, seconds)."""
    import os

    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lightrnn", "train", "--data", str(tmp_path / "data"), "--model", "lightrnn",
         "--out", str(tmp_path / "run"), "--set", "device=cpu", "--set", f"rendezvous_timeout_s={timeout_s}"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
             **env},
        capture_output=True, text=True, timeout=120,
    )
    return done.returncode, done.stderr.strip().splitlines(), time.monotonic() - start


SLOW = pytest.mark.slow  # each case starts Python and torch in a child process


@pytest.mark.parametrize("world, rank", [(2, 0), pytest.param(3, 0, marks=SLOW), pytest.param(2, 1, marks=SLOW)])
def test_a_missing_process_is_announced_and_the_wait_is_bounded(tmp_path, world, rank) -> None:
    status, err, seconds = _train(tmp_path, {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": "0"}, 2)
    assert status in (1, 2), err
    assert any("waiting up to 2 s for the" in line and "rendezvous_timeout_s" in line for line in err), err
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and "did not all meet" in errors[0] and "rendezvous_timeout_s" in errors[0], err
    assert seconds < 60  # the 2 s bound plus Python and torch start-up, not torch's 30 minutes
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rank", ["2", pytest.param("-1", marks=SLOW), pytest.param("7", marks=SLOW)])
def test_a_rank_outside_the_world_is_refused_at_once(tmp_path, rank) -> None:
    status, err, _ = _train(tmp_path, {"WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": "0"}, 300)
    assert status == 2 and len(err) == 1, err
    assert f"RANK={rank}" in err[0] and "WORLD_SIZE=2" in err[0] and "torchrun" in err[0]


@pytest.mark.parametrize("value", ["0", "-5", "1e9", "nan"])
def test_the_bound_itself_is_bounded(value) -> None:
    from lightrnn.config import TrainConfig

    with pytest.raises(ValueError, match="rendezvous_timeout_s"):
        TrainConfig.from_yaml(None, [f"rendezvous_timeout_s={value}"])
