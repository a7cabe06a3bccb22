"""The shared pieces of the assignment solvers: the objective, each word's cost, the slot owners,
and the chunks of words every pass over a [V, n] loss matrix goes in.

Notation: see `lightrnn.method.assignment`.
"""

from __future__ import annotations

import numpy as np

# Elements per chunk when streaming a [V, n] loss matrix: 2^22 float32 = 16 MB of temporaries.
_CHUNK_ELEMENTS = 1 << 22


def word_chunks(num_words: int, width: int):
    """Yield slices of word ids whose [m, width] block holds about _CHUNK_ELEMENTS values."""
    step = max(1, _CHUNK_ELEMENTS // max(1, width))
    for start in range(0, num_words, step):
        yield slice(start, min(num_words, start + step))


def objective(row_loss: np.ndarray, col_loss: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """sum_w row_loss[w, rows[w]] + col_loss[w, cols[w]] in float64."""
    words = np.arange(rows.size)
    return float(row_loss[words, rows].sum(dtype=np.float64) + col_loss[words, cols].sum(dtype=np.float64))


def word_costs(row_loss: np.ndarray, col_loss: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[V] float64: each word's cost at its slot."""
    words = np.arange(rows.size)
    return row_loss[words, rows].astype(np.float64) + col_loss[words, cols].astype(np.float64)


def slot_owner(rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int) -> np.ndarray:
    """[R * C] int64: the word in each slot, -1 where empty."""
    owner = np.full(num_rows * num_cols, -1, dtype=np.int64)
    owner[rows * num_cols + cols] = np.arange(rows.size, dtype=np.int64)
    return owner
