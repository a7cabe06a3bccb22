"""The encoded data folder, `vocab.tsv`, `{train,valid,test}.npy` and `meta.json`: its one owner.

Everything that writes the folder (`lightrnn data encode`, the Markov corpus of the tests) and
everything that reads it (training, evaluation, checkpoints' data identity) goes through here, so
its format, its invariants and its checks live in one place:

- `vocab.tsv`: `word<TAB>count` lines; the id of a word is its 0-based line number. Read by
  `read_vocab`: UTF-8, lines of at most `MAX_VOCAB_LINE_BYTES`, counts integers in [0, 2^63),
  no word twice.
- `{split}.npy`: int32 ids [N], one flat stream (`open_stream` writes one sequentially, of a
  length fixed up front; `load_split` memory-maps it and checks 1-D, integer, N >= 2, every id < V
  and N equal to meta.json's count).
- `meta.json`: checked by `check_meta` on write and on read (`load_meta`): vocab_size an integer
  in [1, 2^31) (ids are int32), token counts per split, the ids of unk/eos inside [0, V), OOV
  rates in [0, 1]. A folder that mixes two encodings (meta.json against vocab.tsv or a stream)
  is refused naming both files.

The whole set is written into a staging folder and swapped in, meta.json last (`writing`,
over `lightrnn.core.fileio.staged_dir`): a failure leaves the old set whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lightrnn.core.errors import DataError
from lightrnn.core.fileio import (
    STAGING_PREFIX,
    TEMP_SUFFIX,
    atomic_path,
    load_npy,
    save_npy,
    staged_dir,
    write_json,
    write_text,
)
from lightrnn.core.loaders import Fields, input_file, read_json, short
from lightrnn.core.text import words_of

SPLITS = ("train", "valid", "test")
VOCAB = "vocab.tsv"
META = "meta.json"
MAX_VOCAB_SIZE = 2**31 - 1  # ids are int32
MAX_VOCAB_LINE_BYTES = 1 << 20
ENCODE_FIX = "run `lightrnn data encode` again into this folder"


@dataclass(frozen=True)
class Meta:
    """meta.json, checked. `raw`: every field as written (extra ones such as the Markov oracle's)."""

    vocab_size: int
    tokens: dict[str, int]
    dataset: str | None = None
    sentences: dict[str, int] | None = None
    unk_id: int | None = None
    eos_id: int | None = None
    oov_rate: dict[str, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def check_meta(value: Any, where: str) -> Meta:
    """A meta.json object checked field by field; DataError naming `where` and the field."""
    fields = Fields(where, ENCODE_FIX)
    obj = fields.mapping(value)
    vocab_size = fields.integer(obj, "vocab_size", 1, MAX_VOCAB_SIZE)
    tokens = fields.split_counts(obj, "tokens", 0)
    sentences = fields.split_counts(obj, "sentences", 0, optional=True)
    ids = {key: fields.integer(obj, key, 0, vocab_size - 1, optional=True) for key in ("unk_id", "eos_id")}
    oov = None
    if fields.present(obj, "oov_rate", optional=True):
        rates = fields.mapping(obj["oov_rate"], "oov_rate")
        oov = {split: fields.float_value(rates[split], f"oov_rate.{split}", 0.0, 1.0) for split in SPLITS if split in rates}
    for key in ("unk_token", "eos_token"):
        fields.string(obj, key, optional=True)
    return Meta(vocab_size=vocab_size, tokens=tokens, dataset=fields.string(obj, "dataset", optional=True),
                sentences=sentences, unk_id=ids["unk_id"], eos_id=ids["eos_id"], oov_rate=oov, raw=dict(obj))


def load_meta(data_dir: str | os.PathLike) -> Meta | None:
    """DIR/meta.json checked, or None when there is none (a hand-made data dir); an interrupted swap is an error."""
    data_dir = Path(data_dir)
    path = data_dir / META
    if not path.is_file():
        if any(data_dir.glob(f"{STAGING_PREFIX}*{TEMP_SUFFIX}")) and (data_dir / VOCAB).exists():
            raise DataError(
                f"{data_dir}: an encode was interrupted while replacing its files (no meta.json, a staging "
                f"folder left); run `lightrnn data encode` again into it"
            )
        return None
    return check_meta(read_json(path, ENCODE_FIX), str(path))


def vocab_word_problem(word: str) -> str | None:
    """Why `word` cannot be a vocabulary word, or None: the one definition the vocab.tsv writer, its
    reader and a model file's vocabulary check (`training/checkpoint.py`) share. A word is one token
    of the corpus's tokenisation (`words_of`: not empty, no space, tab or line break; else no text
    could ever hold it and its vocab.tsv line would not read back) and UTF-8 text (no lone surrogate)."""
    if words_of(word) != [word]:
        return "is empty or holds whitespace (a space, a tab, a line break), so it is not one token of a text"
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return "is not UTF-8 text (it holds a lone surrogate)"
    return None


def read_vocab(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(words in id order, counts int64 [V]) from a `vocab.tsv` of `word<TAB>count` lines, checked."""
    path = input_file(path, fix="pass --data an encoded data dir (lightrnn data encode)")
    words: list[str] = []
    counts: list[int] = []
    seen: set[str] = set()
    with path.open("rb") as stream:
        for number, raw in enumerate(iter(lambda: stream.readline(MAX_VOCAB_LINE_BYTES + 1), b""), start=1):
            where = f"{path}:{number}"
            if len(raw) > MAX_VOCAB_LINE_BYTES:
                raise DataError(f"{where}: a line longer than {MAX_VOCAB_LINE_BYTES} bytes; {ENCODE_FIX}")
            try:
                line = raw.decode("utf-8").removesuffix("\n")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}: not UTF-8 text ({error.reason} at line {number}); {ENCODE_FIX}") from None
            word, separator, count = line.rpartition("\t")
            if not separator:
                raise DataError(f"{where}: expected word<TAB>count, got {short(line)}; {ENCODE_FIX}")
            text = count.strip()
            if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > 2**63 - 1:
                raise DataError(f"{where}: the count {short(count)} is not an integer in [0, 2^63); {ENCODE_FIX}")
            if word in seen:
                raise DataError(f"{where}: the word {short(word)} appears twice; {ENCODE_FIX}")
            if problem := vocab_word_problem(word):
                raise DataError(f"{where}: the word {short(word)} {problem}; {ENCODE_FIX}")
            seen.add(word)
            words.append(word)
            counts.append(int(text))
            if len(words) > MAX_VOCAB_SIZE:
                raise DataError(f"{path}: more than {MAX_VOCAB_SIZE} words; {ENCODE_FIX}")
    if not words:
        raise DataError(f"{path} is empty; {ENCODE_FIX}")
    return words, np.asarray(counts, dtype=np.int64)


def load_vocab(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read `DIR/vocab.tsv`: the words in id order and their counts ([V] int64).

    Cross-checked against `DIR/meta.json` (when present): a vocabulary of another size means
    the folder mixes two encodings, which would train silently on the wrong ids.
    """
    data_dir = Path(data_dir)
    words, counts = read_vocab(data_dir / VOCAB)
    meta = load_meta(data_dir)
    if meta is not None and meta.vocab_size != len(words):
        raise DataError(
            f"{data_dir / META} says vocab_size {meta.vocab_size} but {data_dir / VOCAB} has {len(words)} "
            f"entries: the folder mixes two encodings; run `lightrnn data encode` again into it"
        )
    return words, counts


def load_split(data_dir: str | os.PathLike, split: str, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map `DIR/<split>.npy` (int32 ids [N]); check ids are < vocab_size when given.

    The bound check reads the stream once in chunks (a max over ~800M ids takes a second or two);
    an id out of range would otherwise surface later as an opaque embedding index error. The
    length is checked against meta.json's token count when it has one.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {short(split)}")
    data_dir = Path(data_dir)
    path = data_dir / f"{split}.npy"
    input_file(path, fix=f"pass --data an encoded data dir with {split}.npy")
    stream = load_npy(path, mmap_mode="r", fix=ENCODE_FIX)
    if stream.ndim != 1 or not np.issubdtype(stream.dtype, np.integer):
        raise DataError(f"{path}: expected a 1-D integer array of word ids, got {stream.dtype} {stream.shape}")
    if stream.size < 2:
        raise DataError(f"{path} holds {stream.size} token(s); a split needs at least 2 to predict anything")
    meta = load_meta(data_dir)
    expected = meta.tokens.get(split) if meta is not None else None
    if expected is not None and expected != stream.size:
        raise DataError(
            f"{path} holds {stream.size} ids but {data_dir / META} says {expected}: the folder mixes two "
            f"encodings; run `lightrnn data encode` again into it"
        )
    if vocab_size is not None:
        chunk = 1 << 24
        for start in range(0, stream.size, chunk):
            part = stream[start : start + chunk]
            if part.min() < 0 or part.max() >= vocab_size:
                raise DataError(
                    f"{path}: word ids must be in [0, {vocab_size}) (vocab.tsv lines), found "
                    f"{int(part.min())}..{int(part.max())}; re-encode the data dir"
                )
    return stream


def vocab_sha256(data_dir: str | os.PathLike) -> str:
    """sha256 of DIR/vocab.tsv (what a checkpoint records as the identity of its vocabulary)."""
    digest = hashlib.sha256()
    with open(Path(data_dir) / VOCAB, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----- writing ------------------------------------------------------------------------------------

@contextlib.contextmanager
def writing(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A staging folder to write the set into; swapped into `out_dir` at the end, meta.json last."""
    with staged_dir(out_dir, last=META) as staging:
        yield staging


def write_vocab(entries: list[tuple[str, int]], path: Path) -> None:
    """Write `word<TAB>count` lines atomically, only if `read_vocab` will accept every one of them.

    The writer enforces what its reader demands, from the same constants (MAX_VOCAB_LINE_BYTES,
    MAX_VOCAB_SIZE, the count's range, one line per word, no word twice): `encode` never writes a
    vocab.tsv that `train` then refuses. A refusal names the word and the limit.
    """
    if len(entries) > MAX_VOCAB_SIZE:
        raise DataError(f"{path}: {len(entries)} words, more than the {MAX_VOCAB_SIZE} a vocab.tsv may hold; "
                        f"raise --min-count or pass --max-vocab")
    lines: list[str] = []
    seen: set[str] = set()
    for number, (word, count) in enumerate(entries, start=1):
        line = f"{word}\t{count}\n"
        size = len(line.encode("utf-8", errors="surrogatepass"))  # the word's own check comes next
        where = f"{path.name}: word {number} ({short(word)})"  # path is a hidden staging file: name the set's file
        if size > MAX_VOCAB_LINE_BYTES:
            raise DataError(f"{where} makes a line of {size} bytes, more than the {MAX_VOCAB_LINE_BYTES} a vocab.tsv "
                            f"line may hold; no word is that long: the text is damaged or not split into words")
        if (problem := vocab_word_problem(word)) or word in seen:
            raise DataError(f"{where} {problem or 'appears twice'}; a vocab.tsv holds each word once, one token a line")
        if isinstance(count, bool) or not 0 <= int(count) <= 2**63 - 1:
            raise DataError(f"{where}: the count {short(count)} is not an integer in [0, 2^63)")
        seen.add(word)
        lines.append(line)
    write_text(path, "".join(lines))


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Check `meta` as a reader will (`check_meta`), then write it atomically."""
    check_meta(meta, f"{path} (being written)")
    write_json(path, meta)


def write_split(path: Path, ids: np.ndarray) -> None:
    """A whole split's ids as int32 .npy, atomically."""
    save_npy(path, np.asarray(ids, dtype=np.int32))


@contextlib.contextmanager
def open_stream(path: Path, length: int, source: Path) -> Iterator[Any]:
    """Write a split of exactly `length` ids sequentially: yields `write(ids)`; renamed in at the end.

    Sequential (header, then chunk after chunk), never a memory map: a memory-mapped sparse file
    dies of SIGBUS, with no message, when the disk fills. `source` is named when the text changed
    while it was being encoded (more or fewer ids than counted).
    """
    position = 0
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        header = {"descr": np.dtype(np.int32).str, "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(handle, header)

        def write(ids: np.ndarray) -> None:
            nonlocal position
            if position + ids.size > length:
                raise DataError(f"{source} changed while being encoded: run `lightrnn data encode` again")
            handle.write(np.ascontiguousarray(ids, dtype="<i4").data)
            position += ids.size

        yield write
        if position != length:
            raise DataError(f"{source} changed while being encoded: run `lightrnn data encode` again")
        handle.flush()
        os.fsync(handle.fileno())
