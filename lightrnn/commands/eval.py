"""`lightrnn eval`: exact perplexity of a checkpoint on one split of an encoded data dir."""

from __future__ import annotations

import argparse
import json

from lightrnn.commands import path_text, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="exact perplexity of a checkpoint on a split",
        description="Evaluate a checkpoint (best.pt or checkpoint.pt) over a whole split; print JSON.",
    )
    parser.add_argument("--checkpoint", type=path_text, required=True, help="a checkpoint written by lightrnn train")
    parser.add_argument("--data", type=path_text, required=True, help="the encoded data dir the model was trained on")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the run's eval_batch_size")
    parser.add_argument("--out", type=path_text, default=None, help="also write the JSON here (e.g. eval.json)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.core.fileio import command_output, write_text
    from lightrnn.training.evaluate import evaluate_checkpoint

    if args.out:  # found now, not after a long evaluation
        command_output(args.out, "--out", inputs=(args.checkpoint, args.data))

    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, device=args.device, batch_size=args.batch_size)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0
