"""Rule evaluate: exact test perplexity of best.pt, through `lightrnn eval` (prints and writes eval.json)."""

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
import torch  # noqa: E402

from lightrnn.cli import main  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
arguments = ["eval", "--checkpoint", snakemake.input.checkpoint, "--data", snakemake.params.data_dir]  # noqa: F821
arguments += ["--split", "test", "--device", snakemake.params.device, "--out", snakemake.output[0]]  # noqa: F821
status = main(arguments)
if status != 0:
    raise SystemExit(f"lightrnn eval failed with status {status}; its message is above in this log")
