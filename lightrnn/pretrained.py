"""Using a trained model: load a self-contained model file, score new text, generate text.

    import lightrnn
    lm = lightrnn.load("results/smoke/ptb/lightrnn/best.pt")
    scores = lm.score(["the cat sat on the mat", "a second sentence"])
    scores.ppl, scores.sentences[0].log_prob, scores.unknown
    print(lm.generate("the cat", tokens=50, temperature=0.8, top_k=20, seed=0))

A model file is a training checkpoint that carries its vocabulary (`checkpoint.vocab_payload`:
the words, their counts, the unk and eos tokens) beside the config and the weights, LightRNN's
word table included (buffers of its state_dict). `best.pt` and `checkpoint.pt` of every run are
such files; `lightrnn export` writes one from a checkpoint of the older layout (no vocabulary
inside) and its encoded data dir, and `load(path, data=DIR)` reads such a checkpoint directly.

Text is read and tokenised as the corpus was (`lightrnn.core.text`, the reader of prepare and
encode: UTF-8, a leading BOM dropped, lines broken at "\\n" only, words whitespace-separated, one
sentence per line, each ended by the eos token); a word outside the vocabulary becomes the unk
token and is counted. Generation is streamed (`sample_ids` yields each id as it is drawn) and
bounded (`MAX_TOKENS` per call); every model file becomes a model through
`checkpoint.rebuild_model`, which checks it for every model kind.

Scoring is exact: each target's NLL comes from the model's `forward`, which for every model
equals -log_prob of the target under its exact distribution (LightRNN: -log P_r(row) - log
P_c(col | row), the terms `LightRNN.log_prob` sums; tests/test_baselines.py checks nll == -log_prob
for every registered model, tests/test_pretrained.py checks score against LightRNN.log_prob). Two ways
to read the text:
- by sentence (default): each sentence alone, from the state after one eos (how a sentence
  starts in training), so every word and the final eos are scored and a sentence's score does
  not depend on its neighbours. Sentences sorted by length are batched up to eval_batch_size x
  bptt positions per forward call (padded, masked), read in `bptt` windows: calls of the size of
  `lightrnn eval`'s.
- like eval (`like_eval=True`, `--like-eval`): the sentences form one stream (each followed by
  eos) read exactly as `lightrnn.training.evaluate.evaluate` reads an encoded split (`eval_batch_size`
  contiguous rows, state carried across sentences, the first token context only), so the corpus
  perplexity equals `eval`'s on the split encoded from the same text.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from lightrnn.config import TrainConfig
from lightrnn.core.errors import DataError, UsageError
from lightrnn.core.lm import LanguageModel, detach_state
from lightrnn.core.metrics import perplexity
from lightrnn.core.runtime import resolve_device
from lightrnn.core.sampling import check_sampling, check_seed
from lightrnn.core.text import text_lines, words_of
from lightrnn.training.batches import lm_batches, load_vocab
from lightrnn.training.checkpoint import (data_vocab_payload, load_checkpoint, rebuild_model, save_model,
                                         vocab_from_payload)


@dataclass
class SentenceScore:
    """One sentence: its line number (from 1; the index + 1 for a list), the tokens predicted
    (its words and its eos), the log-probability of those tokens (nats), their perplexity, and
    how many of its words were outside the vocabulary."""

    line: int
    tokens: int
    log_prob: float
    ppl: float
    unknown: int


@dataclass
class Scores:
    """A text's scores: per sentence, and over the whole text (nll_sum in nats, tokens predicted,
    ppl = exp(nll_sum / tokens), unknown words mapped to unk, words read)."""

    sentences: list[SentenceScore]
    nll_sum: float
    tokens: int
    ppl: float
    unknown: int
    words: int
    tokens_per_s: float


class TrainedModel:
    """A trained language model with its vocabulary; see the module docstring.

    Attributes: model (the `LanguageModel`, in eval mode), config (`TrainConfig`), words (id ->
    word), word_to_id, unk_id / eos_id (None when the vocabulary has none), dataset, device, path.
    """

    def __init__(self, model: LanguageModel, config: TrainConfig, words: list[str], counts: np.ndarray,
                 unk_token: str | None, eos_token: str | None, dataset: str | None, path: Path) -> None:
        self.model, self.config, self.words, self.counts = model.eval(), config, words, counts
        self.word_to_id = {word: index for index, word in enumerate(words)}
        self.unk_id = self.word_to_id.get(unk_token) if unk_token is not None else None
        self.eos_id = self.word_to_id.get(eos_token) if eos_token is not None else None
        self.dataset, self.path = dataset, path
        self.device = next(model.parameters()).device
        if self.eos_id is None:
            raise DataError(f"{path}: the vocabulary has no end-of-sentence token; it cannot read sentences")

    def __repr__(self) -> str:
        return (f"TrainedModel({self.config.model}, {len(self.words):,} words, trained on {self.dataset}, "
                f"{self.path})")

    # ----- text -> ids ---------------------------------------------------------------------

    def encode(self, words: list[str], where: str = "the text") -> tuple[list[int], int]:
        """Ids of `words` (unknown -> unk) and how many were unknown; ValueError without an unk token."""
        lookup = self.word_to_id.get
        ids = [lookup(word, -1) for word in words]
        unknown = ids.count(-1)
        if unknown:
            if self.unk_id is None:
                missing = next(word for word, index in zip(words, ids) if index < 0)
                raise DataError(f"{where}: the word {missing!r} is not in the model's vocabulary, which has no "
                                f"unk token to map it to; use only words of the vocabulary")
            ids = [self.unk_id if index < 0 else index for index in ids]
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces, a line break after each eos."""
        parts: list[str] = []
        for index in ids:
            parts.append("\n" if index == self.eos_id else self.words[index] + " ")
        return "".join(parts).replace(" \n", "\n")

    # ----- scoring ---------------------------------------------------------------------------

    def score(self, sentences: Iterable[str], batch_size: int | None = None, like_eval: bool = False,
              where: str = "the text", skip_blank: bool = False) -> Scores:
        """Exact log-probability and perplexity of each sentence and of the whole text.

        sentences: one sentence per string (a line of raw text; words are split as the corpus was).
        A blank sentence is an error, or skipped (numbered lines keep their numbers) with
        skip_blank=True. Each sentence is scored alone, from the state after one eos (what starts a
        sentence in training), so its score does not depend on the other sentences or the batch;
        like_eval=True reads the sentences as one stream, as `lightrnn eval` reads a split.
        batch_size: sentences (rows of the stream) per batch (default: the run's eval_batch_size).
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        batch_size = batch_size or self.config.eval_batch_size
        ids: list[int] = [self.eos_id]  # the first is the start context of the sentence mode only
        lines: list[int] = []
        lengths: list[int] = []
        unknown_per: list[int] = []
        for number, sentence in enumerate(sentences, start=1):
            words = words_of(sentence)
            if not words:
                if skip_blank:
                    continue
                raise ValueError(f"{where}: sentence {number} is empty; pass sentences with at least one word")
            sentence_ids, unknown = self.encode(words, f"{where}, line {number}")
            ids.extend(sentence_ids)
            ids.append(self.eos_id)
            lines.append(number)
            lengths.append(len(words) + 1)
            unknown_per.append(unknown)
        if not lines:
            raise ValueError(f"{where} holds no sentence (only blank lines); pass text with one sentence per line")
        if like_eval:
            stream = np.asarray(ids[1:], dtype=np.int64)  # no start context: eval's layout
            sentence_nll, sentence_tokens, seconds = self._stream_nll(stream, lengths, batch_size)
        else:
            sentence_nll, sentence_tokens, seconds = self._sentence_nll(ids[1:], lengths, batch_size)
        results = [
            SentenceScore(line=line, tokens=int(count), log_prob=-float(value),
                          ppl=perplexity(float(value), int(count)) if count else math.nan, unknown=unknown)
            for line, count, value, unknown in zip(lines, sentence_tokens, sentence_nll, unknown_per)
        ]
        total, tokens = float(sentence_nll.sum()), int(sentence_tokens.sum())
        return Scores(results, total, tokens, perplexity(total, tokens), sum(unknown_per),
                      sum(lengths) - len(lines), tokens / seconds if seconds > 0 else float("inf"))

    @torch.no_grad()
    def _sentence_nll(self, ids: list[int], lengths: list[int], batch_size: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Each sentence alone, from the state after one eos: (NLL [S], tokens [S], seconds).

        Sentences sorted by length are padded (masked) to the longest of their batch and read in
        `bptt` windows with the state carried; a batch holds `batch_size` sentences, or more when
        they are short, up to batch_size x bptt positions per forward call: the size of `lightrnn
        eval`'s calls, and of its memory. A sentence's score never depends on its neighbours.
        """
        device, bptt, eos = self.device, self.config.bptt, self.eos_id
        bounds = np.cumsum([0, *lengths])
        order = np.argsort(-np.asarray(lengths), kind="stable")
        nll = np.zeros(len(lengths), dtype=np.float64)
        start = time.perf_counter()
        budget = batch_size * bptt  # positions per forward call, as eval's batch_size x bptt windows
        first = 0
        while first < len(order):
            longest = int(lengths[order[first]])  # sorted: the batch's first sentence is its longest
            rows = max(batch_size, budget // min(longest, bptt))  # short sentences: more of them per call
            chosen = order[first : first + rows]
            first += rows
            window = np.zeros((len(chosen), longest + 1), dtype=np.int64)  # [B, L + 1]: eos, words, eos, padding
            window[:, 0] = eos
            for row, index in enumerate(chosen):
                window[row, 1 : lengths[index] + 1] = ids[bounds[index] : bounds[index + 1]]
            window_tensor = torch.from_numpy(window).to(device)
            real = torch.arange(longest, device=device)[None, :] < torch.tensor(
                [lengths[index] for index in chosen], device=device)[:, None]  # [B, L]
            total = torch.zeros(len(chosen), dtype=torch.float64, device=device)
            state = None
            for offset in range(0, longest, bptt):
                stop = min(offset + bptt, longest)
                tokens, targets = window_tensor[:, offset:stop], window_tensor[:, offset + 1 : stop + 1]  # [B, T]
                output = self.model(tokens, targets, state)
                total += output.nll.double().masked_fill(~real[:, offset : offset + bptt], 0.0).sum(dim=1)
                state = detach_state(output.state)
            nll[chosen] = total.cpu().numpy()
        seconds = time.perf_counter() - start
        if not np.isfinite(nll).all():
            raise FloatingPointError(f"{self.path}: the model gave a non-finite log-probability; it has diverged")
        return nll, np.asarray(lengths, dtype=np.int64), seconds

    def _stream_nll(self, stream: np.ndarray, lengths: list[int], batch_size: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The sentences as one stream read as `lightrnn eval` reads a split: (NLL [S], tokens [S], seconds);
        the first sentence's first word is context only."""
        nll, seconds = self._token_nll(stream, batch_size)  # [N], nll[0] = 0
        sentence_of = np.repeat(np.arange(len(lengths)), lengths)
        predicted = np.ones(len(stream), dtype=np.int64)
        predicted[0] = 0
        sentence_nll = np.bincount(sentence_of, weights=nll, minlength=len(lengths))
        sentence_tokens = np.bincount(sentence_of, weights=predicted, minlength=len(lengths)).astype(np.int64)
        return sentence_nll, sentence_tokens, seconds

    @torch.no_grad()
    def _token_nll(self, stream: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
        """NLL [N] (float64) of every token of `stream` given the ones before it, 0 for the first;
        the batches of `lightrnn.training.evaluate.evaluate` (exact layout, state carried, float32)."""
        device = self.device
        nll = torch.zeros(len(stream), dtype=torch.float64, device=device)
        # The same layout over the positions 0..N-1 says where each target of a batch sits.
        positions = lm_batches(np.arange(len(stream)), batch_size, self.config.bptt, exact=True, device=device)
        state = None
        start = time.perf_counter()
        for batch, where in zip(lm_batches(stream, batch_size, self.config.bptt, exact=True, device=device), positions):
            output = self.model(batch.tokens, batch.targets, state)
            values = output.nll.double()  # [B, T]
            if batch.mask is not None:
                nll[where.targets[batch.mask]] = values[batch.mask]
            else:
                nll[where.targets.flatten()] = values.flatten()
            state = detach_state(output.state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        result = nll.cpu().numpy()
        if not np.isfinite(result).all():
            raise FloatingPointError(f"{self.path}: the model gave a non-finite log-probability; it has diverged")
        return result, seconds

    # ----- generation ------------------------------------------------------------------------

    def prompt_ids(self, prompt: str | None) -> tuple[list[int], int]:
        """(ids, unknown words) of a prompt, read by the one text reader (`lightrnn.core.text`): a line
        break ends a sentence (its eos is in the context), the last line is the one continued."""
        if prompt is None:
            return [], 0
        lines = [words_of(line) for line in text_lines(prompt, "--prompt")]
        if prompt.endswith("\n"):
            lines.append([])  # the prompt's last sentence is complete: generation starts a new one
        ids: list[int] = []
        unknown = words = 0
        for number, line in enumerate(lines):
            line_ids, line_unknown = self.encode(line, "--prompt")
            ids.extend(line_ids)
            unknown, words = unknown + line_unknown, words + len(line)
            if number < len(lines) - 1 and line:
                ids.append(self.eos_id)  # a blank line is not a sentence: no eos of its own
        if not words:
            raise ValueError("--prompt is empty; pass at least one word, or leave --prompt out to start a sentence")
        if unknown == words:
            raise ValueError(f"--prompt: none of its {words} word(s) is in the model's vocabulary (all would "
                             f"be {self.words[self.unk_id]}); use words the model was trained on")
        return ids, unknown

    def sample_ids(self, prompt_ids: list[int], tokens: int = 50, temperature: float = 1.0,
                   top_k: int | None = None, seed: int = 0) -> Iterator[int]:
        """The `tokens` sampled ids after `prompt_ids`, one at a time as they are drawn (nothing is
        kept: `lightrnn generate` prints them as they come). Options are checked before the first."""
        check_tokens(tokens)
        check_sampling(temperature, top_k)
        check_seed(seed)
        return self._draw(prompt_ids, tokens, temperature, top_k, seed)

    @torch.no_grad()
    def _draw(self, prompt_ids: list[int], tokens: int, temperature: float, top_k: int | None,
              seed: int) -> Iterator[int]:
        context = torch.tensor([self.eos_id, *prompt_ids], dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        state = None
        if len(context) > 1:  # read the prompt in one call; the last word is fed by the first step
            state = detach_state(self.model(context[None, :-1], context[None, 1:], None).state)
        token = context[-1:]
        for _ in range(tokens):
            token, state = self.model.generate_step(token, state, temperature, top_k, generator)
            yield int(token[0])

    def generate_ids(self, prompt: str | None = None, tokens: int = 50, temperature: float = 1.0,
                     top_k: int | None = None, seed: int = 0) -> tuple[list[int], list[int], int]:
        """(prompt ids, `tokens` sampled ids, unknown prompt words); see `generate`."""
        check_tokens(tokens)
        check_sampling(temperature, top_k)
        check_seed(seed)
        prompt_ids, unknown = self.prompt_ids(prompt)
        return prompt_ids, list(self.sample_ids(prompt_ids, tokens, temperature, top_k, seed)), unknown

    def generate(self, prompt: str | None = None, tokens: int = 50, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0) -> str:
        """The prompt (unknown words shown as unk) followed by `tokens` sampled tokens, eos as a line
        break. Each model samples through its own factorisation (`generate_step`); the same seed
        on the same device gives the same text. Without a prompt the text starts a sentence."""
        prompt_ids, sampled, _ = self.generate_ids(prompt, tokens, temperature, top_k, seed)
        return self.decode(prompt_ids + sampled)

    def text_pieces(self, ids: Iterable[int]) -> Iterator[str]:
        """The text of `ids` piece by piece, as `lightrnn generate` prints it: words joined by single
        spaces, each eos a line break, and a final line break (what `decode` gives, without its
        trailing spaces)."""
        after_word = False
        for index in ids:
            if index == self.eos_id:
                yield "\n"
                after_word = False
            else:
                yield (" " if after_word else "") + self.words[index]
                after_word = True
        if after_word:
            yield "\n"


MAX_TOKENS = 1_000_000  # per call of generate: minutes of sampling on a CPU; run it again for more


def check_tokens(tokens: int) -> int:
    """ValueError naming --tokens unless it is an integer in [1, MAX_TOKENS]."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS:
        raise ValueError(f"--tokens must be an integer from 1 to {MAX_TOKENS:,}, got {tokens!r}; for more text, "
                         f"run it again with another --seed")
    return tokens


def load(path: str | os.PathLike, data: str | os.PathLike | None = None, device: str = "auto") -> TrainedModel:
    """A trained model from a model file (best.pt, checkpoint.pt, or `lightrnn export`'s output).

    data: the encoded data dir, needed only for a checkpoint of the older layout (no vocabulary
    inside); without it such a file gets an error saying how to export it.
    """
    path = Path(path)
    payload = load_checkpoint(path, map_location="cpu")
    vocab = payload.get("vocab")
    if vocab is None:
        if data is None:
            raise DataError(
                f"{path} holds no vocabulary (a checkpoint of the older layout); run `lightrnn export --checkpoint "
                f"{path} --data DATA_DIR --out model.pt` once and use model.pt, or pass --data DATA_DIR"
            )
        vocab = _data_vocab(path, payload, data)
    words, counts, unk, eos = vocab_from_payload(vocab)
    model, config = _rebuild(path, payload, counts, resolve_device(device))
    return TrainedModel(model, config, words, counts, unk, eos, payload.get("dataset"), path)


def export(checkpoint: str | os.PathLike, data: str | os.PathLike | None, out: str | os.PathLike) -> Path:
    """Write a self-contained model file `out` from `checkpoint` (+ its encoded data dir `data`
    when the checkpoint has no vocabulary inside); returns `out`. The model is rebuilt and its
    weights loaded first, so a file that would not load is refused before anything is written."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; pass a file path such as {out / 'model.pt'}")
    payload = load_checkpoint(checkpoint, map_location="cpu")
    vocab = payload.get("vocab")
    if data is not None:
        vocab = _data_vocab(checkpoint, payload, data)
    elif vocab is None:
        raise UsageError(f"{checkpoint} holds no vocabulary; pass --data, the encoded data dir it was trained on")
    _rebuild(checkpoint, payload, vocab_from_payload(vocab)[1], torch.device("cpu"))
    return save_model(out, payload, vocab)


def _data_vocab(path: Path, payload: dict, data: str | os.PathLike) -> dict:
    words, counts = load_vocab(data)
    if len(words) != payload["vocab_size"]:
        raise DataError(f"--data {data} has {len(words)} words but {path} was trained on {payload['vocab_size']}; "
                        f"pass the data dir the model was trained on")
    return data_vocab_payload(data, words, counts)


def _rebuild(path: Path, payload: dict, counts: np.ndarray, device: torch.device) -> tuple[LanguageModel, TrainConfig]:
    """The model a checkpoint's config describes, with its weights (`checkpoint.rebuild_model`)."""
    if len(counts) != payload["vocab_size"]:
        raise DataError(f"{path}: its vocabulary has {len(counts)} words but its model {payload['vocab_size']}; "
                        f"export it again with --data")
    return rebuild_model(payload, path, counts, device)
