"""Paper-style tables as pure functions of metrics rows (rendered by `lightrnn.report.render`).

Each builder takes the `Results` (metrics.jsonl rows and eval.json records, grouped once) and returns a
`Table`: display cells for Markdown/LaTeX, and full-precision CSV records where every row carries
its provenance (git revision, device, date, config hash).
"""

from __future__ import annotations

import math
from typing import Any

from lightrnn.report import paper
from lightrnn.report.layout import (
    LANGUAGES,
    aclw_language,
    dataset_family,
    dataset_label,
    model_label,
    model_sort_key,
)
from lightrnn.report.paper import PAPER_MODELS, SAME_MODEL, Published, Result
from lightrnn.report.render import Table, format_count, format_float, format_megabytes, format_ppl, format_ratio
from lightrnn.report.results import Results, RunSummary

REFERENCE_MODEL = "full_softmax"


def _provenance(summary: RunSummary, date: str) -> dict[str, Any]:
    return {
        "git_rev": summary.git_rev,
        "device": summary.device,
        "date": date,
        "config_hash": summary.config_hash,
    }


def _argmin(values: list[float | None]) -> int | None:
    present = [(value, index) for index, value in enumerate(values) if value is not None]
    return min(present)[1] if present else None


def _ordered_models(summaries: dict[tuple[str, str], RunSummary]) -> list[str]:
    return sorted({model for _, model in summaries}, key=model_sort_key)


def _ppl_record(table: str, summary: RunSummary, date: str, **extra: Any) -> dict[str, Any]:
    return {
        "table": table,
        "dataset": summary.dataset,
        **extra,
        "model": summary.model,
        "test_ppl": summary.test_ppl,
        "ppl_source": summary.ppl_source,
        "best_valid_ppl": summary.best_valid_ppl,
        "params": summary.params,
        "epochs": summary.epochs,
        **_provenance(summary, date),
    }


# ----------------------------------------------------------------------------- builders
# ----------------------------------------------------------------------------- paper beside ours
NOT_RUN = "not run"  # the paper has it, this run does not: never a blank that reads as a result
NOT_IN_PAPER = "not in paper"


def format_delta(ours: float | None, paper: float | None, digits: int = 1) -> tuple[str, str]:
    """('+12.3', '+7.5%'): ours minus the paper's, absolute and relative to the paper's; '–' when either is missing."""
    if ours is None or paper is None or not math.isfinite(ours):
        return "–", "–"
    difference = ours - paper
    return f"{difference:+,.{digits}f}", f"{100 * difference / paper:+.1f}%"


def _published_cell(value: Published | None, format_value) -> str:
    if value is None:
        return "–"
    text = format_value(value.value)  # the paper's own precision: 176, not 176.0
    return f"{text} ({value.flag})" if value.flag else text


def _comparison_line(paper: Result | None, summary: RunSummary | None, run_label: str) -> list[str]:
    """[our data, paper ppl, our ppl, Δ, Δ%, paper params, our params, Δ params %]."""
    paper_ppl = paper.ppl if paper else None
    paper_params = paper.params if paper else None
    ours_ppl = summary.test_ppl if summary else None
    ours_params = summary.params if summary else None
    ppl_delta = format_delta(ours_ppl, paper_ppl.value if paper_ppl else None)
    params_delta = format_delta(ours_params, paper_params.value if paper_params else None)
    missing_paper = "–" if paper else NOT_IN_PAPER
    return [
        run_label if summary else NOT_RUN,
        _published_cell(paper_ppl, "{:g}".format) if paper else missing_paper,
        format_ppl(ours_ppl) if summary else NOT_RUN,
        *ppl_delta,
        _published_cell(paper_params, format_count) if paper else missing_paper,
        format_count(ours_params) if summary else NOT_RUN,
        params_delta[1],
    ]


def _comparison_record(
    table: str, group: str, paper_model: str | None, paper: Result | None, summary: RunSummary | None, date: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "table": table,
        "group": group,
        "dataset": summary.dataset if summary else None,
        "model": summary.model if summary else None,
        "paper_model": paper_model,
        "paper_ppl": paper.ppl.value if paper else None,
        "paper_ppl_source": paper.ppl.source if paper else None,
        "paper_ppl_recalled": paper.ppl.recalled if paper else None,
        "paper_params": paper.params.value if paper and paper.params else None,
        "test_ppl": summary.test_ppl if summary else None,
        "ppl_source": summary.ppl_source if summary else None,
        "best_valid_ppl": summary.best_valid_ppl if summary else None,
        "params": summary.params if summary else None,
        "epochs": summary.epochs if summary else None,
    }
    if summary is not None:
        record.update(_provenance(summary, date))
    else:
        record.update({"git_rev": None, "device": None, "date": date, "config_hash": None})
    return record


_COMPARISON_HEADER = [
    "Model", "Our data", "Paper ppl", "Our ppl", "Δ ppl", "Δ ppl %", "Paper params", "Our params", "Δ params %",
]


def _comparison_group(
    table: str,
    group: str,
    label: str,
    published: dict[str, Result],
    ours: dict[tuple[str, str], RunSummary],
    date: str,
) -> tuple[list[list[str]], list[dict[str, Any]], list[int]]:
    """Rows of one dataset group (a language, One Billion Word): LightRNN paper beside ours, then the
    paper's baselines (ours "not run"), then our baselines ("not in paper"). Returns cells, records
    and the indices (within the group) of the rows holding one of our perplexities."""
    cells, records, measured = [], [], []
    datasets = sorted({dataset for dataset, _ in ours}, key=dataset_label)
    for model in sorted({model for _, model in ours} | {m for m in SAME_MODEL if m in published}, key=model_sort_key):
        paper_model = SAME_MODEL.get(model)
        result = published.get(paper_model) if paper_model else None
        runs = [ours[(dataset, model)] for dataset in datasets if (dataset, model) in ours] or [None]
        for summary in runs:
            if summary is not None:
                measured.append(len(cells))
            cells.append([label, model_label(model), *_comparison_line(result, summary, _data_label(summary))])
            records.append(_comparison_record(table, group, paper_model if result else None, result, summary, date))
    for paper_model, result in published.items():
        if paper_model in SAME_MODEL.values():
            continue
        cells.append([label, PAPER_MODELS[paper_model], *_comparison_line(result, None, "")])
        records.append(_comparison_record(table, group, paper_model, result, None, date))
    return cells, records, measured


def _data_label(summary: RunSummary | None) -> str:
    """Which data our number comes from: the ACLW set size, else the dataset's name."""
    if summary is None:
        return NOT_RUN
    language = aclw_language(summary.dataset)
    if language is not None:
        return "large set" if language[1] == "large" else "small set"
    return summary.dataset


def _comparison_table(
    name: str, title: str, first: str, groups: list[tuple[str, str, dict[str, Result], dict]], date: str, note: str
) -> Table:
    cells, records, bold = [], [], set()
    for group, label, published, ours in groups:
        group_cells, group_records, measured = _comparison_group(name, group, label, published, ours, date)
        ppls = [group_records[i]["test_ppl"] for i in measured]
        best = _argmin(ppls)
        if best is not None:
            bold.add((len(cells) + measured[best], 4))
        cells += group_cells
        records += group_records
    return Table(name, title, [first] + _COMPARISON_HEADER, cells, records, frozenset(bold), note, left=3)


def aclw_table(results: Results, date: str) -> Table:
    """ACLW: per language, the paper's perplexity and parameters beside ours, with the differences.

    Every language and model of the paper's table is listed; what this run lacks reads "not run",
    what the paper lacks (our baselines) "not in paper".
    """
    summaries = {key: value for key, value in results.summaries.items() if dataset_family(key[0]) == "aclw"}
    if not summaries:
        raise ValueError("aclw_table: no ACLW rows (datasets named aclw-<lang> or aclw-large-<lang>)")
    codes = {code: LANGUAGES.get(code, code) for code in paper.ACLW}
    for dataset, _ in summaries:
        code = dataset.rsplit("-", 1)[1]
        codes.setdefault(code, LANGUAGES.get(code, code))
    groups = []
    for code, language in sorted(codes.items(), key=lambda item: item[1]):
        ours = {key: value for key, value in summaries.items() if key[0].rsplit("-", 1)[1] == code}
        groups.append((code, language, paper.ACLW.get(code, {}), ours))
    return _comparison_table(
        "aclw",
        "ACLW: test perplexity and parameters, the paper's beside this run's",
        "Language",
        groups,
        date,
        "Paper: the large ACLW sets (" + paper.SOURCES["paper"] + "); KN-5 recalled, not checked against "
        "the paper's text. Ours: this run; \"small set\" is Botha & Blunsom's ~1M-token set, not the paper's "
        "data. Δ = ours - paper. Lowest perplexity of ours per language in bold.",
    )


def billion_word_table(results: Results, date: str) -> Table:
    """One Billion Word: the paper's perplexity and parameters beside ours, with the differences."""
    summaries = {key: value for key, value in results.summaries.items() if dataset_family(key[0]) == "billionw"}
    if not summaries:
        raise ValueError("billion_word_table: no rows with dataset 'billionw'")
    return _comparison_table(
        "billionw",
        "One Billion Word: test perplexity and parameters, the paper's beside this run's",
        "Dataset",
        [("billionw", "One Billion Word", paper.BILLIONW, summaries)],
        date,
        "Paper: " + paper.SOURCES["paper"] + "; KN-5 recalled. Ours: this run (its data and model sizes "
        "are in the size table). Δ = ours - paper. Lowest perplexity of ours in bold.",
    )


def _per_model_table(
    name: str, title: str, summaries: dict[tuple[str, str], RunSummary], date: str, with_dataset: bool
) -> Table:
    cells, records, bold = [], [], set()
    datasets = sorted({dataset for dataset, _ in summaries}, key=dataset_label)
    for dataset in datasets:
        group = sorted(
            (summary for (d, _), summary in summaries.items() if d == dataset),
            key=lambda summary: model_sort_key(summary.model),
        )
        start = len(cells)
        for summary in group:
            line = [dataset_label(dataset)] if with_dataset else []
            line += [model_label(summary.model), format_ppl(summary.test_ppl), format_count(summary.params)]
            cells.append(line)
            records.append(_ppl_record(name, summary, date))
        best = _argmin([summary.test_ppl for summary in group])
        if best is not None:
            bold.add((start + best, 2 if with_dataset else 1))
    header = (["Dataset"] if with_dataset else []) + ["Model", "Perplexity", "Parameters"]
    return Table(name, title, header, cells, records, frozenset(bold), "Lowest perplexity in bold.")


def billion_word_speed_table(results: Results, date: str) -> Table:
    """The official example's One Billion Word speed table beside ours.

    Parameters: the published count beside `param_count` at V = 793,471 (exact, nothing trained).
    Tokens/s and memory: a LightRNN run of this report on One Billion Word whose parameter count
    is that closed form (the same vocabulary and sizes), else "not run".
    """
    from lightrnn import registry

    summaries = results.summaries
    runs = [s for (d, m), s in summaries.items() if dataset_family(d) == "billionw" and m == "lightrnn"]
    vocab = paper.BILLIONW_VOCAB
    cells, records = [], []
    for row in paper.SPEED:
        count = registry.param_count("lightrnn", vocab, row.embed_dim, row.hidden_dim, 2)
        ours = next((s for s in runs if s.params == count), None)
        speed = ours.train_tokens_per_s if ours else None
        cells.append([
            f"{row.embed_dim}/{row.hidden_dim}",
            str(row.batch_size),
            format_count(row.params.value),
            format_count(count),
            format_delta(count, row.params.value)[1],
            format_float(row.tokens_per_s_1gpu.value, 0),
            format_float(speed, 0) if ours else NOT_RUN,
            format_delta(speed, row.tokens_per_s_1gpu.value)[1],
            format_float(row.gpu_memory_mb.value, 0),
            format_megabytes(ours.peak_memory_bytes) if ours else NOT_RUN,
            (ours.device or "–") if ours else NOT_RUN,
        ])
        records.append({
            "table": "billionw-speed",
            "embed_dim": row.embed_dim,
            "hidden_dim": row.hidden_dim,
            "paper_batch_size": row.batch_size,
            "paper_params": row.params.value,
            "params_closed_form": count,
            "paper_tokens_per_s_1gpu": row.tokens_per_s_1gpu.value,
            "paper_tokens_per_s_2gpu": row.tokens_per_s_2gpu.value,
            "paper_gpu_memory_mb": row.gpu_memory_mb.value,
            "paper_hours_per_epoch_1gpu": row.hours_per_epoch_1gpu.value,
            "paper_source": row.params.source,
            "dataset": ours.dataset if ours else None,
            "train_tokens_per_s": speed,
            "peak_memory_bytes": ours.peak_memory_bytes if ours else None,
            **(_provenance(ours, date) if ours else {"git_rev": None, "device": None, "date": date,
                                                      "config_hash": None}),
        })
    return Table(
        name="billionw-speed",
        title="One Billion Word, LightRNN speed: the official example's table beside this run",
        header=["E/H", "Paper batch", "Paper params", "Closed-form params", "Δ params %", "Paper tokens/s",
                "Our tokens/s", "Δ tokens/s %", "Paper GPU MB", "Our peak MB", "Our device"],
        cells=cells,
        records=records,
        note=f"Paper: {paper.SOURCES['cntk-readme']}, 2 layers, one {paper.SPEED_GPU}. Closed-form params: "
        f"lightrnn.registry.param_count at V = {vocab:,}. Ours: a LightRNN run of this report with exactly that "
        "parameter count, at its own batch size and device (median training tokens/s over epochs).",
        left=2,
    )


def benchmark_table(results: Results, date: str) -> Table:
    """PTB and WikiText (not in the paper; the standard small benchmarks): model, ppl, params."""
    summaries = {
        key: value for key, value in results.summaries.items() if dataset_family(key[0]) == "benchmarks"
    }
    if not summaries:
        raise ValueError("benchmark_table: no PTB/WikiText rows")
    return _per_model_table(
        "benchmarks", "PTB and WikiText: test perplexity and parameters", summaries, date, with_dataset=True
    )


def size_speed_table(results: Results, date: str) -> Table:
    """Model size and speed per dataset and model, with ratios to the full softmax."""
    summaries = results.summaries
    cells, records = [], []
    for dataset, model in sorted(summaries, key=lambda key: (dataset_label(key[0]), model_sort_key(key[1]))):
        summary = summaries[(dataset, model)]
        reference = summaries.get((dataset, REFERENCE_MODEL))
        size_ratio = speed_ratio = None
        if reference is not None and reference.params and summary.params is not None:
            size_ratio = summary.params / reference.params
        if reference is not None and reference.train_tokens_per_s and summary.train_tokens_per_s is not None:
            speed_ratio = summary.train_tokens_per_s / reference.train_tokens_per_s
        cells.append(
            [
                dataset_label(dataset),
                model_label(model),
                format_count(summary.params),
                format_megabytes(summary.param_bytes),
                format_float(summary.train_tokens_per_s, 0),
                format_float(summary.eval_tokens_per_s, 0),
                format_megabytes(summary.peak_memory_bytes),
                format_ratio(size_ratio),
                format_ratio(speed_ratio),
            ]
        )
        records.append(
            {
                "table": "size-speed",
                "dataset": dataset,
                "model": model,
                "params": summary.params,
                "param_bytes": summary.param_bytes,
                "train_tokens_per_s": summary.train_tokens_per_s,
                "eval_tokens_per_s": summary.eval_tokens_per_s,
                "peak_memory_bytes": summary.peak_memory_bytes,
                "params_vs_full_softmax": size_ratio,
                "train_speed_vs_full_softmax": speed_ratio,
                **_provenance(summary, date),
            }
        )
    return Table(
        name="size-speed",
        title="Model size and speed (MB = 10^6 bytes; train speed is the median over epochs)",
        header=[
            "Dataset",
            "Model",
            "Parameters",
            "Size (MB)",
            "Train tokens/s",
            "Eval tokens/s",
            "Peak memory (MB)",
            "Size vs full",
            "Speed vs full",
        ],
        cells=cells,
        records=records,
        note="Ratios are to the full-softmax model on the same dataset and device.",
    )


def reallocation_table(results: Results, date: str) -> Table:
    """Per LightRNN run and round: perplexities at the end of the round, then the reallocation.

    Rounds as `results.split_rounds` cuts them (a reallocation row belongs to the round it
    follows). Gap = (objective - lower bound) / objective.
    """
    runs = {key: run for key, run in results.runs.items() if run.reallocs or key[1] == "lightrnn"}
    if not runs:
        raise ValueError("reallocation_table: no LightRNN rows and no 'realloc' rows")
    cells, records = [], []
    for dataset, model in sorted(runs, key=lambda key: (dataset_label(key[0]), model_sort_key(key[1]))):
        for segment in runs[(dataset, model)].rounds:
            last, realloc = segment.last, segment.realloc or {}
            objective, bound = realloc.get("realloc_objective"), realloc.get("realloc_lower_bound")
            gap = (objective - bound) / abs(objective) if objective and bound is not None else None
            cells.append(
                [
                    dataset_label(dataset) + ("" if model == "lightrnn" else f" ({model_label(model)})"),
                    str(segment.index),
                    str(len(segment.epochs)),
                    format_ppl(last.get("valid_ppl")),
                    format_ppl(last.get("test_ppl")),
                    format_float(objective),
                    format_float(bound),
                    "–" if gap is None else f"{100 * gap:.2f}%",
                    format_float(realloc.get("realloc_s")),
                    format_ppl(realloc.get("valid_ppl")) if realloc else "–",
                ]
            )
            records.append(
                {
                    "table": "reallocation",
                    "dataset": dataset,
                    "model": model,
                    "round": segment.index,
                    "epochs": len(segment.epochs),
                    "valid_ppl": last.get("valid_ppl"),
                    "test_ppl": last.get("test_ppl"),
                    "realloc_objective": objective,
                    "realloc_lower_bound": bound,
                    "realloc_gap": gap,
                    "realloc_s": realloc.get("realloc_s"),
                    "valid_ppl_after_realloc": realloc.get("valid_ppl"),
                    "realloc_nll_before": realloc.get("realloc_nll_before"),
                    "realloc_nll_after": realloc.get("realloc_nll_after"),
                    "git_rev": last.get("git_rev"),
                    "device": last.get("device"),
                    "date": date,
                    "config_hash": last.get("config_hash"),
                }
            )
    return Table(
        name="reallocation",
        title="LightRNN word reallocation: perplexity at the end of each round, then the reallocation that follows it",
        header=[
            "Dataset",
            "Round",
            "Epochs",
            "Valid ppl",
            "Test ppl",
            "Objective",
            "Lower bound",
            "Gap",
            "Seconds",
            "Valid ppl after",
        ],
        cells=cells,
        records=records,
        note="Objective: total training loss of the new table; gap: its distance to the solver's lower bound.",
    )


BUILDERS = {
    "aclw": aclw_table,
    "billionw": billion_word_table,
    "billionw-speed": billion_word_speed_table,
    "benchmarks": benchmark_table,
    "size-speed": size_speed_table,
    "reallocation": reallocation_table,
}
