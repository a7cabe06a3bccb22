"""Throughput and peak memory of prepare + encode on a generated corpus in the One Billion Word layout.

Not a test: run it by hand when the data code changes, on an otherwise idle machine.

    .venv/bin/python benchmarks/bench_prepare.py --tokens 20000000

It writes a 1B-layout tar.gz (99 training shards, 50 held-out shards, Zipf-distributed words from
a 1M-word lexicon), then times `prepare("billionw", ...)` and `encode(...)` in a fresh child
process, whose peak resident memory and CPU seconds (resource.getrusage) are therefore those of
the data stage alone (CPU seconds are the fairer figure on a shared machine; the 1-minute load
average is recorded to show how shared it was). One row is appended to results/bench/bench_prepare.csv, including the time projected
linearly for the real corpus (~800M training tokens).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REAL_BILLIONW_TOKENS = 800_000_000  # training words + </S>, the stream encode writes (~0.8B)
MEAN_SENTENCE = 25  # tokens per sentence drawn from 5..45


def _git_rev() -> str:
    from lightrnn.core.metrics import git_rev

    return git_rev() or "unknown"


def _measure(raw_dir: Path, work: Path) -> dict:
    """Runs in the child process: prepare + encode, timed, with this process's peak RSS."""
    from lightrnn.data.encode import encode
    from lightrnn.data.prepare import prepare

    start = time.perf_counter()
    summary = prepare("billionw", raw_dir, work / "text")
    prepared = time.perf_counter()
    meta = encode(work / "text", work / "data")
    done = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "prepare_s": prepared - start,
        "encode_s": done - prepared,
        "words": sum(s["tokens"] for s in summary["splits"].values()),
        "stream_tokens": sum(meta["tokens"].values()),
        "vocab_size": meta["vocab_size"],
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        # CPU seconds too: on a shared machine wall time also counts other people's jobs.
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_average_1min": os.getloadavg()[0],
    }


def _generate(raw_dir: Path, tokens: int, seed: int) -> tuple[int, float]:
    import numpy as np

    from lightrnn.data.corpora import CORPORA
    from lightrnn.data.tiny import billionw_members, write_archive

    start = time.perf_counter()
    per_shard = -(-tokens // 99)
    members = billionw_members(np.random.default_rng(seed), train_sentences_per_shard=per_shard // MEAN_SENTENCE,
                               heldout_sentences_per_shard=2000, lexicon_size=1_000_000, min_len=5, max_len=45)
    archive = raw_dir / CORPORA["billionw"].filename
    write_archive(archive, "tar.gz", members, compresslevel=6)
    return archive.stat().st_size, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000_000, help="training tokens to generate (>= 20M)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, removed)")
    parser.add_argument("--csv", type=Path, default=Path("results/bench/bench_prepare.csv"))
    parser.add_argument("--measure", nargs=2, type=Path, metavar=("RAW", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return 0

    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        work = Path(scratch)
        (work / "raw").mkdir()
        archive_bytes, generate_s = _generate(work / "raw", args.tokens, args.seed)
        print(f"generated {archive_bytes / 2**20:.1f} MiB archive in {generate_s:.1f} s", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--measure", str(work / "raw"), str(work)],
                               check=True, capture_output=True, text=True)
        result = json.loads(child.stdout)
    seconds = result["prepare_s"] + result["encode_s"]
    tokens_per_s = result["stream_tokens"] / seconds
    row = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stream_tokens": result["stream_tokens"],
        "words": result["words"],
        "vocab_size": result["vocab_size"],
        "archive_bytes": archive_bytes,
        "prepare_s": round(result["prepare_s"], 2),
        "encode_s": round(result["encode_s"], 2),
        "tokens_per_s": round(tokens_per_s),
        "cpu_s": round(result["cpu_s"], 2),
        "tokens_per_cpu_s": round(result["stream_tokens"] / result["cpu_s"]),
        "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20, 1),
        "projected_billionw_s": round(REAL_BILLIONW_TOKENS / tokens_per_s),
        "projected_billionw_cpu_s": round(REAL_BILLIONW_TOKENS * result["cpu_s"] / result["stream_tokens"]),
        "load_average_1min": round(result["load_average_1min"], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_model": platform.processor() or platform.machine(),
        "git_rev": _git_rev(),
    }
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.csv.exists()
    with open(args.csv, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new_file:
            writer.writeheader()
        writer.writerow(row)
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
