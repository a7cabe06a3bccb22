# Configuration checks and the helpers the rules share. Nothing here runs a job.
import copy
import os
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
from lightrnn.data.fetch import check_url  # noqa: E402  (light: no torch)
from lightrnn.report.grid import expand_parts  # noqa: E402  (light: no torch)
from lightrnn.report.layout import (
    STUDY_OUTPUTS,
    planned_outputs,
    resolve_aclw_plot_dataset,
)  # noqa: E402


def _numbers(value):
    """Numbers given as text: --config reads nested values with YAML's BaseLoader, so
    --config 'resources={train: {gpu: 4}}' gives "4"; the resources and slurm keys are numbers.
    """
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue  # not this kind of number: try the next
    return value


for _section in ("resources", "slurm"):
    if isinstance(config.get(_section), dict):
        _text = {"account", "cpu_partition", "gpu_partition"}
        config[_section] = {
            key: (item if key in _text else _numbers(item))
            for key, item in config[_section].items()
        }

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
    if config["corpora"][_name].get("url"):
        try:  # what fetch will refuse (a port out of range, no host) is refused before any job
            check_url(config["corpora"][_name]["url"], f"corpora.{_name}.url")
        except ValueError as _error:
            _config_error(str(_error))
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

# A subset (datasets_to_run / models_to_run on the command line) renders its own tables and report:
# into the config's run folder it would replace a whole run's with a partial one. Name the run.
_COMMAND_LINE = dict(workflow.config_settings.config or {})
_SUBSET = {"datasets_to_run", "models_to_run"} & set(_COMMAND_LINE)
# A study runs in parts by design (models_to_run=[PART]): its tables are rendered from every
# finished run of its folder, so a part adds to them and overwrites nothing.
if _SUBSET and "run" not in _COMMAND_LINE and not config.get("study"):
    _config_error(
        f"a subset (--config datasets_to_run=... / models_to_run=...) would overwrite "
        f"{config['results_dir']}/{config['run']}/'s tables and report; give it its own run: "
        f"--config run={config['run']}-subset ... (or run={config['run']} to overwrite on purpose)"
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


def shared_benchmarks():
    """The benchmark: files of this run's data jobs, which runs share under RES (tiny_archive when
    the corpus comes from a generated tiny archive, fetch, prepare): the jobs table reads them.
    """
    paths = []
    for dataset in RUN_DATASETS:
        corpus = corpus_of(dataset)
        if not is_manual(corpus):
            filename = CORPORA[corpus].filename
            source = local_source(corpus)
            if source is not None and Path(source).parent.parent == Path(RES) / "tiny":
                paths.append(
                    f"{RES}/benchmarks/tiny_archive/{corpus}/{Path(source).name}.tsv"
                )
            paths.append(f"{RES}/benchmarks/fetch/{corpus}/{filename}.tsv")
        paths.append(f"{RES}/benchmarks/prepare/{dataset}.tsv")
    return list(dict.fromkeys(paths))


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


# --- Cluster resources (profiles/slurm) -------------------------------------------------------
# Every submitted rule (prepare, encode, train, evaluate, bench) asks for its partition, account,
# memory and time here, from config `slurm:` and `resources:`: one place a user edits (or
# overrides with --config / --configfile) without touching the profile. Under the local executor
# the partition and account are unused strings.
#
# Retries (the profile's `retries`) are spent only where one can succeed. Before a retry, the
# cause of the previous attempt is read from SLURM's own log of it (lightrnn.core.slurm), printed,
# and appended to the job's log: a job killed for memory is retried with twice the memory; a train
# job stopped by its time limit, a preemption or a node failure resumes from its checkpoint with
# the same request; another job stopped by its time limit gets twice the time; a cancelled job
# and a job that failed with its own error (which a retry repeats) are "not retried": the retry
# stops at its first line (workflow/scripts/_workflow.py), so the workflow fails at once.
import time as _time

from lightrnn.core import slurm as _slurm  # noqa: E402  (light: no torch)

SLURM = config["slurm"]
SLURM_LOGS = Path(".snakemake/slurm_logs")
_RUN_STARTED = _time.time()
_ATTEMPTS = {}  # (rule, wildcards) -> what the earlier attempts of this run ended with


def partition(gpus):
    """The partition of a job asking for `gpus` GPUs: the GPU partition only when it asks one."""
    return SLURM["gpu_partition"] if gpus > 0 else SLURM["cpu_partition"]


def _job_key(wildcards):
    # The plugin's folder of a job's logs: its wildcard values joined by "_".
    joined = "_".join(str(value) for _, value in wildcards.items())
    return joined.replace(os.sep, "_")


def _largest_node_mb():
    """The most memory one node of the cluster has (sinfo), or None when it cannot be asked."""
    import subprocess

    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%m"], capture_output=True, text=True, timeout=30
        ).stdout
        sizes = [
            int(token.rstrip("+"))
            for token in out.split()
            if token.rstrip("+").isdigit()
        ]
        return max(sizes) if sizes else None
    except (OSError, subprocess.SubprocessError):
        return None


def _job_state(job_id):
    """SLURM's state of an ended job (squeue keeps it MinJobAge seconds), or "" when unknown."""
    import subprocess

    if not _on_slurm():
        return ""
    try:
        return subprocess.run(
            ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _on_slurm():
    plugin = workflow.executor_plugin
    return plugin is not None and getattr(plugin, "name", "") == "slurm"


def _history(name, wildcards, attempt, log_template, first_mb, first_min, resumes):
    """This job's requests for `attempt`: (mem_mb, runtime), after reading (once) how each earlier
    attempt of this run ended and saying so where the user looks."""
    key = (name, _job_key(wildcards))
    state = _ATTEMPTS.setdefault(
        key,
        {
            "memory": 0,
            "time": 0,
            "seen": set(),
            "log": log_template.format(**dict(wildcards.items())),
            "request": (first_mb, first_min),
            "first": (first_mb, first_min),
            "resumes": resumes,
        },
    )
    if attempt > 1 and workflow.is_main_process:
        _explain(name, key, state, first_mb, first_min, attempt)
    return _request(state, first_mb, first_min)


def _request(state, first_mb, first_min):
    cap_min = SLURM["time_limit"]
    mem = first_mb * 2 ** state["memory"]
    largest = state.get("largest_mb")
    if largest:
        mem = min(mem, largest)
    runtime = min(
        first_min * 2 ** state["time"] if not state["resumes"] else first_min, cap_min
    )
    return mem, runtime


def _explain(name, key, state, first_mb, first_min, attempt, final=False):
    """Read the SLURM logs of this job's attempts not read yet; print and log each one's end."""
    logs = _slurm.attempt_logs(SLURM_LOGS / f"rule_{name}" / key[1], since=_RUN_STARTED)
    for log in logs:
        if log.stem in state["seen"]:
            continue
        state["seen"].add(log.stem)
        outcome = _slurm.read_outcome(log, _job_state(log.stem))
        if outcome.stopped:  # the attempt after a "not retried" line: said already
            continue
        asked_mb, asked_min = state["request"]
        what = outcome.describe(asked_mb=asked_mb, asked_min=asked_min)
        if outcome.kind == "memory":
            if "largest_mb" not in state and _on_slurm():
                state["largest_mb"] = _largest_node_mb()
            state["memory"] += 1
        elif outcome.kind == "time" and not state["resumes"]:
            state["time"] += 1
        mem, runtime = _request(state, first_mb, first_min)
        if final:
            then = "no retries left (the profile's `retries`)"
        elif outcome.kind in ("cancelled", "failed"):
            then = f"{_slurm.NOT_RETRIED}: " + (
                "run the workflow again to resume"
                if outcome.kind == "cancelled"
                else "a retry would repeat it"
            )
        elif outcome.kind == "memory" and mem <= asked_mb:
            then = (
                f"{_slurm.NOT_RETRIED}: no node has more memory; lower the job's size"
            )
        elif outcome.kind == "memory":
            then = f"the retry asks {mem} MB"
        elif outcome.kind == "time" and not state["resumes"] and runtime <= asked_min:
            then = f"{_slurm.NOT_RETRIED}: slurm.time_limit ({SLURM['time_limit']} min) is reached"
        elif outcome.kind == "time" and not state["resumes"]:
            then = f"the retry asks {runtime} min"
        else:
            then = "the retry resumes from the checkpoint"
        state["request"] = (mem, runtime)
        if _slurm.NOT_RETRIED in then:
            _last_attempt(name, key[1])
        line = (
            f"{_slurm.PREFIX} {name} {key[1]}: SLURM job {outcome.job_id} {what} "
            f"(SLURM's log: {log}); {then}"
        )
        print(line, file=sys.stderr, flush=True)
        _slurm.append_line(Path(state["log"]), line)


def _last_attempt(name, key):
    """Make the attempt now starting this job's last one: Snakemake decides retries per rule, not
    per cause, so a job whose retry cannot succeed is marked as on its final attempt (that attempt
    stops at its first line: workflow/scripts/_workflow.py)."""
    for job in list(workflow.dag.needrun_jobs()):
        if job.rule.name == name and _job_key(job.wildcards) == key:
            job._attempt = (
                job.restart_times + 1
            )  # Snakemake has no public per-job retry count


def explain_failures():
    """onerror: the end of each job's last attempt that no retry has explained yet."""
    for (name, key), state in _ATTEMPTS.items():
        first_mb, first_min = state["first"]
        _explain(name, (name, key), state, first_mb, first_min, attempt=0, final=True)


def cluster_resources(name, log_template, mem_mb, runtime, per_input=0, resumes=False):
    """The resource callables of a submitted rule: mem_mb (MB; plus `per_input` MB per MB of the
    job's input, so a small corpus asks little) and runtime (minutes) of each attempt. Without
    `per_input` they do not read the input, so a dry run shows their values."""

    def first_request(input=None):
        first_mb = int(mem_mb + (per_input * input.size_mb if per_input else 0))
        return first_mb, min(runtime, SLURM["time_limit"])

    def request(wildcards, attempt, input=None):
        first_mb, first_min = first_request(input)
        return _history(
            name, wildcards, attempt, log_template, first_mb, first_min, resumes
        )

    if per_input:
        return (
            lambda wildcards, input, attempt: request(wildcards, attempt, input)[0],
            lambda wildcards, input, attempt: request(wildcards, attempt, input)[1],
        )
    return (
        lambda wildcards, attempt: request(wildcards, attempt)[0],
        lambda wildcards, attempt: request(wildcards, attempt)[1],
    )


def check_partitions():
    """onstart under SLURM: each configured partition exists (else every submission would be
    rejected, and retried), in one line naming the key to set."""
    if not _on_slurm():
        return
    import subprocess

    try:
        listed = subprocess.run(
            ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    for key in ("cpu_partition", "gpu_partition"):
        name = SLURM[key]
        if name and listed and name not in listed:
            raise WorkflowError(
                f"config slurm.{key}: {name!r} is not a partition of this cluster (sinfo lists "
                f"{', '.join(sorted(set(listed)))}); set it in config/config.yaml or pass "
                f"--config 'slurm={{{key}: NAME}}'"
            )
