"""Generated report inputs shared by the report tests: the metrics rows and eval.json records of a
fixture run matrix (numbers made up but shaped like the paper's), and a `lightrnn bench` folder.

Test modules import these (never each other); tests/golden/ holds what the report renders from them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

DATE = "2026-01-02"
# (dataset, model) -> (vocab-dependent params, final perplexity); numbers are made up but shaped
# like the paper's (LightRNN far smaller, perplexities in the same range).
RUNS = {
    ("aclw-fr", "lightrnn"): (17_512_944, 176.0),
    ("aclw-fr", "full_softmax"): (152_890_912, 190.5),
    ("aclw-fr", "class_softmax"): (152_900_000, 201.2),
    ("aclw-fr", "adaptive_softmax"): (60_420_000, 185.1),
    ("aclw-es", "lightrnn"): (18_012_000, 157.4),
    ("aclw-es", "full_softmax"): (170_100_000, 169.9),
    ("billionw", "lightrnn"): (41_400_000, 66.2),
    ("billionw", "full_softmax"): (1_600_000_000, 85.0),
    ("ptb", "lightrnn"): (9_123_456, 118.3),
    ("ptb", "full_softmax"): (24_021_000, 101.7),
}
ROUNDS = {"lightrnn": [3, 3, 2], "full_softmax": [8], "class_softmax": [8], "adaptive_softmax": [8]}
WITHOUT_EVAL = {("aclw-es", "full_softmax"), ("ptb", "lightrnn")}


def make_rows(dataset: str, model: str) -> list[dict]:
    """Metrics rows of one run: epoch rows per round, a realloc row after each LightRNN round but the last."""
    params, final = RUNS[(dataset, model)]
    rows, epoch, step = [], 0, 0
    rounds = ROUNDS[model]
    total = sum(rounds)
    for round_index, epochs in enumerate(rounds):
        for _ in range(epochs):
            epoch += 1
            step += 100
            # Decays towards `final`; a reallocation costs a bump the next round then recovers.
            valid = final * (1 + 0.8 * math.exp(-epoch / 2)) * (1 + 0.04 * (total - epoch) / total)
            rows.append(
                {
                    "kind": "epoch",
                    "dataset": dataset,
                    "model": model,
                    "seed": 0,
                    "round": round_index,
                    "epoch": epoch,
                    "step": step,
                    "lr": 0.001,
                    "train_ppl": round(valid * 0.9, 4),
                    "valid_ppl": round(valid, 4),
                    "test_ppl": round(valid * 0.995, 4) if dataset.startswith("aclw") or epoch == total else None,
                    "train_tokens_per_s": 1000.0 + 10 * epoch + (4000 if model == "lightrnn" else 0),
                    "eval_tokens_per_s": 5000.0 + 10 * epoch,
                    "params": params,
                    "param_bytes": 4 * params,
                    "peak_memory_bytes": 8 * params + 1000 * epoch,
                    "wall_s": 60.0 * epoch,
                    "device": "cuda:0 (NVIDIA H200)",
                    "realloc_objective": None,
                    "realloc_lower_bound": None,
                    "realloc_s": None,
                    "realloc_nll_before": None,
                    "realloc_nll_after": None,
                    "git_rev": "abc1234",
                    "config_hash": f"hash-{dataset}-{model}",
                }
            )
        if model == "lightrnn" and round_index < len(rounds) - 1:
            last = rows[-1]
            rows.append(
                {
                    **last,
                    "kind": "realloc",
                    "valid_ppl": round(last["valid_ppl"] * 1.12, 4),
                    "test_ppl": None,
                    "train_ppl": None,
                    "realloc_objective": 1_234_567.0 / (round_index + 1),
                    "realloc_lower_bound": 1_200_000.0 / (round_index + 1),
                    "realloc_s": 2.5 + round_index,
                    "realloc_nll_before": 5.4 - 0.1 * round_index,
                    "realloc_nll_after": 5.1 - 0.1 * round_index,
                }
            )
    return rows


def make_eval(dataset: str, model: str) -> dict:
    params, final = RUNS[(dataset, model)]
    return {
        "dataset": dataset,
        "model": model,
        "split": "test",
        "ppl": final,
        "nll_sum": 1000.0 * math.log(final),
        "tokens": 1000,
        "tokens_per_s": 9000.0,
        "params": params,
        "device": "cuda:0 (NVIDIA H200)",
        "git_rev": "abc1234",
    }


def write_results(root: Path) -> Path:
    """RESULTS/<dataset>/<model>/{metrics.jsonl,eval.json} for every fixture run."""
    for dataset, model in RUNS:
        run_dir = root / dataset / model
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in make_rows(dataset, model)))
        if (dataset, model) not in WITHOUT_EVAL:
            (run_dir / "eval.json").write_text(json.dumps(make_eval(dataset, model)))
    return root


SPEEDS = {
    (1000, "lightrnn"): 900.0, (1000, "full_softmax"): 800.0, (1000, "adaptive_softmax"): 1000.0,
    (50000, "lightrnn"): 900.0, (50000, "full_softmax"): 300.0, (50000, "adaptive_softmax"): 400.0,
}


def write_bench(folder: Path) -> Path:
    """throughput.csv and throughput-repeats.csv as `lightrnn bench throughput` writes them (the columns read)."""
    folder.mkdir(parents=True)
    with (folder / "throughput-repeats.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["vocab_size", "model", "repeat", "train_tokens_per_s"])
        for repeat in range(3):
            for (vocab, model), speed in SPEEDS.items():
                writer.writerow([vocab, model, repeat, speed * (1 + 0.01 * repeat)])
    with (folder / "throughput.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["model", "vocab_size", "embed_dim", "hidden_dim", "num_layers", "batch_size", "bptt",
                         "device", "dtype", "threads", "cpu_model", "git_rev", "date"])
        for vocab, model in SPEEDS:
            writer.writerow([model, vocab, 64, 64, 2, 8, 8, "cpu", "fp32", 1, "Test CPU", "abc1234", DATE])
    return folder


# ----- a `make gpu-check` folder
GPU_SIZES = ((500, 500, 100), (1000, 1000, 200), (1500, 1500, 200))


def _gpu_rows(light: float, adaptive: float, date: str = "2026-12-04 10:00 UTC") -> list[dict]:
    """gpucheck's paper-throughput rows: LightRNN and the adaptive softmax at every size, bf16;
    the full softmax skipped (memory), as on a real device."""
    rows = []
    for embed, hidden, batch in GPU_SIZES:
        for model, speed in (("lightrnn", light), ("adaptive_softmax", adaptive), ("full_softmax", math.nan)):
            rows.append({"device": "NVIDIA H200", "date": date, "torch_version": "2.13.0", "cuda_version": "12.8",
                         "git_rev": "abcdef1234", "model": model, "vocab_size": 793_471, "embed_dim": embed,
                         "hidden_dim": hidden, "num_layers": 2, "batch_size": batch, "bptt": 32, "dtype": "bf16",
                         "status": "skipped" if math.isnan(speed) else "ok", "train_tokens_per_s": speed,
                         "titan_x_tokens_per_s": {500: 24_615.0, 1000: 13_000.0, 1500: 7_250.0}[embed]})
    return rows


def write_gpu_speed(folder: Path, light: float, adaptive: float, date: str = "2026-12-04 10:00 UTC") -> Path:
    """A `make gpu-check` folder (paper-throughput.csv and its summary) written by gpucheck's own writer."""
    from lightrnn.benchmark import paper_speed

    paper_speed.write_paper_speed(_gpu_rows(light, adaptive, date), folder)
    return folder
