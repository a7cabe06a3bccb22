"""The `lightrnn` command: one entry point, the same library functions the Snakemake rules call.

Each sub-command lives in its own module under `lightrnn.commands` and exposes
`add_parser(subparsers)`, which adds its parser and sets `func(args) -> int`. Modules are found
by name, so adding a command never touches this file. Command modules import heavy libraries
(torch, matplotlib) inside `func`, so `lightrnn --help` and `lightrnn data list` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import lightrnn.commands
from lightrnn.core.errors import explain


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


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a process a Ctrl-C ended


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("lightrnn: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C: one line, no traceback. Every file is written atomically (or appended line by
        # line), so what is left is what a kill leaves: the old file or the new one, and the
        # temps the next run sweeps; rerunning the command resumes.
        if os.environ.get("LIGHTRNN_DEBUG"):
            raise
        print(f"lightrnn {_command(args)}: interrupted; rerun the command to resume", file=sys.stderr)
        return INTERRUPTED_EXIT
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
        print(f"lightrnn {_command(args)}: error: {message}", file=sys.stderr)
        return status


def _command(args: argparse.Namespace) -> str:
    steps = [value for key, value in sorted(vars(args).items()) if key.endswith("_command") and value]
    return " ".join([args.command, *steps])


if __name__ == "__main__":
    sys.exit(main())
