"""encode: vocabulary rules (1B's count >= 3 plus <S> </S> <UNK>), ids, streaming, and errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from lightrnn.core import text as text_module
from lightrnn.data.encode import encode
from lightrnn.data.encoded import read_vocab
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive


def _write_text(text_dir, train, valid="a b\n", test="b c\n"):
    text_dir.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (text_dir / f"{split}.txt").write_text(text, encoding="utf-8")


def test_vocab_order_ids_eos_and_oov(tmp_path):
    _write_text(tmp_path / "text", "b a c\nc b\nb d a\n", valid="a z b\n", test="<unk> q\n")
    meta = encode(tmp_path / "text", tmp_path / "data")
    words, counts = read_vocab(tmp_path / "data" / "vocab.tsv")
    # b:3, <eos>:3 (one per line) tie -> code point order ('<' < 'b'); a:2, c:2; d:1; <unk>:0.
    assert words == ["<eos>", "b", "a", "c", "d", "<unk>"]
    assert counts.tolist() == [3, 3, 2, 2, 1, 0]
    ids = {w: i for i, w in enumerate(words)}
    train = np.load(tmp_path / "data" / "train.npy")
    assert train.dtype == np.int32
    assert train.tolist() == [ids[w] for w in "b a c <eos> c b <eos> b d a <eos>".split()]
    assert np.load(tmp_path / "data" / "valid.npy").tolist() == [ids["a"], ids["<unk>"], ids["b"], ids["<eos>"]]
    # The text's own <unk> is an in-vocabulary token, q is OOV: one of two words.
    assert np.load(tmp_path / "data" / "test.npy").tolist() == [ids["<unk>"], ids["<unk>"], ids["<eos>"]]
    assert meta["oov_rate"] == {"train": 0.0, "valid": pytest.approx(1 / 3), "test": pytest.approx(1 / 2)}
    assert meta["tokens"] == {"train": 11, "valid": 4, "test": 3}
    assert meta["sentences"] == {"train": 3, "valid": 1, "test": 1}
    assert meta["unk_id"] == ids["<unk>"] and meta["eos_id"] == ids["<eos>"] and meta["vocab_size"] == 6
    assert json.loads((tmp_path / "data" / "meta.json").read_text()) == meta


def test_billionw_rule_on_the_tiny_corpus_matches_brute_force(tmp_path):
    make_tiny_archive("billionw", tmp_path / "raw")
    prepare("billionw", tmp_path / "raw", tmp_path / "text")
    meta = encode(tmp_path / "text", tmp_path / "data")  # dataset read from prepare.json
    lines = (tmp_path / "text" / "train.txt").read_text().splitlines()
    counts = Counter(w for line in lines for w in line.split())
    kept = {w for w, c in counts.items() if c >= 3}
    assert any(c < 3 for c in counts.values()), "the tiny corpus must exercise the cut"
    words, vocab_counts = read_vocab(tmp_path / "data" / "vocab.tsv")
    assert set(words) == kept | {"<S>", "</S>", "<UNK>"}
    assert len(words) == len(kept) + 3 == meta["vocab_size"]
    as_dict = dict(zip(words, vocab_counts.tolist()))
    assert as_dict["</S>"] == len(lines) and as_dict["<S>"] == 0
    assert as_dict["<UNK>"] == sum(c for w, c in counts.items() if c < 3)
    order = [(-c, w) for w, c in zip(words, vocab_counts.tolist())]
    assert order == sorted(order)
    assert meta["vocab_rule"]["min_count"] == 3 and meta["eos_token"] == "</S>" and meta["unk_token"] == "<UNK>"
    train = np.load(tmp_path / "data" / "train.npy")
    ids = {w: i for i, w in enumerate(words)}
    expected = [ids.get(w, ids["<UNK>"]) for line in lines for w in line.split() + ["</S>"]]
    assert train.tolist() == expected
    assert ids["<S>"] not in set(train.tolist())


def test_streaming_batches_give_the_same_result(tmp_path, monkeypatch):
    make_tiny_archive("ptb", tmp_path / "raw")
    prepare("ptb", tmp_path / "raw", tmp_path / "text")
    encode(tmp_path / "text", tmp_path / "whole")
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 50)  # ~1 line per batch
    encode(tmp_path / "text", tmp_path / "batched")
    for name in ("vocab.tsv", "train.npy", "valid.npy", "test.npy"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "batched" / name).read_bytes()


def test_max_vocab_and_min_count_overrides(tmp_path):
    _write_text(tmp_path / "text", "a a a b b c\nd\n")
    meta = encode(tmp_path / "text", tmp_path / "max", max_vocab=4)  # <eos>, <unk> + 2 words
    words, counts = read_vocab(tmp_path / "max" / "vocab.tsv")
    assert sorted(words) == ["<eos>", "<unk>", "a", "b"] and meta["vocab_rule"]["max_vocab"] == 4
    assert dict(zip(words, counts.tolist()))["<unk>"] == 2  # c and d
    encode(tmp_path / "text", tmp_path / "min", dataset="ptb", min_count=2)
    words, _ = read_vocab(tmp_path / "min" / "vocab.tsv")
    assert sorted(words) == ["<eos>", "<unk>", "a", "b"]
    with pytest.raises(ValueError, match="max_vocab=1 is smaller than the 2 special tokens"):
        encode(tmp_path / "text", tmp_path / "bad", max_vocab=1)
    with pytest.raises(ValueError, match="min_count=0"):
        encode(tmp_path / "text", tmp_path / "bad", min_count=0)


def test_errors_name_the_file(tmp_path):
    _write_text(tmp_path / "empty", "a b\n", valid="")
    with pytest.raises(ValueError, match=r"valid\.txt is empty"):
        encode(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _write_text(tmp_path / "latin", "a b\n")
    (tmp_path / "latin" / "test.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"test\.txt: line 2 is not valid UTF-8"):
        encode(tmp_path / "latin", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # every split is read before anything is written
    with pytest.raises(FileNotFoundError, match=r"train\.txt not found: run `lightrnn data prepare"):
        encode(tmp_path / "nothing", tmp_path / "out3")
    _write_text(tmp_path / "ok", "a\n")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        encode(tmp_path / "ok", tmp_path / "out4", dataset="nope")
