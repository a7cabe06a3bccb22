# Benchmarks: every model side by side on this machine (lightrnn.benchmark). Not part of `all`:
# run it as the target `bench` (make bench), then `lightrnn bench readme` for docs/performance.md.


rule bench:
    """Throughput, memory, FLOPs and utilisation against V; model sizes; reallocation scaling; plot."""
    output:
        throughput=f"{RESULTS}/bench/throughput.csv",
        repeats=f"{RESULTS}/bench/throughput-repeats.csv",
        sizes=f"{RESULTS}/bench/sizes.csv",
        realloc=f"{RESULTS}/bench/realloc.csv",
        plot=f"{RESULTS}/bench/throughput.png",
        plot_pdf=f"{RESULTS}/bench/throughput.pdf",
    log:
        f"{RESULTS}/logs/bench.log",
    benchmark:
        f"{RESULTS}/benchmarks/bench.tsv"
    conda:
        torch_env(config["bench"]["resources"]["gpu"])
    threads: config["bench"]["threads"]
    resources:
        gpu=config["bench"]["resources"]["gpu"],
        mem_mb=config["bench"]["resources"]["mem_mb"],
        runtime=config["bench"]["resources"]["runtime"],
    params:
        settings={k: v for k, v in config["bench"].items() if k != "resources"},
    script:
        "../scripts/bench.py"
