"""Progress lines of the data stage (fetch, prepare, encode) when stderr is not a terminal.

On a terminal, fetch draws a tqdm bar; in a log file (Snakemake, a batch job) a bar is noise,
so instead one line every `every_s` seconds (default 60, `LIGHTRNN_PROGRESS_S` overrides) and
one at the end of a stage that lasted at least that long: what is done so far, bytes and bytes/s, lines, tokens. A stage of many hours
(One Billion Word) thus shows in its log that it is alive and how fast it goes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from lightrnn.core.fileio import format_bytes

PROGRESS_ENV = "LIGHTRNN_PROGRESS_S"
DEFAULT_EVERY_S = 60.0


def _every_s() -> float:
    try:
        value = float(os.environ.get(PROGRESS_ENV, DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return value if value >= 0 else DEFAULT_EVERY_S



class Progress:
    """Counts bytes, lines and tokens; prints a line on `stream` every `every_s` seconds and at `done`."""

    def __init__(self, stage: str, what: str, every_s: float | None = None, stream: TextIO | None = None,
                 initial_bytes: int = 0) -> None:
        self.stage, self.what = stage, what
        self.every_s = _every_s() if every_s is None else every_s
        self.stream = stream
        self.bytes = initial_bytes
        self.start_bytes = initial_bytes
        self.lines = self.tokens = 0
        self.start = self.last = time.monotonic()

    @property
    def enabled(self) -> bool:
        stream = self.stream or sys.stderr
        try:
            return not stream.isatty()
        except (AttributeError, ValueError):
            return False

    def add(self, bytes: int = 0, lines: int = 0, tokens: int = 0) -> None:  # noqa: A002 (a count of bytes)
        self.bytes += bytes
        self.lines += lines
        self.tokens += tokens
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._print("")

    def done(self) -> None:
        """The closing line, for a stage that ran at least one interval (a short one stays silent)."""
        if time.monotonic() - self.start >= self.every_s:
            self._print("done: ")

    def _print(self, prefix: str) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        parts = []
        if self.bytes:
            rate = (self.bytes - self.start_bytes) / elapsed
            parts.append(f"{format_bytes(self.bytes)} ({format_bytes(rate)}/s)")
        if self.lines:
            parts.append(f"{self.lines:,} lines")
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens ({self.tokens / elapsed:,.0f}/s)")
        parts.append(f"{elapsed:.0f} s")
        print(f"{self.stage}: {prefix}{self.what}: {', '.join(parts)}", file=self.stream or sys.stderr, flush=True)
