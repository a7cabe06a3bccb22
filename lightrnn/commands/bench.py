"""`lightrnn bench`: throughput, memory and scale of every model, side by side (lightrnn.benchmark)."""

from __future__ import annotations

import argparse

from lightrnn.commands import path_arg
from pathlib import Path

DEFAULT_SIZES = [10_000, 100_000, 793_471]
DEFAULT_MODELS = ["lightrnn", "full_softmax", "class_softmax", "adaptive_softmax"]


def _throughput_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("throughput (defaults: the whole run takes minutes on one CPU core)")
    group.add_argument("--vocab-sizes", type=int, nargs="+", default=DEFAULT_SIZES, metavar="V")
    group.add_argument("--models", nargs="+", default=DEFAULT_MODELS, metavar="NAME")
    group.add_argument("--embed-dim", type=int, default=256)
    group.add_argument("--hidden-dim", type=int, default=256)
    group.add_argument("--num-layers", type=int, default=2)
    group.add_argument("--dropout", type=float, default=0.2)
    group.add_argument("--batch-size", type=int, default=16)
    group.add_argument("--bptt", type=int, default=16)
    group.add_argument("--warmup-steps", type=int, default=1, help="untimed training steps per measurement")
    group.add_argument("--timed-steps", type=int, default=2, help="timed training (and evaluation) steps")
    group.add_argument("--min-seconds", type=float, default=1.0,
                       help="time each model's training and evaluation for at least this long (cycling the steps)")
    group.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    group.add_argument("--threads", type=int, default=1,
                       help="torch intra-op threads on CPU (1: steadiest on a shared machine; recorded in the CSV)")
    group.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    group.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast, CUDA only")
    group.add_argument("--dense-embedding", action="store_true",
                       help="keep dense embedding gradients (default: sparse + SparseAdam where a model offers it)")
    group.add_argument("--optimizer", default="adam", choices=["adam", "sgd"],
                       help="the training loop's optimizer: adam (+ SparseAdam for sparse gradients) or sgd "
                            "(what a study recipe such as SGD 20 trains with)")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--option", dest="options", action="append", default=[], metavar="MODEL:KEY=VALUE",
                       help="model-specific option (YAML value), e.g. --option adaptive_softmax:div_value=2")


def _realloc_options(parser: argparse.ArgumentParser, sizes: list[int]) -> None:
    parser.add_argument("--realloc-sizes", type=int, nargs="*", default=sizes, metavar="V",
                        help="vocabulary sizes of the reallocation benchmark (none: skip it)")
    parser.add_argument("--realloc-time-limit", type=float, default=60.0, help="seconds of refine's search per size")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="throughput / memory / reallocation scaling / model sizes -> CSV, plot, docs/performance.md section",
        description="Benchmarks of every model side by side on this machine (docs/performance.md).",
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)

    everything = commands.add_parser("all", help="every benchmark into one folder (what the Snakemake rule runs)")
    everything.add_argument("--out", type=path_arg, required=True, help="folder for the CSVs and the plot")
    _throughput_options(everything)
    _realloc_options(everything, [10_000, 100_000])
    everything.set_defaults(func=run_all)

    throughput = commands.add_parser("throughput", help="train/eval tokens/s, peak memory, FLOPs, utilisation")
    throughput.add_argument("--out", type=path_arg, required=True, help="CSV (the raw repeats go beside it)")
    _throughput_options(throughput)
    throughput.set_defaults(func=run_throughput)

    phases = commands.add_parser(
        "phases", help="seconds per training step in forward / backward / clip / optimizer (first model = baseline)")
    phases.add_argument("--out", type=path_arg, required=True, help="CSV")
    _throughput_options(phases)
    phases.set_defaults(func=run_phases)

    realloc = commands.add_parser("realloc", help="every reallocation solver on synthetic and saved real losses")
    realloc.add_argument("--out", type=path_arg, required=True, help="CSV")
    realloc.add_argument("--sizes", type=int, nargs="*", default=None, metavar="V",
                         help="V of the synthetic instances (default: 10000 100000, none when --losses is given)")
    realloc.add_argument("--losses", type=path_arg, nargs="+", default=[], metavar="FILE.npz",
                         help="real losses saved by training (realloc_save_losses: true -> losses-<round>.npz)")
    realloc.add_argument("--append", action="store_true", help="keep the rows already in --out")
    realloc.add_argument("--time-limit", type=float, default=60.0, help="seconds of refine's search per instance")
    realloc.add_argument("--seed", type=int, default=0)
    realloc.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                         help="solvers to run (default: exact sparse greedy refine auction auto, "
                              "exact and sparse only where affordable)")
    realloc.set_defaults(func=run_realloc)

    accumulate = commands.add_parser(
        "accumulate", help="the reallocation's loss-accumulation pass: tokens/s and memory beside training's")
    accumulate.add_argument("--out", type=path_arg, required=True, help="CSV")
    accumulate.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000], metavar="V")
    accumulate.add_argument("--batches", type=int, default=8, help="batches of the timed accumulation pass")
    accumulate.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    accumulate.set_defaults(func=run_accumulate)

    fraction = commands.add_parser(
        "fraction", help="the table the solver picks from a fraction of the batches (realloc_fraction) vs from all")
    fraction.add_argument("--checkpoint", type=path_arg, required=True, help="a LightRNN best.pt / checkpoint.pt")
    fraction.add_argument("--data", type=path_arg, required=True, help="the encoded data dir it was trained on")
    fraction.add_argument("--out", type=path_arg, required=True, help="CSV")
    fraction.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    fraction.add_argument("--method", default="auto", help="solver (realloc_method)")
    fraction.add_argument("--max-batches", type=int, default=0,
                          help="read only the first N training batches as 'all of them' (0: the whole split)")
    fraction.set_defaults(func=run_fraction)

    sizes = commands.add_parser("sizes", help="parameters and bytes at the paper's configurations (no allocation)")
    sizes.add_argument("--out", type=path_arg, required=True, help="CSV")
    sizes.set_defaults(func=run_sizes)

    plot = commands.add_parser("plot", help="tokens/s and memory against V from a throughput CSV (PNG + PDF)")
    plot.add_argument("--csv", type=path_arg, required=True)
    plot.add_argument("--out", type=path_arg, required=True, help="PNG path; the PDF goes beside it")
    plot.set_defaults(func=run_plot)

    readme = commands.add_parser("readme", help="rewrite the performance section (docs/performance.md) from a bench folder")
    readme.add_argument("--bench-dir", type=path_arg, required=True, help="folder written by `lightrnn bench all`")
    readme.add_argument("--readme", type=path_arg, default=Path("README.md"),
                        help="the README; the section is rewritten in the page of it or its docs/ that holds it")
    readme.set_defaults(func=run_readme)


def _settings(args: argparse.Namespace):
    from lightrnn.benchmark.throughput import ThroughputSettings
    from lightrnn.commands.params import parse_options
    from lightrnn.core.loaders import short
    from lightrnn.registry import names

    texts: dict[str, list[str]] = {}
    for option in args.options:
        model, colon, assignment = option.partition(":")
        key, equals, _value = assignment.partition("=")
        if not colon or not equals or not key:
            raise ValueError(f"--option {short(option)}: expected MODEL:KEY=VALUE, e.g. adaptive_softmax:div_value=2")
        if model.partition("@")[0] not in names():
            raise ValueError(f"--option {short(option)}: unknown model {short(model)}; choose one of: {', '.join(names())} "
                             "(or NAME@LABEL, a labelled variant)")
        texts.setdefault(model, []).append(assignment)
    model_options = {model: parse_options(values, model.partition("@")[0]) for model, values in texts.items()}
    return ThroughputSettings(
        vocab_sizes=tuple(args.vocab_sizes), models=tuple(args.models), embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim, num_layers=args.num_layers, dropout=args.dropout, batch_size=args.batch_size,
        bptt=args.bptt, warmup_steps=args.warmup_steps, timed_steps=args.timed_steps, min_seconds=args.min_seconds,
        repeats=args.repeats,
        threads=args.threads, device=args.device, dtype=args.dtype, sparse_embedding=not args.dense_embedding,
        optimizer=args.optimizer, seed=args.seed, model_options=model_options,
    )


def _progress(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.suite import run_suite

    written = run_suite(args.out, _settings(args), args.realloc_sizes, args.realloc_time_limit, progress=_progress)
    for path in written.values():
        print(path)
    return 0


def run_throughput(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.throughput import run_throughput as measure
    from lightrnn.core.csvio import write_csv

    if args.out.suffix != ".csv":
        raise ValueError(f"--out {args.out}: expected a .csv path")
    summary, raw = measure(_settings(args), progress=_progress)
    print(write_csv(summary, args.out))
    print(write_csv(raw, args.out.with_name(args.out.stem + "-repeats.csv")))
    return 0


def run_phases(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.throughput import run_phases as measure
    from lightrnn.core.csvio import write_csv

    if args.out.suffix != ".csv":
        raise ValueError(f"--out {args.out}: expected a .csv path")
    print(write_csv(measure(_settings(args), progress=_progress), args.out))
    return 0


def run_realloc(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.scaling import realloc_scaling

    sizes = args.sizes if args.sizes is not None else ([] if args.losses else [10_000, 100_000])
    from lightrnn.benchmark.scaling import METHOD_ORDER

    realloc_scaling(sizes, args.out, time_limit=args.time_limit, seed=args.seed, losses=args.losses,
                    append=args.append, progress=_progress, methods=args.methods or METHOD_ORDER)
    print(args.out)
    return 0


def run_accumulate(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.accumulate import accumulation_speed
    from lightrnn.core.csvio import write_csv

    if any(v < 2 for v in args.vocab_sizes) or args.batches < 1:
        raise ValueError(f"--vocab-sizes must be >= 2 and --batches >= 1, got {args.vocab_sizes} and {args.batches}")
    print(write_csv(accumulation_speed(args.vocab_sizes, batches=args.batches, threads=args.threads,
                                       progress=_progress), args.out))
    return 0


def run_fraction(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.accumulate import fraction_effect
    from lightrnn.core.csvio import write_csv

    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file; pass a LightRNN run's best.pt")
    if any(not 0 < f <= 1 for f in args.fractions):
        raise ValueError(f"--fractions must be in (0, 1], got {args.fractions}")
    if args.max_batches < 0:
        raise ValueError(f"--max-batches must be >= 0, got {args.max_batches}")
    print(write_csv(fraction_effect(args.checkpoint, args.data, sorted(set(args.fractions) | {1.0}), args.method,
                                    max_batches=args.max_batches, progress=_progress), args.out))
    return 0


def run_sizes(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.scaling import model_sizes
    from lightrnn.core.csvio import write_csv

    print(write_csv(model_sizes(), args.out))
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from lightrnn.benchmark.plot import plot_throughput
    from lightrnn.core.csvio import read_csv

    for path in plot_throughput(read_csv(args.csv), args.out):
        print(path)
    return 0


def run_readme(args: argparse.Namespace) -> int:
    from lightrnn.report.readme import write_performance_section

    print(write_performance_section(args.bench_dir, args.readme))
    return 0
