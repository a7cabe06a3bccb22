# Corpora: (tiny archive ->) fetch -> prepare -> encode. docs/DESIGN.md "Data flow".


rule tiny_archive:
    """A tiny corpus in the real archive layout (smoke runs fetch it through a file: URL)."""
    output:
        f"{RES}/tiny/{{corpus}}/{{filename}}",
    log:
        f"{RES}/logs/tiny_archive/{{corpus}}/{{filename}}.log",
    benchmark:
        f"{RES}/benchmarks/tiny_archive/{{corpus}}/{{filename}}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        seed=config["tiny_seed"],
    script:
        "../scripts/make_tiny_archive.py"


rule fetch:
    """Download and checksum-verify one corpus archive (resumes a partial .part download)."""
    input:
        fetch_input,
    output:
        f"{RES}/raw/{{corpus}}/{{filename}}",
    log:
        f"{RES}/logs/fetch/{{corpus}}/{{filename}}.log",
    benchmark:
        f"{RES}/benchmarks/fetch/{{corpus}}/{{filename}}.tsv"
    retries: 2
    conda:
        "../envs/data.yaml"
    params:
        url=fetch_url,
        sha256=lambda wildcards: config["corpora"]
        .get(wildcards.corpus, {})
        .get("sha256")
        or "",
        stall_s=config.get("fetch", {}).get("stall_s", 60),
        max_time_s=config.get("fetch", {}).get("max_time_s", 43200),
        max_bytes=config.get("fetch", {}).get("max_bytes"),
    script:
        "../scripts/fetch.py"


PREPARE_MEM_MB, PREPARE_RUNTIME = cluster_resources(
    "prepare",
    f"{RES}/logs/prepare/{{dataset}}.log",
    config["resources"]["prepare"]["mem_mb"],
    config["resources"]["prepare"]["runtime"],
    per_input=config["resources"]["prepare"]["mem_per_input"],
)


rule prepare:
    """One tokenized sentence per line per split (manual corpora: read where the user put them)."""
    input:
        prepare_input,
    output:
        expand("{res}/corpora/{{dataset}}/{split}.txt", res=RES, split=SPLITS),
    log:
        f"{RES}/logs/prepare/{{dataset}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare/{{dataset}}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=PREPARE_MEM_MB,
        runtime=PREPARE_RUNTIME,
        slurm_partition=SLURM["cpu_partition"],
        slurm_account=SLURM["account"],
    params:
        raw_dir=lambda wildcards: f"{RES}/raw/{corpus_of(wildcards.dataset)}",
    script:
        "../scripts/prepare.py"


ENCODE_MEM_MB, ENCODE_RUNTIME = cluster_resources(
    "encode",
    f"{RESULTS}/logs/encode/{{dataset}}.log",
    config["resources"]["encode"]["mem_mb"],
    config["resources"]["encode"]["runtime"],
    per_input=config["resources"]["encode"]["mem_per_input"],
)


rule encode:
    """vocab.tsv (frequency order) and int32 id streams with <eos> per line."""
    input:
        rules.prepare.output,
    output:
        vocab=f"{RESULTS}/{{dataset}}/vocab.tsv",
        splits=expand(
            "{results}/{{dataset}}/{split}.npy", results=RESULTS, split=SPLITS
        ),
        meta=f"{RESULTS}/{{dataset}}/meta.json",
    log:
        f"{RESULTS}/logs/encode/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode/{{dataset}}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=ENCODE_MEM_MB,
        runtime=ENCODE_RUNTIME,
        slurm_partition=SLURM["cpu_partition"],
        slurm_account=SLURM["account"],
    params:
        min_count=lambda wildcards: config["datasets"][wildcards.dataset]["encode"][
            "min_count"
        ],
        max_vocab=lambda wildcards: config["datasets"][wildcards.dataset]["encode"][
            "max_vocab"
        ],
    script:
        "../scripts/encode.py"
