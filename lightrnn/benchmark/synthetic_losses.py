"""Synthetic reallocation losses with the structure of real LightRNN losses (`synthetic_losses`).

Used by `lightrnn bench realloc` and the hot-path microbenchmarks:
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

import numpy as np

from lightrnn.method.assignment import word_chunks
from lightrnn.method.word_table import WordTable


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
    for part in word_chunks(num_words, width):
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
