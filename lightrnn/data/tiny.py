"""Tiny generated corpora in every real archive layout, for the tests and the smoke run.

Each archive has the real file name, archive type and member paths, and mimics the published
formatting: PTB's leading space, lower case, N and closed vocabulary with <unk>; WikiText's blank
lines, ' = Title = ' headings, @-@ / @,@ tokens and <unk>; ACLW's one plain sentence per line in
five alphabets; One Billion Word's 99 training and 50 held-out shards under its top directory.
Words are synthetic (syllable strings) drawn from a Zipf law, so vocabulary rules (1B's count >= 3)
have something to cut.

Archives are byte-deterministic for a given seed and the same zlib/bz2 libraries: sorted members,
fixed mtimes, uid/gid 0, gzip header mtime 0 without a file name, fixed zip dates. The smoke config
can therefore pin their sha256 (still: take it from `make_tiny_archive`'s return value).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from lightrnn.core.fileio import write_bytes
from lightrnn.data.corpora import CORPORA, get_corpus

FIXED_MTIME = 1_262_304_000  # 2010-01-01T00:00:00Z, for every tar member
ZIP_DATE = (2016, 9, 26, 0, 0, 0)  # zip stores local date-time fields, no time zone
Member = tuple[str, bytes | None]  # path ("dir/" for a directory) and content (None: directory)

_SYLLABLES = {
    "en": ["ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "va", "bo", "gu", "ze", "fi", "ha", "jo"],
    "cs": ["ře", "ča", "dě", "ko", "ni", "vý", "po", "sk", "lá", "ně", "tu", "mě", "za", "ch", "bo", "ší"],
    "de": ["ge", "schä", "ber", "üb", "ta", "ßen", "ko", "ri", "lo", "mä", "un", "ter", "sa", "hö", "ne", "ze"],
    "es": ["ca", "ño", "la", "mi", "ré", "to", "ci", "ón", "pa", "de", "llo", "rá", "se", "ví", "qu", "es"],
    "fr": ["le", "ré", "ço", "mi", "ta", "è", "pou", "ni", "que", "vé", "sa", "ro", "ê", "di", "lo", "mè"],
    "ru": ["ка", "ло", "ми", "не", "ру", "та", "по", "си", "де", "ва", "бо", "гу", "зе", "щи", "жа", "ёл"],
}


def lexicon(size: int, language: str = "en", offset: int = 0) -> np.ndarray:
    """`size` distinct synthetic words (object array [size]): base-16 numerals written in syllables."""
    syllables = _SYLLABLES[language]
    base = len(syllables)
    words = []
    for index in range(offset + base, offset + base + size):  # >= 2 syllables per word
        parts = []
        while index:
            index, digit = divmod(index, base)
            parts.append(syllables[digit])
        words.append("".join(reversed(parts)))
    return np.asarray(words, dtype=object)


def zipf_sentences(rng: np.random.Generator, words: np.ndarray, sentences: int, min_len: int = 4,
                   max_len: int = 20, exponent: float = 1.1) -> list[list[str]]:
    """`sentences` lists of words; word i of `words` drawn with probability ~ 1 / (i + 1)^exponent."""
    weights = 1.0 / np.arange(1, len(words) + 1) ** exponent
    cdf = np.cumsum(weights) / weights.sum()
    lengths = rng.integers(min_len, max_len + 1, size=sentences)  # [S]
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), len(words) - 1)  # [sum(lengths)]
    drawn = words[ids]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [list(drawn[bounds[i]:bounds[i + 1]]) for i in range(sentences)]


def zipf_lines(rng: np.random.Generator, words: np.ndarray, sentences: int, min_len: int = 4,
               max_len: int = 20, exponent: float = 1.1) -> list[str]:
    """Like `zipf_sentences`, joined by single spaces (fast enough for the 20M-token benchmark)."""
    return [" ".join(s) for s in zipf_sentences(rng, words, sentences, min_len, max_len, exponent)]


def _close_vocabulary(train: list[list[str]], others: list[list[list[str]]], unk: str) -> None:
    """PTB/WikiText style: valid/test words never seen in training become the corpus's <unk>."""
    known = {w for sentence in train for w in sentence}
    for split in others:
        for sentence in split:
            sentence[:] = [w if w in known else unk for w in sentence]


# ---------------------------------------------------------------------------------------------
# Layouts


def ptb_members(rng: np.random.Generator) -> list[Member]:
    head = np.asarray(["the", "<unk>", "N", "of", "to", "a", "in", "and", "'s", "for", "$", "that"], dtype=object)
    words = np.concatenate([head, lexicon(400)])
    splits = {s: zipf_sentences(rng, words, n, 3, 25) for s, n in (("train", 600), ("valid", 80), ("test", 80))}
    _close_vocabulary(splits["train"], [splits["valid"], splits["test"]], "<unk>")
    members: list[Member] = [("simple-examples/", None), ("simple-examples/data/", None)]
    for split, sentences in splits.items():
        # PTB lines start with a space and end with " \n".
        text = "".join(" " + " ".join(s) + " \n" for s in sentences)
        members.append((f"simple-examples/data/ptb.{split}.txt", text.encode()))
    char_text = "".join(" " + " _ ".join(" ".join(w) for w in s) + " \n" for s in splits["valid"][:5])
    members.append(("simple-examples/data/ptb.char.valid.txt", char_text.encode()))
    members.append(("simple-examples/README", b"Tiny generated stand-in for Mikolov's simple-examples.\n"))
    return members


def _wiki_article(rng: np.random.Generator, words: np.ndarray) -> list[list[str]]:
    """Heading, blank line, paragraphs and sub-sections, as WikiText lays out an article."""
    title = [w.capitalize() for w in zipf_sentences(rng, words, 1, 1, 3)[0]]
    lines: list[list[str]] = [[], ["=", *title, "="], []]
    for section in range(int(rng.integers(1, 4))):
        if section:
            heading = [w.capitalize() for w in zipf_sentences(rng, words, 1, 1, 2)[0]]
            lines += [["=", "=", *heading, "=", "="], []]
        for sentence in zipf_sentences(rng, words, int(rng.integers(1, 4)), 8, 40):
            # WikiText splits hyphens and number separators into @-@ / @,@ / @.@ tokens.
            if len(sentence) > 6:
                sentence[2:2] = [str(int(rng.integers(1, 99))), "@,@", f"{int(rng.integers(100, 999))}"]
                sentence[5:5] = ["@-@"]
            lines += [sentence + ["."], []]
    return lines


def wikitext_members(rng: np.random.Generator, folder: str) -> list[Member]:
    head = np.asarray(["the", ",", ".", "of", "and", "in", "<unk>", "to", "a", "\"", "was", "café"], dtype=object)
    words = np.concatenate([head, lexicon(500)])
    splits = {s: [line for _ in range(n) for line in _wiki_article(rng, words)]
              for s, n in (("train", 40), ("valid", 6), ("test", 6))}
    _close_vocabulary(splits["train"], [splits["valid"], splits["test"]], "<unk>")
    members: list[Member] = [(f"{folder}/", None)]
    for split, lines in splits.items():
        # Every line starts with a space; blank lines are " \n".
        text = "".join(" " + " ".join(line) + (" \n" if line else "\n") for line in [[]] + lines)
        members.append((f"{folder}/wiki.{split}.tokens", text.encode()))
    return members


def aclw_members(rng: np.random.Generator) -> list[Member]:
    members: list[Member] = [("icml14-data.readme", b"Tiny generated stand-in for Botha & Blunsom's ICML 2014 data.\n")]
    for language in ("cs", "de", "es", "fr", "ru"):
        punctuation = np.asarray([",", ".", "«", "»", "-"] if language == "fr" else [",", ".", "-"], dtype=object)
        words = np.concatenate([punctuation, lexicon(600, language)])
        folder = f"en-{language}/1m-mono"
        members += [(f"en-{language}/", None), (f"{folder}/", None)]
        vocab: set[str] = set()
        for member, count in (("train.in", 500), ("test.in", 60), ("finaltest.in", 60)):
            sentences = zipf_sentences(rng, words, count, 4, 30)
            if member == "train.in":
                vocab = {w for s in sentences for w in s}
            text = "".join(" ".join([s[0].capitalize(), *s[1:], "."]) + "\n" for s in sentences)
            members.append((f"{folder}/{member}", text.encode()))
        # Unverified format of the real vocab file; prepare never reads it.
        members.append((f"{folder}/vocab", "".join(f"{w}\n" for w in sorted(vocab)).encode()))
    return members


def billionw_members(rng: np.random.Generator, train_sentences_per_shard: int = 12,
                     heldout_sentences_per_shard: int = 20, lexicon_size: int = 3000,
                     min_len: int = 4, max_len: int = 30) -> list[Member]:
    """The 1B layout; the defaults are tiny, the benchmark passes sizes for >= 20M tokens."""
    top = CORPORA["billionw"].filename.removesuffix(".tar.gz")
    words = np.concatenate([np.asarray(["the", ",", ".", "to", "of", "and", "a", "in", "\"", "'s"], dtype=object),
                            lexicon(lexicon_size)])
    train_dir = f"{top}/training-monolingual.tokenized.shuffled"
    heldout_dir = f"{top}/heldout-monolingual.tokenized.shuffled"
    members: list[Member] = [(f"{top}/", None), (f"{train_dir}/", None), (f"{heldout_dir}/", None),
                             (f"{top}/README", b"Tiny generated stand-in for the One Billion Word benchmark r13.\n")]

    def shard(count: int) -> bytes:
        lines = zipf_lines(rng, words, count, min_len, max_len, exponent=1.0)
        return "".join(line[:1].upper() + line[1:] + " .\n" for line in lines).encode()

    for index in range(1, 100):
        members.append((f"{train_dir}/news.en-{index:05d}-of-00100", shard(train_sentences_per_shard)))
    for index in range(50):
        members.append((f"{heldout_dir}/news.en.heldout-{index:05d}-of-00050", shard(heldout_sentences_per_shard)))
    return members


# ---------------------------------------------------------------------------------------------
# Packing


def pack(archive_format: str, members: list[Member], sort: bool = True, compresslevel: int = 9) -> bytes:
    """Archive bytes in `archive_format` ("tar.gz", "tar.bz2", "zip"), members sorted by path."""
    ordered = sorted(members, key=lambda m: m[0]) if sort else list(members)
    if archive_format == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path, data in ordered:
                info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
                info.create_system = 3  # Unix, whatever the host: same bytes everywhere
                if data is None:
                    info.external_attr = (0o40755 << 16) | 0x10
                    archive.writestr(info, b"")
                else:
                    info.external_attr = 0o644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, data)
        return buffer.getvalue()
    if archive_format not in ("tar.gz", "tar.bz2"):
        raise ValueError(f"archive format {archive_format!r}: use tar.gz, tar.bz2 or zip")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for path, data in ordered:
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                archive.addfile(info, io.BytesIO(data))
    payload = raw.getvalue()
    if archive_format == "tar.bz2":
        return bz2.compress(payload, compresslevel)
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=compresslevel) as stream:
        stream.write(payload)
    return compressed.getvalue()


def write_archive(path: Path, archive_format: str, members: list[Member], sort: bool = True,
                  compresslevel: int = 9) -> str:
    """Write an archive atomically; return its sha256."""
    data = pack(archive_format, members, sort=sort, compresslevel=compresslevel)
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def tiny_members(corpus: str, seed: int = 0) -> list[Member]:
    """The members of the tiny archive of `corpus` (a corpus or dataset name) for `seed`."""
    entry = get_corpus(corpus)
    # A different stream per corpus, stable across runs (crc32, not Python's salted hash).
    rng = np.random.default_rng([seed, zlib.crc32(entry.name.encode())])
    if entry.name == "ptb":
        return ptb_members(rng)
    if entry.name == "wikitext2":
        return wikitext_members(rng, "wikitext-2")
    if entry.name == "wikitext103":
        return wikitext_members(rng, "wikitext-103")
    if entry.name == "aclw":
        return aclw_members(rng)
    if entry.name == "billionw":
        return billionw_members(rng)
    raise ValueError(f"corpus {entry.name!r} has no archive to imitate (its files are placed by hand): "
                     f"choose one of ptb, wikitext2, wikitext103, aclw, billionw")


def make_tiny_archive(corpus: str, dest_dir: Path, seed: int = 0) -> tuple[Path, str]:
    """Write `dest_dir/<the registry's file name>` for `corpus`; return (path, sha256)."""
    entry = get_corpus(corpus)
    members = tiny_members(entry.name, seed)
    path = Path(dest_dir) / entry.filename
    return path, write_archive(path, entry.archive_format, members)
