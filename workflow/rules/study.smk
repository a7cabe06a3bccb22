# The ablation study (config/study-v1.yaml; a tuned study part of config/study.yaml renders the same way,
# its own tables by lightrnn.report.tuned_study): its tables and figure from every variant's files.


rule render_study:
    """Ablation table, reallocation table and figure of a study run (lightrnn.report.study)."""
    input:
        metrics=run_files("metrics.jsonl"),
        evals=run_files("eval.json"),
    output:
        [f"{RESULTS}/{path}" for path in STUDY_OUTPUTS],
    log:
        f"{RESULTS}/logs/render_study.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_study.tsv"
    conda:
        "../envs/report.yaml"
    params:
        # the run folder: outputs are <run>/tables/... and <run>/plots/...
        out_dir=lambda wildcards, output: str(Path(output[0]).parents[1]),
        specs={name: config["models"].get(name, {}) for name in RUN_MODELS},
    script:
        "../scripts/render_study.py"
