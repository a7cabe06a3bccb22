"""prepare against archives that inflate without bound: a member (tar.gz stream or zip member) that
decompresses more than MAX_INFLATION times is refused early, in one line, OUT untouched; blank lines
cost what their bytes cost."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from lightrnn.cli import main
from lightrnn.data import prepare as prepare_module
from lightrnn.data.prepare import prepare

PTB = "simple-examples/data/ptb.{}.txt"
WIKI = "wikitext-2/wiki.{}.tokens"
SENTENCES = b"the cat sat on the mat\na dog ran\n" * 50


def _tar_gz(path: Path, train: bytes) -> Path:
    """A PTB-layout .tgz whose training member is `train` (compressed at the best level: bombs are)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for split, data in (("train", train), ("valid", SENTENCES), ("test", SENTENCES)):
            info = tarfile.TarInfo(PTB.format(split))
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    path.write_bytes(compressor.compress(buffer.getvalue()) + compressor.flush())
    return path


def _zip(path: Path, train: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for split, data in (("train", train), ("valid", SENTENCES), ("test", SENTENCES)):
            archive.writestr(WIKI.format(split), data)
    return path


@pytest.mark.parametrize("filler", [b"\n", b" \n", b"a\n", b"\n\n\t\n"])
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_member_that_inflates_without_bound_is_refused_early(tmp_path, monkeypatch, capsys, filler, kind) -> None:
    monkeypatch.setattr(prepare_module, "INFLATION_SLACK_BYTES", 1 << 20)  # small bombs, same rule
    bomb = SENTENCES + filler * ((48 << 20) // len(filler))  # 48 MiB that compress ~1000 times
    if kind == "tar.gz":
        _tar_gz(tmp_path / "raw" / "simple-examples.tgz", bomb)
        dataset = "ptb"
    else:
        _zip(tmp_path / "raw" / "wikitext-2-v1.zip", bomb)
        dataset = "wikitext2"
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    start = time.monotonic()
    status = main(["data", "prepare", dataset, "--raw", str(tmp_path / "raw"), "--out", str(out)])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "more than 100 times" in err[0] and "raw" in err[0], err[0]
    assert seconds < 20
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["keep.txt"]


def test_text_that_compresses_like_text_passes(tmp_path) -> None:
    import random

    words = [f"w{i}" for i in range(2000)]
    rng = random.Random(0)
    text = "".join(" ".join(rng.choices(words, k=12)) + "\n" for _ in range(20_000)).encode()
    _tar_gz(tmp_path / "raw" / "simple-examples.tgz", text)
    summary = prepare("ptb", tmp_path / "raw", tmp_path / "out")
    assert summary["splits"]["train"]["lines"] == 20_000


def test_blank_lines_are_cheap_and_line_numbers_stay_exact(tmp_path) -> None:
    blank = b"\n" * (24 << 20)  # 24 MiB of blank lines: ~24 s at the old 1 MiB/s
    train = SENTENCES + blank + b"last words\n" + b"\xff bad\n"
    _tar_gz(tmp_path / "raw" / "simple-examples.tgz", train)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"line (\d+) is not valid UTF-8") as raised:
        prepare("ptb", tmp_path / "raw", tmp_path / "out")
    seconds = time.monotonic() - start
    expected = SENTENCES.count(b"\n") + len(blank) + 2  # the bad line's number in the file
    assert f"line {expected} is not valid UTF-8" in str(raised.value)
    assert seconds < 10
    _tar_gz(tmp_path / "raw" / "simple-examples.tgz", SENTENCES + blank + b"last words\n")
    summary = prepare("ptb", tmp_path / "raw", tmp_path / "out")
    assert summary["splits"]["train"]["lines"] == SENTENCES.count(b"\n") + 1
    assert (tmp_path / "out" / "train.txt").read_text().splitlines()[-1] == "last words"


# ----- 6. one rule for each limit, on both sides of vocab.tsv ------------------------------------------

def _text_dir(folder: Path, train: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", "a b\n"), ("test", "b c\n")):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("char", ["x", "é", "語", "😀"])
def test_the_vocab_writer_accepts_exactly_what_its_reader_accepts(tmp_path, monkeypatch, char) -> None:
    from lightrnn.data import encoded

    monkeypatch.setattr(encoded, "MAX_VOCAB_LINE_BYTES", 64)  # the one definition, read by both sides
    for length in range(8, 40):
        word = char * length
        entries = [("a", 3), (word, 1234)]
        path = tmp_path / f"vocab-{length}.tsv"
        line_bytes = len(f"{word}\t1234\n".encode())
        if line_bytes <= 64:
            encoded.write_vocab(entries, path)
            assert encoded.read_vocab(path)[0] == ["a", word]
        else:
            with pytest.raises(encoded.DataError, match="more than the 64 a vocab.tsv line may hold"):
                encoded.write_vocab(entries, path)
            assert not path.exists()


def test_encode_refuses_a_word_train_would_refuse_and_leaves_out_alone(tmp_path, capsys) -> None:
    from lightrnn.data.encoded import MAX_VOCAB_LINE_BYTES

    word = "w" * (2 * MAX_VOCAB_LINE_BYTES)  # a 2 MiB "word"
    text = _text_dir(tmp_path / "text", f"a b {word}\n" * 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "vocab.tsv").write_text("old\t1\n")
    status = main(["data", "encode", "--text", str(text), "--out", str(out), "--min-count", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "vocab.tsv: word" in err[0] and "a vocab.tsv line may hold" in err[0] and len(err[0]) < 700
    assert (out / "vocab.tsv").read_text() == "old\t1\n" and not list(out.glob(".staging*"))
