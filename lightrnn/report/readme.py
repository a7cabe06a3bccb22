"""README and docs-page blocks rewritten from result files, never typed by hand.

The documentation is README.md and one Markdown page per topic in its docs folder (`docs/*.md`).
A page marks each generated region with a pair of HTML comments: a whole section
(`<!-- section:NAME -->` ... `<!-- /section:NAME -->`, e.g. `lightrnn bench readme`'s performance
section in docs/performance.md) or a block inside a section (`<!-- generated:NAME -->` ...
`<!-- /generated:NAME -->`, e.g. `lightrnn report readme`'s smoke-run figure and tables in the
workflow section of docs/workflow.md). A block lives in whichever page holds its markers (exactly
one page must), so a block moves with its topic without touching this code. This module is the one
place that finds and rewrites those markers and writes the pages atomically: the other modules only
build the text (`performance.performance_markdown`, `verdict.readme_section`, `verdict.readme_answer`,
`study.readme_block`); `tests/test_structure.py` fails on a README write anywhere else.

`write_smoke_block` is the `lightrnn report readme` generator: it copies a run's ACLW-French and
size/speed PNGs into the docs folder and rewrites the `generated:<run>` block of the workflow
section with a provenance sentence, the figure link and the run's ACLW and reallocation tables.
Only the standard library is used: the Snakefile imports `lightrnn.report` at parse time.
"""

from __future__ import annotations

import json

import csv
import os
from pathlib import Path

from lightrnn.core.fileio import write_bytes
from lightrnn.core.loaders import input_file
from lightrnn.report.render import format_count, wrap_prose

WORKFLOW_SECTION = "workflow"
TABLES = ("aclw", "reallocation")  # the tables the block shows, in that order
PROVENANCE = ("git_rev", "date", "device")  # CSV columns the sentence quotes


def markers(name: str, kind: str = "section") -> tuple[str, str]:
    """The opening and closing comments of a marked region, e.g. `<!-- generated:smoke -->`."""
    if kind not in ("section", "generated"):
        raise ValueError(f"marker kind {kind!r}: expected 'section' or 'generated'")
    return f"<!-- {kind}:{name} -->", f"<!-- /{kind}:{name} -->"


def marked_body(text: str, name: str, kind: str = "section") -> str:
    """The text between the markers of `name` (exactly one pair, in order), without the markers."""
    start, end = markers(name, kind)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"the README must hold exactly one {start} ... {end} pair, in that order")
    return text.split(start)[1].split(end)[0]


def replace_section(text: str, name: str, body: str, kind: str = "section") -> str:
    """`text` with everything between `<!-- KIND:NAME -->` and `<!-- /KIND:NAME -->` replaced by `body`."""
    start, end = markers(name, kind)
    marked_body(text, name, kind)  # raises unless exactly one well-ordered pair
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def read_readme(readme: str | Path) -> str:
    """The README's text, or a FileNotFoundError that names the --readme option."""
    readme = input_file(readme, fix="pass --readme path/to/README.md")
    return readme.read_text(encoding="utf-8")


def doc_pages(readme: str | Path, docs: str | Path | None = None) -> list[Path]:
    """README.md and the Markdown pages of DOCS (default: the README's `docs/` folder): where blocks may live."""
    readme = Path(readme)
    docs = Path(docs) if docs is not None else readme.parent / "docs"
    return [readme, *sorted(docs.glob("*.md"))] if docs.is_dir() else [readme]


def page_of(pages: list[Path], name: str, kind: str = "section") -> Path:
    """The one page of `pages` that holds the opening marker of `name` (the README first, as --readme names it)."""
    start, _ = markers(name, kind)
    read_readme(pages[0])  # a missing README is named as the --readme option
    holding = [page for page in pages if page.is_file() and start in page.read_text(encoding="utf-8")]
    if len(holding) != 1:
        where = ", ".join(page.as_posix() for page in (holding or pages))
        raise ValueError(f"exactly one page must hold {start} ... {markers(name, kind)[1]}; "
                         f"{'found it in' if holding else 'none of'} {where}")
    return holding[0]


def write_readme(readme: str | Path, text: str) -> Path:
    """Replace the README with `text` atomically, keeping its permissions; returns its path."""
    readme = Path(readme)
    write_bytes(readme, text.encode("utf-8"), mode_from=readme)  # keep the README's permissions
    return readme


def replace_block_in_section(text: str, section: str, block: str, body: str) -> str:
    """`text` with the `generated:BLOCK` block inside `section:SECTION` replaced by `body`.

    The block must lie inside the section, so a generator can never write into another area.
    """
    section_body = marked_body(text, section, "section")
    start, end = markers(block, "generated")
    if start not in section_body or end not in section_body:
        raise ValueError(
            f"the README's section:{section} must hold a {start} ... {end} pair; "
            f"add the two lines around the block to regenerate"
        )
    return replace_section(text, section, replace_section(section_body, block, body, kind="generated"))


def _provenance(csv_paths: list[Path]) -> dict[str, list[str]]:
    """Distinct values of the provenance columns over the CSV rows, in first-seen order."""
    values: dict[str, list[str]] = {column: [] for column in PROVENANCE}
    for path in csv_paths:
        with path.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                for column in PROVENANCE:
                    value = (row.get(column) or "").strip()
                    if value and value not in values[column]:
                        values[column].append(value)
    missing = [column for column, found in values.items() if not found]
    if missing:
        raise ValueError(f"{', '.join(map(str, csv_paths))}: no {'/'.join(missing)} column values; "
                         f"re-render the tables with `lightrnn report`")
    return values


def _posix_relpath(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def smoke_block(
    results: str | Path,
    readme: str | Path,
    docs: str | Path,
    aclw_plot_dataset: str = "aclw-fr",
    command: str | None = None,
    page: str | Path | None = None,
) -> tuple[str, dict[Path, Path]]:
    """The block's Markdown and the PNG copies it needs ({source: target}), from RESULTS's tables/plots.

    Reads RESULTS/tables/{aclw,reallocation}.{md,csv} and RESULTS/plots/{<aclw_plot_dataset>-vs-paper,
    size-speed}.png; the docs names are DOCS/<run>-<name>.png with <run> the results folder's name.
    Raises FileNotFoundError naming the first missing input (nothing is written here).
    """
    results, readme, docs = Path(results), Path(readme), Path(docs)
    if not results.is_dir():
        raise FileNotFoundError(f"--results {results}: no such folder; run `make smoke` (or snakemake) first")
    run = results.resolve().name
    from lightrnn.report.layout import paper_figure

    figure = paper_figure(aclw_plot_dataset)
    copies = {results / "plots" / f"{name}.png": docs / f"{run}-{name}.png" for name in (figure, "size-speed")}
    inputs = [results / "tables" / f"{table}.{ext}" for table in TABLES for ext in ("md", "csv")] + list(copies)
    for path in inputs:
        input_file(path, fix=f"re-render {results} with `lightrnn report` or snakemake")
    found = _provenance([results / "tables" / f"{table}.csv" for table in TABLES])
    command = command or (f"lightrnn report readme --results {results.as_posix()} --readme {readme.as_posix()} "
                          f"--docs {docs.as_posix()}")
    sentence = (
        f"Generated by `{command}` from `{results.as_posix()}/` (git revision "
        f"{', '.join(found['git_rev'])}; {', '.join(found['date'])}; device {', '.join(found['device'])}): "
        f"the {run} run's {aclw_plot_dataset} figure, ACLW table and LightRNN reallocation table. "
        f"Tiny models, a few steps: they show the layout, not LightRNN's quality."
    )
    image = _posix_relpath(copies[results / "plots" / f"{figure}.png"], Path(page or readme).parent)
    lines = wrap_prose([sentence]) + ["", f"![{run} {aclw_plot_dataset} perplexity]({image})", ""]
    for table in TABLES:
        lines += [(results / "tables" / f"{table}.md").read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines), copies


def write_smoke_block(
    results: str | Path,
    readme: str | Path,
    docs: str | Path,
    aclw_plot_dataset: str = "aclw-fr",
    command: str | None = None,
) -> list[Path]:
    """Copy the run's PNGs into DOCS and rewrite the `generated:<run>` block; returns written paths.

    The block is in whichever page of the README and DOCS/*.md holds its markers (docs/workflow.md).
    Everything is read and checked (inputs, markers) before the first write; each file is replaced
    atomically. `command` is the command line quoted in the provenance sentence (default: the CLI's).
    """
    readme, docs = Path(readme), Path(docs)
    block = Path(results).resolve().name
    page = page_of(doc_pages(readme, docs), block, "generated")
    body, copies = smoke_block(results, readme, docs, aclw_plot_dataset, command, page=page)
    text = replace_block_in_section(read_readme(page), WORKFLOW_SECTION, block, body)
    docs.mkdir(parents=True, exist_ok=True)
    for source, target in copies.items():
        write_bytes(target, source.read_bytes())
    write_readme(page, text)
    return [*copies.values(), page]


def write_performance_section(bench_dir: str | Path, readme: str | Path) -> Path:
    """Regenerate the performance section (docs/performance.md: the page of README.md's docs folder that
    holds it) from `bench_dir`'s CSV files (atomic rewrite); returns the page written."""
    from lightrnn.report.performance import SECTION, performance_markdown

    page = page_of(doc_pages(readme), SECTION)
    body = performance_markdown(bench_dir, page.parent)
    return write_readme(page, replace_section(read_readme(page), SECTION, body))


def write_study_block(study_dir: Path | str, readme: Path | str, docs: Path | str, command: str) -> list[Path]:
    """Copy the study's figure into DOCS and rewrite the `generated:<study folder>` block (docs/study.md)."""
    from lightrnn.report.study import README_SECTION, readme_block

    page = page_of(doc_pages(readme, docs), Path(study_dir).name, "generated")
    body, copies = readme_block(study_dir, page, docs, command)
    text = replace_block_in_section(read_readme(page), README_SECTION, Path(study_dir).name, body)
    Path(docs).mkdir(parents=True, exist_ok=True)
    for source, target in copies.items():
        write_bytes(target, source.read_bytes())
    write_readme(page, text)
    return [*copies.values(), page]


def study_parts_sentence(study: Path | str | None) -> str:
    """For a tuned study: one generated sentence on its parts' wall time (its provenance.json's snakemake
    calls that finished), for the README's answer; "" otherwise."""
    from lightrnn.report.tuned_study import is_tuned_study

    if study is None or not is_tuned_study(study) or not (Path(study) / "provenance.json").is_file():
        return ""
    record = json.loads((Path(study) / "provenance.json").read_text(encoding="utf-8"))
    calls = [c for c in record.get("calls", []) if int(c.get("status", 1)) == 0 and c.get("elapsed_s") is not None]
    if not calls:
        return ""
    minutes = [float(c["elapsed_s"]) / 60 for c in calls]
    sentence = (f"The perplexity and reallocation rows come from the tuned study (`{Path(study).as_posix()}`), which "
                f"ran as {len(calls)} snakemake calls of {min(minutes):.0f} to {max(minutes):.0f} minutes each on a "
                f"2-core CPU machine (their wall times sum to {sum(minutes):.0f} minutes; each call's part, time and "
                "cores: [docs/study.md](docs/study.md)).")
    return "\n\n" + "\n".join(wrap_prose([sentence]))


def variants_sentence(study: Path | str | None, bench_dir: Path | str | None) -> str:
    """One generated sentence on what LightRNN's variants beyond the paper (per-word terms) cost at the
    paper's size and buy in the study (`lightrnn.report.verdict.variant_sizes_table`), and how fast they
    train at V = 793,471 (the word-terms benchmark, where committed); "" without such a variant."""
    from lightrnn.core.csvio import read_csv
    from lightrnn.report.performance import REFERENCE, WORD_TERMS_RUNS, paired_ratio
    from lightrnn.report.verdict import variant_sizes_table

    if study is None:
        return ""
    try:
        records = variant_sizes_table(study).records
    except (FileNotFoundError, ValueError):
        return ""
    plain = next((r for r in records if r["size_options"] == "{}" and r.get("group") == "lightrnn"), None)
    variants = [r for r in records if r["size_options"] != "{}"]
    if plain is None or not variants:
        return ""
    parts = [f"{r['label']}: {format_count(float(r['params_billionw_1500']))} ({float(r['full_over_it']):.1f}x below "
             f"the full softmax, {float(r['adaptive_over_it']):.1f}x below the adaptive softmax), study test perplexity "
             f"{float(r['test_ppl_mean']):.1f}" for r in variants]
    sentence = (f"Beyond the paper, per-word terms close part of the gap at a price in size. Parameters at One Billion "
                f"Word's V and 1500/1500: plain LightRNN {format_count(float(plain['params_billionw_1500']))} "
                f"({float(plain['full_over_it']):.1f}x below the full softmax), study test perplexity "
                f"{float(plain['test_ppl_mean']):.1f}; " + "; ".join(parts))
    variant, speeds, largest = f"{REFERENCE}@words", [], None  # the benchmark's largest variant (WORD_TERMS_COMMAND)
    for stem, _ in WORD_TERMS_RUNS:
        raw_path = Path(bench_dir) / f"{stem}-repeats.csv" if bench_dir is not None else None
        if raw_path is None or not raw_path.is_file():
            continue
        raw = [r for r in read_csv(raw_path) if r["model"] in (variant, REFERENCE)]
        if not any(r["model"] == variant for r in raw):
            continue
        largest = max(int(r["vocab_size"]) for r in raw)
        optimizer = next(r["optimizer"] for r in raw if r["model"] == variant)
        speeds.append(f"{paired_ratio(raw, largest, variant, REFERENCE):.2f}x plain LightRNN's training tokens/s "
                      f"with {optimizer}")
    if speeds:
        sentence += (f". At V = {largest:,} on the CPU (the benchmark's E = H = 256) the largest variant trains at "
                     + " and ".join(speeds) + " ([docs/performance.md](docs/performance.md))")
    return "\n\n" + "\n".join(wrap_prose([sentence + "."]))


def update_readme(
    results: Path | str, readme: Path | str, docs: Path | str, bench_dir: Path | str, study: Path | str | None,
    aclw_plot_dataset: str | None, command: str, gpu_dir: Path | str | None = None,
) -> list[Path]:
    """`lightrnn report readme`: the README's answer, the verdict section, the GPU throughput block, the
    smoke block and (with `study`) the study block, from committed results, each in the page that holds
    its markers (README.md or DOCS/*.md); everything is built and checked before the first write.
    `gpu_dir`: a `make gpu-check` folder (None: none is committed)."""
    from lightrnn.report import gpu_speed
    from lightrnn.report import study as study_module
    from lightrnn.report.verdict import ANSWER_SECTION, README_SECTION, readme_answer, readme_verdict

    if not Path(results).is_dir():
        raise FileNotFoundError(f"--results {results}: no such folder; run `make smoke` (or snakemake) first")
    pages = doc_pages(readme, docs)
    verdict, table = readme_verdict(results, bench_dir, command, study_dir=study, gpu_dir=gpu_dir)
    full_table = _posix_relpath(page_of(pages, README_SECTION), Path(readme).parent)
    sections = {
        README_SECTION: verdict,
        ANSWER_SECTION: readme_answer(table, full_table) + study_parts_sentence(study)
        + variants_sentence(study, bench_dir),
        gpu_speed.README_SECTION: gpu_speed.readme_block(gpu_speed.load_gpu_speed(gpu_dir) if gpu_dir else None,
                                                         command),
    }
    for name in sections:
        marked_body(read_readme(page_of(pages, name)), name)
    if study:
        study_page = page_of(pages, Path(study).name, "generated")
        study_module.readme_block(study, study_page, docs, command)  # check its inputs before any write
        marked_body(read_readme(study_page), study_module.README_SECTION)
    written = write_smoke_block(results, readme, docs, aclw_plot_dataset, command)
    if study:
        written += write_study_block(study, readme, docs, command)
    for name, body in sections.items():
        page = page_of(pages, name)
        write_readme(page, replace_section(read_readme(page), name, body))
        written += [] if page in written else [page]
    return written
