"""`lightrnn eval`: exact perplexity of a checkpoint on one split of an encoded data dir."""

from __future__ import annotations

import argparse
import json

from lightrnn.commands import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="exact perplexity of a checkpoint on a split",
        description="Evaluate a checkpoint (best.pt or checkpoint.pt) over a whole split; print JSON.",
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by lightrnn train")
    parser.add_argument("--data", required=True, help="the encoded data dir the model was trained on")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the run's eval_batch_size")
    parser.add_argument("--out", default=None, help="also write the JSON here (e.g. eval.json)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import errno
    from pathlib import Path

    from lightrnn.core.fileio import write_text
    from lightrnn.training.evaluate import evaluate_checkpoint

    if args.out and Path(args.out).is_dir():  # found now, not after a long evaluation
        raise IsADirectoryError(errno.EISDIR, "is a folder", args.out)

    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, device=args.device, batch_size=args.batch_size)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0
