# The LightRNN replication DAG: corpora -> encoded data -> trained models -> exact test
# perplexity -> paper-style tables and figures. Layout and data flow: docs/DESIGN.md.
#   snakemake --cores all                                  the paper run on downloadable data (config/config.yaml)
#   snakemake --cores all --configfile config/aclw-large.yaml   ... plus the paper's large ACLW sets (placed by hand)
#   snakemake --cores all --configfile config/smoke.yaml   tiny corpora, minutes on a CPU
#   snakemake --report results/<run>/report.html           the HTML report, after a run
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


onstart:
    check_partitions()


onerror:
    explain_failures()


# On the submit host under a cluster executor: downloads need the internet (compute nodes are
# often offline), the others take seconds.
localrules:
    tiny_archive,
    fetch,
    render_report,
    render_study,


rule all:
    default_target: True
    input:
        run_files("eval.json"),
        (
            [f"{RESULTS}/{path}" for path in STUDY_OUTPUTS]
            if config["study"]
            else [f"{RESULTS}/{path}" for path in REPORT_OUTPUTS]
        ),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/study.smk"
include: "workflow/rules/bench.smk"
