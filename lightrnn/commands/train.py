"""`lightrnn train`: train one model on an encoded data dir (resumes when OUT holds a checkpoint)."""

from __future__ import annotations

import argparse

from lightrnn.commands import path_text
import os
import sys


def config_keys_epilog() -> str:
    """Every `TrainConfig` key with its type and default, for `lightrnn train --help` (never typed by hand)."""
    import dataclasses

    from lightrnn.config import TrainConfig

    lines = ["config keys (--config FILE and --set KEY=VALUE; meanings: docs/training.md, Config keys):"]
    for item in dataclasses.fields(TrainConfig):
        # The field defaults, not TrainConfig(): validating one imports the model registry (torch),
        # and every `lightrnn` command builds this parser.
        value = item.default_factory() if item.default is dataclasses.MISSING else item.default  # type: ignore[misc]
        shown = list(value) if isinstance(value, tuple) else value
        kind = str(item.type).replace("typing.", "")
        lines.append(f"  {item.name:<22} {kind:<18} default {shown!r}")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on an encoded data dir",
        description="Train a model; rerun the same command to resume from OUT/checkpoint.pt.",
        epilog=config_keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=path_text, required=True, help="encoded data dir: vocab.tsv, {train,valid,test}.npy")
    parser.add_argument("--model", required=True, help="registered model name (lightrnn, full_softmax, ...)")
    parser.add_argument("--out", type=path_text, required=True, help="output dir: checkpoint.pt, best.pt, metrics.jsonl, ...")
    parser.add_argument("--config", type=path_text, default=None, help="YAML file of config keys")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set rounds=[2,2] --set lr=0.002",
    )
    parser.add_argument("--dataset", default=None, help="dataset name in metrics rows (default: the data dir's name)")
    parser.add_argument(
        "--on-config-change", choices=("refuse", "move-aside"), default="refuse",
        help="OUT holds a run of another config or other data: refuse (default, an error naming both) or "
        "move it to OUT/../<name>.old-<hash12>/ (kept) and start afresh (what the workflow uses)",
    )
    parser.add_argument("--tensorboard", type=path_text, default=None, metavar="DIR",
                        help="live curves (ppl, tokens/s, lr, reallocations) as TensorBoard events in DIR; needs the "
                        "tensorboard extra (config key tensorboard: true writes them to OUT/tensorboard)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.config import TrainConfig
    from lightrnn.training.train import TrainingDiverged, train

    config = TrainConfig.from_yaml(args.config, [*args.overrides, f"model={args.model}"])
    try:
        metrics_path = train(config, args.data, args.out, dataset=args.dataset, on_config_change=args.on_config_change,
                             tensorboard=args.tensorboard)
    except TrainingDiverged as error:
        print(f"lightrnn train: error: {error}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process returns here; one line is enough
        print(metrics_path)
    return 0
