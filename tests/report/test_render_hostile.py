"""Rendering what users named: a cell's text (a dataset called `a|b`, `50% & $x_1$`, `<b>`) never breaks
the table it is in, in any format the report writes (Markdown, LaTeX, HTML, CSV)."""

from __future__ import annotations

import csv
import html
import io
import re
from html.parser import HTMLParser
from itertools import product

import pytest

from lightrnn.report.render import Table, to_csv, to_html, to_latex, to_markdown

PIECES = ["a|b", "x\\|y", "line\nbreak", "50% & $x_1$", "#{~^}\\", "<b>&amp;</b>", '"q,u"', "tab\there", "ok", "→Δ"]
NAMES = [a + b for a, b in product(PIECES, PIECES[:4])]


def _table(name: str) -> Table:
    cells = [[name, "1.00", name], ["plain", "2.00", "x"]]
    return Table(name="t", title=f"about {name}", header=["dataset", "ppl", name], cells=cells,
                 records=[{"dataset": name, "ppl": 1.0}, {"dataset": "plain", "ppl": 2.0}],
                 bold=frozenset({(0, 1)}), left=1)


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@pytest.mark.parametrize("name", NAMES)
def test_markdown_rows_keep_their_column_count(name: str) -> None:
    rows = [line for line in to_markdown(_table(name)).splitlines() if line.startswith("|")]
    assert len(rows) == 4  # header, rule, two rows: no line break escaped the table
    assert {_unescaped_pipes(row) for row in rows} == {4}


@pytest.mark.parametrize("name", NAMES)
def test_latex_cells_hold_no_bare_special_character(name: str) -> None:
    text = to_latex(_table(name))
    body = text.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    for row in [line for line in body.splitlines() if line.strip()]:
        assert row.rstrip().endswith(r"\\")
        cells = row.rstrip()[: -2]
        stripped = re.sub(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar|textbf)\{\}?|"
                          r"\\[&%$#_{}]|\$\\(Delta|to)\$|\\textbf\{", "", cells)
        assert stripped.count("&") == 2, row  # the two column separators, nothing else
        assert not re.search(r"[%$#_~^\\]", stripped), row
    assert "\n\n" not in text


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs) -> None:  # noqa: ANN001
        if tag in ("td", "th"):
            self.cells.append("")
            self.depth += 1
        elif self.depth and tag != "strong":
            raise AssertionError(f"markup from cell text: <{tag}>")

    def handle_endtag(self, tag) -> None:  # noqa: ANN001
        if tag in ("td", "th"):
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.cells[-1] += data


@pytest.mark.parametrize("name", NAMES)
def test_html_cells_read_back_as_the_text(name: str) -> None:
    parser = _Cells()
    parser.feed(to_html(_table(name)))
    assert parser.cells[:3] == ["dataset", "ppl", name]
    assert parser.cells[3] == name and parser.cells[5] == name


@pytest.mark.parametrize("name", NAMES)
def test_csv_records_read_back_as_written(name: str) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(_table(name)))))
    assert [row["dataset"] for row in rows] == [name, "plain"]


MARKUP = ["<script>alert(1)</script>", "a|b<i>&x $\\_%#{}`*", "*em* _em_ **b** ~~s~~", "[link](http://x)",
          "$x_1$ & &amp;", "\\*not\\*", "<img src=x onerror=alert(1)>"]


@pytest.mark.parametrize("name", [a + b for a, b in product(MARKUP, ["", "ok", "\nx"])])
def test_markdown_cells_show_the_text_and_hold_no_markup(name: str) -> None:
    """Outside code spans a cell holds no raw HTML character and no bare Markdown markup character, and reading
    its escapes back gives the text (line breaks as spaces); the bold cell's ** is the only emphasis."""
    rows = [line for line in to_markdown(_table(name)).splitlines() if line.startswith("|")]
    cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", rows[2])[1:-1]]
    assert cells[1] == "**1.00**"
    for cell in (cells[0], cells[2]):
        assert not re.search(r"[<>]|&(?!amp;|lt;|gt;)|(?<!\\)[*_\[\]~$]", cell.replace("\\\\", "")), cell
        assert html.unescape(re.sub(r"\\(.)", r"\1", cell)) == " ".join(name.splitlines())
