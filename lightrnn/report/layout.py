"""What a report consists of: dataset families, model order and the output file names.

This module imports nothing heavy on purpose: the Snakefile imports it at parse time to declare
the report rule's outputs, so the DAG and `write_report` agree on one list of files.
"""

from __future__ import annotations

import re

from lightrnn.registry import names

# Display order (the registry's) and names of the models in every table and legend.
MODEL_ORDER: tuple[str, ...] = tuple(names())
MODEL_LABELS: dict[str, str] = {
    "lightrnn": "LightRNN",
    "full_softmax": "Full softmax",
    "class_softmax": "Class softmax",
    "adaptive_softmax": "Adaptive softmax",
}
LANGUAGES: dict[str, str] = {
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "ru": "Russian",
}
DATASET_LABELS: dict[str, str] = {
    "ptb": "PTB",
    "wikitext2": "WikiText-2",
    "wikitext103": "WikiText-103",
    "billionw": "One Billion Word",
}
# aclw-fr (the small Botha & Blunsom set) or aclw-large-fr (the paper's large set).
_ACLW = re.compile(r"^aclw-(?:(?P<size>large|small)-)?(?P<lang>[a-z]{2})$")

# The verdict comes first: the report opens with "does the paper hold?".
TABLES: tuple[str, ...] = (
    "verdict", "aclw", "billionw", "billionw-speed", "benchmarks", "size-speed", "jobs", "reallocation"
)
TABLE_FORMATS: tuple[str, ...] = ("md", "tex", "csv", "html")
# What an ablation study run renders (lightrnn.report.study.write_study), below the run folder.
STUDY_OUTPUTS: tuple[str, ...] = (
    "tables/ablation.md", "tables/ablation.csv", "tables/study-realloc.md", "tables/study-realloc.csv",
    "plots/ablation.png", "plots/ablation.pdf",
)
PLOT_FORMATS: tuple[str, ...] = ("png", "pdf")
# Claim and verdict word only: short enough for the front page of `snakemake --report`, which
# inserts it (workflow/report/workflow.rst); the full verdict table is one click away.
VERDICT_SUMMARY = "verdict-summary.html"


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def model_sort_key(model: str) -> tuple[int, str]:
    """Known models first, in the paper's order; unknown ones after, alphabetically."""
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)


def aclw_language(dataset: str) -> tuple[str, str] | None:
    """('French', 'large') for 'aclw-large-fr', ('French', 'small') for 'aclw-fr', else None."""
    match = _ACLW.match(dataset)
    if match is None:
        return None
    return LANGUAGES.get(match["lang"], match["lang"]), match["size"] or "small"


def dataset_label(dataset: str) -> str:
    language = aclw_language(dataset)
    if language is not None:
        name, size = language
        return f"ACLW {name}" + (" (large)" if size == "large" else "")
    return DATASET_LABELS.get(dataset, dataset)


def dataset_family(dataset: str) -> str:
    """The table a dataset's perplexities go to: 'aclw', 'billionw' or 'benchmarks'."""
    if aclw_language(dataset) is not None:
        return "aclw"
    if dataset == "billionw" or dataset.startswith("billionw-"):
        return "billionw"
    return "benchmarks"


AUTO = "auto"
# The paper's figure is on the large French set; the small one stands in when the run lacks it.
ACLW_PLOT_CHOICES: tuple[str, ...] = ("aclw-large-fr", "aclw-fr")


def resolve_aclw_plot_dataset(choice: str | None, datasets: list[str]) -> str | None:
    """The dataset of the paper-style figure: for "auto" the large French ACLW set when the run has
    it, else the small one, else None (no figure). A named ACLW set the run lacks falls back to the
    other size of its language when the run has that one (aclw-large-fr <-> aclw-fr)."""
    if choice != AUTO:
        if choice is None or choice in datasets or not choice.startswith("aclw-"):
            return choice
        large = choice.startswith("aclw-large-")
        other = choice.replace("aclw-large-", "aclw-", 1) if large else choice.replace("aclw-", "aclw-large-", 1)
        return other if other in datasets else choice
    return next((dataset for dataset in ACLW_PLOT_CHOICES if dataset in datasets), None)


def paper_figure(dataset: str) -> str:
    """The file stem of the paper-style ACLW-French figure drawn from `dataset`, beside the published
    curve: `aclw-fr-vs-paper` (every dataset's own training curves are `curves-<dataset>`)."""
    return f"{dataset}-vs-paper"


def planned_outputs(
    datasets: list[str], models: list[str], aclw_plot_dataset: str | None, jobs: bool = False
) -> list[str]:
    """Paths, relative to the report folder, that `write_report` writes for this run matrix.

    A table or plot is planned only when the run holds the rows it needs, so the list is a
    pure function of the configuration, known before any training. The verdict table is always
    planned: a claim this run cannot check reads "not run here". `jobs`: the jobs table (what each
    Snakemake job cost, from the rules' benchmark files), which the workflow asks for.
    """
    if not datasets or not models:
        raise ValueError("planned_outputs: the run needs at least one dataset and one model")
    aclw_plot_dataset = resolve_aclw_plot_dataset(aclw_plot_dataset, datasets)
    families = {dataset_family(dataset) for dataset in datasets}
    tables = ["verdict"] + [name for name in ("aclw", "billionw", "benchmarks") if name in families]
    if "billionw" in families:
        tables.insert(tables.index("billionw") + 1, "billionw-speed")
    tables.append("size-speed")
    if jobs:
        tables.append("jobs")
    if "lightrnn" in models:
        tables.append("reallocation")
    plots = [f"curves-{dataset}" for dataset in datasets] + ["size-speed"]
    if aclw_plot_dataset and aclw_plot_dataset in datasets and "lightrnn" in models:
        plots.insert(0, paper_figure(aclw_plot_dataset))
    return [f"tables/{name}.{fmt}" for name in tables for fmt in TABLE_FORMATS] + [VERDICT_SUMMARY] + [
        f"plots/{name}.{fmt}" for name in plots for fmt in PLOT_FORMATS
    ]
