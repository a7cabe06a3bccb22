"""Rule tiny_archive: write the tiny archive of one corpus (byte-deterministic for a seed)."""

import logging
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.data.tiny import make_tiny_archive  # noqa: E402

target = Path(snakemake.output[0])  # noqa: F821
path, sha256 = make_tiny_archive(snakemake.wildcards.corpus, target.parent, seed=snakemake.params.seed)  # noqa: F821
if path.resolve() != target.resolve():
    raise ValueError(
        f"make_tiny_archive wrote {path}, but the rule expects {target}: the URL in the config must use "
        f"the registry's file name ({path.name})"
    )
logging.info("tiny archive %s sha256 %s", path, sha256)
