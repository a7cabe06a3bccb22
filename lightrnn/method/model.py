"""LightRNN (Li et al., NIPS 2016): 2-component shared embeddings and a 2-D factorised softmax.

Every word w sits in a table slot (r(w), c(w)) (`lightrnn.method.word_table.WordTable`). The model keeps one
input vector per row and per column (X_r, X_c: R x E and C x E), one LSTM stack shared by both
half-steps, and two output heads (hidden -> R rows, hidden -> C columns, with bias):

    P(w_{t+1} | w_0..w_t) = P_r(r(w_{t+1}) | h) * P_c(c(w_{t+1}) | h, r(w_{t+1}))

The input sequence is x_r(w_0), x_c(w_0), x_r(w_1), x_c(w_1), ... (docs/PAPER.md): the state after
the row of w_t predicts the column of w_t, the state after the column of w_t predicts the row of
w_{t+1}. With an LM batch (tokens[:, t] = w_t, targets[:, t] = w_{t+1}) this module feeds

    position 2t   : x_r(tokens[:, t])   -> output predicts col(tokens[:, t])   (for t >= 1: col(targets[:, t-1]))
    position 2t+1 : x_c(tokens[:, t])   -> output predicts row(targets[:, t])

through ONE `nn.LSTM` call of length 2T, then one extra LSTM step on x_r(targets[:, T-1]) from
the state after position 2T-1, whose output predicts col(targets[:, T-1]). The carried state is
the one after x_c(tokens[:, T-1]), so the next batch starts with x_r(tokens[:, 0]) and every
word of a stream, including the very first, has its row fed before its column. Why this
alignment rather than starting each batch at x_c(tokens[:, 0]) (state already past the row of
w_T): with it, `forward`, `slot_log_probs` and `log_prob` all carry the same state, and
`log_prob(tokens)` needs no targets; the price is one LSTM step on the last target's row twice
(once here, once at the start of the next batch), 1/(2T) extra recurrent work.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightrnn.core.lm import LanguageModel, LMOutput, State, lstm_param_count
from lightrnn.core.runtime import run_lstm
from lightrnn.method.word_table import WordTable

# log_prob runs the candidate column steps of at most this many (position, row) pairs per LSTM
# call (at least one position's B * R): ~1 GB of temporaries at H = 1500, L = 2, C = 891.
LOG_PROB_CANDIDATES = 1 << 14


def _full_precision(logits: Tensor) -> Tensor:
    """Softmaxes in at least float32: bf16/fp16 logits (autocast) are upcast, float64 kept."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _masked(logits: Tensor, keep: Tensor) -> Tensor:
    """`logits` with -inf where `keep` (broadcast) is False: a softmax over the kept entries only."""
    return logits.masked_fill(~keep, float("-inf"))


def _slot_scores(logits: Tensor, keep: Tensor) -> Tensor:
    """Log-probabilities normalised over the kept entries; an empty entry scores what it would get
    if the one word scored moved into it alone: logit - log(Z_kept + exp(logit)).

    The kept entries are the model's exact log-softmax (what `forward` trains); the empty ones are
    finite, so the reallocation losses can price a move into an empty row or column.
    """
    logits = logits - _kept_peak(logits, keep)
    normaliser = torch.logsumexp(_masked(logits, keep), dim=-1, keepdim=True)
    return torch.where(keep, logits - normaliser, logits - torch.logaddexp(normaliser, logits))


def _kept_peak(logits: Tensor, keep: Tensor) -> Tensor:
    """The kept entries' max [..., 1] (0 where none is kept), to subtract before a log-sum-exp.

    Subtracting the log-sum-exp itself would lose its log(sum) part in float32 when the max is
    huge (a bias of 3e38: every kept entry would score 0); shifted first, every difference stays
    exact. The shift cancels in every difference taken, so it carries no gradient.
    """
    peak = _masked(logits, keep).amax(dim=-1, keepdim=True).detach()
    return torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))


class _RowsOf(torch.autograd.Function):
    """weight[ids] for sorted distinct `ids`, whose gradient is a coalesced sparse [V, k] tensor.

    What a sparse `nn.Embedding` gives, minus its cost: its gradient lists one row per look-up,
    unsorted, so gradient clipping and SparseAdam each sort and merge it (`coalesce`), which at
    the paper's V costs more than the whole step of plain LightRNN. The callers look every word
    up once, so the gradient is coalesced by construction.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor) -> Tensor:
        ctx.save_for_backward(ids)
        ctx.size = weight.shape
        return weight.index_select(0, ids)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ids,) = ctx.saved_tensors
        # Fresh index and value tensors: only then does autograd keep this tensor (and its coalesced flag).
        return torch.sparse_coo_tensor(ids.unsqueeze(0).clone(), grad.clone(), ctx.size, is_coalesced=True,
                                       check_invariants=False), None


# _RowDot's chunk: distinct rows x C x max(k, positions) floats handled at a time (4 MiB): cache-resident temporaries.
ROW_DOT_CHUNK_FLOATS = 1 << 20


class _RowLayout:
    """Which positions read which distinct table rows, arranged so `_RowDot` runs one matmul per group.

    rows [N]: the row each position reads (values in [0, R)). The distinct rows are grouped by
    how many positions read them, so a group of g rows read c times each is one
    [g, C, k] x [g, k, c] batched matmul over contiguous slices of the positions in `order` (no
    padding, no per-position gather of C k values). `sorted_rows` are the distinct rows in
    increasing order and `sorted_of[u]` where group-order row u sits among them (a sparse
    gradient lists its rows sorted).
    """

    def __init__(self, rows: Tensor, columns: int, dim: int) -> None:
        distinct, position, counts = torch.unique(rows, return_inverse=True, return_counts=True)
        by_count = torch.argsort(counts, stable=True)  # distinct rows, fewest readers first
        rank = torch.empty_like(by_count)
        rank[by_count] = torch.arange(by_count.numel(), device=by_count.device)
        self.row_of = rank[position]  # [N]: each position's distinct row, in group order
        self.order = torch.argsort(self.row_of, stable=True)  # positions grouped by their row
        self.distinct = distinct[by_count]  # [U]: the distinct rows in group order
        self.sorted_rows, self.sorted_of = distinct, by_count  # torch.unique sorts: distinct[by_count[u]]
        self.positions, self.columns = rows.numel(), columns
        # (first row, last row, first position, readers per row) of every chunk, from the sorted counts.
        self.chunks: list[tuple[int, int, int, int]] = []
        sorted_counts = counts[by_count].tolist()
        row, position_start = 0, 0
        while row < len(sorted_counts):
            count = sorted_counts[row]
            limit = max(1, ROW_DOT_CHUNK_FLOATS // max(1, columns * max(dim, count)))
            stop = row
            while stop < len(sorted_counts) and sorted_counts[stop] == count and stop - row < limit:
                stop += 1
            self.chunks.append((row, stop, position_start, count))
            position_start += (stop - row) * count
            row = stop
        self.widest = max((last - first for first, last, _, _ in self.chunks), default=0)  # rows in a chunk

    def spans(self):
        """(first, last, positions, count) per chunk: the distinct rows first..last (group order),
        each read by `count` positions, which are `positions` (a slice) of the group-ordered ones:
        tensor[positions].view(last - first, count, -1) is the chunk's [g, count, ...] block."""
        for first, last, start, count in self.chunks:
            yield first, last, slice(start, start + (last - first) * count), count


# A private torch counter (present in the torch versions this project supports); where a torch
# lacks it, `_gradient_rows` never reuses storage (correct, only slower on the CPU).
_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _storage_users(tensor: Tensor) -> int:
    return _USE_COUNT(tensor.untyped_storage()._cdata)


def _gradient_rows(scratch: dict, rows: int, like: Tensor, key: str = "gradient") -> Tensor:
    """An uninitialised [rows, like.shape[1]] tensor (a per-word gradient, or the rows the backward
    reads again), on the CPU in storage kept between steps under `key`.

    A fresh tensor of this size (tens of MB at V = 793,471) is returned to the system when freed
    and costs as much in first-touch page faults as writing it; the training step frees the
    previous gradient (zero_grad) before the next backward, so its storage is reused then. Only
    when nothing but `scratch` holds it any more (its storage's use count back to what it was
    when it was made): a gradient still alive (accumulation, a caller's reference) is never
    overwritten, a fresh tensor is made instead.
    """
    if like.device.type != "cpu" or _USE_COUNT is None:
        return like.new_empty(rows, like.shape[1])  # the CUDA caching allocator already reuses memory
    buffer, idle = scratch.get(key, (None, 0))
    if (buffer is None or buffer.shape[0] < rows or buffer.dtype != like.dtype or buffer.shape[1] != like.shape[1]
            or _storage_users(buffer) != idle):
        buffer = like.new_empty(rows + rows // 4, like.shape[1])  # headroom: the rows read vary per step
        scratch[key] = (buffer, _storage_users(buffer))
    return buffer[:rows]


def _outer_chunks(layout: _RowLayout, grouped_grad: Tensor, grouped_query: Tensor, outers: Tensor):
    """Each chunk's weight gradient: yields (first, last, outer [g, C k]) where outer[i] is
    A_i^T Q_i for the chunk's distinct rows first..last (group order), A_i [c, C] the column
    gradients of the c positions reading row i and Q_i [c, k] their queries.

    `outers` [>= widest chunk, C k] is storage reused by every chunk: the products are made
    cache-hot right before they are used, and never in a fresh allocation, whose first-touch
    page faults cost more than the products themselves. Callers run it with autocast off (the
    products stay in the factors' precision).
    """
    columns, dim = layout.columns, grouped_query.shape[1]
    for first, last, positions, count in layout.spans():
        chunk_grad = grouped_grad[positions].view(last - first, count, columns)
        reads = grouped_query[positions].view(last - first, count, dim)
        outer = outers[: last - first]
        if count == 1:  # rank 1 per row: a broadcast multiply, ~3x faster than bmm on the CPU
            torch.mul(chunk_grad.view(-1, columns, 1), reads, out=outer.view(-1, columns, dim))
        else:
            torch.bmm(chunk_grad.transpose(1, 2), reads, out=outer.view(-1, columns, dim))
        yield first, last, outer


class RowGradient:
    """The gradient of the slot-ordered output vectors (`slot_out` [R, C k]) held as its factors.

    Row r's gradient is A_r^T Q_r: A_r [c, C] the column-logit gradients of the c positions
    that read row r, Q_r [c, k] their queries P h (rank <= c; most rows are read once per step).
    Materialised it is U C k values (9.1M at V = 793,471, k = 32, 512 positions), which backward
    writes, clipping reads and the update reads again; held as factors (N (C + k) values) its
    squared norm has a closed form, sum_r <A_r A_r^T, Q_r Q_r^T>, and `apply_` adds each
    cache-sized chunk of products to the table as it makes it, so that of those four passes over
    U C k values only the table's own read-modify-write stays (on the CPU, a third of the
    variant's cost over plain LightRNN at that size: docs/performance.md).

    Only an update linear in the gradient can take it: `Optimizers` turns it on for plain SGD
    (`LightRNN.defer_row_gradients`), never for Adam, whose moments need the values. `parts`
    holds one entry per backward pass since the last `clear` (gradient accumulation sums them).
    """

    def __init__(self, scratch: dict) -> None:
        self.parts: list[tuple[_RowLayout, Tensor, Tensor, Tensor]] = []
        self.scale = 1.0
        self.applied = (0, 0)  # (rows, values) the last update added: what a materialised gradient would hold
        self._scratch = scratch

    def add(self, layout: _RowLayout, blocks: Tensor, grouped_grad: Tensor, grouped_query: Tensor) -> None:
        self.parts.append((layout, blocks, grouped_grad, grouped_query))

    def clear(self) -> None:
        self.parts, self.scale = [], 1.0

    def square_norm(self, weight: Tensor) -> Tensor:
        """||gradient||^2 (0-d float32), times scale^2."""
        if len(self.parts) != 1:  # accumulated: rows of different passes overlap, so the sum is materialised
            dense = self.dense(weight)
            return torch.linalg.vector_norm(dense, dtype=torch.float32).square()
        layout, _, grouped_grad, grouped_query = self.parts[0]
        total = grouped_grad.new_zeros((), dtype=torch.float32)
        with torch.autocast(grouped_grad.device.type, enabled=False):
            for first, last, positions, count in layout.spans():
                a = grouped_grad[positions].view(last - first, count, -1).float()
                q = grouped_query[positions].view(last - first, count, -1).float()
                total = total + (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(q, q.transpose(1, 2))).sum()
        return total * (self.scale * self.scale)

    def dense(self, weight: Tensor) -> Tensor:
        """The gradient materialised, [R, C k] like `weight` (times scale)."""
        total = torch.zeros_like(weight)
        self._add_into(total, self.scale)
        return total

    @torch.no_grad()
    def apply_(self, weight: Tensor, alpha: float) -> None:
        """weight += alpha * scale * gradient, then clear."""
        self._add_into(weight, alpha * self.scale)
        rows = sum(blocks.numel() for _, blocks, _, _ in self.parts)
        self.applied = (rows, rows * weight.shape[1])
        self.clear()

    def _add_into(self, target: Tensor, alpha: float) -> None:
        for layout, blocks, grouped_grad, grouped_query in self.parts:
            outers = _gradient_rows(self._scratch, layout.widest, target, "outer")
            with torch.autocast(target.device.type, enabled=False):
                for first, last, outer in _outer_chunks(layout, grouped_grad, grouped_query, outers):
                    target.index_add_(0, blocks[first:last], outer.to(target.dtype), alpha=alpha)


class _RowDot(torch.autograd.Function):
    """terms[n, c] = weight[block of n's row, c k : (c + 1) k] . query[n] for weight [M, C k], query [N, k].

    The per-word output vectors are stored by table slot, a table row's C vectors one
    contiguous [C k] row of `weight`, so the O(C k) dot products per position are one batched
    matmul per group of distinct rows read equally often (`_RowLayout`) over whole rows of the
    weight: each distinct row is read once per pass (U C k values, U <= R the distinct rows),
    never once per position (N C k), and no [N, C, k] tensor is built or kept.

    `blocks` [U]: the weight row of each distinct row, in the layout's group order. The weight's
    gradient covers exactly those rows (every word sharing a target's row gets gradient through
    the column normaliser): with `sparse` a coalesced sparse [M, C k] tensor whose rows are
    `layout.sorted_rows`' blocks in increasing order (`sorted_blocks` [U]), written once (on the
    CPU into the last step's storage where nothing holds it any more: `_gradient_rows`); else
    dense. With a `sink` (`RowGradient`, plain SGD) backward makes no weight gradient at all: it
    hands the sink the factors, and the update makes the products where it adds them.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, query: Tensor, layout: _RowLayout, blocks: Tensor, sorted_blocks: Tensor,
                sparse: bool, scratch: dict | None = None, sink: RowGradient | None = None) -> Tensor:
        columns, dim = layout.columns, query.shape[1]
        grouped_query = query.index_select(0, layout.order)  # [N, k], positions in group order
        grouped = query.new_empty(layout.positions, columns)
        # The distinct rows' weight rows, gathered once (whole contiguous rows: a memcpy) into
        # storage kept between steps, and kept for the backward, which reads them again; a
        # chunk at a time, so that its matmul reads it from the cache.
        gathered = (_gradient_rows(scratch, blocks.numel(), weight, "gathered") if scratch is not None
                    else weight.new_empty(blocks.numel(), weight.shape[1]))
        with torch.autocast(query.device.type, enabled=False):
            for first, last, positions, count in layout.spans():
                torch.index_select(weight, 0, blocks[first:last], out=gathered[first:last])
                chunk = gathered[first:last].view(-1, columns, dim)
                reads = grouped_query[positions].view(last - first, count, dim)
                torch.bmm(reads, chunk.transpose(1, 2), out=grouped[positions].view(last - first, count, columns))
        out = torch.empty_like(grouped)
        out.index_copy_(0, layout.order, grouped)
        ctx.save_for_backward(weight, gathered, grouped_query, blocks, sorted_blocks)
        ctx.layout, ctx.sparse, ctx.scratch, ctx.sink = layout, sparse, scratch, sink
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, gathered, grouped_query, blocks, sorted_blocks = ctx.saved_tensors
        layout = ctx.layout
        columns, dim = layout.columns, grouped_query.shape[1]
        grouped_grad = grad.index_select(0, layout.order)  # [N, C]
        want_weight, want_query = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if want_query:
            grouped_query_grad = torch.empty_like(grouped_query)
            with torch.autocast(grad.device.type, enabled=False):
                for first, last, positions, count in layout.spans():
                    torch.bmm(grouped_grad[positions].view(last - first, count, columns),
                              gathered[first:last].view(-1, columns, dim),
                              out=grouped_query_grad[positions].view(last - first, count, dim))
            grad_query = torch.empty_like(grouped_query_grad)
            grad_query.index_copy_(0, layout.order, grouped_query_grad)
        else:
            grad_query = None
        grad_weight = None
        if want_weight and ctx.sink is not None:
            ctx.sink.add(layout, blocks, grouped_grad, grouped_query)  # the optimizer makes the products
        elif want_weight:
            scratch = ctx.scratch
            if ctx.sparse:
                values = (_gradient_rows(scratch, blocks.numel(), weight) if scratch is not None
                          else weight.new_empty(blocks.numel(), weight.shape[1]))
            else:
                values = torch.zeros_like(weight)
            outers = (_gradient_rows(scratch, layout.widest, weight, "outer") if scratch is not None
                      else weight.new_empty(layout.widest, weight.shape[1]))
            with torch.autocast(grad.device.type, enabled=False):
                for first, last, outer in _outer_chunks(layout, grouped_grad, grouped_query, outers):
                    values.index_copy_(0, layout.sorted_of[first:last] if ctx.sparse else blocks[first:last], outer)
            grad_weight = values
            if ctx.sparse:
                grad_weight = torch.sparse_coo_tensor(sorted_blocks.unsqueeze(0).clone(), values, weight.shape,
                                                      is_coalesced=True, check_invariants=False)
        return grad_weight, grad_query, None, None, None, None, None, None


def _rows_of(weight: Tensor, ids: Tensor, sparse: bool) -> Tensor:
    """weight[ids] for sorted distinct ids [n]: [n, ...]; a sparse gradient when `sparse`."""
    if sparse:
        return _RowsOf.apply(weight, ids)
    return weight.index_select(0, ids)


def _lookup(table: nn.Embedding, words: Tensor) -> Tensor:
    """table.weight[words] for any ids [...]: [..., k], each distinct id read once (see `_RowsOf`)."""
    ids, position = torch.unique(words.reshape(-1), return_inverse=True)
    return _rows_of(table.weight, ids, table.sparse).index_select(0, position).view(*words.shape, -1)


class LightRNN(LanguageModel):
    """LightRNN language model over `vocab_size` word ids.

    Args:
        vocab_size: V.
        embed_dim, hidden_dim, num_layers, dropout: the LSTM stack; dropout applies to the input
            embeddings, between LSTM layers and before both heads (as in every baseline).
        table: the initial `WordTable`; when None it is built from `initial_table`.
        word_counts: [V] counts in id order. Accepted so every model shares one constructor
            signature; LightRNN does not use it (checked for length when given).
        initial_table: "random" (seeded shuffle), "frequency" (ids fill the table row-major) or a
            path to a `.npy` written by `WordTable.save`.
        table_seed: seed of the random initial table (the official code uses 0).
        word_bias: add a learned per-word bias b_w to the column logits of the row's words (V
            parameters; not in the paper). The column softmax of row r is then over
            Y_c h + b_{word at (r, c)}: each word gets a private unigram-like term.
        word_dim: k > 0 adds to the column logits a per-word output vector u_w (V x k) dotted
            with a projection P h (P: k x H, no bias): logit(r, c) += u_{word at (r, c)} . P h.
            Per token it reads the C words of one row: O(C k) work, V k + H k parameters.
        word_input_dim: k > 0 adds a per-word input vector e_w (V x k), projected to E (E x k, no
            bias), to the column half-step's input: x_c(w) + A e_w (V k + E k parameters).
        realloc_columns: "separable" (the paper: one matching of the row and column losses, both
            scored under the old table) or "consistent" (rows first from the row losses, then the
            columns scored with every word fed its NEW row, then an exact C x C assignment per row;
            `lightrnn.method.reallocate.reallocate_model`).
        realloc_alternate: with "consistent", how many rows-then-columns passes (>= 1).
        sparse_embedding: sparse gradients for the per-word tables (slot_bias, slot_out, word_in),
            so the training loop's `Optimizers` gives them SparseAdam with Adam (SGD updates the
            rows in place, slot_out's gradient kept as its factors: `RowGradient`; the baselines'
            option of the same name). Off by default: the loss and
            gradients are the same, but Adam and SparseAdam update untouched rows differently, and
            NCCL cannot all-reduce sparse gradients (multi-GPU runs refuse it). Turn it on at
            large V: without it every step builds dense gradients of all V (2k + 1) per-word
            parameters and the optimizer sweeps them all.

    Capacity fixes (word_bias, word_dim, word_input_dim) add O(C k + k E) work per token and
    O(V) parameters for a fixed k (k (R C + H) + k (V + E) + R C: at the paper's V and k = 32,
    more than plain LightRNN has in all; `lightrnn params`); every word's terms follow it when it
    moves. The output terms (b, u) are stored by table slot, a table row's C words one
    contiguous parameter row, so a training step reads them once per distinct target row of the
    batch (and the input vectors once per distinct input word): with `sparse_embedding` its
    gradient and optimizer work are O(C k) per token too (the words that share a target's row
    get gradient through the column normaliser), a few hundred contiguous rows per step, never
    a V x k sweep (docs/performance.md measures it at V = 793,471).

    A distribution over exactly the V words at every V: where V < R * C the table has empty
    slots, and both softmaxes skip them (the row softmax skips rows with no word, the column
    softmax the empty slots of the row), wherever the current table puts them. The paper's
    form gives the empty slots probability mass and so sums to less than 1; it is not kept.

    The table lives in the buffers `word_row`, `word_col` (LongTensor [V]), so it is part of the
    state_dict and travels with checkpoints.
    """

    options = ("table", "word_counts", "initial_table", "table_seed", "word_bias", "word_dim", "word_input_dim",
               "realloc_columns", "realloc_alternate", "sparse_embedding")
    REALLOC_COLUMNS = ("separable", "consistent")
    # realloc_alternate: each pass scores every word in every column; 100 passes is hours at 800k words.
    option_bounds = {"table_seed": (0, 2**32 - 1), "word_dim": (0, 1 << 16), "word_input_dim": (0, 1 << 16),
                     "realloc_alternate": (1, 100)}

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 512,
        hidden_dim: int = 512,
        num_layers: int = 2,
        dropout: float = 0.2,
        table: WordTable | None = None,
        word_counts: np.ndarray | None = None,
        initial_table: str = "random",
        table_seed: int = 0,
        word_bias: bool = False,
        word_dim: int = 0,
        word_input_dim: int = 0,
        realloc_columns: str = "separable",
        realloc_alternate: int = 1,
        sparse_embedding: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim),
                            ("hidden_dim", hidden_dim), ("num_layers", num_layers)):
            if int(value) < 1:
                raise ValueError(f"LightRNN: {name} must be >= 1, got {value}")
        for name, value in (("word_bias", word_bias), ("sparse_embedding", sparse_embedding)):
            if not isinstance(value, bool):
                raise ValueError(f"LightRNN: {name} must be true or false, got {value!r}")
        for name, value in (("word_dim", word_dim), ("word_input_dim", word_input_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"LightRNN: {name} must be an integer >= 0 (0 = off), got {value!r}")
        if realloc_columns not in self.REALLOC_COLUMNS:
            raise ValueError(f"LightRNN: realloc_columns must be one of {', '.join(self.REALLOC_COLUMNS)}, "
                             f"got {realloc_columns!r}")
        low, high = self.option_bounds["realloc_alternate"]
        if (isinstance(realloc_alternate, bool) or not isinstance(realloc_alternate, int)
                or not low <= realloc_alternate <= high):
            raise ValueError(f"LightRNN: realloc_alternate must be an integer in [{low}, {high}], "
                             f"got {realloc_alternate!r}")
        low, high = self.option_bounds["table_seed"]
        if isinstance(table_seed, bool) or not isinstance(table_seed, int) or not low <= table_seed <= high:
            raise ValueError(f"LightRNN: table_seed must be an integer in [{low}, {high}], got {table_seed!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LightRNN: dropout must be in [0, 1), got {dropout}")
        if word_counts is not None and len(word_counts) != vocab_size:
            raise ValueError(
                f"LightRNN: word_counts has {len(word_counts)} entries but vocab_size is {vocab_size}"
            )
        if table is None:
            table = self._initial_table(vocab_size, initial_table, table_seed)
        if table.vocab_size != vocab_size:
            raise ValueError(f"LightRNN: the table holds {table.vocab_size} words but vocab_size is {vocab_size}")

        self.vocab_size = int(vocab_size)
        self.embed_dim = int(embed_dim)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self._num_rows = table.num_rows
        self._num_cols = table.num_cols

        self.row_embedding = nn.Embedding(self._num_rows, embed_dim)  # X_r: [R, E]
        self.col_embedding = nn.Embedding(self._num_cols, embed_dim)  # X_c: [C, E]
        # Dropout between LSTM layers too, exactly as the baselines' trunk, so that the comparison
        # differs only in the input and output layers (nn.LSTM warns if asked for it with one layer).
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.row_head = nn.Linear(hidden_dim, self._num_rows)  # Y_r
        self.col_head = nn.Linear(hidden_dim, self._num_cols)  # Y_c
        self.drop = nn.Dropout(dropout)
        self.register_buffer("word_row", torch.as_tensor(table.rows, dtype=torch.long))  # [V]
        self.register_buffer("word_col", torch.as_tensor(table.cols, dtype=torch.long))  # [V]
        # Per-word capacity (off by default, so the paper's model and its checkpoints are unchanged).
        self.word_dim, self.word_input_dim = int(word_dim), int(word_input_dim)
        # The per-word OUTPUT terms are stored by table slot, not by word id: slot_bias[r, c] is b
        # of the word in slot (r, c) and slot_out[r, c k : (c + 1) k] its u. A training step reads
        # and updates the words of the target rows (every word of a row gets gradient through the
        # column normaliser), so by slot those are a few long contiguous rows (one per distinct
        # target row) instead of hundreds of thousands of scattered word rows: at V = 793,471
        # the gathers, the gradient scatter and the sparse update cost several times less
        # (docs/performance.md). set_table moves the values with their words (`take_moved_rows`
        # lets the optimizer move its state too). Empty slots hold values that nothing reads.
        self.sparse_embedding = bool(sparse_embedding)
        side = (self._num_rows, self._num_cols)
        self.slot_bias = nn.Parameter(torch.zeros(side)) if word_bias else None  # b by slot: [R, C]
        if self.word_dim:
            self.slot_out = nn.Parameter(torch.empty(side[0], side[1] * self.word_dim))  # u by slot: [R, C k]
            self.word_out_proj = nn.Linear(hidden_dim, self.word_dim, bias=False)  # P: [k, H]
        self.__dict__["_moved_slots"] = None  # the slot permutation set_table applied since take_moved_rows
        if self.word_input_dim:
            self.word_in = nn.Embedding(vocab_size, self.word_input_dim, sparse=self.sparse_embedding)  # e: [V, k]
            self.word_in_proj = nn.Linear(self.word_input_dim, embed_dim, bias=False)  # A: [E, k]
        self.realloc_columns, self.realloc_alternate = realloc_columns, int(realloc_alternate)
        self._init_weights()

    @staticmethod
    def _initial_table(vocab_size: int, initial_table: str, table_seed: int) -> WordTable:
        if initial_table == "random":
            return WordTable.random(vocab_size, seed=table_seed)
        if initial_table == "frequency":
            return WordTable.frequency_ordered(vocab_size)
        if str(initial_table).endswith(".npy") or os.path.exists(str(initial_table)):
            return WordTable.load(initial_table, vocab_size=vocab_size)
        raise ValueError(
            f"LightRNN: initial_table must be 'random', 'frequency' or a path to a .npy table, got {initial_table!r}"
        )

    def _init_weights(self) -> None:
        # Small uniform init as in the PyTorch word-language-model example; the heads start with
        # zero bias so the first predictions are close to uniform over rows and columns.
        for embedding in (self.row_embedding, self.col_embedding):
            nn.init.uniform_(embedding.weight, -0.1, 0.1)
        for head in (self.row_head, self.col_head):
            nn.init.uniform_(head.weight, -0.1, 0.1)
            nn.init.zeros_(head.bias)
        if self.word_dim:
            nn.init.uniform_(self.slot_out, -0.1, 0.1)
        if self.word_input_dim:
            nn.init.uniform_(self.word_in.weight, -0.1, 0.1)

    # ----- per-word terms of the column softmax ------------------------------------------------

    @property
    def _has_word_terms(self) -> bool:
        return self.slot_bias is not None or self.word_dim > 0

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradients are sparse (`Optimizers` gives them SparseAdam): the
        per-word tables when `sparse_embedding` is on, beside the sparse `nn.Embedding`s."""
        if not self.sparse_embedding:
            return []
        return [p for p in (self.slot_bias, self.slot_out if self.word_dim else None) if p is not None]

    def defer_row_gradients(self, on: bool = True) -> None:
        """Hand `slot_out`'s gradient to a `RowGradient` (its factors) instead of `.grad`, when
        the model has per-word output vectors with sparse gradients. `Optimizers` turns this on for
        plain SGD and off otherwise; `row_gradients` lists what backward left for the update."""
        on = bool(on and self.word_dim and self.sparse_embedding)
        scratch = self.__dict__.setdefault("_gradient_scratch", {})
        self.__dict__["_row_gradient"] = RowGradient(scratch) if on else None

    @property
    def row_gradient(self) -> RowGradient | None:
        """Where backward leaves slot_out's factored gradient when deferred, else None."""
        return self.__dict__.get("_row_gradient")

    def row_gradients(self) -> list[tuple[nn.Parameter, RowGradient]]:
        """[(parameter, its pending factored gradient)]: empty unless deferred and backward has run."""
        pending = self.row_gradient
        return [(self.slot_out, pending)] if pending is not None and pending.parts else []

    def word_output_terms(self) -> tuple[Tensor | None, Tensor | None]:
        """(b [V] or None, u [V, k] or None): the per-word output terms in word-id order (a gather
        of the slot-ordered parameters; differentiable)."""
        slots = self.word_row * self._num_cols + self.word_col
        bias = self.slot_bias.reshape(-1).index_select(0, slots) if self.slot_bias is not None else None
        out = self.slot_out.reshape(-1, self.word_dim).index_select(0, slots) if self.word_dim else None
        return bias, out

    def _column_input(self, tokens: Tensor) -> Tensor:
        """x_c(w) [+ A e_w] for every token: [B, T, E]."""
        col_in = self.col_embedding(self.word_col[tokens])
        if self.word_input_dim:
            col_in = col_in + self.word_in_proj(_lookup(self.word_in, tokens))
        return col_in

    def _slot_words(self, rows: Tensor | None = None, cols: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(words [R, C]: the id in every slot, 0 where empty; filled [R, C] bool) of the table
        (rows, cols) [V], by default the buffers.

        Cached per table: the key is the two tensors' identity, storage and in-place version
        counter, so any change to the buffers (set_table, load_state_dict, a copy_ into them,
        moving the model) rebuilds it; a cache hit costs nothing, a rebuild O(V).
        """
        rows = self.word_row if rows is None else rows
        cols = self.word_col if cols is None else cols
        key = tuple((id(t), t.data_ptr(), t._version, t.device) for t in (rows, cols))
        cached = self.__dict__.get("_slot_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        slots = self._num_rows * self._num_cols
        owner = torch.full((slots,), self.vocab_size, dtype=torch.long, device=rows.device)
        owner[rows * self._num_cols + cols] = torch.arange(self.vocab_size, device=owner.device)
        filled = owner < self.vocab_size
        if int(filled.sum()) != self.vocab_size:
            raise ValueError("LightRNN: the word table is not a bijection (two words share a slot)")
        value = (owner.clamp(max=self.vocab_size - 1).view(self._num_rows, -1), filled.view(self._num_rows, -1))
        self.__dict__["_slot_cache"] = (key, value)
        return value

    def _keeps(self, rows: Tensor | None = None, cols: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(row keep [R], slot keep [R, C]) of the table, cached beside `_slot_words`' entry (O(R C) to rebuild)."""
        filled = self._slot_words(rows, cols)[1]
        cached = self.__dict__["_slot_cache"]
        if len(cached) < 3 or cached[2][0] is not filled:
            row_keep = filled.any(dim=1)  # [R]
            self.__dict__["_slot_cache"] = (*cached[:2], (filled, row_keep, filled | ~row_keep.unsqueeze(1)))
        return self.__dict__["_slot_cache"][2][1:]

    def _row_keep(self, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
        """[R] bool: the rows holding at least one word (the row softmax's support)."""
        return self._keeps(rows, cols)[0]

    def _col_keep(self, row: Tensor, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
        """[..., C] bool: the filled slots of each `row` [...] (the column softmax's support).

        An empty row keeps every slot: its column softmax is never read (no word is in it), and a
        softmax over no entry would be NaN, which would poison gradients through the others.
        """
        keep = self._keeps(rows, cols)[1]  # [R, C]
        return keep.index_select(0, row.reshape(-1)).view(*row.shape, self._num_cols)

    def _word_terms(self, words: Tensor, hidden: Tensor) -> Tensor:
        """b_w + u_w . P h for words [..., n] given the column hidden state [..., H]: [..., n]."""
        slots = (self.word_row[words] * self._num_cols + self.word_col[words]).reshape(-1)
        terms = hidden.new_zeros(words.shape, dtype=torch.float32)
        if self.slot_bias is not None:
            terms = terms + self.slot_bias.reshape(-1).index_select(0, slots).view(words.shape).float()
        if self.word_dim:
            query = self.word_out_proj(hidden).float()  # [..., k]
            vectors = self.slot_out.reshape(-1, self.word_dim).index_select(0, slots).view(*words.shape, -1)
            terms = terms + (vectors.float() * query.unsqueeze(-2)).sum(-1)
        return terms

    def _row_word_terms(self, rows: Tensor, hidden: Tensor, table: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The per-word terms of every slot of `rows` [...] (C slots each): [..., C].

        Under the current table a row's terms are one row of each slot-ordered parameter, read
        once per DISTINCT row of `rows` (U <= R), so the (sparse) gradients hold U rows; the
        u_w . P h terms are one batched matmul per group of equally read rows (`_RowDot`): O(C k)
        work per position, as the terms themselves, and no per-position [..., C, k] tensor.
        `table` (rows, cols) [V] scores another table's slots: each of its distinct rows' words
        are gathered from their current slots first (the reallocation's scoring, no training).

        An empty slot's term is whatever its untrained storage holds, not zeroed: every caller
        masks the empty slots out of the column softmax (`_col_keep`), so it never counts (and
        zeroing would cost a pass over [..., C] each way per step at the paper's V).
        """
        layout = _RowLayout(rows.reshape(-1), self._num_cols, max(1, self.word_dim))
        current = table is None or (table[0] is self.word_row and table[1] is self.word_col)
        if current:
            ids = layout.sorted_rows  # [U]: parameter rows, increasing
        else:
            # The words in the other table's slots of the distinct rows, and where they sit now.
            words = self._slot_words(*table)[0].index_select(0, layout.sorted_rows)  # [U, C]
            sources = (self.word_row[words] * self._num_cols + self.word_col[words]).reshape(-1)  # [U C]
            ids = torch.arange(layout.sorted_rows.numel(), device=rows.device)
        # Each position's distinct row, as an index into ids.
        per_position = layout.sorted_of.index_select(0, layout.row_of)  # [N]
        terms = None
        if self.slot_bias is not None:
            if current:
                bias = _rows_of(self.slot_bias, ids, self.sparse_embedding)  # [U, C]
            else:
                bias = self.slot_bias.reshape(-1).index_select(0, sources).view(-1, self._num_cols)
            # index_select, not advanced indexing: several times faster on the CPU at these sizes.
            terms = bias.index_select(0, per_position).float()  # [N, C]
        if self.word_dim:
            weight = self.slot_out if current else (
                self.slot_out.reshape(-1, self.word_dim).index_select(0, sources).view(ids.numel(), -1))
            query = self.word_out_proj(hidden).reshape(-1, self.word_dim).to(
                torch.promote_types(weight.dtype, torch.float32))  # [N, k]
            if query.dtype != weight.dtype:
                weight = weight.to(query.dtype)
            scratch = self.__dict__.setdefault("_gradient_scratch", {})  # not state: rebuilt on demand
            blocks = ids.index_select(0, layout.sorted_of)  # [U]: each group-order row's weight row
            own = self.sparse_embedding and current and weight is self.slot_out
            sink = self.row_gradient if own else None
            dots = _RowDot.apply(weight, query, layout, blocks, ids, own, scratch, sink).float()
            terms = dots if terms is None else terms + dots
        return terms.view(*rows.shape, self._num_cols)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the output terms were stored by slot hold them by word id:
        # word_bias.weight [V, 1] (earlier still word_bias [V]) and word_out.weight [V, k].
        rows, cols = state_dict.get(prefix + "word_row"), state_dict.get(prefix + "word_col")
        for old, new in (("word_bias.weight", "slot_bias"), ("word_bias", "slot_bias"), ("word_out.weight", "slot_out")):
            legacy = state_dict.pop(prefix + old, None)
            if legacy is None or rows is None or cols is None:
                continue
            legacy = legacy.reshape(legacy.shape[0], -1)  # [V, k]
            by_slot = legacy.new_zeros(self._num_rows * self._num_cols, legacy.shape[1])
            by_slot[rows.long() * self._num_cols + cols.long()] = legacy
            state_dict[prefix + new] = by_slot.view(self._num_rows, -1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def take_moved_rows(self) -> list[tuple[nn.Parameter, Tensor]]:
        """[(parameter, index)]: parameters whose rows set_table has moved since the last call, and
        how (row i of parameter.view(len(index), -1) now holds what row index[i] held): the
        training loop moves the optimizer's state of those rows the same way (`Optimizers.follow`)."""
        moved, self.__dict__["_moved_slots"] = self.__dict__.get("_moved_slots"), None
        if moved is None:
            return []
        return [(p, moved) for p in (self.slot_bias, self.slot_out if self.word_dim else None) if p is not None]

    # ----- the table -----------------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def num_cols(self) -> int:
        return self._num_cols

    @property
    def table(self) -> WordTable:
        """The current word table, rebuilt from the buffers (so it follows load_state_dict)."""
        return WordTable(
            self.word_row.detach().cpu().numpy(), self.word_col.detach().cpu().numpy(),
            self._num_rows, self._num_cols,
        )

    def set_table(self, table: WordTable) -> None:
        """Move the words to `table`'s slots; the row/column vectors and heads stay where they are."""
        if table.vocab_size != self.vocab_size:
            raise ValueError(f"set_table: the table holds {table.vocab_size} words, the model {self.vocab_size}")
        if (table.num_rows, table.num_cols) != (self._num_rows, self._num_cols):
            raise ValueError(
                f"set_table: the table is {table.num_rows} x {table.num_cols}, "
                f"the model {self._num_rows} x {self._num_cols}"
            )
        if self.row_gradients():
            raise RuntimeError("set_table: a deferred slot_out gradient is pending (set the table after the optimizer step)")
        rows = torch.as_tensor(table.rows, dtype=torch.long, device=self.word_row.device)
        cols = torch.as_tensor(table.cols, dtype=torch.long, device=self.word_col.device)
        with torch.no_grad():
            if self._has_word_terms:
                self._move_slot_terms(rows * self._num_cols + cols)
            self.word_row.copy_(rows)
            self.word_col.copy_(cols)

    @torch.no_grad()
    def _move_slot_terms(self, new_slots: Tensor) -> None:
        """Move the slot-ordered output terms with their words to `new_slots` [V] (a permutation
        of the R C slots: the new empty slots take the old empty slots' values, in order)."""
        slots = self._num_rows * self._num_cols
        old_slots = self.word_row * self._num_cols + self.word_col
        source = torch.empty(slots, dtype=torch.long, device=new_slots.device)
        source[new_slots] = old_slots
        empty_new = torch.ones(slots, dtype=torch.bool, device=new_slots.device)
        empty_new[new_slots] = False
        empty_old = torch.ones_like(empty_new)
        empty_old[old_slots] = False
        source[empty_new] = empty_old.nonzero().squeeze(1)
        for param in (self.slot_bias, self.slot_out if self.word_dim else None):
            if param is not None:
                param.copy_(param.reshape(slots, -1).index_select(0, source).view_as(param))
        moved = self.__dict__.get("_moved_slots")
        self.__dict__["_moved_slots"] = source if moved is None else moved.index_select(0, source)

    # ----- the two half-steps --------------------------------------------------------------

    def _hidden(self, tokens: Tensor, targets: Tensor, state: State | None) -> tuple[Tensor, Tensor, State]:
        """LSTM outputs that feed the heads: (row_hidden [B, T, H], col_hidden [B, T, H], state).

        row_hidden[:, t] has read everything up to x_c(tokens[:, t]) and predicts row(targets[:, t]);
        col_hidden[:, t] has also read x_r(targets[:, t]) and predicts col(targets[:, t]).
        """
        if tokens.dim() != 2 or tokens.shape != targets.shape:
            raise ValueError(
                f"LightRNN: tokens and targets must both be [B, T], got {tuple(tokens.shape)} and {tuple(targets.shape)}"
            )
        batch_size, steps = tokens.shape
        if state is None:
            state = self.init_state(batch_size)
        row_in = self.row_embedding(self.word_row[tokens])  # [B, T, E]
        col_in = self._column_input(tokens)  # [B, T, E]
        # Interleave to x_r(w_0), x_c(w_0), x_r(w_1), ...: [B, T, 2, E] -> [B, 2T, E].
        inputs = torch.stack((row_in, col_in), dim=2).reshape(batch_size, 2 * steps, -1)
        outputs, state = run_lstm(self.lstm, self.drop(inputs), state)  # [B, 2T, H], float32 even under autocast
        # The last target's row, fed from the carried state; the next batch feeds it again.
        last_row_in = self.row_embedding(self.word_row[targets[:, -1:]])  # [B, 1, E]
        last_output, _ = run_lstm(self.lstm, self.drop(last_row_in), state)  # [B, 1, H]
        row_hidden = outputs[:, 1::2]  # after x_c(tokens[:, t]): [B, T, H]
        col_hidden = torch.cat((outputs[:, 2::2], last_output), dim=1)  # after x_r(targets[:, t]): [B, T, H]
        return self.drop(row_hidden), self.drop(col_hidden), state

    def slot_log_probs(
        self, tokens: Tensor, targets: Tensor, state: State | None = None,
        slot_cols: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, State]:
        """Row and column log-softmaxes at every position, under the current table.

        Returns (row_logp [B, T, R], col_logp [B, T, C], state): row_logp[b, t] is the
        distribution of the row of targets[b, t]; col_logp[b, t] that of its column, given its
        true row (teacher forcing). Computed in float32 even under autocast. Both are normalised
        over the filled entries (rows with a word, the target row's filled slots), so at the
        target's own row and column they are the model's exact log-probabilities; an empty
        entry scores what the target would get there alone (`_slot_scores`), which the
        reallocation reads as the price of moving into it.

        With per-word terms (word_bias, word_dim) col_logp[b, t, c] scores the target word
        itself at column c: Y_c h [c] + its own term, less the log-normaliser over the row's
        current words, so it equals the model's log-probability at the target's own column and
        ranks the other columns by what the word would get there (its term moves with it).

        slot_cols: [V] columns of another table with the same rows: its slots define the
        softmaxes' supports and normalisers while the input sequence still reads the buffers'
        columns (the self-consistent reallocation prices its final columns under the history it
        scored them with, `lightrnn.method.losses.table_column_nll`).
        """
        rows, cols = self.word_row, (self.word_col if slot_cols is None else slot_cols)
        row_hidden, col_hidden, state = self._hidden(tokens, targets, state)
        row_logp = _slot_scores(_full_precision(self.row_head(row_hidden)), self._row_keep(rows, cols))  # [B, T, R]
        col_logits = _full_precision(self.col_head(col_hidden))  # [B, T, C]
        target_rows = rows[targets]
        keep = self._col_keep(target_rows, rows, cols)  # [B, T, C]
        if not self._has_word_terms:
            return row_logp, _slot_scores(col_logits, keep), state
        slots = col_logits + self._row_word_terms(target_rows, col_hidden, (rows, cols))
        peak = _kept_peak(slots, keep)
        normaliser = torch.logsumexp(_masked(slots - peak, keep), dim=-1, keepdim=True)
        own = col_logits + self._word_terms(targets.unsqueeze(-1), col_hidden) - peak  # the target at every column
        col_logp = torch.where(keep, own - normaliser, own - torch.logaddexp(normaliser, own))
        return row_logp, col_logp, state

    def forward(self, tokens: Tensor, targets: Tensor, state: State | None = None) -> LMOutput:
        """nll [B, T] = CE_row + CE_col of each target, in nats; the state to carry on."""
        row_hidden, col_hidden, state = self._hidden(tokens, targets, state)
        target_rows = self.word_row[targets]  # [B, T]
        row_logits = _masked(_full_precision(self.row_head(row_hidden)), self._row_keep())  # [B, T, R]
        col_logits = _full_precision(self.col_head(col_hidden))  # [B, T, C]
        if self._has_word_terms:
            col_logits = col_logits + self._row_word_terms(target_rows, col_hidden)
        col_logits = _masked(col_logits, self._col_keep(target_rows))  # the row's filled slots only
        row_nll = F.cross_entropy(row_logits.transpose(1, 2), target_rows, reduction="none")
        col_nll = F.cross_entropy(col_logits.transpose(1, 2), self.word_col[targets], reduction="none")
        return LMOutput(row_nll + col_nll, state)  # [B, T]

    @torch.no_grad()
    def log_prob(
        self, tokens: Tensor, state: State | None = None, max_candidates: int = LOG_PROB_CANDIDATES
    ) -> tuple[Tensor, State]:
        """The exact next-word distribution at every position: log P [B, T, V] and the state.

        For every position the column step is run from the true state for all R candidate rows
        at once, so log P(w) = row_logp[r(w)] + col_logp[r(w), c(w)], both softmaxes over the
        filled entries only: it sums to 1 over the V words at every V, empty slots or not.
        The state returned is the one `forward` returns for the same tokens.

        Memory: the float32 output (4 * B * T * V bytes) plus, per chunk of t positions (t * B * R
        <= max_candidates, at least one position), about 4 * t * B * (R * ((4L + 1) H + 2C) + 3V)
        bytes of temporaries (the candidates' LSTM states and gates, column logits and
        log-softmax, the gathered [B, t, V] terms); chunking changes no value.
        """
        if tokens.dim() != 2:
            raise ValueError(f"LightRNN.log_prob: tokens must be [B, T], got {tuple(tokens.shape)}")
        if max_candidates < 1:
            raise ValueError(f"LightRNN.log_prob: max_candidates must be >= 1, got {max_candidates}")
        batch_size, steps = tokens.shape
        if state is None:
            state = self.init_state(batch_size)
        row_in = self.row_embedding(self.word_row[tokens])  # [B, T, E]
        col_in = self._column_input(tokens)  # [B, T, E]
        # nn.LSTM exposes the full per-layer (h, c) only at the end of a call, and the candidate
        # column steps start from the state after every x_c(w_t), so walk the words one at a time
        # (two half-steps per call). This is the evaluation-only path; training never loops.
        hidden_after_col, cell_after_col, row_outputs = [], [], []
        for t in range(steps):
            pair = torch.stack((row_in[:, t], col_in[:, t]), dim=1)  # [B, 2, E]
            output, state = run_lstm(self.lstm, self.drop(pair), state)
            row_outputs.append(output[:, 1])  # [B, H]
            hidden_after_col.append(state[0])  # [L, B, H]
            cell_after_col.append(state[1])
        row_logits = _full_precision(self.row_head(self.drop(torch.stack(row_outputs, dim=1))))  # [B, T, R]
        row_logp = F.log_softmax(_masked(row_logits, self._row_keep()), dim=-1)  # [B, T, R]

        rows = self._num_rows
        word_slot = self.word_row * self._num_cols + self.word_col  # [V]
        word_logp = row_logp.new_empty(batch_size, steps, self.vocab_size)  # [B, T, V]
        chunk = max(1, max_candidates // (batch_size * rows))  # positions per candidate LSTM call
        for start in range(0, steps, chunk):
            stop = min(steps, start + chunk)
            width = stop - start
            # Candidate states: [L, B, t, H] -> [L, B * t * R, H], every position repeated R times.
            h = torch.stack(hidden_after_col[start:stop], dim=2).unsqueeze(3).expand(-1, -1, -1, rows, -1)
            c = torch.stack(cell_after_col[start:stop], dim=2).unsqueeze(3).expand(-1, -1, -1, rows, -1)
            h = h.reshape(self.num_layers, -1, self.hidden_dim).contiguous()
            c = c.reshape(self.num_layers, -1, self.hidden_dim).contiguous()
            candidates = self.row_embedding.weight.unsqueeze(0).expand(batch_size * width, -1, -1)  # [B*t, R, E]
            candidates = candidates.reshape(-1, 1, self.embed_dim)  # [B*t*R, 1, E]
            col_output, _ = run_lstm(self.lstm, self.drop(candidates), (h, c))  # [B*t*R, 1, H]
            col_hidden = self.drop(col_output[:, 0])  # [B*t*R, H]
            col_logits = _full_precision(self.col_head(col_hidden))  # [B*t*R, C]
            candidate_rows = torch.arange(rows, device=col_hidden.device).repeat(batch_size * width)
            if self._has_word_terms:
                col_logits = col_logits + self._row_word_terms(candidate_rows, col_hidden)
            col_logp = F.log_softmax(_masked(col_logits, self._col_keep(candidate_rows)), dim=-1)
            col_logp = col_logp.reshape(batch_size, width, rows * self._num_cols)  # [B, t, R*C]
            # log P(w) for every word id: (r(w)) from row_logp, (r(w), c(w)) from col_logp.
            word_logp[:, start:stop] = row_logp[:, start:stop, self.word_row] + col_logp[:, :, word_slot]
        return word_logp, state  # [B, T, V]

    # ----- size ----------------------------------------------------------------------------

    @classmethod
    def param_count(
        cls, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, **model_specific
    ) -> int:
        """R*E + C*E (input vectors) + LSTM + (H + 1) * (R + C) (heads with bias), R = C = ceil(sqrt V);
        plus R C (word_bias), k (R C + H) (word_dim = k), k (V + E) (word_input_dim = k): the output
        terms are stored by slot, R C >= V of them (the R C - V empty slots' values are never read)."""
        side = WordTable.square_size(vocab_size)
        embeddings = 2 * side * embed_dim
        heads = 2 * (hidden_dim + 1) * side
        words = side * side if model_specific.get("word_bias") else 0
        words += int(model_specific.get("word_dim") or 0) * (side * side + hidden_dim)
        words += int(model_specific.get("word_input_dim") or 0) * (vocab_size + embed_dim)
        return embeddings + lstm_param_count(embed_dim, hidden_dim, num_layers) + heads + words

    def between_rounds(self, batches, **options) -> dict[str, float]:
        """Bootstrap word reallocation (docs/PAPER.md): see `lightrnn.method.reallocate.reallocate_model`."""
        from lightrnn.method.reallocate import reallocate_model

        options.setdefault("columns", self.realloc_columns)
        options.setdefault("alternate", self.realloc_alternate)
        return reallocate_model(self, batches, **options)

    # ----- generation ----------------------------------------------------------------------

    @torch.no_grad()
    def generate_step(
        self, token: Tensor, state: State | None = None, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State]:
        """Read `token` [B] and sample the next word [B] through the 2-D factorisation.

        From the state after x_c of the previous word: feed x_r(token), x_c(token); the row head
        gives P_r, a row r is drawn; one LSTM step on x_r(r) gives P_c(. | r), a column c is drawn;
        the word is the one in slot (r, c). Never a V-way softmax: R + C logits per word. Both
        draws are over the softmaxes' supports in `log_prob` (rows with a word, then the filled
        slots of the drawn row), so at temperature 1 without top_k a word is drawn with exactly
        its `log_prob` probability, at every V. Returns (words [B], the state after x_c(token)),
        which is what `forward` carries, so the next call continues from it.
        """
        from lightrnn.core.sampling import sample_logits

        if state is None:
            state = self.init_state(token.shape[0])
        pair = torch.stack((self.row_embedding(self.word_row[token]), self._column_input(token)), dim=1)
        output, state = run_lstm(self.lstm, self.drop(pair), state)  # [B, 2, H]
        row_logits = self.row_head(self.drop(output[:, 1]))  # [B, R]
        row = sample_logits(row_logits, temperature, top_k, generator, allowed=self._row_keep())  # [B]
        col_output, _ = run_lstm(self.lstm, self.drop(self.row_embedding(row).unsqueeze(1)), state)  # [B, 1, H]
        col_hidden = self.drop(col_output[:, 0])  # [B, H]
        col_logits = self.col_head(col_hidden)  # [B, C]
        if self._has_word_terms:
            col_logits = col_logits + self._row_word_terms(row, col_hidden)
        col = sample_logits(col_logits, temperature, top_k, generator, allowed=self._col_keep(row))  # [B]
        return self._slot_words()[0][row, col], state
