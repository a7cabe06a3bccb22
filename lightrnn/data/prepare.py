"""Turn a fetched corpus archive into `OUT/{train,valid,test}.txt`: one sentence per line.

Every line of every member file is split on whitespace (`str.split()`, Unicode whitespace) and
written back joined by single spaces; blank lines are dropped. Tokens are otherwise kept exactly
as published (PTB's <unk> and N, WikiText's @-@, 1B's casing): the corpus conventions are the
vocabulary rule's business (`lightrnn.data.encode`), not this stage's.

Archives are read as a stream (tar: one sequential pass, members in archive order; zip: by
member), so One Billion Word's 1.8 GB archive never needs unpacking to disk and memory stays
bounded. The output files appear only when every split is complete and non-empty: they are
written into a hidden staging folder in OUT and the set is swapped in at the end, prepare.json
last (`lightrnn.core.fileio.staged_dir`); a failure (full disk, damaged archive, kill) leaves OUT's
old files whole and no temp files behind.
"""

from __future__ import annotations

import contextvars
import gzip
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, TextIO

from lightrnn.core.errors import DataError
from lightrnn.core.fileio import staged_dir, write_json
from lightrnn.core.runlock import out_dir_lock
from lightrnn.core.text import line_batches, words_of
from lightrnn.data.corpora import CORPORA, DATASETS, SPLITS, Corpus, Dataset, get_dataset
from lightrnn.data.progress import Progress

# Lines are read by the project's one text reader (`lightrnn.core.text`: UTF-8, BOM, breaks at
# "\n" only, MAX_LINE_BYTES), as encode, score and generate read theirs.
_FIX = "the file is damaged or not this corpus: delete the archive and fetch it again"

# The running prepare's progress (read where lines are converted, several calls down).
PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("prepare_progress", default=None)

# What a damaged archive raises while being read (bz2 raises a bare OSError, errno None).
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)


def archive_path(corpus: Corpus, raw_dir: Path) -> Path:
    """Where `fetch(corpus, raw_dir)` put the archive (raw_dir may also be the archive itself)."""
    raw_dir = Path(raw_dir)
    return raw_dir if raw_dir.is_file() else raw_dir / corpus.filename


def prepare(dataset: str, raw_dir: Path, out_dir: Path) -> dict:
    """Write `out_dir/{train,valid,test}.txt` (+ `prepare.json`) for `dataset` from `raw_dir`.

    Returns {"dataset", "corpus", "source", "splits": {split: {"lines", "tokens", "members"}}}.
    Raises ValueError naming the archive/member and what to do on a corrupt archive, a missing
    member, an empty split or undecodable bytes; FileNotFoundError if the archive is absent.
    """
    spec = get_dataset(dataset)
    corpus = CORPORA[spec.corpus]
    out_dir = Path(out_dir)
    source = Path(raw_dir) if corpus.archive_format == "manual" else archive_path(corpus, raw_dir)
    if corpus.archive_format != "manual" and not source.exists():
        raise FileNotFoundError(
            f"{source} not found: run `lightrnn data fetch {corpus.name} --dest {Path(raw_dir)}` first"
        )
    stats = {split: {"lines": 0, "tokens": 0, "members": list(spec.splits[split])} for split in SPLITS}
    progress = Progress("prepare", f"{source} -> {out_dir}")
    token = PROGRESS.set(progress)
    try:
        with out_dir_lock(out_dir, "lightrnn data prepare"):
            summary = _prepare(spec, corpus, source, out_dir, stats)
    finally:
        PROGRESS.reset(token)
    progress.done()
    return summary


def _prepare(spec: Dataset, corpus: Corpus, source: Path, out_dir: Path, stats: dict) -> dict:
    dataset = spec.name
    with staged_dir(out_dir, last="prepare.json") as staging:
        writers = {split: open(staging / f"{split}.txt", "w", encoding="utf-8", newline="\n") for split in SPLITS}
        try:
            _read_source(spec, corpus, source, staging, writers, stats)
            for writer in writers.values():
                writer.flush()
                os.fsync(writer.fileno())
        finally:
            for writer in writers.values():
                writer.close()
        for split in SPLITS:
            if stats[split]["lines"] == 0:
                raise ValueError(
                    f"split {split!r} of dataset {dataset!r} is empty: member(s) {', '.join(spec.splits[split])} "
                    f"of {source} hold no tokens; the file is damaged or not this corpus: fetch it again"
                )
        summary = {"dataset": spec.name, "corpus": corpus.name, "source": str(source), "splits": stats}
        write_json(staging / "prepare.json", summary)
    return summary


def _read_source(spec: Dataset, corpus: Corpus, source: Path, staging: Path, writers: dict[str, TextIO],
                 stats: dict) -> None:
    """Every member of every split into its writer; a damaged archive raises ValueError naming it."""
    if corpus.archive_format == "manual":
        _read_manual(spec, corpus, source, writers, stats)
        return
    try:
        if corpus.archive_format == "zip":
            _read_zip(spec, source, writers, stats)
        else:
            _read_tar(spec, corpus, source, staging, writers, stats)
    except (NotImplementedError, RuntimeError) as error:  # zipfile: a method or encryption it cannot read
        raise DataError(f"{source}: a member cannot be read ({str(error)[:200]}); fetch the published archive") from None
    except _ARCHIVE_ERRORS + (OSError,) as error:
        if isinstance(error, OSError) and not isinstance(error, gzip.BadGzipFile) and error.errno is not None:
            raise  # a real I/O error (disk full, permissions), not a damaged archive
        raise ValueError(
            f"{source}: corrupt or truncated {corpus.archive_format} archive ({error}); delete it and run "
            f"`lightrnn data fetch {corpus.name} --dest {source.parent}` again"
        ) from error


def convert_lines(binary: BinaryIO, writer: TextIO, label: str, progress: Progress | None = None) -> tuple[int, int]:
    """Copy one member's text to `writer`, one whitespace-normalised sentence per line.

    Returns (sentences written, tokens written). Blank lines are dropped. Raises ValueError
    naming `label` and the line if the bytes are not UTF-8.
    """
    sentences = tokens = 0
    for batch in line_batches(binary, label, _FIX):
        split_lines = [words_of(line) for line in batch]
        kept = [" ".join(words) for words in split_lines if words]
        if kept:
            writer.write("\n".join(kept))
            writer.write("\n")
        sentences += len(kept)
        count = sum(map(len, split_lines))
        tokens += count
        if progress is not None:
            progress.add(bytes=sum(map(len, kept)) + len(kept), lines=len(kept), tokens=count)
    return sentences, tokens


_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def check_zip_member(info: zipfile.ZipInfo, source: Path) -> None:
    """DataError naming the member when it cannot be read as plain text: encrypted, compressed with
    a method Python cannot decompress, or a symbolic link."""
    from lightrnn.core.loaders import short

    where = f"{source}: member {short(info.filename)}"
    if info.flag_bits & 0x1:
        raise DataError(f"{where} is encrypted; use an unencrypted copy of the corpus (fetch it again)")
    if info.compress_type not in _ZIP_METHODS:
        raise DataError(f"{where} uses compression method {info.compress_type}, which cannot be read (stored, "
                        f"deflate, bzip2 and lzma can); repack it or fetch the published archive")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DataError(f"{where} is a symbolic link, not a file; fetch the published archive")


def check_tar_member(info: tarfile.TarInfo, source: Path) -> None:
    """DataError naming a member the registry reads when it is a link or not a regular file."""
    from lightrnn.core.loaders import short

    if not info.isfile():
        kind = "a symbolic link" if info.issym() else "a hard link" if info.islnk() else "not a regular file"
        raise DataError(f"{source}: member {short(info.name)} is {kind}; fetch the published archive")


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _member_index(spec: Dataset) -> tuple[dict[str, tuple[str, str, int]], dict[str, tuple[str, str, int]]]:
    """(registry path -> (path, split, index), the same keyed by the path without its top directory)."""
    exact = {path: (path, split, position)
             for split in SPLITS for position, path in enumerate(spec.splits[split])}
    without_top = {path.split("/", 1)[1]: hit for path, hit in exact.items() if "/" in path}
    return exact, without_top


def _lookup(name: str, wanted: tuple[dict, dict]) -> tuple[str, str, int] | None:
    """Match an archive member to a registry member, tolerating one top directory more or less
    (never both at once: en-cs/1m-mono/x must not match en-fr/1m-mono/x)."""
    exact, without_top = wanted
    name = _normalise(name)
    if name in exact:
        return exact[name]
    if "/" in name and name.split("/", 1)[1] in exact:
        return exact[name.split("/", 1)[1]]
    return without_top.get(name)


def _missing_error(source: Path, corpus_name: str, missing: list[str], present: list[str]) -> ValueError:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    sample = ", ".join(present[:5]) or "nothing"
    return ValueError(
        f"{source}: missing member(s) {shown} (the archive holds e.g. {sample}); it is incomplete or not the "
        f"expected release: delete it and run `lightrnn data fetch {corpus_name} --dest {source.parent}` again"
    )


def _read_zip(spec: Dataset, source: Path, writers: dict[str, TextIO], stats: dict) -> None:
    wanted = _member_index(spec)
    with zipfile.ZipFile(source) as archive:
        found = {}
        for info in archive.infolist():
            hit = _lookup(info.filename, wanted)
            if hit and not info.is_dir():
                check_zip_member(info, source)
                found.setdefault(hit[0], info)
        missing = [path for split in SPLITS for path in spec.splits[split] if path not in found]
        if missing:
            raise _missing_error(source, spec.corpus, missing, archive.namelist())
        for split in SPLITS:
            for path in spec.splits[split]:
                with archive.open(found[path]) as member:
                    sentences, tokens = convert_lines(member, writers[split], f"{source}:{path}", PROGRESS.get())
                stats[split]["lines"] += sentences
                stats[split]["tokens"] += tokens


def _read_tar(spec: Dataset, corpus: Corpus, source: Path, out_dir: Path, writers: dict[str, TextIO],
              stats: dict) -> None:
    """One sequential pass over a (compressed) tar stream.

    A split made of several members (1B training: 99 shards) must be written in registry order;
    a member that arrives early is spooled to a hidden file and appended when its turn comes,
    so the output does not depend on the archive's member order.
    """
    wanted = _member_index(spec)
    next_index = {split: 0 for split in SPLITS}
    spooled: dict[tuple[str, int], Path] = {}
    seen: set[str] = set()
    present: list[str] = []
    mode = {"tar.gz": "r|gz", "tar.bz2": "r|bz2"}[corpus.archive_format]
    with tarfile.open(source, mode=mode) as archive:
        for info in archive:
            if len(present) < 5:
                present.append(info.name)
            hit = _lookup(info.name, wanted)
            if hit is None or info.isdir() or hit[0] in seen:
                continue
            check_tar_member(info, source)
            key, split, index = hit
            seen.add(key)
            member = archive.extractfile(info)
            if index == next_index[split]:
                sentences, tokens = convert_lines(member, writers[split], f"{source}:{info.name}", PROGRESS.get())
                next_index[split] += 1
                while (split, next_index[split]) in spooled:
                    spool = spooled.pop((split, next_index[split]))
                    with open(spool, encoding="utf-8", newline="\n") as reader:
                        shutil.copyfileobj(reader, writers[split], 1 << 20)
                    spool.unlink()
                    next_index[split] += 1
            else:
                spool = out_dir / f".spool-{split}-{index:05d}.part"
                with open(spool, "w", encoding="utf-8", newline="\n") as spool_writer:
                    sentences, tokens = convert_lines(member, spool_writer, f"{source}:{info.name}", PROGRESS.get())
                spooled[(split, index)] = spool
            stats[split]["lines"] += sentences
            stats[split]["tokens"] += tokens
    missing = [path for split in SPLITS for path in spec.splits[split] if path not in seen]
    if missing:
        raise _missing_error(source, corpus.name, missing, present)


def _read_manual(spec: Dataset, corpus: Corpus, raw_dir: Path, writers: dict[str, TextIO], stats: dict) -> Path:
    for split in SPLITS:
        for path in spec.splits[split]:
            file = raw_dir / path
            if not file.is_file():
                raise ValueError(f"dataset {spec.name!r} needs {file}, which does not exist. {corpus.note}")
            with open(file, "rb") as member:
                sentences, tokens = convert_lines(member, writers[split], str(file), PROGRESS.get())
            stats[split]["lines"] += sentences
            stats[split]["tokens"] += tokens
    return raw_dir


def missing_members(corpus: Corpus, path: Path) -> list[str]:
    """Registry members of every dataset of `corpus` that the archive at `path` lacks ([] = all there).

    Reads only the archive's index (tar: one pass over the headers). Raises ValueError when
    the file does not open as `corpus.archive_format` (an HTML error page, a truncated file).
    """
    datasets = [spec for spec in DATASETS.values() if spec.corpus == corpus.name]
    wanted = [_member_index(spec) for spec in datasets]
    needed = {path_ for spec in datasets for split in SPLITS for path_ in spec.splits[split]}
    found: set[str] = set()
    try:
        if corpus.archive_format == "zip":
            with zipfile.ZipFile(path) as archive:
                members = [(info.filename, info) for info in archive.infolist() if not info.is_dir()]
        else:
            mode = {"tar.gz": "r:gz", "tar.bz2": "r:bz2"}[corpus.archive_format]
            with tarfile.open(path, mode=mode) as archive:
                members = [(info.name, info) for info in archive.getmembers() if not info.isdir()]
    except _ARCHIVE_ERRORS + (OSError,) as error:
        if isinstance(error, OSError) and not isinstance(error, gzip.BadGzipFile) and error.errno is not None:
            raise
        raise ValueError(f"it does not open as a {corpus.archive_format} archive ({error})") from None
    for name, info in members:
        for index in wanted:
            hit = _lookup(name, index)
            if hit is not None:
                # A member prepare reads must be readable text, checked before anything is pinned.
                if isinstance(info, zipfile.ZipInfo):
                    check_zip_member(info, path)
                else:
                    check_tar_member(info, path)
                found.add(hit[0])
    return sorted(needed - found)

