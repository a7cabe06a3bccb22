"""Progress of a training epoch: a tqdm bar on a terminal, otherwise a timed line on stderr.

Without a terminal (a log file, a batch job) `ProgressLog` writes a line every `log_every_s`
seconds: batches done, tokens/s, running train ppl, ETA of the epoch.
"""

from __future__ import annotations

import sys
import time

import torch

from lightrnn.core.metrics import perplexity


def progress_bar(total: int, description: str, initial: int = 0):
    """A tqdm bar on a terminal, nothing otherwise (`ProgressLog` writes timed lines instead)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="batch", leave=False)


class ProgressLog:
    """Without a terminal (a log file, a batch job): one stderr line every `every` seconds."""

    def __init__(self, epoch: int, total: int, first: int, tokens: int, world: int, every: float) -> None:
        self.epoch, self.total, self.first, self.world, self.every = epoch, total, first, world, every
        self.tokens_at_start = tokens  # a resumed epoch's earlier tokens were timed by another process
        self.start = self.last = time.perf_counter()

    def maybe(self, done: int, step: int, nll_sum: torch.Tensor, tokens: int) -> None:
        now = time.perf_counter()
        if not self.every or now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        batches = done - self.first
        tokens_per_s = self.world * (tokens - self.tokens_at_start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) * elapsed / batches if batches else 0.0
        print(
            f"epoch {self.epoch}: batch {done:,}/{self.total:,} ({100 * done / self.total:.1f}%), step {step:,}, "
            f"{tokens_per_s:,.0f} tokens/s, running train ppl {perplexity(float(nll_sum), tokens):.2f}, "
            f"epoch ETA {duration(eta)}",
            file=sys.stderr, flush=True,
        )


def epoch_done(epoch: int, row: dict) -> None:
    """Without a terminal: the epoch's line once its row is written."""
    if sys.stderr.isatty():
        return
    test_text = f", test ppl {row['test_ppl']:.2f}" if row["test_ppl"] is not None else ""
    print(
        f"epoch {epoch} done: train ppl {row['train_ppl']:.2f}, valid ppl {row['valid_ppl']:.2f}"
        f"{test_text}, {row['train_tokens_per_s']:,.0f} tokens/s", file=sys.stderr, flush=True,
    )


def duration(seconds: float) -> str:
    """'1h 05m' or '3m 07s'."""
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {int(seconds % 60):02d}s"
