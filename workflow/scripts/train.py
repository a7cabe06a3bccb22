"""Rule train: one model on one dataset with the resolved config (resumes from checkpoint.pt).

gpu <= 1: trains in this process. gpu = N > 1: one process per GPU through torchrun
(`lightrnn.distributed.launch_command`), with the resolved config written to OUT/config.yaml.
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
from lightrnn.distributed import launch_command  # noqa: E402
from lightrnn.train import train  # noqa: E402

config = TrainConfig.from_dict(snakemake.params.config, source=f"config for rule train {snakemake.wildcards}")  # noqa: F821
out_dir = Path(snakemake.output.metrics).parent  # noqa: F821
gpus = int(snakemake.resources.get("gpu", 0))  # noqa: F821
if gpus > 1:
    arguments = [
        "train", "--data", str(snakemake.params.data_dir), "--model", config.model, "--out", str(out_dir),  # noqa: F821
        "--config", str(config.to_yaml(out_dir / "config.yaml")), "--dataset", snakemake.wildcards.dataset,  # noqa: F821
    ]
    # The rule's threads are shared by its processes; the children import this checkout's lightrnn.
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, snakemake.threads // gpus)),  # noqa: F821
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_workflow.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    logging.info("data-parallel on %d GPUs: %s", gpus, " ".join(launch_command(gpus, arguments)))
    # sys.stderr is the job's log file (log_to_file): both ranks' output goes there.
    subprocess.run(launch_command(gpus, arguments), check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)
    metrics = out_dir / "metrics.jsonl"
else:
    # Jobs share the machine's cores: use the threads the rule was given, not all of them.
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    metrics = train(config, snakemake.params.data_dir, out_dir, dataset=snakemake.wildcards.dataset)  # noqa: F821
logging.info("trained %s (config hash %s) -> %s", config.model, config.config_hash, metrics)
