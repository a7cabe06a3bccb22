"""A corpus with a known entropy rate: a first-order Markov chain with Zipfian successors.

Every word has `successors` distinct next words, drawn at random, with probabilities
p_k proportional to 1 / k^zipf_exponent (k = 1..K). Since every state has the same successor
distribution up to which words they are, the entropy rate is exactly the entropy of that Zipf
law, H = -sum_k p_k log p_k, whatever the stationary distribution; exp(H) is the perplexity
floor no model can beat in expectation. The chain is made irreducible by giving every word
w the successor (w + 1) mod V, and one word is the end-of-sentence token so the stream splits
into sentences like a real encoded corpus.

Writes an encoded data dir (the format `lightrnn data encode` writes): vocab.tsv (frequency
order over train, ids = line numbers), {train,valid,test}.npy (int32) and meta.json, which also
holds the entropy rate, exp(H) and the true chain's perplexity on each split ("oracle_ppl").

    python -m lightrnn.data.markov OUT_DIR [--vocab-size 200 --successors 4 --train-tokens 200000]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from lightrnn.data import encoded

EOS = "</s>"


def zipf_probabilities(successors: int, exponent: float) -> np.ndarray:
    """[K] p_k proportional to 1 / k^exponent."""
    weights = 1.0 / np.arange(1, successors + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def entropy_rate(successors: int, exponent: float) -> float:
    """H in nats per token of the chain (the entropy of its Zipf successor law)."""
    probabilities = zipf_probabilities(successors, exponent)
    return float(-(probabilities * np.log(probabilities)).sum())


def _transitions(vocab_size: int, successors: int, rng: np.random.Generator) -> np.ndarray:
    """[V, K] successor ids, distinct per row, column 0..K-1 in Zipf rank order."""
    table = np.empty((vocab_size, successors), dtype=np.int64)
    for word in range(vocab_size):
        forced = (word + 1) % vocab_size
        others = rng.choice(np.delete(np.arange(vocab_size), forced), size=successors - 1, replace=False)
        row = np.concatenate(([forced], others))
        table[word] = rng.permutation(row)  # the forced successor gets a random Zipf rank
    return table


def _sample(table: np.ndarray, probabilities: np.ndarray, start: int, length: int, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.choice(len(probabilities), size=length, p=probabilities)
    stream = np.empty(length, dtype=np.int64)
    word = start
    for index in range(length):  # sequential by nature; ~1 s per million tokens
        word = table[word, ranks[index]]
        stream[index] = word
    return stream


def _oracle_ppl(stream: np.ndarray, table: np.ndarray, probabilities: np.ndarray) -> float:
    """exp(mean -log P(w_{t+1} | w_t)) of the true chain over the stream's N - 1 predictions."""
    previous, following = stream[:-1], stream[1:]
    rank = np.argmax(table[previous] == following[:, None], axis=1)
    return float(math.exp(-np.log(probabilities[rank]).mean()))


def generate_markov_corpus(
    out_dir: str | Path,
    vocab_size: int = 200,
    successors: int = 4,
    zipf_exponent: float = 1.0,
    train_tokens: int = 200_000,
    valid_tokens: int = 20_000,
    test_tokens: int = 20_000,
    seed: int = 0,
) -> dict[str, object]:
    """Write the encoded data dir and return its meta (also written to meta.json)."""
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be >= 3, got {vocab_size}")
    if not 2 <= successors < vocab_size:
        raise ValueError(f"successors must be in [2, vocab_size), got {successors} with vocab_size {vocab_size}")
    if zipf_exponent < 0:
        raise ValueError(f"zipf_exponent must be >= 0, got {zipf_exponent}")
    if min(train_tokens, valid_tokens, test_tokens) < 2:
        raise ValueError("every split needs at least 2 tokens")
    rng = np.random.default_rng(seed)
    table = _transitions(vocab_size, successors, rng)
    probabilities = zipf_probabilities(successors, zipf_exponent)
    lengths = {"train": train_tokens, "valid": valid_tokens, "test": test_tokens}
    burn_in = _sample(table, probabilities, 0, 1000, rng)  # start the splits near stationarity
    word = int(burn_in[-1])
    raw: dict[str, np.ndarray] = {}
    for split, length in lengths.items():
        raw[split] = _sample(table, probabilities, word, length, rng)
        word = int(raw[split][-1])

    # Relabel so ids follow train frequency (id 0 the most frequent), ties by original id.
    counts = np.bincount(raw["train"], minlength=vocab_size)
    order = np.lexsort((np.arange(vocab_size), -counts))  # new id -> original id
    new_id = np.empty(vocab_size, dtype=np.int64)
    new_id[order] = np.arange(vocab_size)
    eos_original = vocab_size - 1  # any fixed state; it becomes "</s>"
    names = [EOS if original == eos_original else f"w{original}" for original in order]

    out_dir = Path(out_dir)

    rate = entropy_rate(successors, zipf_exponent)
    meta: dict[str, object] = {
        "dataset": out_dir.name,
        "vocab_rule": f"markov chain: V={vocab_size}, K={successors}, zipf exponent {zipf_exponent}, seed {seed}",
        "unk_token": None,
        "eos_token": EOS,
        "vocab_size": vocab_size,
        "tokens": {split: int(length) for split, length in lengths.items()},
        "oov_rate": {split: 0.0 for split in lengths},
        "entropy_rate_nats": rate,
        "ppl_floor": math.exp(rate),
        "oracle_ppl": {split: _oracle_ppl(stream, table, probabilities) for split, stream in raw.items()},
    }
    # Written by the encoded folder's one owner (staged, meta.json checked and swapped in last).
    with encoded.writing(out_dir) as staging:
        encoded.write_vocab([(name, int(counts[original])) for name, original in zip(names, order)],
                            staging / encoded.VOCAB)
        for split, stream in raw.items():
            encoded.write_split(staging / f"{split}.npy", new_id[stream])
        encoded.write_meta(staging / encoded.META, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightrnn.data.markov", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--vocab-size", type=int, default=200)
    parser.add_argument("--successors", type=int, default=4)
    parser.add_argument("--zipf-exponent", type=float, default=1.0)
    parser.add_argument("--train-tokens", type=int, default=200_000)
    parser.add_argument("--valid-tokens", type=int, default=20_000)
    parser.add_argument("--test-tokens", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    meta = generate_markov_corpus(
        args.out_dir, args.vocab_size, args.successors, args.zipf_exponent,
        args.train_tokens, args.valid_tokens, args.test_tokens, args.seed,
    )
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
