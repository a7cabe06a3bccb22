# Exact test perplexity of the best checkpoint over the whole test split.


EVALUATE_MEM_MB, EVALUATE_RUNTIME = cluster_resources(
    "evaluate",
    f"{RESULTS}/logs/evaluate/{{dataset}}/{{model}}.log",
    config["resources"]["evaluate"]["mem_mb"],
    config["resources"]["evaluate"]["runtime"],
)


rule evaluate:
    """eval.json: test perplexity of best.pt, tokens/s, parameters, device, git revision."""
    input:
        checkpoint=rules.train.output.best,
        encoded=lambda wildcards: encoded(wildcards.dataset),
    output:
        f"{RESULTS}/{{dataset}}/{{model}}/eval.json",
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{dataset}}/{{model}}.tsv"
    conda:
        torch_env(config["resources"]["evaluate"]["gpu"])
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpu"],
        mem_mb=EVALUATE_MEM_MB,
        runtime=EVALUATE_RUNTIME,
        cpus_per_gpu=cpus_per_gpu("evaluate"),
        slurm_partition=partition(config["resources"]["evaluate"]["gpu"]),
        slurm_account=SLURM["account"],
    params:
        data_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        device=lambda wildcards: train_config(wildcards)["device"],
    script:
        "../scripts/evaluate.py"
