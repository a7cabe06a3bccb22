"""Rule train: one model on one dataset with the resolved config (resumes from checkpoint.pt).

gpu <= 1: trains in this process. gpu = N > 1: one process per GPU through torchrun
(`lightrnn.core.distributed.launch_command`), with the resolved config written beside the job's log
(not into OUT, which may still hold the previous run until `train` moves it aside).
A job that asked for a GPU fails at once when its environment's torch sees none (rather than
training for weeks on CPU). A checkpoint in OUT of another config or of re-encoded data is moved
to OUT/../<model>.old-<hash12>/ (kept) and the run starts afresh: Snakemake reruns the job
because a training key or the data changed, so that is what the user asked for.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
import torch  # noqa: E402

from lightrnn.config import TrainConfig  # noqa: E402
from lightrnn.core.distributed import launch_command  # noqa: E402
from lightrnn.core.errors import UsageError  # noqa: E402
from lightrnn.training.preflight import require_gpus  # noqa: E402
from lightrnn.training.train import train  # noqa: E402

config = TrainConfig.from_dict(snakemake.params.config, source=f"config for rule train {snakemake.wildcards}")  # noqa: F821
out_dir = Path(snakemake.output.metrics).parent  # noqa: F821
gpus = int(snakemake.resources.get("gpu", 0))  # noqa: F821
# CPU threads per training process: on a GPU job the rule's cpus_per_gpu (what SLURM allocates per
# GPU, config threads / gpu), else the job's threads.
threads = int(snakemake.resources.get("cpus_per_gpu", 0)) if gpus > 0 else 0  # noqa: F821
threads = threads or snakemake.threads  # noqa: F821
try:
    require_gpus(gpus, f"rule train ({snakemake.wildcards.dataset}, {snakemake.wildcards.model}), resources gpu={gpus}")  # noqa: F821
except UsageError as error:
    raise SystemExit(str(error)) from None
if gpus > 1:
    arguments = [
        "train", "--data", str(snakemake.params.data_dir), "--model", config.model, "--out", str(out_dir),  # noqa: F821
        "--config", str(config.to_yaml(Path(snakemake.log[0]).with_suffix(".config.yaml"))),  # noqa: F821
        "--dataset", snakemake.wildcards.dataset,  # noqa: F821
        "--on-config-change", "move-aside",
    ]
    # Each process gets its share of the job's CPUs; the children import this checkout's lightrnn.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_workflow.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    logging.info("data-parallel on %d GPUs: %s", gpus, " ".join(launch_command(gpus, arguments)))
    # sys.stderr is the job's log file (log_to_file): both ranks' output goes there.
    subprocess.run(launch_command(gpus, arguments), check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)
    metrics = out_dir / "metrics.jsonl"
else:
    # Jobs share the machine's cores: use the threads the rule was given, not all of them.
    torch.set_num_threads(threads)
    metrics = train(
        config, snakemake.params.data_dir, out_dir, dataset=snakemake.wildcards.dataset,  # noqa: F821
        on_config_change="move-aside",
    )
logging.info("trained %s (config hash %s) -> %s", config.model, config.config_hash, metrics)
