"""WordTable: a bijection of word ids onto table slots, saved as .npy."""

from __future__ import annotations

import numpy as np
import pytest

from lightrnn.method.word_table import WordTable


@pytest.mark.parametrize("vocab_size, side", [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (793471, 891), (136912, 371)])
def test_square_size_is_ceil_sqrt(vocab_size: int, side: int) -> None:
    assert WordTable.square_size(vocab_size) == side


@pytest.mark.parametrize("vocab_size", [1, 7, 9, 30])
def test_random_and_frequency_tables_are_bijections(vocab_size: int) -> None:
    for table in (WordTable.random(vocab_size, seed=3), WordTable.frequency_ordered(vocab_size)):
        grid = table.slot_to_word()
        side = WordTable.square_size(vocab_size)
        assert grid.shape == (side, side)
        assert sorted(grid[grid >= 0].tolist()) == list(range(vocab_size))
        assert (grid == -1).sum() == side * side - vocab_size
        assert np.array_equal(grid[table.rows, table.cols], np.arange(vocab_size))
        assert table.vocab_size == vocab_size


def test_frequency_order_fills_row_major() -> None:
    table = WordTable.frequency_ordered(10)
    assert table.rows.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert table.cols.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_random_table_depends_on_seed_only() -> None:
    assert WordTable.random(50, seed=0) == WordTable.random(50, seed=0)
    assert WordTable.random(50, seed=0) != WordTable.random(50, seed=1)


def test_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="share slot"):
        WordTable(np.array([0, 0]), np.array([1, 1]), 2, 2)
    with pytest.raises(ValueError, match="row 2 of word 1"):
        WordTable(np.array([0, 2]), np.array([0, 0]), 2, 2)
    with pytest.raises(ValueError, match="column -1 of word 0"):
        WordTable(np.array([0, 1]), np.array([-1, 0]), 2, 2)
    with pytest.raises(ValueError, match="do not fit"):
        WordTable(np.arange(5) % 2, np.arange(5) // 2, 2, 2)
    with pytest.raises(ValueError, match="same length"):
        WordTable(np.array([0, 1]), np.array([0]), 2, 2)


def test_save_load_round_trip(tmp_path) -> None:
    table = WordTable.random(23, seed=5)
    path = table.save(tmp_path / "sub" / "table-0.npy")
    assert WordTable.load(path) == table
    assert WordTable.load(path, vocab_size=23) == table
    assert [p.name for p in path.parent.iterdir()] == ["table-0.npy"]  # no temp file left
    with pytest.raises(ValueError, match="holds 23 words but the vocabulary has 24"):
        WordTable.load(path, vocab_size=24)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WordTable.load(tmp_path / "missing.npy")
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \[V \+ 1, 2\]"):
        WordTable.load(tmp_path / "bad.npy")
