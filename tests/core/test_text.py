"""The one text reader (`lightrnn.core.text`): the same bytes give the same lines wherever they come
from (a file, stdin, a string, an archive member through prepare, a split through encode), and
bad bytes get the same one-line refusal from each (issue 35, class 1; issue 34, class 6)."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lightrnn.core.errors import DataError
from lightrnn.core.text import BOM, line_batches, read_lines, text_lines, words_of
from lightrnn.data.encode import _batches

ROOT = Path(__file__).resolve().parents[2]
# Every character Python's str.splitlines breaks at, but "\n": whitespace inside a line here.
NOT_BREAKS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def hostile_text(seed: int) -> str:
    """Generated text: words separated by every kind of whitespace and line-break look-alike, blank
    lines, a BOM at the start, Windows line ends, no final newline."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "N", "<unk>", "a", "été", "数"]
    lines = []
    for _ in range(40):
        separators = [" ", "\t", *NOT_BREAKS]
        line = "".join(rng.choice(words) + rng.choice(separators) for _ in range(rng.randint(0, 6)))
        lines.append(line + rng.choice(["", "\r"]))
    return "\ufeff" + "\n".join(lines)


def expected_lines(text: str) -> list[str]:
    """Split at "\\n" only; a final line break ends the last line (it starts no empty one)."""
    lines = text.removeprefix("\ufeff").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


@pytest.mark.parametrize("seed", range(3))
def test_lines_break_at_newline_only_and_the_bom_is_no_token(seed, tmp_path) -> None:
    text = hostile_text(seed)
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = expected_lines(text)
    assert read_lines(str(path)) == expected == text_lines(text, "--prompt")
    assert [line for batch in _batches(path) for line in batch] == expected  # encode reads the same lines
    assert not any(word.startswith("\ufeff") for line in expected for word in words_of(line))
    for character in NOT_BREAKS:
        assert words_of(f"a{character}b") == ["a", "b"] and len(text_lines(f"a{character}b", "x")) == 1


def test_small_blocks_give_the_same_lines(tmp_path, monkeypatch) -> None:
    from lightrnn.core import text as text_module

    raw = hostile_text(7).encode("utf-8")
    whole = [line for batch in line_batches(io.BytesIO(raw), "x", "fix") for line in batch]
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 5)  # lines and characters cut across blocks
    assert [line for batch in line_batches(io.BytesIO(raw), "x", "fix") for line in batch] == whole


def _stdin_lines(raw: bytes) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of reading `raw` from stdin in a fresh process."""
    code = "import sys; from lightrnn.core.text import read_lines; print(len(read_lines('-')))"
    result = subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    return result.returncode, result.stdout.decode(), result.stderr.decode(errors="replace")


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80abc"])
def test_invalid_utf8_gets_the_same_answer_from_a_file_stdin_and_a_prompt(bad, tmp_path) -> None:
    raw = BOM + b"the cat\nsat " + bad + b" on\nthe mat\n"
    path = tmp_path / "bad.txt"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=r"line 2 is not valid UTF-8") as from_file:
        read_lines(str(path))
    assert str(path) in str(from_file.value)
    status, _, stderr = _stdin_lines(raw)  # a C locale: stdin's text layer would have let the bytes through
    assert status == 1 and "stdin: line 2 is not valid UTF-8" in stderr
    argv_text = raw.decode("utf-8", "surrogateescape")  # how argv carries undecodable bytes
    with pytest.raises(DataError, match=r"--prompt: line 2 is not valid UTF-8"):
        text_lines(argv_text, "--prompt")
    assert _stdin_lines(raw.replace(bad, b"x"))[1].strip() == "3"


def test_a_line_longer_than_the_bound_is_refused(monkeypatch) -> None:
    from lightrnn.core import text as text_module

    monkeypatch.setattr(text_module, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 32)
    with pytest.raises(DataError, match="line 2 is longer than"):
        list(line_batches(io.BytesIO(b"ok\n" + b"x" * 500 + b"\n"), "x", "fix"))
