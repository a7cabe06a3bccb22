"""`lightrnn report readme`: the README's smoke-run block and docs/*.png, regenerated from a run folder.

The fixture run folder is rendered by the real `write_report` from generated metrics rows (two ACLW
languages, LightRNN with one reallocation and the full softmax), so the block is checked against
the very tables and plots `make smoke` would produce.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lightrnn import cli
from lightrnn.report import readme as readme_mod
from lightrnn.report.build import write_report
from lightrnn.report.readme import replace_block_in_section, replace_section, write_smoke_block
from lightrnn.report.results import find_results

DATE = "2026-03-04"
GIT_REV = "fix1234"
DEVICE = "cpu (fixture)"
BEFORE = """# Project

<!-- section:answer -->
Old answer.
<!-- /section:answer -->

<!-- section:verdict -->
Old verdict.
<!-- /section:verdict -->

<!-- section:intro -->
Intro text with <!-- a comment --> kept as is.
<!-- /section:intro -->

<!-- section:workflow -->
## Workflow

Hand-written prose before the block.

<!-- generated:smoke -->
Old sentence, old table:

| stale | numbers |
|---|---|
| 111.1 | 222.2 |
<!-- /generated:smoke -->

Hand-written prose after the block.
<!-- /section:workflow -->

<!-- section:performance -->
Untouched.
<!-- /section:performance -->

<!-- section:gpu-speed -->
Old GPU table.
<!-- /section:gpu-speed -->
"""


def _rows(dataset: str, model: str, final_ppl: float) -> list[dict]:
    """Metrics rows of one run: 2 epochs per round; LightRNN has 2 rounds with a reallocation between."""
    rounds = 2 if model == "lightrnn" else 1
    params = 1_000 if model == "lightrnn" else 9_000
    rows, epoch = [], 0
    for round_index in range(rounds):
        for _ in range(2):
            epoch += 1
            valid = final_ppl * (1 + 1.0 / epoch)
            rows.append({
                "kind": "epoch", "dataset": dataset, "model": model, "seed": 0, "round": round_index,
                "epoch": epoch, "step": 10 * epoch, "lr": 0.001, "train_ppl": valid * 0.9, "valid_ppl": valid,
                "test_ppl": valid * 0.99, "train_tokens_per_s": 100.0 * epoch, "eval_tokens_per_s": 300.0,
                "params": params, "param_bytes": 4 * params, "peak_memory_bytes": 8 * params, "wall_s": 1.0 * epoch,
                "device": DEVICE, "realloc_objective": None, "realloc_lower_bound": None, "realloc_s": None,
                "realloc_nll_before": None, "realloc_nll_after": None, "git_rev": GIT_REV,
                "config_hash": f"hash-{dataset}-{model}",
            })
        if round_index < rounds - 1:
            rows.append({**rows[-1], "kind": "realloc", "valid_ppl": rows[-1]["valid_ppl"] * 1.1, "test_ppl": None,
                         "train_ppl": None, "realloc_objective": 500.0, "realloc_lower_bound": 480.0,
                         "realloc_s": 0.25, "realloc_nll_before": 5.0, "realloc_nll_after": 4.8})
    return rows


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder named `smoke` with metrics files and their rendered tables/ and plots/."""
    run = tmp_path_factory.mktemp("results") / "smoke"
    for dataset, base in (("aclw-fr", 50.0), ("aclw-es", 40.0)):
        for model, factor in (("lightrnn", 1.0), ("full_softmax", 1.2)):
            folder = run / dataset / model
            folder.mkdir(parents=True)
            rows = _rows(dataset, model, base * factor)
            (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
            (folder / "eval.json").write_text(json.dumps({
                "dataset": dataset, "model": model, "split": "test", "ppl": base * factor, "nll_sum": 1.0,
                "tokens": 100, "tokens_per_s": 300.0, "params": rows[-1]["params"], "device": DEVICE,
                "git_rev": GIT_REV,
            }))
    write_report(*find_results(run), run, aclw_plot_dataset="aclw-fr", date=DATE)
    return run


@pytest.fixture
def site(tmp_path: Path, rendered: Path) -> tuple[Path, Path, Path]:
    """(results, README, docs) in one folder, the README holding the old block."""
    results = tmp_path / "results" / "smoke"
    shutil.copytree(rendered, results)
    readme = tmp_path / "README.md"
    readme.write_text(BEFORE, encoding="utf-8")
    return results, readme, tmp_path / "docs"


def test_block_is_replaced_and_everything_else_kept(site):
    results, readme, docs = site
    written = write_smoke_block(results, readme, docs)
    assert written == [docs / "smoke-aclw-fr-perplexity.png", docs / "smoke-size-speed.png", readme]
    text = readme.read_text(encoding="utf-8")
    head, start, tail = BEFORE.partition("<!-- generated:smoke -->")
    after = tail.partition("<!-- /generated:smoke -->")[2]
    assert text.startswith(head + start + "\n") and text.endswith("<!-- /generated:smoke -->" + after)
    block = text[len(head + start):-len("<!-- /generated:smoke -->" + after)]
    assert "Old sentence" not in block and "stale" not in block and "222.2" not in block
    # The provenance comes from the CSV columns, the tables verbatim from the rendered .md files.
    assert f"git revision {GIT_REV}; {DATE}; device {DEVICE}" in " ".join(block.split())
    assert "lightrnn report readme --results" in block
    assert "![smoke aclw-fr perplexity](docs/smoke-aclw-fr-perplexity.png)" in block
    for table in ("aclw", "reallocation"):
        assert (results / "tables" / f"{table}.md").read_text(encoding="utf-8").strip() in block
    assert block.index("![smoke") < block.index("**ACLW") < block.index("**LightRNN word reallocation")
    for name in ("aclw-fr-perplexity", "size-speed"):
        assert (docs / f"smoke-{name}.png").read_bytes() == (results / "plots" / f"{name}.png").read_bytes()
    # A second run changes nothing: the block is a pure function of the run folder.
    write_smoke_block(results, readme, docs)
    assert readme.read_text(encoding="utf-8") == text


def test_cli_readme_subcommand_prints_what_it_wrote(site, tmp_path: Path, capsys):
    from tests._report_fixtures import write_bench

    results, readme, docs = site
    bench = write_bench(tmp_path / "bench")
    code = cli.main(["report", "readme", "--results", str(results), "--readme", str(readme), "--docs", str(docs),
                     "--bench-dir", str(bench)])
    assert code == 0
    assert capsys.readouterr().out.split() == [str(docs / "smoke-aclw-fr-perplexity.png"),
                                               str(docs / "smoke-size-speed.png"), str(readme)]
    text = readme.read_text(encoding="utf-8")
    assert "**ACLW: test perplexity" in text
    # The verdict section is regenerated too, from the run's metrics and the bench folder.
    verdict = readme_mod.marked_body(text, "verdict")
    assert "Old verdict" not in verdict and "| Claim | The paper says |" in verdict
    # The README's answer: one line per claim of the same table, and the link to the full one.
    answer = readme_mod.marked_body(text, "answer")
    assert "Old answer" not in answer and answer.count("\n- **") == 5
    assert "- **2x faster training**: " in answer and "[README.md](README.md)" in answer
    assert f"`{results.as_posix()}/` (perplexity and reallocation" in " ".join(verdict.split())
    assert "| 2x faster training |" in verdict


def test_a_missing_marker_is_named_and_nothing_is_written(site):
    results, readme, docs = site
    # No block at all, then a block outside the workflow section: both refused before any write.
    for text in (BEFORE.replace("<!-- /generated:smoke -->\n", ""),
                 BEFORE.replace("<!-- generated:smoke -->", "").replace("<!-- /generated:smoke -->", "")
                 .replace("Untouched.", "<!-- generated:smoke -->\nx\n<!-- /generated:smoke -->")):
        readme.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match="<!-- generated:smoke -->"):
            write_smoke_block(results, readme, docs)
        assert readme.read_text(encoding="utf-8") == text and not docs.exists()


def test_missing_inputs_are_named(site, tmp_path: Path, capsys):
    results, readme, docs = site
    missing = tmp_path / "results" / "nope"
    assert cli.main(["report", "readme", "--results", str(missing), "--readme", str(readme)]) == 2
    assert f"--results {missing}: no such folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="--readme"):
        write_smoke_block(results, tmp_path / "NO-README.md", docs)
    (results / "tables" / "reallocation.md").unlink()
    with pytest.raises(FileNotFoundError, match="reallocation.md"):
        write_smoke_block(results, readme, docs)
    assert readme.read_text(encoding="utf-8") == BEFORE and not docs.exists()


def test_plain_report_still_requires_results_and_out(capsys):
    assert cli.main(["report", "--results", "results/smoke"]) == 2
    assert "required: --out" in capsys.readouterr().err


def test_replace_section_keeps_everything_else(tmp_path: Path):
    text = "a\n<!-- section:performance -->\nold\n<!-- /section:performance -->\nb\n"
    assert replace_section(text, "performance", "new") == (
        "a\n<!-- section:performance -->\nnew\n<!-- /section:performance -->\nb\n")
    with pytest.raises(ValueError, match="exactly one"):
        replace_section("no markers", "performance", "new")


def test_one_marker_helper_serves_every_block():
    text = "a\n<!-- section:w -->\nx\n<!-- generated:b -->\nold\n<!-- /generated:b -->\ny\n<!-- /section:w -->\nz\n"
    assert replace_block_in_section(text, "w", "b", "new\n") == text.replace("old", "new")
    assert replace_section(text, "b", "n", kind="generated") == text.replace("old", "n")
    with pytest.raises(ValueError, match="marker kind"):
        replace_section(text, "b", "n", kind="other")


def test_report_readme_writes_the_gpu_block_and_the_verdict_from_a_gpu_folder(site, tmp_path: Path, capsys) -> None:
    from tests._report_fixtures import write_gpu_speed

    results, readme, docs = site
    folder = write_gpu_speed(tmp_path / "gpu-nvidia-h200", 90_000.0, 30_000.0)
    assert cli.main(["report", "readme", "--results", str(results), "--readme", str(readme), "--docs", str(docs),
                     "--gpu-dir", str(folder)]) == 0, capsys.readouterr().err
    text = readme.read_text(encoding="utf-8")
    assert "| 1500/1500 batch 200 bf16 | 90,000 |" in readme_mod.marked_body(text, "gpu-speed")
    verdict = " ".join(readme_mod.marked_body(text, "verdict").split())
    assert f"`{folder.as_posix()}/` (speed at the paper's sizes on a GPU)" in verdict
    assert "confirmed: 3.00x or more against the adaptive softmax at every GPU size measured" in verdict


def test_blocks_live_in_the_docs_pages_that_hold_their_markers(site, tmp_path: Path, capsys) -> None:
    """The split documentation: the answer in README.md, every other block in its topic page under DOCS;
    figure links relative to the page that shows them, the answer linking the verdict page."""
    from tests._report_fixtures import write_bench

    results, readme, docs = site
    docs.mkdir()
    regions = {name: readme_mod.marked_body(BEFORE, name) for name in ("verdict", "workflow", "performance", "gpu-speed")}
    pages = {"verdict": "verdict.md", "workflow": "workflow.md", "performance": "performance.md", "gpu-speed": "gpu.md"}
    for name, body in regions.items():
        start, end = readme_mod.markers(name)
        (docs / pages[name]).write_text(f"# {name}\n\n{start}{body}{end}\n", encoding="utf-8")
    readme.write_text("# Project\n\n<!-- section:answer -->\nOld answer.\n<!-- /section:answer -->\n", encoding="utf-8")
    bench = write_bench(tmp_path / "bench")
    assert cli.main(["report", "readme", "--results", str(results), "--readme", str(readme), "--docs", str(docs),
                     "--bench-dir", str(bench)]) == 0, capsys.readouterr().err
    written = capsys.readouterr().out.split()
    assert set(written) == {str(docs / name) for name in ("smoke-aclw-fr-perplexity.png", "smoke-size-speed.png",
                                                           "workflow.md", "verdict.md", "gpu.md")} | {str(readme)}
    answer = readme_mod.marked_body(readme.read_text(encoding="utf-8"), "answer")
    assert "[docs/verdict.md](docs/verdict.md)" in answer and answer.count("\n- **") == 5
    workflow = (docs / "workflow.md").read_text(encoding="utf-8")
    assert "![smoke aclw-fr perplexity](smoke-aclw-fr-perplexity.png)" in workflow
    assert workflow.startswith("# workflow\n") and "Hand-written prose after the block." in workflow
    assert "| Claim | The paper says |" in (docs / "verdict.md").read_text(encoding="utf-8")
    assert "Untouched." in (docs / "performance.md").read_text(encoding="utf-8")
    # A marker in two pages is refused before any write, naming both pages.
    (docs / "copy.md").write_text((docs / "gpu.md").read_text(encoding="utf-8"), encoding="utf-8")
    before = {path: path.read_bytes() for path in [readme, *docs.glob("*.md")]}
    with pytest.raises(ValueError, match="exactly one page must hold <!-- section:gpu-speed -->.*copy.md.*gpu.md"):
        readme_mod.update_readme(results, readme, docs, bench, None, "aclw-fr", "cmd")
    assert {path: path.read_bytes() for path in before} == before
