"""`lightrnn report --results DIR --out DIR`: tables and plots from a run's metrics files.

`lightrnn report readme --results DIR --readme README.md --docs docs`: the README's smoke-run block
(figure + ACLW and reallocation tables) regenerated from a rendered run folder.
"""

from __future__ import annotations

import argparse

from lightrnn.commands import path_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        usage="%(prog)s --results RESULTS --out OUT [--bench-dir DIR] [--aclw-plot-dataset DATASET] [--date DATE]\n"
        "       %(prog)s readme --results RESULTS [--readme README] [--docs DOCS] [--bench-dir DIR] "
        "[--aclw-plot-dataset DATASET]",
        help="render paper-style tables and plots from metrics files (or the README block from them)",
        description="Read RESULTS/<dataset>/<model>/{metrics.jsonl,eval.json} and write "
        "OUT/tables/*.{md,tex,csv,html} (the verdict table first: the paper's claims beside what was measured) "
        "and OUT/plots/*.{png,pdf}. "
        "`lightrnn report readme ...` rewrites the README's smoke-run block from such a folder.",
    )
    # Not required=True at the parser level: `lightrnn report readme ...` does not take --out;
    # `run` checks them (same message shape as argparse's own).
    parser.add_argument("--results", type=path_text, default=None, help="the run folder, e.g. results/smoke (required)")
    parser.add_argument("--out", type=path_text, default=None, help="where tables/ and plots/ go, e.g. results/smoke (required)")
    parser.add_argument(
        "--aclw-plot-dataset",
        default="auto",
        help="dataset of the paper-style perplexity figure (default: auto = aclw-large-fr if the run has it, "
        "else aclw-fr; skipped if absent)",
    )
    parser.add_argument(
        "--bench-dir",
        default=None,
        help="a `lightrnn bench` folder for the verdict's speed row (default: RESULTS/bench when present)",
    )
    parser.add_argument("--date", default=None, help="ISO date written as provenance (default: today, UTC)")
    parser.set_defaults(func=run)

    commands = parser.add_subparsers(dest="report_command", metavar="WHAT", required=False)
    readme = commands.add_parser(
        "readme",
        prog=f"{parser.prog} readme",  # else argparse builds it from the two-line usage above
        help="rewrite the README's answer, the verdict, GPU, smoke-run and study blocks of README.md and DOCS/*.md",
        description="From RESULTS/tables/{aclw,reallocation}.{md,csv} and RESULTS/plots/"
        "{<dataset>-vs-paper,size-speed}.png (written by `lightrnn report` / `make smoke`): copy the PNGs "
        "to DOCS/<run>-*.png and rewrite the block between <!-- generated:<run> --> and "
        "<!-- /generated:<run> --> inside the workflow section (docs/workflow.md); <run> is RESULTS's folder name. "
        "Also rewrites the verdict section (<!-- section:verdict -->, docs/verdict.md) and the README's answer "
        "(<!-- section:answer -->) from BENCH_DIR, the study or RESULTS's metrics and the closed-form parameter "
        "counts. Each block is rewritten in whichever of README and DOCS/*.md holds its markers.",
    )
    readme.add_argument("--results", type=path_text, required=True, help="a rendered run folder, e.g. results/smoke")
    readme.add_argument("--readme", type=path_text, default="README.md", help="the README to rewrite (default: README.md)")
    readme.add_argument("--docs", type=path_text, default="docs", help="the docs pages and the PNG copies (default: docs)")
    readme.add_argument("--aclw-plot-dataset", default="aclw-fr",
                        help="dataset of the perplexity figure to show (default: aclw-fr)")
    readme.add_argument("--study", type=path_text, default=None,
                        help="a study folder (the tuned study results/paper/study-cpu-v2, or an ablation study's run "
                        "folder): the verdict's perplexity and reallocation rows come from it, and its block in "
                        "docs/study.md is rewritten")
    readme.add_argument("--other-study", type=path_text, default=None,
                        help="another study folder (e.g. the superseded results/paper/study-cpu) whose block in "
                        "docs/study.md is rewritten too; it feeds no verdict row")
    readme.add_argument("--bench-dir", type=path_text, default="results/paper/bench-cpu",
                        help="the committed `lightrnn bench` folder the verdict's speed row reads "
                        "(default: results/paper/bench-cpu)")
    readme.add_argument("--gpu-dir", type=path_text, default="auto",
                        help="the committed `make gpu-check` folder the verdict's speed row and the README's GPU "
                        "block read (default: auto, the newest results/paper/gpu-*/ holding paper-speed-summary.csv; "
                        "none: ignore GPU results)")
    readme.set_defaults(func=run_readme)


def run(args: argparse.Namespace) -> int:
    from lightrnn.core.errors import UsageError

    missing = [option for option, value in (("--results", args.results), ("--out", args.out)) if value is None]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} "
                         f"(e.g. lightrnn report --results results/smoke --out results/smoke)")

    from pathlib import Path

    from lightrnn.report.build import write_report
    from lightrnn.report.results import find_results

    metrics_paths, eval_paths = find_results(args.results)
    bench_dir = args.bench_dir
    if bench_dir is None and (Path(args.results) / "bench" / "throughput-repeats.csv").is_file():
        bench_dir = Path(args.results) / "bench"
    elif bench_dir is not None and not (Path(bench_dir) / "throughput-repeats.csv").is_file():
        raise UsageError(f"--bench-dir {bench_dir}: no throughput-repeats.csv there; give a `lightrnn bench all` folder")
    for path in write_report(metrics_paths, eval_paths, args.out, args.aclw_plot_dataset, args.date, bench_dir,
                             run=Path(args.results).resolve().name):
        print(path)
    return 0


def run_readme(args: argparse.Namespace) -> int:
    from lightrnn.report.gpu_speed import find_gpu_dir
    from lightrnn.report.readme import update_readme

    gpu_dir = {"auto": find_gpu_dir(), "none": None}.get(args.gpu_dir, args.gpu_dir)
    command = (f"lightrnn report readme --results {args.results} --readme {args.readme} --docs {args.docs} "
               f"--bench-dir {args.bench_dir}" + (f" --study {args.study}" if args.study else ""))
    for path in update_readme(args.results, args.readme, args.docs, args.bench_dir, args.study,
                              args.aclw_plot_dataset, command, gpu_dir=gpu_dir):
        print(path)
    if args.other_study:
        from lightrnn.report.readme import write_study_block

        for path in write_study_block(args.other_study, args.readme, args.docs,
                                      command + f" --other-study {args.other_study}"):
            print(path)
    return 0
