# Exact test perplexity of the best checkpoint over the whole test split.


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
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
        cpus_per_gpu=cpus_per_gpu("evaluate"),
    params:
        data_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
        device=lambda wildcards: train_config(wildcards)["device"],
    script:
        "../scripts/evaluate.py"
