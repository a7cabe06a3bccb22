"""Benchmarks: speed, memory and scale of every model, side by side, against the machine's limit.

One concept per module:
    machine     what the numbers were measured on; the measured matmul peak; peak memory
    flops       analytic FLOPs per token of each model (LSTM + output layer, what is computed)
    throughput  training / evaluation tokens/s and peak memory on a synthetic Zipfian stream
    scaling     reallocation time and gap against V; model sizes of the paper's configurations
    report      the plot (PNG + PDF) and the `performance` section of docs/performance.md, from the CSVs only
    suite       everything above into one folder (what `lightrnn bench all` and the rule run)
"""
