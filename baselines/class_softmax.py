"""Class-based softmax LSTM language model (Mikolov et al. 2011, "Extensions of RNN LM").

Words are binned into K classes by frequency so that every class holds about 1/K of the
probability mass; P(w | h) = P(class(w) | h) * P(w | class(w), h). Training evaluates the K-way
class softmax and, per token, only the softmax over the words of its target's class: an
expected cost of about (K + V/K) * H per token instead of V * H.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._common import (
    LSTMTrunk,
    check_dropout,
    check_int,
    check_sizes,
    check_targets,
    check_tokens,
    default_num_buckets,
    reject_unknown_options,
    resolve_word_counts,
)
from lightrnn.core.lm import LanguageModel, LMOutput, State

# The model-specific options (config `model_options`) this model accepts.
OPTIONS = ["word_counts", "num_classes", "sparse_embedding"]


def frequency_classes(word_counts: np.ndarray, num_classes: int) -> np.ndarray:
    """Class of every word [V] (int64): frequency binning with equal probability mass per class.

    Words are taken in decreasing count (ties: lower id first); word w goes to class
    floor(K * mass of the words before it / total mass), as in Mikolov et al. (2011). A word
    with more than 1/K of the mass would make that rule skip classes, so the class starts are
    then pushed apart (each class gets at least one word, every class is used, the classes stay
    contiguous in frequency order). Vectorised: no Python loop over words.
    """
    vocab_size = len(word_counts)
    order = np.argsort(-word_counts, kind="stable")  # rank -> word id
    sorted_counts = word_counts[order]
    mass_before = (np.cumsum(sorted_counts) - sorted_counts) / sorted_counts.sum()
    target = np.minimum(np.floor(mass_before * num_classes), num_classes - 1).astype(np.int64)
    classes = np.arange(num_classes)
    starts = np.searchsorted(target, classes, side="left")  # first rank of each class
    # Strictly increasing starts (no empty class) that leave room for the classes after them.
    starts = classes + np.maximum.accumulate(starts - classes)
    starts = np.minimum(starts, vocab_size - num_classes + classes)
    class_of_rank = np.searchsorted(starts, np.arange(vocab_size), side="right") - 1
    class_of_word = np.empty(vocab_size, dtype=np.int64)
    class_of_word[order] = class_of_rank
    return class_of_word


class ClassSoftmaxLM(LanguageModel):
    """Embedding -> LSTM -> class softmax (K-way) x within-class word softmax.

    Args:
        vocab_size, embed_dim, hidden_dim, num_layers, dropout: the shared contract.
        word_counts: counts in id order [V], used to bin words into classes; None means
            Zipfian counts by id rank (see `baselines._common.resolve_word_counts`).
        num_classes: K, default ceil(sqrt(V)); 1 <= K <= V. K = 1 is exactly a full softmax.
        sparse_embedding: see `baselines._common.LSTMTrunk`.

    The word output layer `word_decoder` ([V, H] weight, [V] bias) stores its rows in
    class-sorted order (`sorted_words[i]` is the word id of row i), so each class is a
    contiguous block `class_start[k]:class_start[k + 1]` that training slices without a gather.
    The class layout is kept in buffers, so a checkpoint carries it.
    """

    options = tuple(OPTIONS)

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        word_counts: np.ndarray | None = None,
        num_classes: int | None = None,
        sparse_embedding: bool = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        reject_unknown_options("class_softmax", unknown, OPTIONS)
        num_classes = self._check_options(
            vocab_size, embed_dim, hidden_dim, num_layers, num_classes
        )
        self.vocab_size, self.hidden_dim, self.num_layers = vocab_size, hidden_dim, num_layers
        self.num_classes = num_classes
        counts = resolve_word_counts(vocab_size, word_counts)
        self.trunk = LSTMTrunk(
            vocab_size, embed_dim, hidden_dim, num_layers, check_dropout(dropout), sparse_embedding
        )
        self.class_decoder = nn.Linear(hidden_dim, num_classes)
        self.word_decoder = nn.Linear(hidden_dim, vocab_size)  # rows in class-sorted order
        nn.init.zeros_(self.class_decoder.bias)
        nn.init.zeros_(self.word_decoder.bias)

        class_of_word = frequency_classes(counts, num_classes)
        sorted_words = np.argsort(class_of_word, kind="stable")  # row -> word id
        word_row = np.empty(vocab_size, dtype=np.int64)
        word_row[sorted_words] = np.arange(vocab_size)
        class_sizes = np.bincount(class_of_word, minlength=num_classes)
        class_start = np.concatenate([[0], np.cumsum(class_sizes)])
        self.register_buffer("word_class", torch.as_tensor(class_of_word))  # [V]
        self.register_buffer("word_row", torch.as_tensor(word_row))  # [V] row in word_decoder
        self.register_buffer("sorted_words", torch.as_tensor(sorted_words))  # [V]
        self.register_buffer("row_class", torch.as_tensor(class_of_word[sorted_words]))  # [V]
        self.register_buffer("class_start", torch.as_tensor(class_start))  # [K + 1]

    def check_state(self) -> None:
        """The class layout in the buffers (a loaded file may hold anything): word_class in [0, K),
        sorted_words a permutation grouping the classes in order, word_row its inverse, row_class
        the class of each row, class_start the blocks' bounds. Any other layout indexes out of
        range or samples words of the wrong class."""
        vocab, classes = self.vocab_size, self.num_classes
        word_class, word_row, sorted_words = self.word_class, self.word_row, self.sorted_words
        row_class, class_start = self.row_class, self.class_start
        for name, tensor, size in (("word_class", word_class, vocab), ("word_row", word_row, vocab),
                                   ("sorted_words", sorted_words, vocab), ("row_class", row_class, vocab),
                                   ("class_start", class_start, classes + 1)):
            if tensor.dim() != 1 or tensor.numel() != size or tensor.is_floating_point() or tensor.is_complex():
                raise ValueError(f"class softmax buffer {name}: expected {size} integers, got shape "
                                 f"{tuple(tensor.shape)} {tensor.dtype}")
        if bool(((word_class < 0) | (word_class >= classes)).any()):
            raise ValueError(f"class softmax buffer word_class: a class outside [0, {classes})")
        ids = torch.arange(vocab, device=sorted_words.device)
        if not torch.equal(torch.sort(sorted_words).values, ids) or not torch.equal(word_row[sorted_words], ids):
            raise ValueError("class softmax buffers sorted_words / word_row: not a permutation and its inverse")
        if not torch.equal(row_class, word_class[sorted_words]) or bool((row_class[1:] < row_class[:-1]).any()):
            raise ValueError("class softmax buffer row_class: not the classes of the rows in class order")
        sizes = torch.bincount(word_class, minlength=classes)
        expected = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
        if not torch.equal(class_start, expected):
            raise ValueError("class softmax buffer class_start: not the bounds of the class blocks")

    @staticmethod
    def _check_options(
        vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, num_classes: Any
    ) -> int:
        check_sizes(vocab_size, embed_dim, hidden_dim, num_layers)
        if num_classes is None:
            return default_num_buckets(vocab_size)
        num_classes = check_int("num_classes", num_classes, 1)
        if num_classes > vocab_size:
            raise ValueError(
                f"num_classes must be at most vocab_size={vocab_size}, got {num_classes}"
            )
        return num_classes

    def forward(self, tokens: Tensor, targets: Tensor, state: State | None = None) -> LMOutput:
        """Per-token NLL [B, T] in nats; only the target's class block of the word layer is used."""
        check_targets(tokens, targets)
        hidden, state = self.trunk(tokens, state)
        hidden = hidden.flatten(0, 1)  # [N, H], N = B * T
        target = targets.flatten()  # [N]
        target_class = self.word_class[target]  # [N]
        class_logp = F.log_softmax(self.class_decoder(hidden).float(), dim=-1)  # [N, K]
        class_nll = -class_logp.gather(1, target_class[:, None]).squeeze(1)  # [N]

        # The target's score and its class's normaliser, both from the same [n_k, |k|] score block
        # in the same dtype: under autocast the block is bf16, and a target score taken elsewhere
        # in float32 could exceed the bf16 log-sum-exp, giving a (slightly) negative nll. Tokens
        # are sorted by class, one matmul per class present in the batch (at most K, never a loop
        # per token), each over a contiguous weight block. `split` (not one slice per class) so
        # that backward assembles the weight gradient once, not one zero-filled [V, H] per class.
        by_class = torch.argsort(target_class)
        tokens_per_class = torch.bincount(target_class, minlength=self.num_classes).tolist()
        words_per_class = self.class_start.diff().tolist()
        # The target's column inside its class block: its row minus the block's first row.
        target_column = (self.word_row[target] - self.class_start[target_class])[by_class]  # [N] class order
        blocks = zip(
            hidden[by_class].split(tokens_per_class),  # [n_k, H] each
            target_column.split(tokens_per_class),  # [n_k] each
            self.word_decoder.weight.split(words_per_class),  # [|k|, H] each
            self.word_decoder.bias.split(words_per_class),  # [|k|] each
        )
        within = []
        for hidden_k, column_k, weight_k, bias_k in blocks:
            if hidden_k.shape[0] == 0:
                continue
            scores = F.linear(hidden_k, weight_k, bias_k).float()  # [n_k, |k|]
            # logsumexp >= max >= the target's score exactly, so this term is never negative.
            within.append(torch.logsumexp(scores, dim=-1) - scores.gather(1, column_k[:, None]).squeeze(1))
        sorted_within = torch.cat(within)  # [N] in class order
        within_nll = sorted_within.new_empty(target.shape[0]).index_copy(0, by_class, sorted_within)  # [N]

        nll = class_nll + within_nll
        return LMOutput(nll.view_as(targets), state)

    def log_prob(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Exact next-word log-probabilities [B, T, V] (id order): class + within-class terms."""
        check_tokens(tokens)
        hidden, state = self.trunk(tokens, state)  # [B, T, H]
        batch, steps = tokens.shape
        hidden = hidden.flatten(0, 1)  # [N, H]
        class_logp = F.log_softmax(self.class_decoder(hidden).float(), dim=-1)  # [N, K]
        scores = self.word_decoder(hidden).float()  # [N, V], class-sorted rows
        row_class = self.row_class.expand_as(scores)
        # Per-class log-sum-exp, shifted by each class's own max (a global max could underflow
        # a whole class); the shift cancels exactly, so it carries no gradient.
        class_max = scores.new_full(class_logp.shape, float("-inf"))
        class_max = class_max.scatter_reduce(1, row_class, scores.detach(), reduce="amax")
        shifted = torch.exp(scores - class_max.gather(1, row_class))
        class_sum = torch.zeros_like(class_logp).index_add(1, self.row_class, shifted)  # [N, K]
        class_lse = class_max + torch.log(class_sum)
        log_probs = scores - class_lse.gather(1, row_class) + class_logp.gather(1, row_class)
        log_probs = log_probs[:, self.word_row]  # class-sorted rows -> word id order
        return log_probs.view(batch, steps, self.vocab_size), state

    @classmethod
    def param_count(
        cls,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        word_counts: np.ndarray | None = None,
        num_classes: int | None = None,
        sparse_embedding: bool = False,
        **unknown: Any,
    ) -> int:
        """V*E + LSTM + (H*K + K) + (H*V + V); the class layout does not change the count."""
        reject_unknown_options("class_softmax", unknown, OPTIONS)
        num_classes = cls._check_options(vocab_size, embed_dim, hidden_dim, num_layers, num_classes)
        resolve_word_counts(vocab_size, word_counts)  # validated like the constructor does
        return (
            LSTMTrunk.param_count(vocab_size, embed_dim, hidden_dim, num_layers)
            + hidden_dim * num_classes
            + num_classes
            + hidden_dim * vocab_size
            + vocab_size
        )

    @torch.no_grad()
    def generate_step(
        self, token: Tensor, state: State | None = None, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State]:
        """Read `token` [B] and sample the next word [B]: a class from the K-way softmax, then a
        word from the softmax over that class's block of the word layer only; (words, state)."""
        from lightrnn.core.sampling import sample_logits

        hidden, state = self.trunk(token.unsqueeze(1), state)
        hidden = hidden[:, 0]  # [B, H]
        chosen = sample_logits(self.class_decoder(hidden), temperature, top_k, generator)  # [B]
        words = torch.empty_like(chosen)
        for klass in torch.unique(chosen).tolist():  # one block per class drawn, at most K
            rows = (chosen == klass).nonzero().squeeze(1)
            start, stop = int(self.class_start[klass]), int(self.class_start[klass + 1])
            scores = F.linear(hidden[rows], self.word_decoder.weight[start:stop],
                              self.word_decoder.bias[start:stop])  # [n_k, |k|]
            words[rows] = self.sorted_words[start + sample_logits(scores, temperature, top_k, generator)]
        return words, state
