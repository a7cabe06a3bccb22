"""Uncertainty of the study's numbers: 95% intervals over seeds, and paired bootstrap intervals of ratios.

Two sources of doubt, kept apart:
- seeds: a model's mean over its seeds, with the t interval mean +- t(0.975, n - 1) * sd / sqrt(n)
  (`mean_interval`); it says how much a rerun with another seed moves the number;
- the test sample: a ratio of two models' test perplexities (LightRNN or a variant over the best
  baseline) with a paired bootstrap over test blocks (`paired_ratio`): every resample draws the
  same blocks for every run (eval.json's `block_nll`: NLL sums over blocks of 100 targets, the
  same blocks for every model of one split), each run's perplexity is recomputed on them, the
  runs of each side averaged over their seeds, and the ratio taken; the interval is the 2.5th and
  97.5th percentile of the resampled ratios.

`verdict_word` turns a ratio's interval into the verdict's word (RULE says how, beside the table).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
RULE = ("Rule: a ratio is LightRNN's (or a variant's) test perplexity over the best baseline's, each the mean "
        "of its seeds; its 95% interval is a paired bootstrap over test blocks of 100 targets (10,000 "
        "resamples, the same blocks for every run). \"better\": the whole interval below 1; \"worse\": the "
        "whole interval above 1; \"no clear difference\": the interval holds 1.")


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float | None, float | None]:
    """(mean, low, high): Student's t interval of the mean; low and high None with one value."""
    from scipy import stats

    values = [float(value) for value in values]
    if not values:
        raise ValueError("mean_interval: no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def block_tokens(tokens: int, block_size: int) -> np.ndarray:
    """Targets per block: `block_size` each, the last one the rest (as `training.evaluate.block_sums`)."""
    count = -(-tokens // block_size)
    sizes = np.full(count, block_size, dtype=np.float64)
    sizes[-1] = tokens - block_size * (count - 1)
    return sizes


def _resampled_ppl(blocks: np.ndarray, sizes: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[resamples] perplexity of one run on each resample of block indices `draws` [resamples, n]."""
    return np.exp(blocks[draws].sum(axis=1) / sizes[draws].sum(axis=1))


def paired_ratio(
    numerator: Sequence[Sequence[float]], denominator: Sequence[Sequence[float]], sizes: Sequence[float],
    resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL,
) -> tuple[float, float, float]:
    """(ratio, low, high) of mean test ppl (numerator's runs) over mean test ppl (denominator's runs).

    Each run is its block NLL sums (one list per seed); `sizes` the targets per block, shared by
    every run. The point ratio is on the whole split; the interval from `resamples` paired draws.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    runs = [np.asarray(run, dtype=np.float64) for run in (*numerator, *denominator)]
    if not numerator or not denominator:
        raise ValueError("paired_ratio: each side needs at least one run")
    if any(run.shape != sizes.shape for run in runs):
        raise ValueError(f"paired_ratio: every run needs {len(sizes)} blocks (the same split), got "
                         f"{sorted({run.shape[0] for run in runs})}")
    whole = [math.exp(run.sum() / sizes.sum()) for run in runs]
    split = len(numerator)
    point = statistics.fmean(whole[:split]) / statistics.fmean(whole[split:])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sizes), size=(resamples, len(sizes)))
    per_run = np.stack([_resampled_ppl(run, sizes, draws) for run in runs])  # [runs, resamples]
    ratios = per_run[:split].mean(axis=0) / per_run[split:].mean(axis=0)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return point, float(low), float(high)


def verdict_word(low: float, high: float) -> str:
    """The verdict's word for a ratio's interval (RULE)."""
    if high < 1.0:
        return "better"
    if low > 1.0:
        return "worse"
    return "no clear difference"
