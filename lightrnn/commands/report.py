"""`lightrnn report --results DIR --out DIR`: tables and plots from a run's metrics files."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render paper-style tables and plots from metrics files",
        description="Read RESULTS/<dataset>/<model>/{metrics.jsonl,eval.json} and write "
        "OUT/tables/*.{md,tex,csv} and OUT/plots/*.{png,pdf}.",
    )
    parser.add_argument("--results", required=True, help="the run folder, e.g. results/smoke")
    parser.add_argument("--out", required=True, help="where tables/ and plots/ go, e.g. results/smoke")
    parser.add_argument(
        "--aclw-plot-dataset",
        default="aclw-fr",
        help="dataset of the paper-style perplexity figure (default: aclw-fr; skipped if absent)",
    )
    parser.add_argument("--date", default=None, help="ISO date written as provenance (default: today, UTC)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightrnn.report.build import write_report
    from lightrnn.report.results import find_results

    metrics_paths, eval_paths = find_results(args.results)
    for path in write_report(metrics_paths, eval_paths, args.out, args.aclw_plot_dataset, args.date):
        print(path)
    return 0
