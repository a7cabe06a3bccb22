# Training: one job per (dataset, model). checkpoint.pt is deliberately not an output: Snakemake
# deletes a job's outputs before rerunning it, and the checkpoint is what a rerun resumes from.
# resources.gpu = N > 1 runs the job data-parallel, one torchrun process per GPU on one node
# (batch_size is per GPU); 0 or 1 trains in the job's own process.
#
# A live run is never damaged by the workflow. Snakemake deletes a job's declared outputs before it
# runs the job (and again when it fails), so a job that OUT/.lock would refuse must be refused
# before that: its input function (`train_inputs`, workflow/rules/common.smk) asks the lock while
# Snakemake plans the job and stops the workflow with one message naming the process that holds
# it, before any file is deleted. As a second line, the lock holder itself restores what a
# workflow manager deleted meanwhile: best.pt is relinked from checkpoint-best.pt and
# metrics.jsonl is rewritten whole from the checkpoint's rows (at the next row and at the end).


TRAIN_MEM_MB, TRAIN_RUNTIME = cluster_resources(
    "train",
    f"{RESULTS}/logs/train/{{dataset}}/{{model}}.log",
    config["resources"]["train"]["mem_mb"],
    config["resources"]["train"]["runtime"],
    resumes=True,
)


rule train:
    """Train one model on one encoded dataset; metrics.jsonl gets a row per epoch and reallocation."""
    input:
        encoded=train_inputs,
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/metrics.jsonl",
        best=f"{RESULTS}/{{dataset}}/{{model}}/best.pt",
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{model}}.tsv"
    conda:
        torch_env(config["resources"]["train"]["gpu"])
    threads: config["resources"]["train"]["threads"]
    resources:
        gpu=config["resources"]["train"]["gpu"],
        mem_mb=TRAIN_MEM_MB,
        runtime=TRAIN_RUNTIME,
        cpus_per_gpu=cpus_per_gpu("train"),
        slurm_partition=partition(config["resources"]["train"]["gpu"]),
        slurm_account=SLURM["account"],
        # gpu = N > 1 is ONE task (torchrun) starting N processes on one node: the plugin's
        # default --ntasks-per-gpu=1 would start N copies of the job.
        tasks_per_gpu=0,
        nodes=1,
    params:
        config=train_config,
        data_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}",
    script:
        "../scripts/train.py"
