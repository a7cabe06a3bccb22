"""Rule bench: `lightrnn bench all` into the rule's output folder, with the config's bench settings."""

from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.cli import main  # noqa: E402

settings = snakemake.params.settings  # noqa: F821
arguments = ["bench", "all", "--out", str(Path(snakemake.output.throughput).parent)]  # noqa: F821
for key in ("vocab_sizes", "models", "realloc_sizes"):
    arguments += [f"--{key.replace('_', '-')}", *map(str, settings[key])]
for key in ("embed_dim", "hidden_dim", "num_layers", "batch_size", "bptt", "warmup_steps", "timed_steps",
            "min_seconds", "repeats", "threads", "device", "dtype", "realloc_time_limit"):
    arguments += [f"--{key.replace('_', '-')}", str(settings[key])]
status = main(arguments)
if status != 0:
    raise SystemExit(f"lightrnn bench failed with status {status}; its message is above in this log")
