# Tables and figures of the run, from its metrics files only (lightrnn.report).


rule render_report:
    """Paper-style tables (md, tex, csv) and figures (png, pdf); CSV and PNG feed `snakemake --report`."""
    input:
        metrics=run_files("metrics.jsonl"),
        evals=run_files("eval.json"),
    output:
        [report_output(path) for path in REPORT_OUTPUTS],
    log:
        f"{RESULTS}/logs/render_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_report.tsv"
    conda:
        "../envs/report.yaml"
    params:
        # the run folder: outputs are <run>/tables/... and <run>/plots/...
        out_dir=lambda wildcards, output: str(Path(output[0]).parents[1]),
        aclw_plot_dataset=ACLW_PLOT_DATASET,
        # `bench` is not part of `all`: the verdict's speed row uses its folder when it exists.
        bench_dir=f"{RESULTS}/bench",
        # Every job's benchmark: file (not inputs: a run from before they existed stays up to date).
        benchmarks_dir=f"{RESULTS}/benchmarks",
        shared_benchmarks=shared_benchmarks(),
        run=config["run"],
    script:
        "../scripts/render_report.py"
