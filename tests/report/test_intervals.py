"""The study's intervals: the paired bootstrap on generated cases whose answer is known, the t interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightrnn.report.intervals import block_tokens, mean_interval, paired_ratio, verdict_word


def test_a_constant_gap_gives_a_ratio_without_spread():
    # B's NLL is A's + 0.05 nats on every target: the ratio is exp(-0.05) on every resample.
    sizes = block_tokens(1050, 100)
    assert sizes.tolist() == [100.0] * 10 + [50.0]
    rng = np.random.default_rng(0)
    a = rng.uniform(400, 600, size=len(sizes)) * sizes / 100
    b = a + 0.05 * sizes
    ratio, low, high = paired_ratio([a], [b], sizes, resamples=500)
    assert ratio == pytest.approx(math.exp(-0.05)) and low == pytest.approx(ratio) and high == pytest.approx(ratio)
    assert verdict_word(low, high) == "better"


def test_the_interval_has_the_analytic_width_and_covers_the_truth():
    # Per-block gaps d_i ~ N(delta, sigma) per target, blocks of 100 targets: log ratio = mean(d),
    # whose standard error is sigma / sqrt(n); the bootstrap's 95% interval is about +-1.96 of it.
    n, delta, sigma = 400, 0.02, 0.1
    sizes = np.full(n, 100.0)
    covered, widths = 0, []
    for replication in range(40):
        rng = np.random.default_rng(replication)
        base = rng.uniform(4.5, 5.5, size=n) * sizes
        gap = rng.normal(delta, sigma, size=n) * sizes
        _, low, high = paired_ratio([base + gap], [base], sizes, resamples=2000, seed=replication)
        covered += math.log(low) <= delta <= math.log(high)
        widths.append((math.log(high) - math.log(low)) / 2)
    assert covered >= 34  # 95% nominal: 38 of 40 expected, 34 allows for chance
    assert np.mean(widths) == pytest.approx(1.96 * sigma / math.sqrt(n), rel=0.1)


def test_several_seeds_are_averaged_on_each_side_and_the_words_follow_the_interval():
    sizes = np.full(50, 100.0)
    one = np.full(50, 500.0)  # ppl exp(5)
    two = np.full(50, 520.0)  # ppl exp(5.2)
    ratio, _, _ = paired_ratio([one, two], [one], sizes, resamples=100)
    assert ratio == pytest.approx((math.exp(5) + math.exp(5.2)) / 2 / math.exp(5))
    assert verdict_word(1.01, 1.2) == "worse" and verdict_word(0.98, 1.02) == "no clear difference"
    with pytest.raises(ValueError, match="every run needs 50 blocks"):
        paired_ratio([one[:10]], [one], sizes)


def test_mean_interval_is_students_t():
    mean, low, high = mean_interval([100.0, 102.0, 104.0])
    assert mean == 102.0 and high - mean == pytest.approx(4.302653 * 2.0 / math.sqrt(3), rel=1e-5)
    assert mean_interval([7.0]) == (7.0, None, None)
