"""Vocabulary and integer encoding: `TEXT/{train,valid,test}.txt` -> `OUT/vocab.tsv`, `{split}.npy`, `meta.json`.

- `vocab.tsv`: `word<TAB>count`, one entry per line, sorted by count (descending), ties by the
  words' Unicode code points; the id of a word is its 0-based line number, so id 0 is the most
  frequent entry. Specials (end of sentence, unknown, e.g. 1B's <S>) are entries like any other,
  with their training counts (eos: one per sentence; unk: the corpus's own unk tokens plus every
  word the rule drops).
- `{split}.npy`: int32, shape [N], one flat stream: each sentence's ids followed by the eos id.
  Words outside the vocabulary map to the unk id. Blank (whitespace-only) lines are not
  sentences: they add no eos and do not count.
- `meta.json`: dataset, vocabulary rule, unk/eos tokens and ids, vocabulary size, and per split
  the sentence and token counts (eos included) and the OOV rate.

Streaming, for One Billion Word (~800M training tokens): pass 1 counts the training split in
batches of lines (memory: the word counts, ~2.4M distinct words); pass 2 writes every split
batch by batch, sequentially (a memory map of a sparse file would die of SIGBUS, with no
message, when the disk fills). Nothing is held whole.

Crash safety: the free space is checked before anything is written; every output goes into a
hidden staging folder in OUT and the whole set is swapped in at the end, meta.json last
(`lightrnn.core.fileio.staged_dir`). A failure (full disk, kill, bad bytes) leaves OUT's old set
whole and no temp files behind.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain, repeat
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from lightrnn.core.errors import DataError
from lightrnn.core.fileio import STAGING_PREFIX, TEMP_SUFFIX, check_free_space
from lightrnn.core.loaders import load_prepare
from lightrnn.core.runlock import out_dir_lock
from lightrnn.core.text import line_batches, words_of
from lightrnn.data.corpora import DATASETS, SPLITS, VocabRule, get_dataset
from lightrnn.data.encoded import META, VOCAB, open_stream, write_meta, write_vocab, writing
from lightrnn.data.progress import Progress

GENERIC_RULE = VocabRule(min_count=1, unk="<unk>", eos="<eos>")
_FIX = "run `lightrnn data prepare` again to rewrite it"


def _batches(path: Path) -> Iterator[list[str]]:
    """Batches of lines of a text file, by the project's one text reader (`lightrnn.core.text`:
    UTF-8, a leading BOM dropped, breaks at "\\n" only, lines bounded): what `score` and
    `generate` read new text with, so the encoded split and the scored text hold the same sentences."""
    with open(path, "rb") as handle:
        yield from line_batches(handle, str(path), _FIX)


class FixedVocab(NamedTuple):
    """A vocabulary to encode with instead of building one (`data encode --vocab`): the entries
    [(word, count)] in id order and its unk/eos tokens (unk None: an out-of-vocabulary word is an error)."""

    entries: list[tuple[str, int]]
    unk: str | None
    eos: str
    source: str


def _sentences(batch: list[str]) -> list[list[str]]:
    """The words of each line that has any: a blank or whitespace-only line is not a sentence."""
    return [words for words in map(words_of, batch) if words]


def _split_file(text_dir: Path, split: str) -> Path:
    path = text_dir / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `lightrnn data prepare DATASET --raw DIR --out {text_dir}` first")
    return path


def count_words(path: Path) -> tuple[Counter, int, int]:
    """(word counts, sentences, tokens) of a text file, in one streaming pass."""
    counts: Counter = Counter()
    sentences = tokens = 0
    for batch in _batches(path):
        lines = _sentences(batch)
        for words in lines:
            counts.update(words)
            tokens += len(words)
        sentences += len(lines)
    return counts, sentences, tokens


def build_vocab(counts: Counter, sentences: int, rule: VocabRule) -> list[tuple[str, int]]:
    """Apply `rule` to training counts: [(word, count)] in id order (count desc, then code point).

    Specials are always kept. `rule.max_vocab` bounds the total size, specials included.
    """
    specials = rule.specials
    words = [(w, c) for w, c in counts.items() if w not in specials and c >= rule.min_count]
    words.sort(key=lambda entry: (-entry[1], entry[0]))
    if rule.max_vocab is not None:
        budget = rule.max_vocab - len(specials)
        if budget < 0:
            raise ValueError(f"max_vocab={rule.max_vocab} is smaller than the {len(specials)} special tokens {specials}")
        words = words[:budget]
    in_text = sum(c for w, c in counts.items() if w not in specials)
    kept = sum(c for _, c in words)
    special_counts = {token: counts.get(token, 0) for token in specials}
    special_counts[rule.eos] += sentences
    special_counts[rule.unk] += in_text - kept  # every dropped word becomes unk
    entries = words + list(special_counts.items())
    entries.sort(key=lambda entry: (-entry[1], entry[0]))
    return entries


def encode_file(path: Path, out_path: Path, word_to_id: dict[str, int], unk_id: int, eos_id: int,
                sentences: int, tokens: int, progress: Progress | None = None) -> int:
    """Encode a text file into an int32 .npy of length tokens + sentences; return the OOV count.

    Written sequentially through `lightrnn.data.encoded.open_stream` (the folder's one writer);
    `encode` calls it inside the folder's staging area.
    """
    oov = 0
    lookup = word_to_id.get
    with open_stream(out_path, tokens + sentences, path) as write:
        for batch in _batches(path):
            split_lines = _sentences(batch)
            if not split_lines:
                continue
            lengths = np.fromiter(map(len, split_lines), dtype=np.int64, count=len(split_lines))  # [L]
            words = int(lengths.sum())
            # Map in C (map over dict.get), -1 marks OOV so it can be counted before becoming unk.
            ids = np.fromiter(map(lookup, chain.from_iterable(split_lines), repeat(-1)), dtype=np.int32, count=words)
            missing = ids < 0
            oov += int(missing.sum())
            ids[missing] = unk_id
            size = words + len(split_lines)
            eos_positions = np.cumsum(lengths + 1) - 1  # [L] each sentence's last slot
            chunk = np.empty(size, dtype="<i4")  # [words + L]
            is_word = np.ones(size, dtype=bool)
            is_word[eos_positions] = False
            chunk[eos_positions] = eos_id
            chunk[is_word] = ids
            write(chunk)
            if progress is not None:
                progress.add(lines=len(split_lines), tokens=size)
    return oov


def _rule_for(text_dir: Path, dataset: str | None, min_count: int | None, max_vocab: int | None) -> tuple[str, VocabRule]:
    """The dataset's rule (named, or recorded by prepare in TEXT/prepare.json), with overrides."""
    if dataset is None:
        manifest = text_dir / "prepare.json"
        if manifest.is_file():
            dataset = load_prepare(manifest, DATASETS)["dataset"]  # checked: a registry name or absent
    rule = get_dataset(dataset).vocab if dataset else GENERIC_RULE
    name = dataset or text_dir.name
    if min_count is not None:
        if min_count < 1:
            raise ValueError(f"min_count={min_count}: must be >= 1")
        rule = VocabRule(min_count, rule.max_vocab, rule.unk, rule.eos, rule.extra_specials)
    if max_vocab is not None:
        if max_vocab < 1:
            raise ValueError(f"max_vocab={max_vocab}: must be >= 1")
        rule = VocabRule(rule.min_count, max_vocab, rule.unk, rule.eos, rule.extra_specials)
    return name, rule


def encode(text_dir: Path, out_dir: Path, dataset: str | None = None, min_count: int | None = None,
           max_vocab: int | None = None, vocab: FixedVocab | None = None) -> dict:
    """Build the vocabulary from `text_dir/train.txt` and encode every split into `out_dir`.

    `dataset` picks the dataset's vocabulary rule (default: the one `prepare` recorded in
    `text_dir/prepare.json`, else min_count 1 with <unk>/<eos>); `min_count` / `max_vocab`
    override it. `vocab` (a trained model's, `data encode --vocab`): encode with it instead, so
    the ids are the model's (its unk/eos replace the rule's). Writes vocab.tsv,
    {train,valid,test}.npy (int32 [N]) and meta.json; returns the meta dict.
    """
    text_dir, out_dir = Path(text_dir), Path(out_dir)
    # One writer per folder (OUT/.lock, as `lightrnn train`): two encodes into one folder would
    # delete each other's staging files.
    with out_dir_lock(out_dir, "lightrnn data encode"):
        return _encode(text_dir, out_dir, dataset, min_count, max_vocab, vocab)


def _encode(text_dir: Path, out_dir: Path, dataset: str | None, min_count: int | None,
            max_vocab: int | None, vocab: FixedVocab | None) -> dict:
    if not (text_dir / "prepare.json").exists() and any(text_dir.glob(f"{STAGING_PREFIX}*{TEMP_SUFFIX}")):
        raise DataError(
            f"{text_dir}: a prepare was interrupted while replacing its files (no prepare.json, a staging folder "
            f"left); run `lightrnn data prepare` again into it"
        )
    name, rule = _rule_for(text_dir, dataset, min_count, max_vocab)
    paths = {split: _split_file(text_dir, split) for split in SPLITS}
    counts, train_sentences, train_tokens = count_words(paths["train"])
    sizes = {"train": (train_sentences, train_tokens)}
    for split in SPLITS[1:]:
        sizes[split] = _count_lines_tokens(paths[split])  # to preallocate the .npy
    for split, (sentences, _) in sizes.items():
        if sentences == 0:
            raise DataError(f"{paths[split]} is empty: split {split!r} needs at least one sentence (blank lines "
                            f"do not count); "
                             f"check the corpus and run `lightrnn data prepare` again")
    entries = build_vocab(counts, train_sentences, rule) if vocab is None else vocab.entries
    del counts
    word_to_id = {word: index for index, (word, _) in enumerate(entries)}
    if vocab is not None:
        rule = _fixed_vocab_rule(vocab, word_to_id, rule)
    unk_id, eos_id = word_to_id.get(rule.unk, -1), word_to_id[rule.eos]

    # The old set stays until the new one is complete, so the new one needs its full size free.
    needed = sum(4 * (tokens + sentences) + 128 for sentences, tokens in sizes.values())
    needed += sum(len(word.encode("utf-8")) + 22 for word, _ in entries)
    check_free_space(out_dir, needed, f"encoding {text_dir} into {out_dir}")
    meta: dict = {
        "dataset": name,
        "vocab_rule": rule.to_dict(),
        "unk_token": rule.unk,
        "eos_token": rule.eos,
        "unk_id": unk_id,
        "eos_id": eos_id,
        "vocab_size": len(entries),
        "sentences": {},
        "tokens": {},
        "oov_rate": {},
        "text_dir": str(text_dir),
    }
    progress = Progress("encode", f"encoding {text_dir} into {out_dir}")
    with writing(out_dir) as staging:
        write_vocab(entries, staging / VOCAB)
        for split in SPLITS:
            sentences, tokens = sizes[split]
            oov = encode_file(paths[split], staging / f"{split}.npy", word_to_id, unk_id, eos_id, sentences, tokens,
                              progress)
            if oov and unk_id < 0:
                raise DataError(f"{paths[split]}: {oov} word(s) are not in --vocab {vocab.source}, which has no unk "
                                f"token to map them to; encode text whose words are all in it")
            meta["sentences"][split] = sentences
            meta["tokens"][split] = tokens + sentences  # eos counted: it is predicted like any token
            # OOV rate over words (eos excluded): words outside the vocabulary, mapped to unk. A
            # corpus's own unk tokens (PTB, WikiText) are vocabulary entries, so they are not OOV.
            meta["oov_rate"][split] = oov / tokens if tokens else 0.0
        if vocab is not None:
            meta["vocab_source"] = vocab.source
            if vocab.unk is None:
                meta["unk_token"] = meta["unk_id"] = None
        write_meta(staging / META, meta)
    progress.done()
    return meta


def _fixed_vocab_rule(vocab: FixedVocab, word_to_id: dict[str, int], rule: VocabRule) -> VocabRule:
    """The rule recorded in meta.json for a given vocabulary: its own unk/eos, counts not applied."""
    if vocab.eos not in word_to_id:
        raise DataError(f"--vocab {vocab.source}: the end-of-sentence token {vocab.eos!r} is not in it")
    if vocab.unk is not None and vocab.unk not in word_to_id:
        raise DataError(f"--vocab {vocab.source}: the unk token {vocab.unk!r} is not in it")
    return VocabRule(1, None, vocab.unk if vocab.unk is not None else "", vocab.eos, ())


def _count_lines_tokens(path: Path) -> tuple[int, int]:
    sentences = tokens = 0
    for batch in _batches(path):
        lines = _sentences(batch)
        sentences += len(lines)
        tokens += sum(map(len, lines))
    return sentences, tokens
