"""A word table informed by the data, for `initial_table: context`.

Why: a random table puts unrelated words in every row, so the row softmax at first predicts
sets of words that share nothing, and the first reallocation has to move almost every word.
Words that follow the same words are predicted in the same contexts; placing them in the same
row lets the row head learn one class per row from the first step (the classic class-based
softmax idea, here learned from counts, not frequencies).

How: every word gets a vector from its previous-word distribution (counts of the preceding
word among the K most frequent words, Hellinger-transformed, projected on the top singular
vectors); k-means on two halves of those dimensions gives R row centres and C column centres;
the cost of word w in row r is count(w) * |v_w - row_centre_r|^2 (likewise for columns), and
the reallocation solver finds the table minimising the total cost, capacities respected.
Deterministic for a given stream and seed.
"""

from __future__ import annotations

import numpy as np

from lightrnn.method.word_table import WordTable


def context_vectors(stream: np.ndarray, vocab_size: int, contexts: int = 1000, dims: int = 16) -> np.ndarray:
    """[V, dims] float64: each word's previous-word distribution, projected on its top singular vectors."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    stream = np.asarray(stream, dtype=np.int64)
    counts = np.bincount(stream, minlength=vocab_size)
    top = np.argsort(-counts, kind="stable")[: min(contexts, vocab_size)]
    column_of = np.full(vocab_size, -1, dtype=np.int64)
    column_of[top] = np.arange(top.size)
    previous, current = stream[:-1], stream[1:]
    keep = column_of[previous] >= 0
    pairs = coo_matrix(
        (np.ones(int(keep.sum())), (current[keep], column_of[previous[keep]])), shape=(vocab_size, top.size)
    ).tocsr()  # [V, K] counts of (word, previous word)
    totals = np.asarray(pairs.sum(axis=1)).ravel()
    pairs = pairs.multiply(1.0 / np.maximum(totals, 1.0)[:, None]).sqrt().tocsr()  # Hellinger: sqrt of P(prev | w)
    k = max(1, min(dims, min(pairs.shape) - 1))
    if pairs.shape[0] * pairs.shape[1] <= 50_000_000:  # dense SVD: exact and deterministic (PTB: ~1 s)
        left, values, _ = np.linalg.svd(pairs.toarray(), full_matrices=False)
        return left[:, :k] * values[:k]
    start = np.full(min(pairs.shape), 1.0 / np.sqrt(min(pairs.shape)))  # a fixed start: deterministic
    left, values, _ = svds(pairs, k=k, v0=start)
    order = np.argsort(-values)
    return left[:, order] * values[order]


def _squared_distances(points: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """[N, k] squared distances, computed in chunks of points (no [N, k, d] array)."""
    centre_norms = (centres**2).sum(1)
    out = np.empty((len(points), len(centres)))
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        out[start : start + chunk] = (part**2).sum(1)[:, None] - 2 * part @ centres.T + centre_norms[None]
    return np.maximum(out, 0.0)


def _kmeans(points: np.ndarray, weights: np.ndarray, clusters: int, seed: int, iterations: int = 20) -> np.ndarray:
    """[clusters, d] weighted k-means centres (a weighted sample of distinct points to start, Lloyd steps).

    O(iterations * N * clusters * d), in chunks: at One Billion Word (N = 793,471, 891 clusters,
    d = 8) a few seconds per iteration.
    """
    rng = np.random.default_rng(seed)
    clusters = min(clusters, len(points))
    start = rng.choice(len(points), size=clusters, replace=False, p=weights / weights.sum())
    centres = points[start].copy()
    for _ in range(iterations):
        nearest = np.argmin(_squared_distances(points, centres), axis=1)
        mass = np.bincount(nearest, weights=weights, minlength=clusters)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, points * weights[:, None])
        filled = mass > 0
        centres[filled] = sums[filled] / mass[filled, None]
    return centres


def context_table(stream: np.ndarray, vocab_size: int, seed: int = 0, method: str = "refine") -> WordTable:
    """The table of `initial_table: context` for a training stream of word ids.

    `refine` (greedy start, local search): a starting table needs no exact optimum, and the
    distance costs are full of near-ties, on which an exact dense assignment at V = 10,000 takes
    tens of minutes.
    """
    from lightrnn.method.reallocate import solve

    side = WordTable.square_size(vocab_size)
    vectors = context_vectors(stream, vocab_size)
    counts = np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    half = max(1, vectors.shape[1] // 2)
    row_points, col_points = vectors[:, :half], vectors[:, half:] if vectors.shape[1] > 1 else vectors
    row_centres = _kmeans(row_points, counts, side, seed)
    col_centres = _kmeans(col_points, counts, side, seed + 1)
    row_loss = counts[:, None] * _squared_distances(row_points, row_centres)  # [V, R]
    col_loss = counts[:, None] * _squared_distances(col_points, col_centres)  # [V, C]
    start = WordTable.frequency_ordered(vocab_size)
    allocation = solve(row_loss, col_loss, method=method, init=start)
    return WordTable(allocation.rows, allocation.cols, side, side)
