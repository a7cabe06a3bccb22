"""Reading text: the one reader of every command that reads words (prepare, encode, score, generate).

One rule, so the same bytes give the same sentences wherever they come from (an archive member,
a prepared split, a file to score, stdin, a prompt):
- decoding: strict UTF-8; a bad byte is an error naming the source and its line (never an
  unknown word on one path and an error on another);
- a UTF-8 byte-order mark at the start of the text is not a token (dropped);
- lines break at "\\n" only. Every other character Python calls a line break (`\\r`, `\\x0b`,
  `\\x0c`, `\\x1c`-`\\x1e`, `\\x85`, U+2028, U+2029) is whitespace inside a line, as `str.split`
  reads it, so it separates words and never starts a sentence (`str.splitlines` would split
  there: line numbers would shift and `score --like-eval` would read one more eos than the
  encoded split holds);
- tokenisation (`words_of`): a line's words are its whitespace-separated tokens; a line without
  any (blank, whitespace only) is not a sentence;
- a line longer than MAX_LINE_BYTES is refused: no sentence is that long.

Files are read as bytes in blocks that end at a newline (tar streams are not seekable, and a bad
byte's line number stays exact), so memory is bounded whatever the file.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from lightrnn.core.errors import DataError

BOM = b"\xef\xbb\xbf"
BLOCK_BYTES = 1 << 22  # bytes decoded per batch: bounded memory, few Python calls
# The longest line any reader accepts: a sentence, or a WikiText paragraph, is a few KB; a 1.5 GB
# "line" (an archive member that is one blob) is refused early instead of stalling for minutes.
MAX_LINE_BYTES = 1 << 24

# The corpus's tokenisation, in one place: a line's words are its whitespace-separated tokens (the
# prepared text is already tokenised); a line without any is not a sentence.
words_of = str.split


def line_batches(binary: BinaryIO, label: str, fix: str) -> Iterator[list[str]]:
    """Batches of decoded lines of a byte stream, split at "\\n" only, the leading BOM dropped.

    `label` names the source in errors, `fix` says what to do. A line longer than MAX_LINE_BYTES
    or bytes that are not UTF-8 raise DataError naming the line. The unfinished tail is kept as a
    list of blocks, so a long line costs linear time, not the quadratic time of re-joining it.
    """
    pending: list[bytes] = []  # the blocks of an unfinished last line
    pending_bytes = 0
    lines_before = 0
    first = True
    while True:
        block = binary.read(BLOCK_BYTES)
        if first:
            block = block.removeprefix(BOM)  # a byte-order mark is not a token
            first = False
        if block:
            cut_in_block = block.rfind(b"\n") + 1
            if cut_in_block == 0:
                pending.append(block)
                pending_bytes += len(block)
                if pending_bytes > MAX_LINE_BYTES:
                    raise DataError(f"{label}: line {lines_before + 1} is longer than {MAX_LINE_BYTES >> 20} MiB: "
                                    f"no sentence is; {fix}")
                continue
            complete = b"".join([*pending, block[:cut_in_block]])
            pending, pending_bytes = [block[cut_in_block:]], len(block) - cut_in_block
        else:
            complete = b"".join(pending)  # a last line without its newline
            pending = []
            if not complete:
                return
        longest = max(map(len, complete.split(b"\n"))) if len(complete) > MAX_LINE_BYTES else 0
        if longest > MAX_LINE_BYTES:
            raise DataError(f"{label}: a line after line {lines_before} is longer than {MAX_LINE_BYTES >> 20} MiB: "
                            f"no sentence is; {fix}")
        try:
            text = complete.decode("utf-8")
        except UnicodeDecodeError as error:
            line = lines_before + complete.count(b"\n", 0, error.start) + 1
            raise DataError(f"{label}: line {line} is not valid UTF-8 ({error.reason}, bytes "
                            f"{complete[error.start:error.start + 4]!r}); {fix}") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines_before += len(lines)
        if lines:
            yield lines
        if not block:
            return


def read_lines(name: str, option: str = "--text") -> list[str]:
    """Every line of a text file, or of stdin for "-", read by `line_batches` (the same answer for
    the same bytes from either). Missing files and folders are one-line errors naming `option`."""
    fix = "convert it to UTF-8 text, one sentence per line"
    if name == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:  # a replaced sys.stdin (tests, embedding): its text, encoded back
            stdin = io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))
        return [line for batch in line_batches(stdin, "stdin", fix) for line in batch]
    path = Path(name)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; pass a text file, one sentence per line")
    if not path.exists():
        raise FileNotFoundError(f"{option} {path} does not exist; pass a text file, one sentence per line")
    with open(path, "rb") as handle:  # a FIFO or /dev/stdin reads too; an endless device hits MAX_LINE_BYTES
        return [line for batch in line_batches(handle, f"{option} {path}", fix) for line in batch]


def text_lines(text: str, label: str) -> list[str]:
    """The lines of a string (a prompt, an argument) by the same rule: a leading BOM dropped, breaks
    at "\\n" only, and text that was not valid UTF-8 (argv's undecodable bytes arrive as lone
    surrogates) refused as a file with those bytes is."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:  # a surrogate that no byte stands for: not text at all
        raise DataError(f"{label}: character {error.start + 1} is not text (a lone surrogate); pass UTF-8 text") from None
    return [line for batch in line_batches(io.BytesIO(raw), label, "pass UTF-8 text") for line in batch]
