"""Paper-style tables as pure functions of metrics rows, rendered as Markdown, LaTeX and CSV.

Each builder takes the rows of metrics.jsonl files and the eval.json records and returns a
`Table`: display cells for Markdown/LaTeX, and full-precision CSV records where every row carries
its provenance (git revision, device, date, config hash).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from lightrnn.report.layout import (
    aclw_language,
    dataset_family,
    dataset_label,
    model_label,
    model_sort_key,
)
from lightrnn.report.results import Row, RunSummary, group_runs, summarize

REFERENCE_MODEL = "full_softmax"


@dataclass(frozen=True)
class Table:
    """A rendered-ready table.

    header: column titles; cells: display strings, one list per row (len == len(header));
    bold: (row, column) cells to emphasise (the best perplexity of a group);
    records: CSV rows (dicts of raw values, provenance included), not necessarily one per cell row.
    """

    name: str
    title: str
    header: list[str]
    cells: list[list[str]]
    records: list[dict[str, Any]]
    bold: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    note: str = ""


# ----------------------------------------------------------------------------- number formats
def format_count(value: float | None) -> str:
    """Parameter counts the way the paper writes them: 950, 12.3K, 17.5M, 1.6G."""
    if value is None:
        return "–"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale * 0.9995:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def format_ppl(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.1f}"


def format_float(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def format_megabytes(value: float | None) -> str:
    """Bytes as MB (10^6) with 3 significant digits, so tiny smoke models do not read 0.0."""
    if value is None:
        return "–"
    megabytes = value / 1e6
    return f"{megabytes:,.0f}" if megabytes >= 1000 else f"{megabytes:.3g}"


def format_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}x"


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
def aclw_table(rows: list[Row], evals: list[Row], date: str) -> Table:
    """ACLW: one row per language, one column per model, cells "perplexity (parameters)"."""
    summaries = {key: value for key, value in summarize(rows, evals).items() if dataset_family(key[0]) == "aclw"}
    if not summaries:
        raise ValueError("aclw_table: no ACLW rows (datasets named aclw-<lang> or aclw-large-<lang>)")
    models = _ordered_models(summaries)
    datasets = sorted({dataset for dataset, _ in summaries}, key=dataset_label)
    cells, records, bold = [], [], set()
    for row_index, dataset in enumerate(datasets):
        language, size = aclw_language(dataset)  # type: ignore[misc]
        line = [language + (" (large)" if size == "large" else "")]
        ppls = []
        for model in models:
            summary = summaries.get((dataset, model))
            if summary is None:
                line.append("–")
                ppls.append(None)
                continue
            line.append(f"{format_ppl(summary.test_ppl)} ({format_count(summary.params)})")
            ppls.append(summary.test_ppl)
            records.append(_ppl_record("aclw", summary, date, language=language, size=size))
        best = _argmin(ppls)
        if best is not None:
            bold.add((row_index, best + 1))
        cells.append(line)
    return Table(
        name="aclw",
        title="ACLW: test perplexity (parameters) per language and model",
        header=["Language"] + [model_label(model) for model in models],
        cells=cells,
        records=records,
        bold=frozenset(bold),
        note="Lowest perplexity per language in bold.",
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


def billion_word_table(rows: list[Row], evals: list[Row], date: str) -> Table:
    """One Billion Word: model, test perplexity, parameters (the paper's layout)."""
    summaries = {key: value for key, value in summarize(rows, evals).items() if dataset_family(key[0]) == "billionw"}
    if not summaries:
        raise ValueError("billion_word_table: no rows with dataset 'billionw'")
    many = len({dataset for dataset, _ in summaries}) > 1
    return _per_model_table("billionw", "One Billion Word: test perplexity and parameters", summaries, date, many)


def benchmark_table(rows: list[Row], evals: list[Row], date: str) -> Table:
    """PTB and WikiText (not in the paper; the standard small benchmarks): model, ppl, params."""
    summaries = {
        key: value for key, value in summarize(rows, evals).items() if dataset_family(key[0]) == "benchmarks"
    }
    if not summaries:
        raise ValueError("benchmark_table: no PTB/WikiText rows")
    return _per_model_table(
        "benchmarks", "PTB and WikiText: test perplexity and parameters", summaries, date, with_dataset=True
    )


def size_speed_table(rows: list[Row], evals: list[Row], date: str) -> Table:
    """Model size and speed per dataset and model, with ratios to the full softmax."""
    summaries = summarize(rows, evals)
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


def reallocation_table(rows: list[Row], evals: list[Row], date: str) -> Table:
    """Per LightRNN run and round: perplexities at the end of the round, then the reallocation.

    Rounds are segments of consecutive epoch rows with the same `round`; a reallocation row
    belongs to the round it follows (file order). Gap = (objective - lower bound) / objective.
    """
    del evals  # reallocation happens during training; eval.json has nothing to add
    runs = {key: run for key, run in group_runs(rows).items() if any(row.get("kind") == "realloc" for row in run)}
    runs.update({key: run for key, run in group_runs(rows).items() if key[1] == "lightrnn"})
    if not runs:
        raise ValueError("reallocation_table: no LightRNN rows and no 'realloc' rows")
    cells, records = [], []
    for dataset, model in sorted(runs, key=lambda key: (dataset_label(key[0]), model_sort_key(key[1]))):
        segments: list[dict[str, Any]] = []
        for row in runs[(dataset, model)]:
            if row.get("kind", "epoch") == "epoch":
                if not segments or segments[-1]["round"] != row.get("round") or segments[-1]["realloc"]:
                    segments.append({"round": row.get("round"), "epochs": 0, "last": row, "realloc": None})
                segments[-1]["epochs"] += 1
                segments[-1]["last"] = row
            elif row.get("kind") == "realloc" and segments:
                segments[-1]["realloc"] = row
        for segment in segments:
            last, realloc = segment["last"], segment["realloc"] or {}
            objective, bound = realloc.get("realloc_objective"), realloc.get("realloc_lower_bound")
            gap = (objective - bound) / abs(objective) if objective and bound is not None else None
            cells.append(
                [
                    dataset_label(dataset) + ("" if model == "lightrnn" else f" ({model_label(model)})"),
                    str(segment["round"]),
                    str(segment["epochs"]),
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
                    "round": segment["round"],
                    "epochs": segment["epochs"],
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
    "benchmarks": benchmark_table,
    "size-speed": size_speed_table,
    "reallocation": reallocation_table,
}


# ----------------------------------------------------------------------------- renderers
def _emphasised(table: Table, markup: str) -> list[list[str]]:
    return [
        [markup.format(cell) if (i, j) in table.bold else cell for j, cell in enumerate(line)]
        for i, line in enumerate(table.cells)
    ]


def to_markdown(table: Table) -> str:
    """GitHub Markdown: a bold title line, the table (numbers right-aligned), the note."""
    lines = [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for line in _emphasised(table, "**{}**"):
        lines.append("| " + " | ".join(line) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    escaped = Table(
        table.name,
        table.title,
        table.header,
        [[latex_escape(cell) for cell in line] for line in table.cells],
        table.records,
        table.bold,
        table.note,
    )
    caption = f"{table.title}. {table.note}" if table.note else table.title
    lines = [
        r"\begin{table}[t]",
        r"  \centering",
        f"  \\caption{{{latex_escape(caption)}}}",
        f"  \\label{{tab:{table.name}}}",
        r"  \begin{tabular}{l" + "r" * (len(table.header) - 1) + "}",
        r"    \toprule",
        "    " + " & ".join(latex_escape(title) for title in table.header) + r" \\",
        r"    \midrule",
    ]
    lines += ["    " + " & ".join(line) + r" \\" for line in _emphasised(escaped, r"\textbf{{{}}}")]
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Full-precision records, columns in first-seen order; empty cells for missing values."""
    columns: list[str] = []
    for record in table.records:
        columns += [key for key in record if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for record in table.records:
        writer.writerow({key: "" if value is None else value for key, value in record.items()})
    return buffer.getvalue()


RENDERERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv}
