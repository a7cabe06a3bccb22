"""`make gpu-check`: every CUDA path of the project on this machine's GPU, within a time budget.

    PYTHONPATH=. python -m lightrnn.gpucheck [--budget-s 330] [--out DIR] [--skip STEP ...]
    PYTHONPATH=. python -m lightrnn.gpucheck --dry-run --out DIR    # the same logic on the CPU, tiny sizes

Plain Python (no Snakemake, no network). It prints its plan and budget first, then runs the
steps in order of value; each step adds rows to one summary table, a failing step is recorded
as FAIL and the others still run, and a step (or part of one) that would not fit in what is
left of the budget is recorded as SKIP with the numbers, so the whole run ends within
`--budget-s` (default 330 s: under 6 minutes of wall time on one lent H100/H200, start-up
included). Each step has a share of the budget (`SHARES`) that later steps keep; time a step
leaves unused goes to the next.

1. tests: `pytest -m gpu` (tests/test_gpu.py): bf16 autocast keeps the LSTM and its state
   float32 with bf16 heads, the adaptive and class softmaxes under bf16, the CUDA peak-memory
   counter per phase, `accumulate_losses` flushing float32 blocks into float64, evaluation and
   checkpoints on CUDA against the CPU, the chunked `LightRNN.log_prob`, the batched matmul peak;
2. paper: training tokens/s and peak memory at One Billion Word's V = 793,471
   (`lightrnn.benchmark.paper_speed`): LightRNN and the adaptive softmax at 500/500 batch 100,
   1000/1000 batch 200 and 1500/1500 batch 200, bf16 and fp32, the full softmax where its
   estimated memory fits; beside the official Titan X figures. OUT/paper-throughput.csv;
3. train: every model with bf16 off and on, on a generated Markov corpus (V = 2000): a short run
   (LightRNN: two rounds, so one word reallocation on CUDA), a resume from its checkpoint rewound
   to after the first epoch, and `evaluate_checkpoint` of best.pt on the test split;
4. bench: `lightrnn bench throughput` with fp32 and bf16 at V = 10k and 100k (every model);
5. peak: the square-GEMM peak, fp32 and bf16, timed in batches of >= 10 ms per synchronize (what
   the benchmarks divide by) and one product per synchronize (the old method, for comparison).

Writes OUT/summary.md (the table it prints), summary.csv, provenance.json, pytest.log,
paper-throughput.csv, the throughput CSVs and every run's metrics.jsonl; OUT defaults to
results/paper/gpu-<gpu> (e.g. results/paper/gpu-nvidia-h200).
`--dry-run` runs every step on the CPU at tiny sizes (pytest only collects the GPU tests, fp32
only, V = 2000 for the paper step) with the same budget logic: what the test suite checks.
Exit status: 0 every check passed (SKIP rows included: a step the budget stopped is SKIP, not
FAIL), 1 one failed, 2 the run cannot start, said in one line with nothing written: no CUDA device,
torch missing or unloadable, a budget that is not a number of seconds in (0, 86400], an OUT that
is a file or cannot be created. `make gpu-check` runs the project's .venv/bin/python when there is
one and asks `--check-only` first, so make reports such a refusal as its one line.
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

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("tests", "paper", "train", "bench", "peak")  # in order of value
# Each step's share of the budget, kept for it while earlier steps run; what a step leaves
# unused goes to the next. The expected seconds on an H200 are in PLAN_NOTES.
SHARES = {"tests": 0.25, "paper": 0.40, "train": 0.15, "bench": 0.15, "peak": 0.05}
PLAN_NOTES = {
    "tests": "pytest -m gpu (CUDA correctness)",
    "paper": "tokens/s + peak memory at V = 793,471: LightRNN, adaptive softmax, full softmax if it fits; bf16, fp32",
    "train": "train + resume + eval of every model, bf16 off and on (Markov corpus, V = 2000)",
    "bench": "lightrnn bench throughput fp32 and bf16 at V = 10k, 100k",
    "peak": "matmul peak fp32 and bf16, batched and one product per sync",
}
DEFAULT_BUDGET_S = 330.0
MARKOV = dict(vocab_size=2000, successors=8, train_tokens=100_000, valid_tokens=10_000, test_tokens=10_000, seed=0)
TRAIN = ["embed_dim=64", "hidden_dim=128", "num_layers=2", "dropout=0.1", "batch_size=16", "bptt=20",
         "eval_batch_size=8", "lr=0.002", "max_steps_per_epoch=30"]
BENCH_SIZES = ("10000", "100000")
BENCH_ARGS: list[str] = []
PEAK_SIZES = (1024, 4096)
DTYPES = ("fp32", "bf16")
DEVICE = "cuda"  # what every step runs on (`--dry-run` sets "cpu" and the tiny sizes below)
DRY_RUN = False


def use_dry_run() -> None:
    """Tiny sizes on the CPU: the script's own logic (steps, budget, files) without a GPU."""
    global DEVICE, DRY_RUN, MARKOV, TRAIN, BENCH_SIZES, BENCH_ARGS, PEAK_SIZES, DTYPES
    DEVICE, DRY_RUN, DTYPES = "cpu", True, ("fp32",)
    MARKOV = dict(vocab_size=100, successors=4, train_tokens=3_000, valid_tokens=400, test_tokens=400, seed=0)
    TRAIN = ["embed_dim=8", "hidden_dim=16", "num_layers=1", "dropout=0.0", "batch_size=4", "bptt=8",
             "eval_batch_size=4", "lr=0.01", "max_steps_per_epoch=2"]
    BENCH_SIZES = ("300",)
    BENCH_ARGS = ["--embed-dim", "8", "--hidden-dim", "16", "--batch-size", "2", "--bptt", "4", "--repeats", "1",
                  "--min-seconds", "0", "--timed-steps", "1", "--warmup-steps", "0"]
    PEAK_SIZES = (64,)


class Budget:
    """The run's deadline and each step's share of it (`SHARES`)."""

    def __init__(self, seconds: float, steps: list[str]) -> None:
        self.seconds, self.steps = float(seconds), list(steps)
        self.start = time.perf_counter()
        self.deadline = self.start + self.seconds
        total = sum(SHARES[step] for step in self.steps) or 1.0
        self.share = {step: SHARES[step] / total * self.seconds for step in self.steps}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step_deadline(self, step: str) -> float:
        """When `step` must stop: now + (what is left minus the shares of the steps after it), at least its own share."""
        later = sum(self.share[s] for s in self.steps[self.steps.index(step) + 1:])
        allowed = max(self.share[step], self.left() - later)
        return min(self.deadline, time.perf_counter() + allowed)

    def plan(self) -> str:
        lines = [f"gpu-check plan: budget {self.seconds:.0f} s ({self.seconds / 60:.1f} min) on {DEVICE}"
                 + (" (dry run: tiny sizes)" if DRY_RUN else "") + "; steps in order of value:"]
        lines += [f"  {i}. {step:6s} share {self.share[step]:5.0f} s  {PLAN_NOTES[step]}"
                  for i, step in enumerate(self.steps, 1)]
        lines.append("  a step, or part of one, that would not fit in what is left is recorded as SKIP")
        return "\n".join(lines)


def _skip_row(summary: "Summary", check: str, setting: str, left: float, needed: float) -> None:
    summary.add(check, setting, "SKIP", f"budget: {max(0.0, left):.0f} s left, about {needed:.0f} s needed", 0.0)


def no_cuda_message() -> str | None:
    """The one-line reason this machine cannot run the check, or None when it can."""
    import torch

    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"gpu-check: no CUDA device is present (torch {torch.__version__}, {build}); run it on a machine "
            "with an NVIDIA GPU and a CUDA build of torch")


def gpu_slug() -> str:
    """'nvidia-h200' for the folder name."""
    import torch

    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-") or "gpu"


class BudgetStop(RuntimeError):
    """A step stopped because the budget ran out: recorded as SKIP, not as a failure."""


class Summary:
    """The rows of the summary table: check, setting, status (ok / FAIL), result, seconds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def run(self, check: str, setting: str, body: Callable[[], str]) -> bool:
        """Run `body` (returns the result text); a raised error becomes a FAIL row with its first line."""
        start = time.perf_counter()
        try:
            result, status = body(), "ok"
        except BudgetStop as stop:
            result, status = str(stop), "SKIP"
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
        return sum(row["status"] == "FAIL" for row in self.rows)

    @property
    def skipped(self) -> int:
        return sum(row["status"] == "SKIP" for row in self.rows)


def check_tests(summary: Summary, out: Path, deadline: float) -> None:
    """pytest -m gpu (the dry run only collects them), its log in OUT/pytest.log; stopped at `deadline`."""
    from lightrnn.core.fileio import write_text

    def body() -> str:
        command = [sys.executable, "-m", "pytest", "-m", "gpu", str(ROOT / "tests"), "-q", "-p", "no:cacheprovider"]
        if DRY_RUN:
            command = [*command[:-3], str(ROOT / "tests" / "test_gpu.py"), "--collect-only", "-q", "-p", "no:cacheprovider"]
        timeout = max(1.0, deadline - time.perf_counter())
        try:
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                                    env=_env(), timeout=timeout)
        except subprocess.TimeoutExpired as error:
            write_text(out / "pytest.log", _text(error.stdout) + _text(error.stderr))
            raise BudgetStop(f"budget: pytest -m gpu stopped after {timeout:.0f} s (see pytest.log)") from None
        write_text(out / "pytest.log", result.stdout + result.stderr)
        last = (result.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
        if result.returncode != 0 or "skipped" in last and "passed" not in last:
            raise RuntimeError(f"pytest -m gpu: {last} (see pytest.log)")
        return last

    summary.run("tests", "pytest -m gpu" + (" --collect-only (dry run)" if DRY_RUN else ""), body)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def titan_x_figures() -> dict[tuple[int, int, int], float]:
    """The official example's 1-GPU tokens/s by (embed, hidden, batch), from `lightrnn.report.paper.SPEED`."""
    from lightrnn.report import paper

    return {(row.embed_dim, row.hidden_dim, row.batch_size): float(row.tokens_per_s_1gpu.value) for row in paper.SPEED}


def check_paper(summary: Summary, out: Path, deadline: float) -> str:
    """Tokens/s and peak memory at V = 793,471 (`lightrnn.benchmark.paper_speed`) -> OUT/paper-throughput.csv."""
    from lightrnn.benchmark import paper_speed

    if DRY_RUN:
        plan = paper_speed.PaperSpeedPlan(vocab_size=2000, configs=((16, 16, 2), (24, 24, 2)), dtypes=DTYPES,
                                          bptt=4, device=DEVICE, min_seconds=0.0, timed_steps=1, warmup_steps=0)
        guesses = {name: 1.0 for name in (*plan.models, paper_speed.FULL)}
    else:
        from lightrnn.report.paper import BILLIONW_VOCAB

        plan = paper_speed.PaperSpeedPlan(vocab_size=BILLIONW_VOCAB, device=DEVICE, dtypes=DTYPES)
        guesses = None
    rows = paper_speed.run_paper_speed(plan, deadline=deadline, first_guess_s=guesses, titan_x=titan_x_figures())
    path = paper_speed.write_paper_speed(rows, out)
    for row in rows:
        setting = f"{row['model']} V={row['vocab_size']} {row['embed_dim']}/{row['hidden_dim']} batch {row['batch_size']} {row['dtype']}"
        if row["status"] == "ok":
            text = (f"train {row['train_tokens_per_s']:.0f} tok/s, eval {row['eval_tokens_per_s']:.0f} tok/s, "
                    f"peak {row['peak_memory_bytes'] / 2**20:.0f} MiB (estimated {row['estimated_bytes'] / 2**20:.0f})")
            if row["over_titan_x"] == row["over_titan_x"]:  # not NaN
                text += f", {row['over_titan_x']:.2f}x the Titan X figure {row['titan_x_tokens_per_s']:.0f}"
        else:
            text = row["reason"]
        summary.add("paper", setting, {"ok": "ok", "skipped": "SKIP"}.get(row["status"], "FAIL"), text, row["seconds"])
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "skipped", "FAIL")}
    return f"{path.name}: {counts['ok']} measured, {counts['skipped']} skipped, {counts['FAIL']} failed"


def _finite_ppl(rows: list[dict[str, Any]], what: str) -> None:
    bad = [row for row in rows if row.get("valid_ppl") is None or not math.isfinite(row["valid_ppl"])]
    if bad or not rows:
        raise RuntimeError(f"{what}: a row without a finite valid ppl ({len(bad)} of {len(rows)})")


def check_training(summary: Summary, out: Path, work: Path, deadline: float) -> None:
    """Train, resume from a rewound checkpoint and evaluate every model, bf16 off and on."""
    from lightrnn.config import TrainConfig
    from lightrnn.core.fileio import read_jsonl, write_text
    from lightrnn.data.markov import generate_markov_corpus
    from lightrnn.registry import names
    from lightrnn.training.checkpoint import load_checkpoint, save_checkpoint
    from lightrnn.training.evaluate import evaluate_checkpoint
    from lightrnn.training.train import train

    data = work / "markov"
    generate_markov_corpus(data, **MARKOV)
    slowest = 2.0 if DRY_RUN else 15.0  # first guess of one model's train + resume + eval
    for name in names():
        for bf16 in [dtype == "bf16" for dtype in DTYPES]:
            label = f"{name} {'bf16' if bf16 else 'fp32'}"
            left = deadline - time.perf_counter()
            if slowest > left:
                _skip_row(summary, "train", label, left, slowest)
                continue
            started = time.perf_counter()
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
            slowest = max(slowest, time.perf_counter() - started)


def check_bench(summary: Summary, out: Path, deadline: float) -> None:
    """`lightrnn bench throughput` on the device, fp32 and bf16, V = 10k and 100k; stopped at `deadline`."""
    from lightrnn.core.csvio import read_csv

    needed = 2.0 if DRY_RUN else 20.0
    for dtype in DTYPES:
        csv = out / f"throughput-{dtype}.csv"
        left = deadline - time.perf_counter()
        if needed > left:
            _skip_row(summary, "bench", f"throughput {dtype}", left, needed)
            continue

        def body() -> str:
            command = [sys.executable, "-m", "lightrnn", "bench", "throughput", "--device", DEVICE, "--dtype", dtype,
                       "--vocab-sizes", *BENCH_SIZES, "--repeats", "2", *BENCH_ARGS, "--out", str(csv)]
            timeout = max(1.0, deadline - time.perf_counter())
            try:
                result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=_env(),
                                        timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BudgetStop(f"budget: stopped after {timeout:.0f} s") from None
            if result.returncode != 0:
                raise RuntimeError((result.stderr.strip().splitlines() or ["failed"])[-1])
            return f"{csv.name}: {len(read_csv(csv))} rows"

        if summary.run("bench", f"throughput {dtype}", body):
            for row in read_csv(csv):
                summary.add("bench", f"{row['model']} V={row['vocab_size']} {dtype}", "ok",
                            f"train {row['train_tokens_per_s']:.0f} tok/s, eval {row['eval_tokens_per_s']:.0f} tok/s, "
                            f"utilisation {100 * row['utilisation']:.1f}%, peak {row['peak_memory_bytes'] / 2**20:.0f} MiB",
                            0.0)


def check_peak(summary: Summary, deadline: float) -> None:
    """The matmul peak, batched (>= 10 ms per synchronize) and one product per synchronize."""
    import torch

    from lightrnn.benchmark.machine import matmul_flops_per_s

    device = torch.device(DEVICE)
    seconds = 0.05 if DRY_RUN else 0.5
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype_name not in DTYPES:
            continue
        for size in PEAK_SIZES:
            left = deadline - time.perf_counter()
            if 3 * seconds > left:
                _skip_row(summary, "matmul peak", f"{size}^3 {dtype_name}", left, 3 * seconds)
                continue

            def body() -> str:
                batched = matmul_flops_per_s(size, dtype, device, min_seconds=seconds)
                single = matmul_flops_per_s(size, dtype, device, min_seconds=seconds, min_batch_seconds=0.0)
                return f"{batched / 1e12:.1f} TFLOP/s batched, {single / 1e12:.1f} TFLOP/s one product per sync"

            summary.run("matmul peak", f"{size}^3 {dtype_name}", body)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def provenance(argv: list[str]) -> dict[str, Any]:
    import torch

    from lightrnn.benchmark.machine import machine_info

    return {
        **machine_info(torch.device(DEVICE)),
        "cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "command": "python -m lightrnn.gpucheck " + " ".join(argv), "dry_run": DRY_RUN,
    }


MAX_BUDGET_S = 86_400.0  # a day: the check is minutes; beyond this a timeout would overflow, not wait


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line (`gpu-check: ...`, exit 2), like every other refusal here."""

    check_only = False  # --check-only: the refusal goes to stdout, where make reads it

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"gpu-check: {message}; see python -m lightrnn.gpucheck --help",
              file=sys.stdout if self.check_only else sys.stderr)
        raise SystemExit(2)


def _out_path(text: str) -> Path:
    """--out as a Path; an empty one (which Path reads as ".") is refused, not the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; pass a folder path")
    return Path(text)


def check_budget(seconds: float) -> str | None:
    """The one-line reason `--budget-s` cannot be a budget (NaN, inf, <= 0, more than a day), or None."""
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_BUDGET_S:
        return (f"gpu-check: --budget-s (BUDGET) must be a number of seconds in (0, {MAX_BUDGET_S:.0f}], got "
                f"{seconds:g}; e.g. BUDGET=330")
    return None


def check_out(out: Path) -> str | None:
    """The one-line reason OUT cannot become the results folder (a file, under a file, not writable), or None.
    Nothing is created: a refused run writes nothing."""
    if out.exists() and not out.is_dir():
        return f"gpu-check: --out (OUT) {out} is a file, not a folder; pass a folder path (it is created if missing)"
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"gpu-check: --out (OUT) {out} cannot be created: {parent} is a file, not a folder; pass another path"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"gpu-check: --out (OUT) {out} cannot be created: {parent} is not writable for you; pass another path"
    return None


def refusal(args: argparse.Namespace) -> str | None:
    """Why this run cannot start, in one line (bad budget, bad OUT, no torch, no CUDA), or None.
    What `make gpu-check` asks first (`--check-only`), so make says it in one line too."""
    reason = check_budget(args.budget_s)
    if reason is None and args.dry_run and args.out is None:
        reason = "gpu-check: --dry-run needs --out DIR (a dry run's numbers do not belong in results/paper)"
    if reason is None and args.out is not None:
        reason = check_out(args.out)
    if reason is None:
        try:
            import torch  # noqa: F401 (the check's one heavy dependency)
        except ImportError as error:
            from lightrnn.core.errors import import_failure

            reason = f"gpu-check: {import_failure(error)}"
    if reason is None and not args.dry_run:
        reason = no_cuda_message()
        if reason is None and args.out is None:
            reason = check_out(default_out())
    return reason


def default_out() -> Path:
    """results/paper/gpu-<gpu> of this checkout (needs a CUDA device)."""
    return ROOT / "results" / "paper" / f"gpu-{gpu_slug()}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _Parser(prog="python -m lightrnn.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=_out_path, default=None, help="folder for the results (default results/paper/gpu-<gpu>)")
    parser.add_argument("--skip", nargs="*", choices=STEPS, default=[], help="steps to leave out")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds the whole run may take (default {DEFAULT_BUDGET_S:.0f}: under 6 min on a lent GPU; "
                        f"at most {MAX_BUDGET_S:.0f})")
    parser.add_argument("--dry-run", action="store_true",
                        help="every step on the CPU at tiny sizes (the script's logic; needs --out)")
    parser.add_argument("--check-only", action="store_true",
                        help="only say (on stdout, one line) why the run could not start, and exit: what make asks first")
    parser.check_only = "--check-only" in argv
    args = parser.parse_args(argv)
    reason = refusal(args)
    if args.check_only:
        if reason:
            print(reason)
        return 2 if reason else 0
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if args.dry_run:
        use_dry_run()

    from lightrnn.core.csvio import write_csv
    from lightrnn.core.fileio import write_json, write_text
    from lightrnn.core.runtime import use_fp32_matmul

    steps = [step for step in STEPS if step not in args.skip]
    budget = Budget(args.budget_s, steps)
    out = (args.out or default_out()).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"gpu-check: --out (OUT) {out} cannot be created ({error.strerror or error}); pass another path",
              file=sys.stderr)
        return 2
    print(budget.plan(), flush=True)
    use_fp32_matmul()
    summary = Summary()
    work = Path(tempfile.mkdtemp(prefix="lightrnn-gpucheck-"))
    try:
        for step in steps:
            deadline = budget.step_deadline(step)
            if deadline - time.perf_counter() < 1.0:  # less than a second: nothing useful fits
                _skip_row(summary, step, "whole step", budget.left(), budget.share[step])
                continue
            print(f"--- {step}: until {deadline - budget.start:.0f} s of {budget.seconds:.0f} s", flush=True)
            if step == "tests":
                check_tests(summary, out, deadline)
            elif step == "paper":
                summary.run("paper", "paper-size throughput", lambda: check_paper(summary, out, deadline))
            elif step == "train":
                check_training(summary, out, work, deadline)
            elif step == "bench":
                check_bench(summary, out, deadline)
            elif step == "peak":
                check_peak(summary, deadline)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = provenance(argv)
    elapsed = time.perf_counter() - budget.start
    info.update(budget_s=budget.seconds, elapsed_s=round(elapsed, 1))
    header = (f"# gpu-check on {info['device']}{' (dry run)' if DRY_RUN else ''}\n\n{info['date']}, git {info['git_rev']}, "
              f"torch {info['torch_version']}, CUDA {info['cuda_version']}, tf32 {info['tf32']}; {len(summary.rows)} checks, "
              f"{summary.failed} failed, {summary.skipped} skipped (budget or memory); {elapsed:.0f} s of a "
              f"{budget.seconds:.0f} s budget\n\n")
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
