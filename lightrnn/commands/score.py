"""`lightrnn score`: exact log-probability and perplexity of new text under a trained model."""

from __future__ import annotations

import argparse
import json
import sys

from lightrnn.commands import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="log-probability and perplexity of each sentence of a text",
        description="Score raw text (one sentence per line, tokenised as the corpus was; unknown words become "
        "the model's unk) with a trained model file: one row per sentence on stdout (TSV or JSON lines), "
        "the corpus perplexity on stderr (and in --summary). Exact; forward calls of `lightrnn eval`'s size.",
    )
    parser.add_argument("--model", required=True, help="a model file: best.pt, or one written by lightrnn export")
    parser.add_argument("--text", required=True, help="a UTF-8 text file, or - for stdin, read as `data encode` reads a split (lines break at \\n only)")
    parser.add_argument("--data", default=None, help="the encoded data dir, only for a checkpoint without a vocabulary")
    parser.add_argument("--format", choices=("tsv", "jsonl"), default="tsv", help="per-sentence rows (default tsv)")
    parser.add_argument("--like-eval", action="store_true",
                        help="read the text as one stream, as `lightrnn eval` reads a split (state carried across "
                        "sentences, the first word context only): the corpus perplexity equals eval's. Default: "
                        "each sentence alone, from the state after one eos")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the run's eval_batch_size")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--summary", default=None, help="also write the corpus summary as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.core.fileio import write_text
    from lightrnn.core.text import read_lines
    from lightrnn.pretrained import load

    where = "stdin" if args.text == "-" else args.text
    lines = read_lines(args.text)  # the one text reader: the lines `data encode` would read
    lm = load(args.model, data=args.data, device=args.device)
    scores = lm.score(lines, batch_size=args.batch_size, like_eval=args.like_eval, where=where, skip_blank=True)
    out = sys.stdout
    if args.format == "tsv":
        out.write("line\ttokens\tlog_prob\tppl\tunknown\n")
    for sentence in scores.sentences:
        if args.format == "tsv":
            out.write(f"{sentence.line}\t{sentence.tokens}\t{sentence.log_prob:.6f}\t{sentence.ppl:.4f}\t"
                      f"{sentence.unknown}\n")
        else:
            out.write(json.dumps(vars(sentence)) + "\n")
    summary = {
        "model": lm.config.model, "text": where, "sentences": len(scores.sentences), "words": scores.words,
        "tokens": scores.tokens, "nll_sum": scores.nll_sum, "ppl": scores.ppl, "unknown": scores.unknown,
        "unknown_rate": scores.unknown / scores.words if scores.words else 0.0,
        "unk_token": lm.words[lm.unk_id] if lm.unk_id is not None else None,
        "tokens_per_s": scores.tokens_per_s, "like_eval": args.like_eval,
    }
    print(f"corpus: {summary['sentences']} sentences, {summary['tokens']} tokens predicted, ppl {scores.ppl:.4f}, "
          f"{scores.unknown} unknown word(s) -> {summary['unk_token']}", file=sys.stderr)
    if args.summary:
        write_text(args.summary, json.dumps(summary, indent=2) + "\n")
    return 0
