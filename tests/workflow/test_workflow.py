"""The Snakemake DAG: schema validation, dry runs, lint, the smoke checksums, and (slow) the
whole smoke DAG end to end from a clean copy of the repository."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests._workflow_fixtures import REPO, copy_repo, job_counts, snakemake

JOB_KINDS = {"fetch", "prepare", "encode", "train", "evaluate", "render_report", "all"}


def load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_dry_run_of_the_paper_config_lists_every_job_kind():
    result = snakemake("-n", "--forceall", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert JOB_KINDS <= set(counts), counts
    config = load("config/config.yaml")
    pairs = len(config["datasets_to_run"]) * len(config["models_to_run"])
    assert counts["train"] == counts["evaluate"] == pairs
    assert counts["prepare"] == counts["encode"] == len(config["datasets_to_run"])
    assert counts["render_report"] == 1


def test_dry_run_of_the_smoke_config_generates_tiny_archives():
    result = snakemake("-n", "--forceall", "--quiet", "rules", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    smoke = load("config/smoke.yaml")
    assert counts["tiny_archive"] == counts["fetch"] == len(smoke["corpora"]) - 1  # wikitext103 unused
    assert counts["train"] == len(smoke["datasets_to_run"]) * 4
    assert len(smoke["train_override"]["rounds"]) >= 3  # >= 2 reallocations


def test_a_subset_needs_its_own_run_name_and_the_readme_subset_plans_only_its_folder():
    """A subset on the command line without `run=` would replace the run's tables and report with a
    partial one: refused in one line naming the fix. The README's subset command, as written, plans
    everything under its own results folder."""
    import re
    import shlex

    refused = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", "datasets_to_run=[ptb]")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "would overwrite results/smoke/'s tables and report" in output and "--config run=smoke-subset" in output
    readme = (REPO / "README.md").read_text(encoding="utf-8").split("\n## A subset\n")[1].split("\n## ")[0]
    command = re.search(r"```bash\n(.*?)```", readme, flags=re.S).group(1).replace("\\\n", " ").splitlines()[0]
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/snakemake", command
    planned = snakemake("-n", *argv[1:])
    output = planned.stdout + planned.stderr
    assert planned.returncode == 0, output[-3000:]
    run = re.search(r"run=(\S+)", command).group(1)
    outputs = set(re.findall(r"results/[\w.-]+/", output))
    assert outputs == {f"results/{run}/"}, outputs


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_rule_files_are_snakefmt_formatted():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    if not snakefmt.exists():
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["train"].update(lr=-1), "lr"),
        (lambda c: c.update(datasets_to_run=["ptb", "nope"]), "unknown dataset 'nope'"),
        (lambda c: c["train"].update(learning_rate=0.1), "learning_rate"),
        (lambda c: c["corpora"].update(ptb={"url": None, "sha256": "xyz"}), "sha256"),
        (lambda c: c["fetch"].update(max_bytes=0), "max_bytes"),
    ],
)
def test_a_bad_config_is_rejected_before_any_work(tmp_path: Path, edit, message: str):
    config = load("config/config.yaml")
    edit(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    # A whole config file passed with --configfile (it extends config.yaml), in an empty folder.
    result = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile"))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_smoke_checksums_match_the_generated_tiny_archives(tmp_path: Path):
    """smoke.yaml pins each tiny archive's sha256; make_tiny_archive must still produce it."""
    from lightrnn.data.tiny import make_tiny_archive

    for corpus, entry in load("config/smoke.yaml")["corpora"].items():
        path, sha256 = make_tiny_archive(corpus, tmp_path / corpus, seed=0)
        assert entry["url"].endswith("/" + path.name), corpus
        assert sha256 == entry["sha256"], (
            f"config/smoke.yaml: corpora.{corpus}.sha256 is {entry['sha256']}, the generator now makes {sha256}"
        )


@pytest.fixture(scope="module")
def smoke_run():
    """The whole smoke DAG from a clean copy of the repository, then its HTML report: (copy, run folder)."""
    with tempfile.TemporaryDirectory() as folder:
        work = copy_repo(Path(folder) / "repo")
        result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", cwd=work, timeout=1500)
        assert result.returncode == 0, result.stderr[-4000:]
        # The console shows Snakemake's own lines: no `lightrnn eval` JSON, no "Shell command: None".
        assert '"ppl":' not in result.stdout + result.stderr
        assert "Shell command: None" not in result.stdout + result.stderr
        report = snakemake("--configfile", "config/smoke.yaml", "--report", "results/smoke/report.html", cwd=work)
        assert report.returncode == 0, report.stderr[-4000:]
        yield work, work / "results" / "smoke"


@pytest.mark.slow
def test_the_smoke_dag_runs_end_to_end_from_a_clean_directory(smoke_run):
    _, run = smoke_run
    smoke = load("config/smoke.yaml")
    for dataset in smoke["datasets_to_run"]:
        for model in smoke["models_to_run"]:
            assert (run / dataset / model / "eval.json").is_file(), (dataset, model)
            # Every job's benchmark: file, and the jobs table built from them.
            assert (run / "benchmarks" / "train" / dataset / f"{model}.tsv").is_file(), (dataset, model)
    aclw = (run / "tables" / "aclw.md").read_text()
    assert "| French |" in aclw and "| Spanish |" in aclw
    realloc = (run / "tables" / "reallocation.csv").read_text().splitlines()
    # 5 datasets x 3 rounds of LightRNN, the first two followed by a reallocation.
    assert len(realloc) == 1 + 5 * 3
    assert sum(1 for line in realloc[1:] if line.split(",")[7]) == 5 * 2  # realloc_objective filled
    jobs = (run / "tables" / "jobs.csv").read_text()
    assert jobs.count("\ntrain,") == 5 * 4 and jobs.count("\nevaluate,") == 5 * 4
    # Every rule of the run: the shared data jobs too (render_report's own cost is written after it).
    assert {line.split(",")[0] for line in jobs.splitlines()[1:]} >= {"tiny_archive", "fetch", "prepare", "encode"}
    for name in ("aclw-fr-vs-paper", "size-speed", "curves-ptb"):
        assert (run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (run / "plots" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert (run / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_the_smoke_figures_print_no_text_on_top_of_other_text(smoke_run):
    """The figures of a real (tiny) run, redrawn from its metrics, measured with matplotlib's renderer."""
    import matplotlib.pyplot as plt

    from lightrnn.report import plots
    from lightrnn.report.results import Results, find_results, load_evals, load_metrics

    _, run = smoke_run
    metrics, evals = find_results(run)
    results = Results(load_metrics(metrics), load_evals(evals))
    figures = [plots.perplexity_figure(results, "aclw-fr", "2026-01-02", "paper"),
               plots.size_speed_figure(results, "2026-01-02")]
    figures += [plots.perplexity_figure(results, d, "2026-01-02", "curves") for d in load("config/smoke.yaml")["datasets_to_run"]]
    try:
        for figure in figures:
            assert plots.text_overlaps(figure) == [], figure.axes[0].get_title(loc="left")
            assert plots.arrow_crossings(figure) == [], figure.axes[0].get_title(loc="left")
    finally:
        for figure in figures:
            plt.close(figure)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_the_report_shows_the_verdict_in_a_browser(smoke_run, tmp_path: Path):
    """The HTML report in headless Chromium: its front page (after the page's scripts ran) holds
    the verdict summary table with every claim, and the full tables are HTML results, not downloads."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, run = smoke_run
    page = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", (run / "report.html").as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert page.returncode == 0, page.stderr[-2000:]
    dom = page.stdout
    summary = dom[dom.index('id="table-verdict-summary"'):]
    summary = summary[: summary.index("</table>")]
    from lightrnn.report import paper

    for claim in paper.CLAIMS:
        assert html.escape(claim.claim, quote=False) in summary, claim.claim
    assert "confirmed" in summary
    # The tables are registered results as HTML (shown inline); the CSVs are not results (downloads).
    for name in ("verdict", "size-speed", "jobs"):
        assert f'tables/{name}.html": {{"name"' in dom, name
        assert f'tables/{name}.csv": {{"name"' not in dom, name
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1400,1000", "--virtual-time-budget=10000", f"--screenshot={screenshot}",
         (run / "report.html").as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert shot.returncode == 0 and screenshot.read_bytes()[:4] == b"\x89PNG", shot.stderr[-2000:]


@pytest.mark.slow
def test_a_run_of_one_dataset_and_one_model_renders_its_report(smoke_run):
    """PTB alone with LightRNN alone (the first run many users make) ends with its report."""
    work, _ = smoke_run
    result = snakemake(
        "--cores", "2", "--configfile", "config/smoke.yaml", "--config", "run=smoke-ptb",
        'datasets_to_run=["ptb"]', 'models_to_run=["lightrnn"]', cwd=work, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run = work / "results" / "smoke-ptb"
    assert "not run here" in (run / "tables" / "verdict.md").read_text()
    assert (run / "tables" / "benchmarks.md").is_file() and (run / "plots" / "curves-ptb.png").is_file()


def test_a_dry_run_names_every_missing_hand_placed_corpus_file(clean_copy: Path):
    """The large ACLW sets are declared inputs: `snakemake -n` fails before any job and names the
    files to place (all of them, not only the first job's)."""
    result = snakemake("-n", "--configfile", "config/aclw-large.yaml", cwd=clean_copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "18 hand-placed corpus files are missing" in output
    for lang in ("cs", "de", "en", "es", "fr", "ru"):
        assert f"resources/raw/aclw-large/{lang}/train.txt" in output, lang
    assert "MissingInputException" in output and not (clean_copy / "results").exists()
