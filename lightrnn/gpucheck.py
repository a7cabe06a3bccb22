"""`make gpu-check`: every CUDA path of the project on this machine's GPU, and one summary table.

    PYTHONPATH=. python -m lightrnn.gpucheck [--out DIR] [--skip tests train bench peak]

Plain Python (no Snakemake, no network). Each step below adds rows to the summary; a failing
step is recorded as FAIL and the others still run:

- tests: `pytest -m gpu` (tests/test_gpu.py): bf16 autocast keeps the LSTM and its state float32
  with bf16 heads, the adaptive and class softmaxes under bf16, the CUDA peak-memory counter per
  phase, `accumulate_losses` flushing float32 blocks into float64, evaluation and checkpoints on
  CUDA against the CPU, the chunked `LightRNN.log_prob`, the batched matmul peak;
- train: every model with bf16 off and on, on a generated Markov corpus (V = 2000): a short run
  (LightRNN: two rounds, so one word reallocation on CUDA), a resume from its checkpoint rewound
  to after the first epoch, and `evaluate_checkpoint` of best.pt on the test split;
- bench: `lightrnn bench throughput` with fp32 and bf16 at V = 10k and 100k (every model);
- peak: the square-GEMM peak, fp32 and bf16, timed in batches of >= 10 ms per synchronize (what
  the benchmarks divide by) and one product per synchronize (the old method, for comparison).

Writes OUT/summary.md (the table it prints), summary.csv, provenance.json, pytest.log, the
throughput CSVs and every run's metrics.jsonl; OUT defaults to results/paper/gpu-check-<gpu>.
Exit status: 0 every check passed, 1 one failed, 2 no CUDA device (nothing written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("tests", "train", "bench", "peak")
MARKOV = dict(vocab_size=2000, successors=8, train_tokens=100_000, valid_tokens=10_000, test_tokens=10_000, seed=0)
TRAIN = ["embed_dim=64", "hidden_dim=128", "num_layers=2", "dropout=0.1", "batch_size=16", "bptt=20",
         "eval_batch_size=8", "lr=0.002", "max_steps_per_epoch=30"]
BENCH_SIZES = ("10000", "100000")
DEVICE = "cuda"  # what every step runs on (a dry run of this script's own logic may set "cpu")


def no_cuda_message() -> str | None:
    """The one-line reason this machine cannot run the check, or None when it can."""
    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"gpu-check: no CUDA device is present (torch {torch.__version__}, {build}); run it on a machine "
            "with an NVIDIA GPU and a CUDA build of torch")


def gpu_slug() -> str:
    """'nvidia-h200' for the folder name."""
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-") or "gpu"


class Summary:
    """The rows of the summary table: check, setting, status (ok / FAIL), result, seconds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def run(self, check: str, setting: str, body: Callable[[], str]) -> bool:
        """Run `body` (returns the result text); a raised error becomes a FAIL row with its first line."""
        start = time.perf_counter()
        try:
            result, status = body(), "ok"
        except Exception as error:  # noqa: BLE001 (recorded, the remaining checks still run)
            traceback.print_exc()
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            result, status = f"{type(error).__name__}: {first}"[:300], "FAIL"
        self.add(check, setting, status, result, time.perf_counter() - start)
        return status == "ok"

    def add(self, check: str, setting: str, status: str, result: str, seconds: float) -> None:
        row = {"check": check, "setting": setting, "status": status, "result": result, "seconds": round(seconds, 1)}
        self.rows.append(row)
        print(f"[{status}] {check} {setting}: {result} ({seconds:.1f} s)", flush=True)

    def markdown(self) -> str:
        lines = ["| check | setting | status | result | s |", "|---|---|---|---|---:|"]
        lines += [f"| {r['check']} | {r['setting']} | {r['status']} | {r['result'].replace('|', '/')} | {r['seconds']} |"
                  for r in self.rows]
        return "\n".join(lines) + "\n"

    @property
    def failed(self) -> int:
        return sum(row["status"] != "ok" for row in self.rows)


def check_tests(summary: Summary, out: Path) -> None:
    """pytest -m gpu, its log in OUT/pytest.log."""
    from lightrnn.fileio import write_text

    def body() -> str:
        command = [sys.executable, "-m", "pytest", "-m", "gpu", str(ROOT / "tests"), "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                                env=_env())
        write_text(out / "pytest.log", result.stdout + result.stderr)
        last = (result.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
        if result.returncode != 0 or "skipped" in last and "passed" not in last:
            raise RuntimeError(f"pytest -m gpu: {last} (see pytest.log)")
        return last

    summary.run("tests", "pytest -m gpu", body)


def _finite_ppl(rows: list[dict[str, Any]], what: str) -> None:
    bad = [row for row in rows if row.get("valid_ppl") is None or not math.isfinite(row["valid_ppl"])]
    if bad or not rows:
        raise RuntimeError(f"{what}: a row without a finite valid ppl ({len(bad)} of {len(rows)})")


def check_training(summary: Summary, out: Path, work: Path) -> None:
    """Train, resume from a rewound checkpoint and evaluate every model, bf16 off and on."""
    from lightrnn.checkpoint import load_checkpoint, save_checkpoint
    from lightrnn.config import TrainConfig
    from lightrnn.data.markov import generate_markov_corpus
    from lightrnn.evaluate import evaluate_checkpoint
    from lightrnn.fileio import read_jsonl, write_text
    from lightrnn.models import names
    from lightrnn.train import train

    data = work / "markov"
    generate_markov_corpus(data, **MARKOV)
    for name in names():
        for bf16 in (False, True):
            label = f"{name} {'bf16' if bf16 else 'fp32'}"
            rounds = "[1,1]" if name == "lightrnn" else "[2]"  # LightRNN: a reallocation between its rounds
            config = TrainConfig.from_yaml(None, [*TRAIN, f"device={DEVICE}", f"model={name}", f"rounds={rounds}", f"bf16={str(bf16).lower()}"])
            run_dir = work / label.replace(" ", "-")
            state: dict[str, Any] = {}

            def run_train() -> str:
                rows = read_jsonl(train(config, data, run_dir))
                _finite_ppl(rows, "train")
                state["rows"] = rows
                epochs = [row for row in rows if row["kind"] == "epoch"]
                text = (f"valid ppl {epochs[-1]['valid_ppl']:.1f}, train {epochs[-1]['train_tokens_per_s']:.0f} tok/s, "
                        f"peak train {epochs[-1].get('peak_memory_train_bytes', 0) / 2**20:.0f} MiB")
                realloc = [row for row in rows if row["kind"] == "realloc"]
                if realloc:
                    text += (f"; realloc {realloc[0]['realloc_s']:.1f} s, nll {realloc[0]['realloc_nll_before']:.3f}"
                             f" -> {realloc[0]['realloc_nll_after']:.3f}, peak {realloc[0]['peak_memory_realloc_bytes'] / 2**20:.0f} MiB")
                return text

            def run_resume() -> str:
                # Rewind the finished run's checkpoint to just after its first epoch and rerun: the
                # resume path on CUDA (checkpoint loaded on the CPU, RNG, optimizer state moved).
                path = run_dir / "checkpoint.pt"
                payload = load_checkpoint(path)
                first = json.loads(payload["metrics_rows"][0])
                payload.pop("format")
                payload.update(next_event=1, step=first["step"], metrics_rows=payload["metrics_rows"][:1])
                save_checkpoint(path, payload)
                rows = read_jsonl(train(config, data, run_dir))
                _finite_ppl(rows, "resume")
                if len(rows) != len(state["rows"]):
                    raise RuntimeError(f"the resumed run has {len(rows)} rows, the first run {len(state['rows'])}")
                return f"{len(rows) - 1} event(s) rerun, valid ppl {rows[-1]['valid_ppl']:.1f}"

            def run_eval() -> str:
                result = evaluate_checkpoint(str(run_dir / "best.pt"), str(data), split="test", device=DEVICE)
                if not math.isfinite(result["ppl"]):
                    raise RuntimeError(f"test ppl {result['ppl']}")
                return f"test ppl {result['ppl']:.1f} over {result['tokens']} tokens"

            if summary.run("train", label, run_train):
                summary.run("resume", label, run_resume)
                summary.run("eval", label, run_eval)
            if (run_dir / "metrics.jsonl").is_file():
                write_text(out / "runs" / f"{label.replace(' ', '-')}.jsonl", (run_dir / "metrics.jsonl").read_text())


def check_bench(summary: Summary, out: Path) -> None:
    """`lightrnn bench throughput` on CUDA, fp32 and bf16, V = 10k and 100k."""
    from lightrnn.csvio import read_csv

    for dtype in ("fp32", "bf16"):
        csv = out / f"throughput-{dtype}.csv"

        def body() -> str:
            command = [sys.executable, "-m", "lightrnn", "bench", "throughput", "--device", DEVICE, "--dtype", dtype,
                       "--vocab-sizes", *BENCH_SIZES, "--repeats", "2", "--out", str(csv)]
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=_env())
            if result.returncode != 0:
                raise RuntimeError((result.stderr.strip().splitlines() or ["failed"])[-1])
            return f"{csv.name}: {len(read_csv(csv))} rows"

        if summary.run("bench", f"throughput {dtype}", body):
            for row in read_csv(csv):
                summary.add("bench", f"{row['model']} V={row['vocab_size']} {dtype}", "ok",
                            f"train {row['train_tokens_per_s']:.0f} tok/s, eval {row['eval_tokens_per_s']:.0f} tok/s, "
                            f"utilisation {100 * row['utilisation']:.1f}%, peak {row['peak_memory_bytes'] / 2**20:.0f} MiB",
                            0.0)


def check_peak(summary: Summary) -> None:
    """The matmul peak, batched (>= 10 ms per synchronize) and one product per synchronize."""
    from lightrnn.benchmark.machine import matmul_flops_per_s

    device = torch.device(DEVICE)
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for size in (1024, 4096):
            def body() -> str:
                batched = matmul_flops_per_s(size, dtype, device, min_seconds=0.5)
                single = matmul_flops_per_s(size, dtype, device, min_seconds=0.5, min_batch_seconds=0.0)
                return f"{batched / 1e12:.1f} TFLOP/s batched, {single / 1e12:.1f} TFLOP/s one product per sync"

            summary.run("matmul peak", f"{size}^3 {dtype_name}", body)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def provenance(argv: list[str]) -> dict[str, Any]:
    from lightrnn.benchmark.machine import machine_info

    return {
        **machine_info(torch.device(DEVICE)),
        "cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0, "command": "python -m lightrnn.gpucheck " + " ".join(argv),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m lightrnn.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the summary (default results/paper/gpu-check-<gpu>)")
    parser.add_argument("--skip", nargs="*", choices=STEPS, default=[], help="steps to leave out")
    args = parser.parse_args(argv)
    message = no_cuda_message()
    if message:
        print(message, file=sys.stderr)
        return 2

    from lightrnn.csvio import write_csv
    from lightrnn.fileio import write_json, write_text
    from lightrnn.runtime import use_fp32_matmul

    use_fp32_matmul()
    out = args.out or ROOT / "results" / "paper" / f"gpu-check-{gpu_slug()}"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lightrnn-gpucheck-"))
    try:
        if "tests" not in args.skip:
            check_tests(summary, out)
        if "train" not in args.skip:
            check_training(summary, out, work)
        if "bench" not in args.skip:
            check_bench(summary, out)
        if "peak" not in args.skip:
            check_peak(summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = provenance(argv)
    header = (f"# gpu-check on {info['device']}\n\n{info['date']}, git {info['git_rev']}, torch {info['torch_version']}, "
              f"CUDA {info['cuda_version']}, tf32 {info['tf32']}; {len(summary.rows)} checks, {summary.failed} failed, "
              f"{time.perf_counter() - start:.0f} s\n\n")
    table = header + summary.markdown()
    summary_path = out / "summary"  # .md (the printed table) and .csv beside it
    write_text(summary_path.with_suffix(".md"), table)
    write_csv(summary.rows, summary_path.with_suffix(".csv"))
    write_json(out / "provenance.json", info)
    print("\n" + table)
    print(f"written to {out}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
