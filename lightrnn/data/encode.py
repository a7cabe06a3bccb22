"""Vocabulary and integer encoding: `TEXT/{train,valid,test}.txt` -> `OUT/vocab.tsv`, `{split}.npy`, `meta.json`.

- `vocab.tsv`: `word<TAB>count`, one entry per line, sorted by count (descending), ties by the
  words' Unicode code points; the id of a word is its 0-based line number, so id 0 is the most
  frequent entry. Specials (end of sentence, unknown, e.g. 1B's <S>) are entries like any other,
  with their training counts (eos: one per sentence; unk: the corpus's own unk tokens plus every
  word the rule drops).
- `{split}.npy`: int32, shape [N], one flat stream: each sentence's ids followed by the eos id.
  Words outside the vocabulary map to the unk id.
- `meta.json`: dataset, vocabulary rule, unk/eos tokens and ids, vocabulary size, and per split
  the sentence and token counts (eos included) and the OOV rate.

Streaming, for One Billion Word (~800M training tokens): pass 1 counts the training split in
batches of lines (memory: the word counts, ~2.4M distinct words); pass 2 writes every split
batch by batch into a preallocated `np.lib.format.open_memmap` file. Nothing is held whole.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from itertools import chain, repeat
from pathlib import Path
from typing import Iterator

import numpy as np

from lightrnn.data.corpora import SPLITS, VocabRule, get_dataset
from lightrnn.fileio import write_json, write_text

LINES_PER_READ_HINT = 1 << 23  # characters per batch of lines (~8 MB of text)
GENERIC_RULE = VocabRule(min_count=1, unk="<unk>", eos="<eos>")


def _batches(path: Path) -> Iterator[list[str]]:
    """Batches of lines of a UTF-8 text file; ValueError naming the file on undecodable bytes."""
    lines_read = 0
    try:
        with open(path, encoding="utf-8", newline="\n") as handle:
            while True:
                batch = handle.readlines(LINES_PER_READ_HINT)
                if not batch:
                    return
                lines_read += len(batch)
                yield batch
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: bytes after line {lines_read} are not valid UTF-8 ({error.reason}); "
            f"run `lightrnn data prepare` again to rewrite it"
        ) from error


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
        words = "".join(batch).split()
        counts.update(words)
        sentences += len(batch)
        tokens += len(words)
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


def write_vocab(entries: list[tuple[str, int]], path: Path) -> None:
    """Write `word<TAB>count` lines atomically."""
    write_text(path, "".join(f"{word}\t{count}\n" for word, count in entries))


def encode_file(path: Path, out_path: Path, word_to_id: dict[str, int], unk_id: int, eos_id: int,
                sentences: int, tokens: int) -> int:
    """Encode a text file into an int32 .npy of length tokens + sentences; return the OOV count.

    Written into a preallocated memmap at a hidden `.part` path, then moved into place.
    """
    tmp = out_path.with_name(f".{out_path.name}.part")
    stream = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(tokens + sentences,))  # [N]
    position = oov = 0
    lookup = word_to_id.get
    for batch in _batches(path):
        split_lines = [line.split() for line in batch]
        lengths = np.fromiter(map(len, split_lines), dtype=np.int64, count=len(split_lines))  # [L]
        words = int(lengths.sum())
        # Map in C (map over dict.get), -1 marks OOV so it can be counted before becoming unk.
        ids = np.fromiter(map(lookup, chain.from_iterable(split_lines), repeat(-1)), dtype=np.int32, count=words)
        missing = ids < 0
        oov += int(missing.sum())
        ids[missing] = unk_id
        size = words + len(split_lines)
        eos_positions = np.cumsum(lengths + 1) - 1  # [L] each sentence's last slot
        chunk = np.empty(size, dtype=np.int32)  # [words + L]
        is_word = np.ones(size, dtype=bool)
        is_word[eos_positions] = False
        chunk[eos_positions] = eos_id
        chunk[is_word] = ids
        if position + size > stream.shape[0]:
            raise ValueError(f"{path} changed while being encoded: run `lightrnn data encode` again")
        stream[position:position + size] = chunk
        position += size
    if position != stream.shape[0]:
        raise ValueError(f"{path} changed while being encoded: run `lightrnn data encode` again")
    stream.flush()
    del stream
    os.replace(tmp, out_path)
    return oov


def _rule_for(text_dir: Path, dataset: str | None, min_count: int | None, max_vocab: int | None) -> tuple[str, VocabRule]:
    """The dataset's rule (named, or recorded by prepare in TEXT/prepare.json), with overrides."""
    if dataset is None:
        manifest = text_dir / "prepare.json"
        if manifest.is_file():
            dataset = json.loads(manifest.read_text(encoding="utf-8")).get("dataset")
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
           max_vocab: int | None = None) -> dict:
    """Build the vocabulary from `text_dir/train.txt` and encode every split into `out_dir`.

    `dataset` picks the dataset's vocabulary rule (default: the one `prepare` recorded in
    `text_dir/prepare.json`, else min_count 1 with <unk>/<eos>); `min_count` / `max_vocab`
    override it. Writes vocab.tsv, {train,valid,test}.npy (int32 [N]) and meta.json; returns
    the meta dict.
    """
    text_dir, out_dir = Path(text_dir), Path(out_dir)
    name, rule = _rule_for(text_dir, dataset, min_count, max_vocab)
    paths = {split: _split_file(text_dir, split) for split in SPLITS}
    counts, train_sentences, train_tokens = count_words(paths["train"])
    sizes = {"train": (train_sentences, train_tokens)}
    for split in SPLITS[1:]:
        sizes[split] = _count_lines_tokens(paths[split])  # to preallocate the .npy
    for split, (sentences, _) in sizes.items():
        if sentences == 0:
            raise ValueError(f"{paths[split]} is empty: split {split!r} needs at least one sentence; "
                             f"check the corpus and run `lightrnn data prepare` again")
    entries = build_vocab(counts, train_sentences, rule)
    del counts
    word_to_id = {word: index for index, (word, _) in enumerate(entries)}
    unk_id, eos_id = word_to_id[rule.unk], word_to_id[rule.eos]

    out_dir.mkdir(parents=True, exist_ok=True)
    write_vocab(entries, out_dir / "vocab.tsv")
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
    for split in SPLITS:
        sentences, tokens = sizes[split]
        oov = encode_file(paths[split], out_dir / f"{split}.npy", word_to_id, unk_id, eos_id, sentences, tokens)
        meta["sentences"][split] = sentences
        meta["tokens"][split] = tokens + sentences  # eos counted: it is predicted like any token
        # OOV rate over words (eos excluded): words outside the vocabulary, mapped to unk. A
        # corpus's own unk tokens (PTB, WikiText) are vocabulary entries, so they are not OOV.
        meta["oov_rate"][split] = oov / tokens if tokens else 0.0
    write_json(out_dir / "meta.json", meta)
    return meta


def _count_lines_tokens(path: Path) -> tuple[int, int]:
    sentences = tokens = 0
    for batch in _batches(path):
        sentences += len(batch)
        tokens += sum(len(line.split()) for line in batch)
    return sentences, tokens
