# Configuration checks and the helpers the rules share. Nothing here runs a job.
import copy
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# This checkout's lightrnn package, whichever environment runs Snakemake.
sys.path.insert(0, str(Path(workflow.main_snakefile).parent))
from lightrnn.data.corpora import CORPORA, DATASETS  # noqa: E402  (light: no torch)
from lightrnn.registry import names as model_names  # noqa: E402  (light: no torch)
from lightrnn.core.runlock import live_holder  # noqa: E402  (light: no torch)
from lightrnn.report.grid import expand_parts  # noqa: E402  (light: no torch)
from lightrnn.report.layout import (
    STUDY_OUTPUTS,
    planned_outputs,
    resolve_aclw_plot_dataset,
)  # noqa: E402

# Before any job: the schema (types, required keys, no unknown keys), then the cross-references
# the schema cannot express. Each error names the key and what to do.
validate(config, "../schemas/config.schema.yaml")
# A study's parts (config/study.yaml `study_grid`): part names in models_to_run become their variants.
expand_parts(config, f"{config['results_dir']}/{config['run']}")


MODEL_NAMES = model_names()


def _config_error(message):
    raise ValueError(f"config: {message}")


for _name in config["datasets_to_run"]:
    if _name not in DATASETS:
        _config_error(
            f"datasets_to_run: unknown dataset {_name!r}; the registry has {', '.join(DATASETS)}"
        )
    if _name not in config["datasets"]:
        _config_error(
            f"datasets_to_run: {_name!r} has no entry under `datasets:`; add its encode and train keys"
        )
for _name in config["corpora"]:
    if _name not in CORPORA or CORPORA[_name].archive_format == "manual":
        _downloadable = [
            c for c, entry in CORPORA.items() if entry.archive_format != "manual"
        ]
        _config_error(
            f"corpora: {_name!r} is not a downloadable corpus; choose from {', '.join(_downloadable)}"
        )
for _name in config["models_to_run"]:
    _entry = config["models"].get(_name, {})
    if _entry.get("model", _name) not in MODEL_NAMES:
        _config_error(
            f"models_to_run: {_name!r} is neither a registered model ({', '.join(MODEL_NAMES)}) "
            f"nor a variant under `models:` with `model: <one of them>`"
        )
for _scope in ("train", "train_override"):
    if "model" in config[_scope]:
        _config_error(
            f"{_scope}.model: the model comes from models_to_run, remove this key"
        )

for _job in ("train", "evaluate"):
    _res = config["resources"][_job]
    if _res["gpu"] > 1 and _res["threads"] % _res["gpu"]:
        _config_error(
            f"resources.{_job}: threads ({_res['threads']}) must be a multiple of gpu ({_res['gpu']}): "
            "each of the job's processes uses threads / gpu CPU threads"
        )

RESULTS = f"{config['results_dir']}/{config['run']}"
RES = config["resources_dir"]
RUN_DATASETS = config["datasets_to_run"]
RUN_MODELS = config["models_to_run"]


ACLW_PLOT_DATASET = resolve_aclw_plot_dataset(
    config["report"]["aclw_plot_dataset"], RUN_DATASETS
)
REPORT_OUTPUTS = planned_outputs(RUN_DATASETS, RUN_MODELS, ACLW_PLOT_DATASET, jobs=True)
SPLITS = ["train", "valid", "test"]


wildcard_constraints:
    dataset="|".join(RUN_DATASETS),
    model="|".join(RUN_MODELS),
    corpus="[a-z0-9-]+",
    filename="[^/]+",


def torch_env(gpus):
    """The conda env of a torch job: a CUDA build of pytorch when the job asks for a GPU, the CPU
    build otherwise (no multi-GB CUDA download for the smoke run or a CPU benchmark)."""
    return "../envs/train.yaml" if gpus else "../envs/train-cpu.yaml"


def _missing_hand_placed():
    """Every hand-placed corpus file this run needs and lacks (Snakemake stops at the first job)."""
    missing = []
    for dataset in RUN_DATASETS:
        corpus = DATASETS[dataset].corpus
        if CORPORA[corpus].archive_format == "manual":
            for split in SPLITS:
                missing += [
                    path
                    for member in DATASETS[dataset].splits[split]
                    if not Path(path := f"{RES}/raw/{corpus}/{member}").exists()
                ]
    return missing


if _missing := _missing_hand_placed():
    print(
        f"{len(_missing)} hand-placed corpus files are missing (place them as config/aclw-large.yaml says):\n  "
        + "\n  ".join(_missing),
        file=sys.stderr,
    )


def corpus_of(dataset):
    return DATASETS[dataset].corpus


def is_manual(corpus):
    """Corpora a user places by hand (ACLW large): prepare reads them, nothing is fetched."""
    return CORPORA[corpus].archive_format == "manual"


def raw_archive(corpus):
    return f"{RES}/raw/{corpus}/{CORPORA[corpus].filename}"


def local_source(corpus):
    """The path of a file: URL (relative `file:dir/x` or absolute `file:///dir/x`), else None."""
    url = config["corpora"].get(corpus, {}).get("url")
    if not url or not url.startswith("file:"):
        return None
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)


def fetch_url(wildcards):
    """The configured URL ("" = the registry's); a local path becomes an absolute file:// URL."""
    path = local_source(wildcards.corpus)
    if path is not None:
        return Path(path).resolve().as_uri()
    return config["corpora"].get(wildcards.corpus, {}).get("url") or ""


def fetch_input(wildcards):
    """A local file: URL is an input, so the DAG makes it first (the smoke run's tiny archives)."""
    path = local_source(wildcards.corpus)
    return [] if path is None else [path]


def prepare_input(wildcards):
    """The archive; for a corpus placed by hand, every split file where the user puts it, so a
    dry run names each missing file and editing one reruns its dataset."""
    corpus = corpus_of(wildcards.dataset)
    if not is_manual(corpus):
        return [raw_archive(corpus)]
    splits = DATASETS[wildcards.dataset].splits
    return [
        f"{RES}/raw/{corpus}/{member}" for split in SPLITS for member in splits[split]
    ]


def _merge(base, update):
    """Recursive dict update (like Snakemake's own config merging); lists replace."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def train_config(wildcards):
    """train < datasets.<d>.train < models.<m>.train < train_override, plus the model's name."""
    resolved = config["train"]
    for layer in (
        config["datasets"][wildcards.dataset]["train"],
        config["models"].get(wildcards.model, {"train": {}})["train"],
        config["train_override"],
    ):
        resolved = _merge(resolved, layer)
    return {"model": registered_model(wildcards.model), **resolved}


def registered_model(run_name):
    """The registered model a run (a model name or a variant under `models:`) trains."""
    return config["models"].get(run_name, {}).get("model", run_name)


def encoded(dataset):
    return [f"{RESULTS}/{dataset}/vocab.tsv"] + [
        f"{RESULTS}/{dataset}/{split}.npy" for split in SPLITS
    ]


def cpus_per_gpu(rule):
    """SLURM's --cpus-per-gpu for a GPU job: the torch threads each of its processes uses
    (workflow/scripts/train.py gives each of N processes threads / N); 0 = not a GPU job.
    """
    res = config["resources"][rule]
    return res["threads"] // res["gpu"] if res["gpu"] > 0 else 0


def run_files(name):
    return [
        f"{RESULTS}/{dataset}/{model}/{name}"
        for dataset in RUN_DATASETS
        for model in RUN_MODELS
    ]


CAPTIONS = {
    "verdict": "verdict.rst",
    "aclw": "aclw.rst",
    "billionw": "billionw.rst",
    "billionw-speed": "billionw-speed.rst",
    "benchmarks": "benchmarks.rst",
    "size-speed": "size-speed.rst",
    "jobs": "jobs.rst",
    "reallocation": "reallocation.rst",
}


def report_output(path):
    """A report rule output; HTML tables and PNG figures go into `snakemake --report` with a caption.

    HTML, not CSV: the report shows an HTML file inline and offers a CSV only as a download. The
    front page (workflow/report/workflow.rst) inserts tables/verdict.html itself.
    """
    target = f"{RESULTS}/{path}"
    if (
        "/" not in path
    ):  # verdict-summary.html: inserted into the front page, not a result
        return target
    folder, name = path.split("/")
    stem, fmt = name.rsplit(".", 1)
    if folder == "tables" and fmt == "html" and stem == "verdict":
        # Its own category, which sorts first in the HTML report: the answer before the evidence.
        return report(
            target,
            caption="../report/verdict.rst",
            category="Does the paper hold",
            labels={"table": stem},
        )
    if folder == "tables" and fmt == "html":
        return report(
            target,
            caption=f"../report/{CAPTIONS[stem]}",
            category="Tables",
            labels={"table": stem},
        )
    if folder == "plots" and fmt == "png":
        if stem.startswith("curves-"):
            caption, figure = "../report/curves.rst", stem[len("curves-") :]
        elif stem == "size-speed":
            caption, figure = "../report/size-speed-plot.rst", "size and speed"
        else:
            caption, figure = "../report/perplexity-plot.rst", stem
        return report(
            target, caption=caption, category="Figures", labels={"figure": figure}
        )
    return target


def train_inputs(wildcards):
    """The train job's inputs; refuses the job while another process holds its OUT/.lock, before
    Snakemake deletes the outputs that process is writing (see workflow/rules/train.smk).
    """
    out_dir = f"{RESULTS}/{wildcards.dataset}/{wildcards.model}"
    holder = live_holder(out_dir)
    if holder is not None:
        raise WorkflowError(
            f"{out_dir} is in use by {holder}; this workflow would delete its metrics.jsonl and best.pt: "
            "wait for that process to finish (or stop it), then run the workflow again"
        )
    return encoded(wildcards.dataset)
