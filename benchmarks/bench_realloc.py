"""Reallocation scaling benchmark: time and optimality gap of greedy vs refine versus V.

    .venv/bin/python benchmarks/bench_realloc.py --sizes 10000 100000 793471 --time-limit 240

writes one CSV row per (V, method) to results/bench/realloc.csv (atomically): seconds, cpu_s, objective,
lower_bound, gap = objective / lower_bound - 1, gain_vs_greedy, peak RSS. Not a test.

Synthetic losses with the structure of real LightRNN losses (the generator, `synthetic_losses`):
- Zipfian word frequencies: expected count of the word of rank k is proportional to 1 / k, for
  `tokens_per_word * V` tokens in all (default 100 V: ~79M tokens at V = 793,471, a tenth of One
  Billion Word's training data); observed counts are Poisson draws, so rare words may have 0
  occurrences and an all-zero loss row, as in a real `fraction` pass.
- Correlated preferences: words belong to latent clusters (about V / 100 of them, Zipfian
  sizes); a cluster favours 3 random rows (logit boost 3-6 over N(0, 1) background), and each
  word adds its own N(0, 1) noise. Columns use an independent clustering. Similar words thus
  compete for the same few rows/columns: the capacity conflicts that make the matching hard.
- Frequent words are predicted more sharply: logits are scaled by 0.5 + 1.5 * log(1 + n_w) /
  log(1 + n_max).
- row_loss[w] = n_w * -log_softmax(logits_w) (a sum over occurrences of -log P, like the
  accumulated losses), float32 to keep the two [793471, 891] matrices at 2.8 GB each.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightrnn import _matching  # noqa: E402
from lightrnn.benchmark.csvio import write_csv  # noqa: E402
from lightrnn.benchmark.machine import load_average, machine_info  # noqa: E402
from lightrnn.reallocate import lower_bound, refine  # noqa: E402
from lightrnn.table import WordTable  # noqa: E402


def _side_losses(counts: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """[V, width] float32: one side (rows or columns) of the synthetic losses."""
    num_words = counts.size
    num_clusters = max(4, num_words // 100)
    cluster_weights = 1.0 / np.arange(1, num_clusters + 1)
    cluster = rng.choice(num_clusters, size=num_words, p=cluster_weights / cluster_weights.sum())
    base = rng.standard_normal((num_clusters, width), dtype=np.float32)  # [K, width]
    favoured = rng.integers(0, width, size=(num_clusters, 3))
    base[np.arange(num_clusters)[:, None], favoured] += rng.uniform(3.0, 6.0, size=(num_clusters, 3)).astype(np.float32)
    sharpness = (0.5 + 1.5 * np.log1p(counts) / np.log1p(counts.max())).astype(np.float32)
    losses = np.empty((num_words, width), dtype=np.float32)
    for part in _matching.word_chunks(num_words, width):
        logits = base[cluster[part]]
        logits += rng.standard_normal(logits.shape, dtype=np.float32)
        logits *= sharpness[part, None]
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
        losses[part] = (log_norm - logits) * counts[part, None].astype(np.float32)
    return losses


def synthetic_losses(num_words: int, seed: int = 0, tokens_per_word: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """(row_loss [V, R], col_loss [V, C]) float32 with R = C = ceil(sqrt V); see the module docstring."""
    rng = np.random.default_rng(seed)
    side = WordTable.square_size(num_words)
    expected = 1.0 / np.arange(1, num_words + 1)
    counts = rng.poisson(expected / expected.sum() * tokens_per_word * num_words).astype(np.float64)
    return _side_losses(counts, side, rng), _side_losses(counts, side, rng)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(sizes: list[int], seed: int, time_limit: float, out: Path) -> list[dict]:
    rows_out = []
    for num_words in sizes:
        t0 = time.perf_counter()
        row_loss, col_loss = synthetic_losses(num_words, seed)
        generate_s = time.perf_counter() - t0
        print(f"V={num_words}: generated in {generate_s:.1f}s", flush=True)

        t0, c0 = time.perf_counter(), time.process_time()
        rows, cols = _matching.greedy(row_loss, col_loss)
        greedy_s, greedy_cpu = time.perf_counter() - t0, time.process_time() - c0
        greedy_value = _matching.objective(row_loss, col_loss, rows, cols)

        t0, c0 = time.perf_counter(), time.process_time()
        new_rows, new_cols = refine(row_loss, col_loss, rows, cols, time_limit=time_limit)
        refine_search_s, refine_cpu = time.perf_counter() - t0, time.process_time() - c0
        refine_value = _matching.objective(row_loss, col_loss, new_rows, new_cols)

        t0, c0 = time.perf_counter(), time.process_time()
        bound = lower_bound(row_loss, col_loss, new_rows, new_cols)
        bound_s, bound_cpu = time.perf_counter() - t0, time.process_time() - c0
        naive = _matching.naive_bound(row_loss, col_loss)
        bound = min(bound, refine_value)
        common = {"V": num_words, "R": row_loss.shape[1], "C": col_loss.shape[1], "seed": seed,
                  "lower_bound": bound, "naive_bound": naive, "bound_s": round(bound_s, 2)}
        # Provenance on every row: machine, software, date, code revision, load (a shared machine).
        common.update(machine_info(torch.device("cpu")), load_average=load_average())
        for method, seconds, cpu_s, value in (
            ("greedy", greedy_s, greedy_cpu, greedy_value),
            # refine's total includes greedy (its start) and the bound, as `solve(method="auto")` does.
            ("refine", greedy_s + refine_search_s + bound_s, greedy_cpu + refine_cpu + bound_cpu, refine_value),
        ):
            # cpu_s (all threads of this process) next to wall seconds: the machine may be shared.
            row = dict(common, method=method, seconds=round(seconds, 2), cpu_s=round(cpu_s, 2), objective=value,
                       gap=value / bound - 1.0, gain_vs_greedy=1.0 - value / greedy_value,
                       peak_rss_mb=round(_peak_rss_mb()))
            rows_out.append(row)
            print({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        del row_loss, col_loss
    write_csv(rows_out, out)
    return rows_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of refine's search per size")
    parser.add_argument("--out", type=Path, default=Path("results/bench/realloc.csv"))
    args = parser.parse_args()
    run(args.sizes, args.seed, args.time_limit, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
