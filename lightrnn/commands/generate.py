"""`lightrnn generate`: sample text from a trained model, each model through its own factorisation."""

from __future__ import annotations

import argparse
import itertools
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="sample text from a trained model",
        description="Sample N tokens from a trained model file, after an optional prompt (eos is printed as a "
        "line break). LightRNN draws a row, then a column given that row; the class softmax a class, then a "
        "word; the adaptive softmax a head slot, then a word of the cluster; top-k applies to each draw. "
        "The same seed on the same device gives the same text.",
    )
    parser.add_argument("--model", required=True, help="a model file: best.pt, or one written by lightrnn export")
    parser.add_argument("--prompt", default=None, help="text to continue (default: start a sentence)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens to sample, 1 to 1,000,000 (default 50); printed as they are drawn")
    parser.add_argument("--temperature", type=float, default=1.0, help="> 0; below 1 sharper, above 1 flatter")
    parser.add_argument("--top-k", type=int, default=None, help="keep the K most likely outcomes of each draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="the encoded data dir, only for a checkpoint without a vocabulary")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.core.sampling import check_sampling, check_seed
    from lightrnn.pretrained import check_tokens, load

    # Options first: a bad one is reported before the model is loaded.
    check_tokens(args.tokens)
    check_sampling(args.temperature, args.top_k)
    check_seed(args.seed)
    lm = load(args.model, data=args.data, device=args.device)
    prompt_ids, unknown = lm.prompt_ids(args.prompt)
    if unknown:
        print(f"--prompt: {unknown} unknown word(s) read as {lm.words[lm.unk_id]}", file=sys.stderr)
    # Streamed: each token is printed as it is drawn (a line is flushed at each eos), nothing kept.
    ids = itertools.chain(prompt_ids, lm.sample_ids(prompt_ids, args.tokens, args.temperature, args.top_k, args.seed))
    for piece in lm.text_pieces(ids):
        sys.stdout.write(piece)
        if piece == "\n":
            sys.stdout.flush()
    return 0
