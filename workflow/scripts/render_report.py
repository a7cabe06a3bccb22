"""Rule render_report: tables and figures of the run from its metrics.jsonl and eval.json files."""

import logging

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.report.build import write_report  # noqa: E402

written = write_report(
    snakemake.input.metrics,  # noqa: F821
    snakemake.input.evals,  # noqa: F821
    snakemake.params.out_dir,  # noqa: F821
    aclw_plot_dataset=snakemake.params.aclw_plot_dataset,  # noqa: F821
    bench_dir=snakemake.params.bench_dir,  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
    benchmarks_dir=snakemake.params.benchmarks_dir,  # noqa: F821
    shared_benchmarks=snakemake.params.shared_benchmarks,  # noqa: F821
)
logging.info("wrote %d files: %s", len(written), ", ".join(map(str, written)))
