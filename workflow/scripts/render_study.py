"""Rule render_study: the ablation study's tables and figure from its variants' run folders."""

import datetime
import logging
from pathlib import Path

import _workflow

_workflow.log_to_file(snakemake)  # noqa: F821 (Snakemake injects `snakemake`)
from lightrnn.report.study import write_study  # noqa: E402

run_dirs = [Path(path).parent for path in snakemake.input.metrics]  # noqa: F821
date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
written = write_study(run_dirs, snakemake.params.specs, snakemake.params.out_dir, date)  # noqa: F821
logging.info("wrote %d files: %s", len(written), ", ".join(map(str, written)))
