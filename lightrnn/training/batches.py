"""Encoded data directories and truncated-BPTT batches over one flat token stream.

An encoded data dir holds `vocab.tsv` (word<TAB>count, id = line number, frequency order) and
`{train,valid,test}.npy` (int32 ids, one flat stream), read through `lightrnn.data.encoded`
(its one owner). Streams are memory-mapped: a batch
copies only its own B x (T + 1) ids, never the whole split (One Billion Word is ~800M tokens).

Layout: the N - 1 predictions of a stream of N tokens (every token but the first is a target)
are cut into B contiguous segments, one per batch row; row b reads its segment left to right in
windows of `bptt` steps, so the hidden state of row b carries across batches. Any stream works,
including a slice of a bigger one (`stream[a:b]` of a memmap is a view): that is the hook for
data-parallel shards.

Data-parallel shards (`shard_stream`): with W processes of batch B each, rank r reads the one
contiguous stretch of the stream that holds rows r*B .. r*B + B - 1 of the layout a single
process with batch W*B would use. So W ranks see exactly the batches of one process with the
global batch W*B (training, exact=False) and, for evaluation (exact=True), every target once.
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

# The encoded folder has one owner (lightrnn.data.encoded); these names stay importable from here.
from lightrnn.data.encoded import SPLITS, load_split, load_vocab  # noqa: F401


class Batch(NamedTuple):
    """tokens, targets: LongTensor [B, T] with targets[:, :-1] == tokens[:, 1:] on real positions;
    mask: BoolTensor [B, T] of real (not padded) positions, or None when every position is real."""

    tokens: Tensor
    targets: Tensor
    mask: Tensor | None


def check_stream_fits(num_tokens: int, batch_size: int, exact: bool = False) -> None:
    """ValueError before any array of `batch_size` rows is allocated, when training rows would be empty.

    Training (exact=False) needs at least one prediction per row: N - 1 >= batch_size.
    Evaluation pads short rows, so only memory bounds its batch size (`lightrnn.training.preflight`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not exact and num_tokens - 1 < batch_size:
        raise ValueError(
            f"a stream of {num_tokens} tokens is too short for batch_size {batch_size}; use a smaller batch size"
        )


def _segments(num_tokens: int, batch_size: int, equal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and prediction counts [B] of the B row segments of a stream of N tokens."""
    predictions = num_tokens - 1
    lengths = np.full(batch_size, predictions // batch_size, dtype=np.int64)
    if not equal:
        lengths[: predictions % batch_size] += 1  # the remainder goes to the first rows
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return starts, lengths


def num_batches(num_tokens: int, batch_size: int, bptt: int, exact: bool = False) -> int:
    """How many batches `lm_batches` yields for a stream of `num_tokens` ids."""
    check_stream_fits(num_tokens, batch_size, exact)
    _, lengths = _segments(num_tokens, batch_size, equal=not exact)
    return math.ceil(int(lengths.max()) / bptt) if lengths.max() > 0 else 0


def shard_bounds(num_tokens: int, batch_size: int, rank: int, world_size: int, exact: bool = False) -> tuple[int, int]:
    """[start, stop) token indices of rank's shard of a stream of `num_tokens` ids.

    The shard is the stretch under rows rank*B .. rank*B + B - 1 of the layout of B * world_size
    rows (`lm_batches` with that batch size and the same `exact`); it includes the last target,
    so `lm_batches(stream[start:stop], B, exact=exact)` yields exactly those rows. An empty
    shard (start == stop) happens only in exact mode when the stream has fewer targets than rows.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts, lengths = _segments(num_tokens, batch_size * world_size, equal=not exact)
    first, last = rank * batch_size, rank * batch_size + batch_size - 1
    predictions = int(lengths[first : last + 1].sum())
    if predictions == 0:
        return int(starts[first]), int(starts[first])
    return int(starts[first]), int(starts[first]) + predictions + 1


def shard_stream(stream: np.ndarray, batch_size: int, rank: int, world_size: int, exact: bool = False) -> np.ndarray:
    """Rank's contiguous shard of `stream` ([N] ids; a view of a memmap, nothing copied); see `shard_bounds`."""
    if world_size == 1:
        return stream
    start, stop = shard_bounds(int(stream.shape[0]), batch_size, rank, world_size, exact)
    if not exact and stop - start < 2:
        raise ValueError(
            f"a stream of {stream.shape[0]} tokens is too short for batch_size {batch_size} on {world_size} "
            "processes; use a smaller batch size or fewer processes"
        )
    return stream[start:stop]


def lm_batches(
    stream: np.ndarray,
    batch_size: int,
    bptt: int,
    *,
    exact: bool = False,
    max_batches: int = 0,
    device: torch.device | str = "cpu",
    start: int = 0,
) -> Iterator[Batch]:
    """Truncated-BPTT batches over `stream` (a 1-D int array, memmap welcome).

    exact=False (training): B equal segments, the last (N - 1) mod B predictions dropped, no mask.
    exact=True (evaluation): every one of the N - 1 targets appears exactly once; rows that run
    out early are padded with id 0 and masked out.
    max_batches > 0 stops after that many batches; start > 0 skips the first `start` (a resumed epoch).
    Yields Batch(tokens [B, T], targets [B, T], mask [B, T] or None); T = bptt except at the end.
    """
    if batch_size < 1 or bptt < 1:
        raise ValueError(f"batch_size and bptt must be >= 1, got {batch_size} and {bptt}")
    check_stream_fits(int(stream.shape[0]), batch_size, exact)
    starts, lengths = _segments(int(stream.shape[0]), batch_size, equal=not exact)
    if lengths.max() == 0:
        raise ValueError(
            f"a stream of {stream.shape[0]} tokens is too short for batch_size {batch_size}; use a smaller batch size"
        )
    longest = int(lengths.max())
    for index, offset in enumerate(range(0, longest, bptt)):
        if max_batches and index >= max_batches:
            return
        if index < start:
            continue
        steps = min(bptt, longest - offset)
        window = np.zeros((batch_size, steps + 1), dtype=np.int64)  # [B, T + 1]
        valid = np.clip(lengths - offset, 0, steps)  # real predictions per row in this window
        for row in range(batch_size):
            if valid[row] > 0:
                begin = starts[row] + offset
                window[row, : valid[row] + 1] = stream[begin : begin + valid[row] + 1]
        window_tensor = torch.from_numpy(window).to(device, non_blocking=True)
        mask = None
        if (valid < steps).any():
            mask = (torch.arange(steps).unsqueeze(0) < torch.from_numpy(valid).unsqueeze(1)).to(device)
        yield Batch(window_tensor[:, :-1], window_tensor[:, 1:], mask)


class TrainPairs:
    """The training batches as (tokens, targets) pairs: what `between_rounds` consumes.

    Re-iterable (every `iter` starts over at the first batch) and sized, so a consumer can take
    the first fraction of them and make more than one pass.
    """

    def __init__(
        self, stream: np.ndarray, batch_size: int, bptt: int, *, max_batches: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.stream, self.batch_size, self.bptt = stream, batch_size, bptt
        self.max_batches, self.device = max_batches, device
        total = num_batches(int(stream.shape[0]), batch_size, bptt)
        self._length = min(total, max_batches) if max_batches else total

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in lm_batches(
            self.stream, self.batch_size, self.bptt, max_batches=self.max_batches, device=self.device
        ):
            yield batch.tokens, batch.targets
