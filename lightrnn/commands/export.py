"""`lightrnn export`: a self-contained model file (weights, config, vocabulary) from a checkpoint."""

from __future__ import annotations

import argparse

from lightrnn.commands import path_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a self-contained model file (for checkpoints without a vocabulary inside)",
        description="Write a model file that `lightrnn score` / `generate` / `lightrnn.load` use alone: the "
        "checkpoint's config and weights (LightRNN's table included) and the vocabulary of its data dir, "
        "without the optimizer state.",
    )
    parser.add_argument("--checkpoint", type=path_text, required=True, help="best.pt or checkpoint.pt written by lightrnn train")
    parser.add_argument("--data", type=path_text, default=None,
                        help="the encoded data dir it was trained on (needed when the checkpoint has no vocabulary)")
    parser.add_argument("--out", type=path_text, required=True, help="the model file to write, e.g. model.pt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.pretrained import export

    print(export(args.checkpoint, args.data, args.out))
    return 0
