"""Rendering, in one place: the `Table` every report table is, its number formats, and its
Markdown, LaTeX, CSV and HTML forms; prose wrapped as the README wraps it.

Builders (`report/tables.py`, `verdict.py`, `study.py`, `performance.py`) decide what a table
holds; this module alone decides how it is written.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """A rendered-ready table.

    header: column titles; cells: display strings, one list per row (len == len(header));
    bold: (row, column) cells to emphasise (the best perplexity of a group);
    left: how many leading columns hold labels (left-aligned; the others are numbers);
    records: CSV rows (dicts of raw values, provenance included), not necessarily one per cell row.
    """

    name: str
    title: str
    header: list[str]
    cells: list[list[str]]
    records: list[dict[str, Any]]
    bold: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    note: str = ""
    left: int = 1  # leading columns aligned left (labels); the rest right (numbers)


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


# ----------------------------------------------------------------------------- renderers
def _emphasised(table: Table, markup: str) -> list[list[str]]:
    return [
        [markup.format(cell) if (i, j) in table.bold else cell for j, cell in enumerate(line)]
        for i, line in enumerate(table.cells)
    ]


# Outside a code span, what Markdown (GitHub's, with its $math$) or the HTML it passes through would read as markup:
# a cell's text (a dataset named `<script>` or `a*b_c*`) shows as typed, it never becomes a tag or emphasis.
_MARKDOWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", **{char: "\\" + char for char in "\\*_[]~$"}}
_CODE_SPAN = re.compile(r"(`[^`]+`)")


def markdown_cell(text: str) -> str:
    """Cell text that cannot break its table nor become markup: outside `code` spans (the builders' own, which
    Markdown shows literally) every HTML and Markdown markup character is escaped; a `|` is escaped inside them
    too (GitHub splits cells on it even there); line breaks are made spaces (a dataset named `a|b<i>`)."""
    parts = _CODE_SPAN.split(" ".join(str(text).splitlines()))
    return "".join(part.replace("|", "\\|") if index % 2 else
                   "".join(_MARKDOWN_ESCAPES.get(char, char) for char in part)
                   for index, part in enumerate(parts))


def markdown_table(header: list[str], cells: list[list[str]], left: int | None = 1,
                   bold: frozenset[tuple[int, int]] = frozenset()) -> list[str]:
    """Lines of a GitHub Markdown table: `left` leading columns left-aligned, the rest right-aligned;
    `left=None` leaves the alignment to the renderer (plain `---`). Every cell is `markdown_cell`, then the
    (row, column) cells in `bold` are emphasised (after the escape, so the emphasis is the one markup)."""
    header = [markdown_cell(title) for title in header]
    cells = [[f"**{markdown_cell(cell)}**" if (i, j) in bold else markdown_cell(cell) for j, cell in enumerate(line)]
             for i, line in enumerate(cells)]
    if left is None:
        rule = "|" + "---|" * len(header)
    else:
        rule = "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(line) + " |" for line in cells]


def to_markdown(table: Table) -> str:
    """GitHub Markdown: a bold title line, the table (numbers right-aligned), the note."""
    lines = [f"**{table.title}**", ""]
    lines += markdown_table(table.header, table.cells, table.left, table.bold)
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
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "\n": " ",
    "\r": " ",
    "–": "--",
    "Δ": r"$\Delta$",
    "→": r"$\to$",
}


def latex_escape(text: str) -> str:
    """Text with every LaTeX special character escaped (and line breaks made spaces: a blank line ends a row)."""
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def _latex_columns(table: Table) -> str:
    """l for labels, r for numbers; a table of prose only (the verdict) gets wrapping p columns."""
    if table.left >= len(table.header):
        return "".join([rf"p{{{0.95 / len(table.header):.3f}\linewidth}}"] * len(table.header))
    return "l" * table.left + "r" * (len(table.header) - table.left)


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
        table.left,
    )
    caption = f"{table.title}. {table.note}" if table.note else table.title
    lines = [
        r"\begin{table}[t]",
        r"  \centering",
        f"  \\caption{{{latex_escape(caption)}}}",
        f"  \\label{{tab:{table.name}}}",
        r"  \begin{tabular}{" + _latex_columns(table) + "}",
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


# One small style sheet per fragment, scoped to the table's class: the fragment reads the same
# standalone (Snakemake's report shows it in an iframe) and inserted into another page (the
# report's front page shows the verdict).
_HTML_STYLE = (
    "<style>"
    "table.lightrnn{border-collapse:collapse;font:13px/1.35 system-ui,sans-serif;margin:0.5em 0}"
    "table.lightrnn caption{font-weight:600;text-align:left;padding:0 0 0.4em}"
    "table.lightrnn th,table.lightrnn td{border-bottom:1px solid #ddd;padding:3px 8px;vertical-align:top}"
    "table.lightrnn thead th{border-bottom:2px solid #444;text-align:left}"
    "table.lightrnn td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "p.lightrnn-note{font:12px/1.35 system-ui,sans-serif;color:#444;max-width:60em}"
    "</style>"
)


def _html_text(text: str) -> str:
    """Escaped, and ASCII only (character references): the report embeds files as data URIs
    without a charset, where raw UTF-8 would show as mojibake."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _html_inline(text: str) -> str:
    """`_html_text` with Markdown's `code` spans rendered as <code> (the cells and notes are written
    once, for the Markdown table and the HTML one alike)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _html_text(text))


def to_html(table: Table) -> str:
    """An HTML fragment: a scoped style, the table (labels left, numbers right, best in bold), the note."""
    head = "".join(f"<th>{_html_text(title)}</th>" for title in table.header)
    body = []
    for i, line in enumerate(table.cells):
        cells = []
        for j, cell in enumerate(line):
            text = _html_inline(cell)
            if (i, j) in table.bold:
                text = f"<strong>{text}</strong>"
            cells.append(f"<td>{text}</td>" if j < table.left else f'<td class="num">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    lines = [
        _HTML_STYLE,
        f'<table class="lightrnn" id="table-{_html_text(table.name)}">',
        f"<caption>{_html_inline(table.title)}</caption>",
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
        *body,
        "</tbody>",
        "</table>",
    ]
    if table.note:
        lines.append(f'<p class="lightrnn-note">{_html_inline(table.note)}</p>')
    return "\n".join(lines) + "\n"


RENDERERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv, "html": to_html}


def wrap_prose(lines: list[str], width: int = 100) -> list[str]:
    """Prose lines wrapped at `width` (as the rest of the README); tables, images and code kept whole."""
    wrapped, in_code = [], False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        if in_code or line.startswith(("```", "|", "!", "#")) or len(line) <= width:
            wrapped.append(line)
        else:
            wrapped.extend(textwrap.wrap(line, width=width, break_long_words=False, break_on_hyphens=False))
    return wrapped
