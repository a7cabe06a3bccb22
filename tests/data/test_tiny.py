"""tiny: byte-deterministic archives in the real layouts, and the `lightrnn data` command line."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest

from lightrnn import cli
from lightrnn.data import corpora
from lightrnn.data.tiny import make_tiny_archive
from tests._data_fixtures import FAMILIES


@pytest.mark.parametrize("corpus", FAMILIES)
def test_archives_are_byte_deterministic_and_seeded(tmp_path, corpus):
    first, sha_first = make_tiny_archive(corpus, tmp_path / "a", seed=0)
    second, sha_second = make_tiny_archive(corpus, tmp_path / "b", seed=0)
    other, sha_other = make_tiny_archive(corpus, tmp_path / "c", seed=1)
    assert first.read_bytes() == second.read_bytes() and sha_first == sha_second
    assert hashlib.sha256(first.read_bytes()).hexdigest() == sha_first
    assert sha_other != sha_first
    assert first.name == corpora.CORPORA[corpus].filename


@pytest.mark.parametrize("corpus", FAMILIES)
def test_archives_hold_the_registry_members_with_fixed_metadata(tmp_path, corpus):
    path, _ = make_tiny_archive(corpus, tmp_path)
    entry = corpora.CORPORA[corpus]
    if entry.archive_format == "zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            assert {info.date_time for info in archive.infolist()} == {(2016, 9, 26, 0, 0, 0)}
    else:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            names = [m.name for m in members]
            assert {m.mtime for m in members} == {1_262_304_000} and {m.uid for m in members} == {0}
        if entry.archive_format == "tar.gz":
            assert path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    assert names == sorted(names)
    wanted = {p for name, spec in corpora.DATASETS.items() if spec.corpus == corpus
              for split in corpora.SPLITS for p in spec.splits[split]}
    assert wanted <= set(names)


def test_manual_corpus_has_no_tiny_archive(tmp_path):
    with pytest.raises(ValueError, match="placed by hand"):
        make_tiny_archive("aclw-large", tmp_path)


def test_cli_fetch_without_dest_uses_the_workflow_folder(tmp_path, capsys, monkeypatch):
    """`lightrnn data fetch NAME` as docs/data.md writes it: into resources/raw/<corpus>, where the
    workflow reads it; a corpus with no download says where to place the files, in one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["data", "make-tiny", "ptb", "--dest", "tiny"]) == 0
    path, sha256 = capsys.readouterr().out.strip().split("\t")
    assert cli.main(["data", "fetch", "ptb", "--url", f"file://{Path(path).resolve()}", "--sha256", sha256]) == 0
    assert Path(capsys.readouterr().out.strip()) == Path("resources/raw/ptb") / Path(path).name
    assert cli.main(["data", "fetch", "aclw-large-fr"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "resources/raw/aclw-large" in err and "train,valid,test" in err
    assert not Path("resources/raw/aclw-large").exists()


def test_cli_make_tiny_list_and_errors(tmp_path, capsys):
    assert cli.main(["data", "make-tiny", "ptb", "--dest", str(tmp_path)]) == 0
    path, sha256 = capsys.readouterr().out.strip().split("\t")
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha256
    assert cli.main(["data", "fetch", "ptb", "--dest", str(tmp_path / "raw"), "--url", f"file://{path}",
                     "--sha256", sha256]) == 0
    assert cli.main(["data", "prepare", "ptb", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "text")]) == 0
    assert cli.main(["data", "encode", "--text", str(tmp_path / "text"), "--out", str(tmp_path / "data"),
                     "--max-vocab", "50"]) == 0
    assert len((tmp_path / "data" / "vocab.tsv").read_text().splitlines()) == 50
    capsys.readouterr()
    assert cli.main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in list(corpora.CORPORA) + list(corpora.DATASETS))
    assert cli.main(["data", "prepare", "klingon", "--raw", str(tmp_path), "--out", str(tmp_path / "k")]) == 2
    assert "unknown dataset 'klingon'" in capsys.readouterr().err
