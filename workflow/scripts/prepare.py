"""Rule prepare: one tokenized sentence per line, per split, from the raw archive (or manual files)."""

import json
import logging
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.data.prepare import prepare  # noqa: E402

summary = prepare(
    snakemake.wildcards.dataset,  # noqa: F821
    Path(snakemake.params.raw_dir),  # noqa: F821
    Path(snakemake.output[0]).parent,  # noqa: F821
)
logging.info("prepared %s", json.dumps(summary, default=str))
