"""Rule fetch: download (or copy from a file: URL) one corpus archive and verify its checksum."""

import logging
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.data.fetch import fetch  # noqa: E402

target = Path(snakemake.output[0])  # noqa: F821
path = fetch(
    snakemake.wildcards.corpus,  # noqa: F821
    target.parent,
    url=snakemake.params.url or None,  # noqa: F821  ("" = the registry's URLs)
    sha256=snakemake.params.sha256 or None,  # noqa: F821
    stall_s=snakemake.params.stall_s,  # noqa: F821
    max_time_s=snakemake.params.max_time_s,  # noqa: F821
    max_bytes=snakemake.params.max_bytes,  # noqa: F821  (None = the corpus's default bound)
)
if path.resolve() != target.resolve():
    raise ValueError(f"fetch wrote {path}, but the rule expects {target}; the registry's file name changed")
logging.info("fetched %s", path)
