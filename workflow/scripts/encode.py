"""Rule encode: vocabulary (the dataset's rule, or the config's override) and int32 id streams."""

import json
import logging
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.data.encode import encode  # noqa: E402

meta = encode(
    Path(snakemake.input[0]).parent,  # noqa: F821
    Path(snakemake.output.vocab).parent,  # noqa: F821
    dataset=snakemake.wildcards.dataset,  # noqa: F821
    min_count=snakemake.params.min_count,  # noqa: F821
    max_vocab=snakemake.params.max_vocab,  # noqa: F821
)
logging.info("encoded %s", json.dumps(meta, default=str))
