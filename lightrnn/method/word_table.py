"""The LightRNN word table: every word id sits at one (row, column) slot of an R x C grid.

R = C = ceil(sqrt(V)) (docs/PAPER.md). The table is a bijection between the V words and a subset of
the R * C slots; when V < R * C some slots stay empty. It is stored as one `.npy` file holding a
[V, 2] int64 array of (row, col) per word id, plus the grid size in a [1, 2] header row, so a
saved table is self-describing: row 0 is (R, C), rows 1..V are the words.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from lightrnn.core.fileio import load_npy, save_npy
from lightrnn.core.loaders import input_file


class WordTable:
    """word id -> (row, col) and back.

    Args:
        rows: int array [V], the row of each word id.
        cols: int array [V], the column of each word id.
        num_rows, num_cols: the grid size R, C.

    Raises ValueError naming the problem when a coordinate is out of bounds or two words share
    a slot.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int) -> None:
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        if rows.ndim != 1 or cols.ndim != 1 or rows.shape != cols.shape:
            raise ValueError(
                f"WordTable: rows and cols must be 1-D arrays of the same length, "
                f"got shapes {rows.shape} and {cols.shape}"
            )
        if rows.size and not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError(f"WordTable: rows and cols must be integer arrays, got {rows.dtype} and {cols.dtype}")
        if int(num_rows) < 1 or int(num_cols) < 1:
            raise ValueError(f"WordTable: num_rows and num_cols must be >= 1, got {num_rows} x {num_cols}")
        num_rows, num_cols = int(num_rows), int(num_cols)
        if rows.size > num_rows * num_cols:
            raise ValueError(
                f"WordTable: {rows.size} words do not fit in {num_rows} x {num_cols} = "
                f"{num_rows * num_cols} slots"
            )
        if rows.size:
            bad_row = np.flatnonzero((rows < 0) | (rows >= num_rows))
            if bad_row.size:
                word = int(bad_row[0])
                raise ValueError(
                    f"WordTable: row {int(rows[word])} of word {word} is outside [0, {num_rows})"
                    f" ({bad_row.size} words out of bounds)"
                )
            bad_col = np.flatnonzero((cols < 0) | (cols >= num_cols))
            if bad_col.size:
                word = int(bad_col[0])
                raise ValueError(
                    f"WordTable: column {int(cols[word])} of word {word} is outside [0, {num_cols})"
                    f" ({bad_col.size} words out of bounds)"
                )
        slots = rows.astype(np.int64) * num_cols + cols.astype(np.int64)
        unique_slots, first_index, counts = np.unique(slots, return_index=True, return_counts=True)
        if unique_slots.size != slots.size:
            clash = int(unique_slots[np.argmax(counts > 1)])
            words = np.flatnonzero(slots == clash)[:2]
            raise ValueError(
                f"WordTable: not injective: words {int(words[0])} and {int(words[1])} share slot "
                f"(row {clash // num_cols}, col {clash % num_cols}); "
                f"{slots.size - unique_slots.size} words collide in all"
            )
        self.rows = rows.astype(np.int64)  # [V]
        self.cols = cols.astype(np.int64)  # [V]
        self.num_rows = num_rows
        self.num_cols = num_cols

    @staticmethod
    def square_size(vocab_size: int) -> int:
        """ceil(sqrt(V)): the side of the square table (exact integer arithmetic)."""
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        side = math.isqrt(vocab_size)
        return side if side * side == vocab_size else side + 1

    @classmethod
    def frequency_ordered(cls, vocab_size: int) -> "WordTable":
        """Word ids fill the square table row-major: word w at (w // C, w % C)."""
        side = cls.square_size(vocab_size)
        ids = np.arange(vocab_size, dtype=np.int64)
        return cls(ids // side, ids % side, side, side)

    @classmethod
    def random(cls, vocab_size: int, seed: int = 0) -> "WordTable":
        """A uniformly random placement of the words onto distinct slots of the square table.

        The official code shuffles the words with seed 0 before filling the table; this draws a
        random subset of slots in random order from `numpy.random.default_rng(seed)`.
        """
        side = cls.square_size(vocab_size)
        rng = np.random.default_rng(seed)
        slots = rng.permutation(side * side)[:vocab_size]
        return cls(slots // side, slots % side, side, side)

    @property
    def vocab_size(self) -> int:
        return int(self.rows.size)

    def slot_to_word(self) -> np.ndarray:
        """[R, C] int64: the word id in each slot, -1 where the slot is empty."""
        grid = np.full((self.num_rows, self.num_cols), -1, dtype=np.int64)
        grid[self.rows, self.cols] = np.arange(self.vocab_size, dtype=np.int64)
        return grid

    def to_array(self) -> np.ndarray:
        """[V + 1, 2] int64: (R, C) then (row, col) of every word id: what `save` writes."""
        header = np.array([[self.num_rows, self.num_cols]], dtype=np.int64)
        return np.concatenate([header, np.stack([self.rows, self.cols], axis=1)], axis=0)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as `.npy` atomically (temp file in the same folder, then rename)."""
        return save_npy(path, self.to_array())

    @classmethod
    def load(cls, path: str | os.PathLike, vocab_size: int | None = None) -> "WordTable":
        """Read a table written by `save`; check it holds `vocab_size` words when given."""
        path = input_file(path, "word table", "pass a .npy written by WordTable.save")
        array = load_npy(path, mmap_mode=None, fix="pass a word table .npy written by WordTable.save")
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"word table {path}: expected an integer array of shape [V + 1, 2] "
                f"(header (R, C) then one (row, col) per word), got {array.dtype} {array.shape}"
            )
        if vocab_size is not None and array.shape[0] - 1 != vocab_size:
            raise ValueError(
                f"word table {path} holds {array.shape[0] - 1} words but the vocabulary has "
                f"{vocab_size}; use the table written for this data directory"
            )
        try:
            return cls(array[1:, 0], array[1:, 1], int(array[0, 0]), int(array[0, 1]))
        except ValueError as error:
            raise ValueError(f"word table {path}: {error}") from error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WordTable):
            return NotImplemented
        return (
            self.num_rows == other.num_rows
            and self.num_cols == other.num_cols
            and np.array_equal(self.rows, other.rows)
            and np.array_equal(self.cols, other.cols)
        )

    def __repr__(self) -> str:
        return f"WordTable(vocab_size={self.vocab_size}, num_rows={self.num_rows}, num_cols={self.num_cols})"
