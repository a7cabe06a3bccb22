"""prepare: every corpus family end to end over HTTP, and every kind of bad archive."""

from __future__ import annotations

import numpy as np
import pytest

from lightrnn.data import corpora
from lightrnn.data.encode import encode
from lightrnn.data.encoded import read_vocab
from lightrnn.data.fetch import fetch
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive, tiny_members, write_archive
from tests._data_fixtures import FAMILIES, archive_server, datasets_of, serve_tiny  # noqa: F401


@pytest.mark.parametrize("corpus", FAMILIES)
def test_fetch_prepare_encode_every_family_over_http(archive_server, tmp_path, corpus):
    url, sha256 = serve_tiny(archive_server, corpus, tmp_path)
    raw = fetch(corpus, tmp_path / "raw", url=url, sha256=sha256).parent
    for dataset in datasets_of(corpus):
        text_dir, data_dir = tmp_path / "text" / dataset, tmp_path / "data" / dataset
        summary = prepare(dataset, raw, text_dir)
        rule = corpora.get_dataset(dataset).vocab
        for split in corpora.SPLITS:
            lines = (text_dir / f"{split}.txt").read_text(encoding="utf-8").split("\n")
            assert lines[-1] == "" and all(line and line == " ".join(line.split()) for line in lines[:-1])
            assert summary["splits"][split]["lines"] == len(lines) - 1
        meta = encode(text_dir, data_dir)  # the rule recorded by prepare
        assert meta["dataset"] == dataset and meta["eos_token"] == rule.eos and meta["unk_token"] == rule.unk
        words, _ = read_vocab(data_dir / "vocab.tsv")
        for split in corpora.SPLITS:
            ids = np.load(data_dir / f"{split}.npy")
            assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < len(words)
            assert (ids == meta["eos_id"]).sum() == summary["splits"][split]["lines"]
            assert ids[-1] == meta["eos_id"]
            assert len(ids) == meta["tokens"][split] == summary["splits"][split]["tokens"] + summary["splits"][split]["lines"]


def test_ptb_text_keeps_its_conventions(tmp_path):
    archive, _ = make_tiny_archive("ptb", tmp_path / "raw")
    raw_line = next(m for m in tiny_members("ptb") if m[0].endswith("ptb.train.txt"))[1].decode().split("\n")[0]
    assert raw_line.startswith(" ") and raw_line.endswith(" ")  # the published quirk
    prepare("ptb", tmp_path / "raw", tmp_path / "text")
    first = (tmp_path / "text" / "train.txt").read_text().split("\n")[0]
    assert first == raw_line.strip()


def test_wikitext_blank_lines_dropped_headings_kept(tmp_path):
    make_tiny_archive("wikitext2", tmp_path / "raw")
    raw = next(m for m in tiny_members("wikitext2") if m[0].endswith("wiki.train.tokens"))[1].decode()
    assert " \n \n" in raw or "\n \n" in raw
    prepare("wikitext2", tmp_path / "raw", tmp_path / "text")
    lines = (tmp_path / "text" / "train.txt").read_text().splitlines()
    assert lines[0].startswith("= ") and lines[0].endswith(" =")
    assert len(lines) == sum(1 for line in raw.split("\n") if line.strip())


def test_member_order_in_the_archive_does_not_change_the_output(tmp_path):
    members = tiny_members("billionw")
    write_archive(tmp_path / "sorted" / corpora.CORPORA["billionw"].filename, "tar.gz", members)
    write_archive(tmp_path / "reversed" / corpora.CORPORA["billionw"].filename, "tar.gz", members[::-1], sort=False)
    prepare("billionw", tmp_path / "sorted", tmp_path / "a")
    prepare("billionw", tmp_path / "reversed", tmp_path / "b")
    for split in corpora.SPLITS:
        assert (tmp_path / "a" / f"{split}.txt").read_bytes() == (tmp_path / "b" / f"{split}.txt").read_bytes()
    assert not list((tmp_path / "b").glob(".*"))  # spooled shards cleaned up


def test_members_without_the_top_directory_are_found(tmp_path):
    top = "1-billion-word-language-modeling-benchmark-r13output/"
    members = [(path.removeprefix(top), data) for path, data in tiny_members("billionw") if path != top]
    write_archive(tmp_path / "raw" / corpora.CORPORA["billionw"].filename, "tar.gz", members)
    summary = prepare("billionw", tmp_path / "raw", tmp_path / "text")
    assert summary["splits"]["test"]["lines"] == 20


def _assert_nothing_written(out_dir):
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.mark.parametrize("corpus,dataset", [("ptb", "ptb"), ("wikitext2", "wikitext2"), ("aclw", "aclw-de")])
def test_truncated_archive_is_reported_and_nothing_is_written(tmp_path, corpus, dataset):
    path, _ = make_tiny_archive(corpus, tmp_path / "raw")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"{path.name}: corrupt or truncated .* archive.*lightrnn data fetch {corpus}"):
        prepare(dataset, tmp_path / "raw", tmp_path / "text")
    _assert_nothing_written(tmp_path / "text")


def test_garbage_instead_of_an_archive(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "icml14-data.tar.bz2").write_bytes(b"<html>not found</html>" * 50)
    with pytest.raises(ValueError, match="corrupt or truncated tar.bz2 archive"):
        prepare("aclw-fr", tmp_path / "raw", tmp_path / "text")
    _assert_nothing_written(tmp_path / "text")


def test_missing_member_is_named(tmp_path):
    members = [m for m in tiny_members("aclw") if not m[0].startswith("en-fr/1m-mono/finaltest")]
    write_archive(tmp_path / "raw" / "icml14-data.tar.bz2", "tar.bz2", members)
    assert prepare("aclw-de", tmp_path / "raw", tmp_path / "de")["splits"]["test"]["lines"] == 60
    with pytest.raises(ValueError, match=r"missing member\(s\) en-fr/1m-mono/finaltest\.in.*fetch aclw"):
        prepare("aclw-fr", tmp_path / "raw", tmp_path / "fr")
    _assert_nothing_written(tmp_path / "fr")


def test_empty_split_is_named(tmp_path):
    members = [(p, b" \n \n" if p.endswith("wiki.valid.tokens") else d) for p, d in tiny_members("wikitext2")]
    write_archive(tmp_path / "raw" / "wikitext-2-v1.zip", "zip", members)
    with pytest.raises(ValueError, match=r"split 'valid' of dataset 'wikitext2' is empty: member\(s\) wikitext-2/wiki.valid.tokens"):
        prepare("wikitext2", tmp_path / "raw", tmp_path / "text")
    _assert_nothing_written(tmp_path / "text")


def test_undecodable_bytes_name_the_member_and_line(tmp_path):
    members = []
    for path, data in tiny_members("ptb"):
        if path.endswith("ptb.valid.txt"):
            lines = data.split(b"\n")
            lines[6] = lines[6] + b" caf\xe9"  # Latin-1, not UTF-8
            data = b"\n".join(lines)
        members.append((path, data))
    write_archive(tmp_path / "raw" / "simple-examples.tgz", "tar.gz", members)
    with pytest.raises(ValueError, match=r"simple-examples/data/ptb\.valid\.txt: line 7 is not valid UTF-8"):
        prepare("ptb", tmp_path / "raw", tmp_path / "text")
    _assert_nothing_written(tmp_path / "text")


def test_archive_not_fetched_and_unknown_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"simple-examples\.tgz does not exist; run `lightrnn data fetch ptb"):
        prepare("ptb", tmp_path / "raw", tmp_path / "text")
    with pytest.raises(ValueError, match="unknown dataset 'aclw-xx'.*aclw-fr"):
        prepare("aclw-xx", tmp_path / "raw", tmp_path / "text")


def test_aclw_large_needs_manual_files_and_then_works(tmp_path):
    with pytest.raises(ValueError, match=r"needs .*fr/train\.txt.*No public download"):
        prepare("aclw-large-fr", tmp_path / "raw", tmp_path / "text")
    for split in corpora.SPLITS:
        (tmp_path / "raw" / "fr").mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / "fr" / f"{split}.txt").write_text("le chat  dort .\n\nil pleut .\n", encoding="utf-8")
    summary = prepare("aclw-large-fr", tmp_path / "raw", tmp_path / "text")
    assert summary["splits"]["train"] == {"lines": 2, "tokens": 7, "members": ["fr/train.txt"]}
    assert (tmp_path / "text" / "valid.txt").read_text() == "le chat dort .\nil pleut .\n"
