"""The `lightrnn` command: one entry point, the same library functions the Snakemake rules call.

Each sub-command lives in its own module under `lightrnn.commands` and exposes
`add_parser(subparsers)`, which adds its parser and sets `func(args) -> int`. Modules are found
by name, so adding a command never touches this file. Command modules import heavy libraries
(torch, pandas) inside `func`, so `lightrnn --help` and `lightrnn data list` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import lightrnn.commands
from lightrnn.errors import explain


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightrnn",
        description="LightRNN replication suite: data, training, evaluation, benchmarks, reports.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(lightrnn.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"lightrnn.commands.{module_info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `lightrnn data list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except Exception as error:
        # Expected failures (bad input, bad option, a full disk, too little memory) get one line
        # naming the file and what to do, exit 2 (usage/data) or 1 (environment); anything else
        # is a bug and keeps its traceback. LIGHTRNN_DEBUG=1 shows the traceback in every case.
        explained = explain(error)
        if explained is None or os.environ.get("LIGHTRNN_DEBUG"):
            raise
        message, status = explained
        steps = [value for key, value in sorted(vars(args).items()) if key.endswith("_command") and value]
        print(f"lightrnn {' '.join([args.command, *steps])}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
