"""The replication verdict: one row per claim of the paper, what it says, what this suite measured.

Sources of the measured side, each named in its row:
- sizes: closed-form parameter counts (`lightrnn.registry.param_count`) at the paper's configurations,
  exact without training;
- speed: a `lightrnn bench` folder (throughput-repeats.csv: ratios paired within a repeat);
- perplexity and reallocation: a run folder's metrics (`RunSummary`), at whatever scale it was run.
A run far smaller than the paper's gives a ratio between models, not the paper's absolute
perplexity; every row says at which scale its numbers were measured.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightrnn import registry
from lightrnn.report import paper
from lightrnn.report.layout import dataset_family, dataset_label, model_label
from lightrnn.report.render import Table, format_count, markdown_table, wrap_prose
from lightrnn.report.results import Results, Row, RunSummary

CONFIRMED, NOT_CONFIRMED, PARTLY, NOT_RUN = "confirmed", "not confirmed", "partly", "not run here"
WORDS = (CONFIRMED, NOT_CONFIRMED, PARTLY, NOT_RUN)
SIMILAR = 1.05  # "similar or better": LightRNN's perplexity at most 5% above the best baseline's
SPEEDUP = 2.0
SIZE_RANGE = (40.0, 100.0)
BASELINES = ("full_softmax", "class_softmax", "adaptive_softmax")  # this suite's, in report order
# The official example's One Billion Word sizes (embedding = hidden, 2 layers).
BILLIONW_SIZES = (1500, 1000, 500)


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict: the words of each column and the raw numbers behind them."""

    claim: paper.Claim
    measured: str
    source: str
    word: str  # one of WORDS, decided where the verdict is reached (the CSV's `verdict` column)
    verdict: str  # the table's cell: the word and how (`verdict_detail` in the CSV)
    numbers: dict[str, Any]

    def __post_init__(self) -> None:
        if self.word not in WORDS or not self.verdict.startswith(self.word):
            raise ValueError(f"verdict {self.verdict!r}: the word must be one of {WORDS} and open the text")


def _ratio(value: float) -> str:
    return f"{value:.3g}x"


def _within_published_precision(ours: float, published: float) -> bool:
    """True when `ours` rounds to the published figure: within one unit of its last digit (41M, 17M)."""
    digits = len(f"{published / 1e6:g}".split(".")[1]) if "." in f"{published / 1e6:g}" else 0
    return abs(ours - published) < 10 ** (6 - digits)


# ----------------------------------------------------------------------------- closed form
def size_rows() -> list[Verdict]:
    """The 40-100x size claim and the 41M / 17M sizes, from `param_count` at the paper's settings."""
    V = paper.BILLIONW_VOCAB
    ratios: dict[int, dict[str, float]] = {}
    light: dict[int, int] = {}
    for size in BILLIONW_SIZES:
        light[size] = registry.param_count("lightrnn", V, size, size, 2)
        ratios[size] = {
            name: registry.param_count(name, V, size, size, 2) / light[size] for name in BASELINES
        }
    at = paper.BILLIONW_LIGHTRNN.hidden_dim
    full = ratios[at]["full_softmax"]
    adaptive = ratios[at]["adaptive_softmax"]
    measured = (
        f"V = {V:,}, 2 layers, embedding = hidden: full softmax / LightRNN = "
        + ", ".join(f"{_ratio(ratios[s]['full_softmax'])} ({s}/{s})" for s in BILLIONW_SIZES)
        + f"; class softmax {_ratio(ratios[at]['class_softmax'])}, adaptive softmax (not in the paper) "
        f"{_ratio(adaptive)} at {at}/{at}"
    )
    low, high = SIZE_RANGE
    if low <= full <= high:
        word = CONFIRMED
        verdict = f"{CONFIRMED}: {_ratio(full)} against a full-vocabulary softmax at the paper's 41M model"
        if adaptive < low:
            verdict += f"; only {_ratio(adaptive)} against the adaptive softmax, a later baseline"
    elif full > high:
        word = CONFIRMED
        verdict = f"{CONFIRMED}: even more ({_ratio(full)}) than claimed at the paper's 41M model"
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED}: {_ratio(full)} at the paper's 41M model"
    source = "closed form (`lightrnn.registry.param_count`), no training: exact at any scale"
    claims = {claim.key: claim for claim in paper.CLAIMS}
    size_row = Verdict(claims["size-ratio"], measured, source, word, verdict,
                    {f"full_over_lightrnn_{s}": ratios[s]["full_softmax"] for s in BILLIONW_SIZES}
                    | {f"adaptive_over_lightrnn_{s}": ratios[s]["adaptive_softmax"] for s in BILLIONW_SIZES})

    checks = []
    for name, setting, published in (
        ("One Billion Word", paper.BILLIONW_LIGHTRNN, paper.BILLIONW["lightrnn"].params),
        ("ACLW-French", paper.ACLW_FR_LIGHTRNN, paper.ACLW["fr"]["lightrnn"].params),
    ):
        assert published is not None
        count = registry.param_count(
            "lightrnn", setting.vocab_size, setting.embed_dim, setting.hidden_dim, setting.num_layers
        )
        checks.append((name, setting, published.value, count))
    measured = "; ".join(
        f"{name}: {count / 1e6:.2f}M (V = {s.vocab_size:,}, {s.embed_dim}/{s.hidden_dim}, {s.num_layers} layers)"
        for name, s, _, count in checks
    )
    if all(_within_published_precision(count, value) for _, _, value, count in checks):
        word = CONFIRMED
        verdict = f"{CONFIRMED}: both round to the published sizes"
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED}: " + ", ".join(
            f"{name} {count / 1e6:.2f}M vs {value / 1e6:g}M" for name, _, value, count in checks
            if not _within_published_precision(count, value)
        )
    sizes_row = Verdict(claims["sizes"], measured, source, word, verdict,
                     {f"params_{name}": count for name, _, _, count in checks})
    return [size_row, sizes_row]


# ----------------------------------------------------------------------------- benchmark
def speed_row(bench_dir: Path | str | None, gpu_dir: Path | str | None = None) -> Verdict:
    """The 2x training-speed claim: a `lightrnn bench` folder's paired throughput ratios and, with
    `gpu_dir` (a `make gpu-check` folder, `lightrnn.report.gpu_speed`), the paper-size GPU ratios,
    which then decide the verdict (the paper's claim is about its GPU setting)."""
    cpu = _bench_speed_row(bench_dir)
    if gpu_dir is None:
        return cpu
    from lightrnn.report.gpu_speed import load_gpu_speed, speed_judgement

    gpu = load_gpu_speed(gpu_dir)
    measured, verdict, every = speed_judgement(gpu)
    if every is None:
        return cpu
    word = CONFIRMED if every else PARTLY
    verdict = f"{word}: {verdict}" + (f"; CPU benchmark: {cpu.verdict}" if cpu.word != NOT_RUN else "")
    both = f"{measured}; {cpu.measured}" if cpu.word != NOT_RUN else measured
    source = f"`make gpu-check` in {gpu.provenance()}" + (f"; {cpu.source}" if cpu.word != NOT_RUN else "")
    numbers = {**cpu.numbers, **{f"gpu_speedup_{row['embed_dim']}_{row['batch_size']}_{row['dtype']}":
                               row["over_adaptive_softmax"] for row in gpu.measured()}}
    return Verdict(cpu.claim, both, source, word, verdict, numbers)


def _bench_speed_row(bench_dir: Path | str | None) -> Verdict:
    """The speed row from a `lightrnn bench` folder alone."""
    claim = next(claim for claim in paper.CLAIMS if claim.key == "speed")
    repeats = Path(bench_dir) / "throughput-repeats.csv" if bench_dir else None
    if repeats is None or not repeats.is_file():
        return Verdict(claim, "no `lightrnn bench` results given", "–", NOT_RUN, f"{NOT_RUN}: run `lightrnn bench`", {})
    from lightrnn.core.csvio import read_csv
    from lightrnn.report.performance import paired_ratio

    raw = read_csv(repeats)
    summary = read_csv(Path(bench_dir) / "throughput.csv")  # type: ignore[arg-type]
    sizes = sorted({int(row["vocab_size"]) for row in raw})
    present = [name for name in BASELINES if any(row["model"] == name for row in raw)]
    if not sizes or not present or not any(row["model"] == "lightrnn" for row in raw):
        return Verdict(claim, f"{repeats}: no LightRNN and baseline rows", str(repeats), NOT_RUN, f"{NOT_RUN}", {})
    ratios = {(V, name): paired_ratio(raw, V, "lightrnn", name) for V in sizes for name in present}
    largest = sizes[-1]
    parts = []
    for V in (largest, *[v for v in sizes[:-1]][::-1]):
        parts.append(f"V = {V:,}: " + ", ".join(f"{_ratio(ratios[(V, name)])} {model_label(name).lower()}"
                                               for name in present))
    measured = "LightRNN training tokens/s over each baseline's (median of paired repeats); " + "; ".join(parts)
    first = summary[0] if summary else raw[0]
    device = str(first.get("device", "?"))
    setting = (
        f"E = H = {first.get('embed_dim')}, {first.get('num_layers')} layers, batch {first.get('batch_size')} x "
        f"{first.get('bptt')}, {first.get('dtype')}"
    )
    source = (
        f"`lightrnn bench` in {Path(bench_dir).as_posix()} ({first.get('cpu_model', '?')}, device {device}, "  # type: ignore[arg-type]
        f"{first.get('threads', '?')} thread(s); {setting}; synthetic Zipfian stream; git "
        f"{str(first.get('git_rev', '?'))[:7]}, {first.get('date', '?')})"
    )
    at_largest = [ratios[(largest, name)] for name in present]
    slower = [name for name in present if ratios[(sizes[0], name)] < SPEEDUP]
    if min(at_largest) >= SPEEDUP:
        if device.startswith("cpu"):
            word = PARTLY
            verdict = (f"partly: {_ratio(min(at_largest))} or more against every baseline at V = {largest:,}, "
                       f"on CPU at {setting.split(',')[0]}; the paper's GPU setting is not measured here")
        else:
            word = CONFIRMED
            verdict = f"{CONFIRMED}: {_ratio(min(at_largest))} or more against every baseline at V = {largest:,}"
        if slower and sizes[0] != largest:
            verdict += (f"; below 2x at V = {sizes[0]:,} against "
                        + ", ".join(model_label(name).lower() for name in slower))
    elif max(at_largest) >= SPEEDUP:
        word = PARTLY
        verdict = (f"partly: 2x or more at V = {largest:,} only against "
                   + ", ".join(model_label(n).lower() for n in present if ratios[(largest, n)] >= SPEEDUP))
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED}: below 2x against every baseline at V = {largest:,} ({device})"
    return Verdict(claim, measured, source, word, verdict, {f"speedup_{V}_{name}": ratios[(V, name)] for V, name in ratios})


# ----------------------------------------------------------------------------- a run's metrics
def _scale(run: str, summary: RunSummary, published: float | None) -> str:
    """'run smoke, cpu, 6 epochs, LightRNN 3.96K params (the paper: 17M)'."""
    size = f"LightRNN {format_count(summary.params)} params"
    if published:
        size += f" (the paper's: {format_count(published)})"
    revision = f", git {summary.git_rev[:7]}" if summary.git_rev else ""
    return f"run {run}{revision}, device {summary.device or '?'}, {summary.epochs} epochs, {size}"


def _paper_lightrnn(dataset: str) -> float | None:
    """The paper's LightRNN parameter count for this dataset (large ACLW set or One Billion Word)."""
    family = dataset_family(dataset)
    if family == "billionw":
        params = paper.BILLIONW["lightrnn"].params
    elif family == "aclw":  # 'aclw-fr', 'aclw-large-fr': the language code is the last part
        result = paper.ACLW.get(dataset.rsplit("-", 1)[-1], {}).get("lightrnn")
        params = result.params if result else None
    else:  # PTB, WikiText: the paper has no LightRNN size for them
        params = None
    return params.value if params else None


def _small(summary: RunSummary, published: float | None) -> bool:
    """A run well below the paper's model size: its perplexities compare models, not the paper's numbers."""
    return published is None or summary.params is None or summary.params < 0.5 * published


def perplexity_row(summaries: dict[tuple[str, str], RunSummary], run: str) -> Verdict:
    """LightRNN's test perplexity over the best baseline's, per ACLW / One Billion Word dataset of the run."""
    claim = next(claim for claim in paper.CLAIMS if claim.key == "perplexity")
    datasets = sorted(
        {d for d, m in summaries if m == "lightrnn" and dataset_family(d) in ("aclw", "billionw")}, key=dataset_label
    )
    compared = []
    for dataset in datasets:
        light = summaries[(dataset, "lightrnn")]
        baselines = [s for (d, m), s in summaries.items() if d == dataset and m != "lightrnn" and s.test_ppl]
        if light.test_ppl is None or not baselines:
            continue
        best = min(baselines, key=lambda s: s.test_ppl)  # type: ignore[arg-type,return-value]
        compared.append((dataset, light, best, light.test_ppl / best.test_ppl))  # type: ignore[operator]
    if not compared:
        return Verdict(claim, "no ACLW or One Billion Word run with LightRNN and a baseline", "–",
                    NOT_RUN, f"{NOT_RUN}: train LightRNN and a baseline on ACLW / One Billion Word", {})
    measured = "LightRNN / best baseline test perplexity: " + "; ".join(
        f"{dataset_label(d)} {light.test_ppl:.1f} / {best.test_ppl:.1f} ({model_label(best.model).lower()}) "
        f"= {ratio:.2f}" for d, light, best, ratio in compared
    )
    small = [d for d, light, _, _ in compared if _small(light, _paper_lightrnn(d))]
    first = compared[0][1]
    source = _scale(run, first, _paper_lightrnn(first.dataset))
    if small:
        source += "; far below the paper's scale: a ratio between models, not the paper's perplexity"
    families = {dataset_family(d) for d, *_ in compared}
    held = [d for d, _, _, ratio in compared if ratio <= SIMILAR]
    scale_words = "at this run's small scale" if small else "at the paper's scale"
    missing = {"aclw": "ACLW", "billionw": "One Billion Word"}
    not_run = [label for family, label in missing.items() if family not in families]
    if len(held) == len(compared):
        word = CONFIRMED if not small and not not_run else PARTLY
        verdict = f"{CONFIRMED} {scale_words}" if not small and not not_run else (
            f"partly: holds on every dataset run {scale_words}")
    elif held:
        word = PARTLY
        verdict = f"partly: holds on {', '.join(map(dataset_label, held))} only ({scale_words})"
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED} {scale_words}" + (
            " (says nothing about the paper's scale)" if small else "")
    if not_run:
        verdict += f"; {', '.join(not_run)} not run here"
    return Verdict(claim, measured, source, word, verdict, {f"ratio_{d}": ratio for d, _, _, ratio in compared})


def reallocation_row(results: Results, run: str) -> Verdict:
    """End-of-round validation perplexity of every LightRNN run with reallocations, round by round."""
    claim = next(claim for claim in paper.CLAIMS if claim.key == "reallocation")
    falling, total, examples, better_table, reallocations = 0, 0, [], 0, 0
    first_run: RunSummary | None = None
    for (dataset, model), run_model in sorted(results.runs.items(), key=lambda item: dataset_label(item[0][0])):
        if model != "lightrnn" or not run_model.reallocs:
            continue
        for row in run_model.reallocs:
            before, after = row.get("realloc_nll_before"), row.get("realloc_nll_after")
            better_table += before is not None and after is not None and after < before
        reallocations += len(run_model.reallocs)
        # The valid ppl at the end of every round (`Round.last`), the last round included.
        ends = [float(r.last["valid_ppl"]) for r in run_model.rounds if r.last.get("valid_ppl") is not None]
        total += 1
        first_run = first_run or results.summaries.get((dataset, model))
        falling += all(b < a for a, b in itertools.pairwise(ends))
        if len(examples) < 2:
            examples.append(f"{dataset_label(dataset)} " + " → ".join(f"{value:.1f}" for value in ends))
    if not total:
        return Verdict(claim, "no LightRNN run with a word reallocation", "–",
                    NOT_RUN, f"{NOT_RUN}: train LightRNN with more than one round", {})
    measured = (
        f"end-of-round validation perplexity fell every round in {falling}/{total} runs ({'; '.join(examples)}); "
        f"the new table's training loss was below the old one's in {better_table}/{reallocations} reallocations"
    )
    source = _scale(run, first_run, _paper_lightrnn(first_run.dataset)) if first_run else f"run {run}"
    if falling == total:
        word = PARTLY
        verdict = ("partly: perplexity fell round after round in every run, but no fixed-table control was "
                   "run, so the part due to reallocation is not separated from further training")
    elif falling:
        word = PARTLY
        verdict = f"partly: fell round after round in {falling} of {total} runs"
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED}: in no run did perplexity fall every round"
    return Verdict(claim, measured, source, word, verdict, {"runs_falling": falling, "runs": total})


# ----------------------------------------------------------------------------- the ablation study
def _study_records(study_dir: Path | str) -> list[dict[str, Any]]:
    from lightrnn.core.csvio import read_csv

    from lightrnn.core.loaders import input_file

    path = input_file(Path(study_dir) / "tables" / "ablation.csv", "--study: its",
                      "run the study (snakemake --configfile config/study-v1.yaml) and copy its run folder there")
    return read_csv(path)


def _study_source(records: list[dict[str, Any]], study_dir: Path | str) -> str:
    """Where the study's numbers come from: folder, data (its provenance.json when there), device, revisions."""
    first = records[0]
    data = str(first.get("dataset"))
    provenance = Path(study_dir) / "provenance.json"
    if provenance.is_file():
        data = json.loads(provenance.read_text(encoding="utf-8")).get("what", data)
    revisions = sorted({str(r.get("git_rev"))[:7] for r in records if r.get("git_rev")})
    sizes = [r["params"] for r in records if r.get("params") not in (None, "")]
    return (f"ablation study `{Path(study_dir).as_posix()}` ({data}; {first.get('device')}; git "
            f"{', '.join(revisions)}; models of {format_count(min(sizes))} to {format_count(max(sizes))} parameters, "
            "6 epochs: a comparison of models, not the paper's scale or data)")


# ----------------------------------------------------------------------------- the tuned study
def _tuned_tables(study_dir: Path | str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """study.csv and study-ratios.csv of a tuned study folder, and its source text (one revision list)."""
    from lightrnn.core.csvio import read_csv

    study_dir = Path(study_dir)
    models, ratios = read_csv(study_dir / "tables" / "study.csv"), read_csv(study_dir / "tables" / "study-ratios.csv")
    provenance = json.loads((study_dir / "provenance.json").read_text(encoding="utf-8"))
    source = (f"tuned study `{study_dir.as_posix()}` ({provenance.get('what', 'the study corpus')}; "
              f"{', '.join(provenance.get('devices', []))}; git "
              f"{', '.join(rev[:7] for rev in provenance.get('git_revisions', []))}; every model tuned on the same "
              "recipe grid, chosen on valid, >= 3 seeds, early stopping: a comparison of models at a small scale)")
    return models, ratios, source


def _ratio_text(record: dict[str, Any], labels: dict[str, str]) -> str:
    return (f"{labels.get(record['numerator'], record['numerator'])} / "
            f"{labels.get(record['denominator'], record['denominator'])} = {float(record['ratio']):.3f} "
            f"[{float(record['low']):.3f}, {float(record['high']):.3f}] ({record['word']})")


def size_frontier(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models of a tuned study's study.csv that are best at their size: by increasing parameter
    count, each one with a lower mean test perplexity than every smaller model (a Pareto frontier)."""
    run = sorted((r for r in models if r.get("status") == "run" and r.get("params") not in (None, "")
                  and r.get("test_ppl_mean") not in (None, "")),
                 key=lambda r: (float(r["params"]), float(r["test_ppl_mean"])))
    frontier: list[dict[str, Any]] = []
    for record in run:
        if not frontier or float(record["test_ppl_mean"]) < float(frontier[-1]["test_ppl_mean"]):
            frontier.append(record)
    return frontier


def tuned_perplexity_row(study_dir: Path | str) -> Verdict:
    """LightRNN (and each LightRNN model) over the best baseline, with paired bootstrap intervals."""
    from lightrnn.report.intervals import RULE

    claim = next(claim for claim in paper.CLAIMS if claim.key == "perplexity")
    models, ratios, source = _tuned_tables(study_dir)
    labels = {r["model"]: f"{r.get('label') or r['model']} ({format_count(float(r['params']))})"
              if r.get("params") not in (None, "") else (r.get("label") or r["model"]) for r in models}
    run = [r for r in ratios if r.get("status") == "run"]
    main = next((r for r in run if r["numerator"] == "lightrnn" and r["denominator"] != "lightrnn-no-realloc"), None)
    if main is None:
        return Verdict(claim, "the tuned study's LightRNN parts have not run (the baselines' results are in its "
                       "tables)", source, NOT_RUN, f"{NOT_RUN}: run the study's lightrnn-grid and lightrnn-seeds parts",
                       {})
    tests = {r["model"]: float(r["test_ppl_mean"]) for r in models if r.get("status") == "run"}
    lightrnn = tests["lightrnn"]
    beaten_by = sorted((model for model, value in tests.items() if value < lightrnn
                        and not model.startswith("lightrnn")), key=tests.get)
    measured = "; ".join(_ratio_text(r, labels) for r in run if r["denominator"] != "lightrnn-no-realloc")
    measured += (f"; below LightRNN's test perplexity {lightrnn:.1f}: "
                 + (", ".join(f"{labels[m]} {tests[m]:.1f}" for m in beaten_by) if beaten_by else "no baseline"))
    frontier = size_frontier(models)
    measured += ("; the best model at each size (lowest mean test perplexity among the models of at most that many "
                 "parameters): " + ", ".join(f"up to {format_count(float(r['params']))}: {labels[r['model']]} "
                                             f"{float(r['test_ppl_mean']):.1f}" for r in frontier))
    measured += f". {RULE}"
    word = PARTLY if main["word"] in ("better", "no clear difference") else NOT_CONFIRMED
    best = labels.get(main["denominator"], main["denominator"])
    interval = f"{float(main['ratio']):.2f}x [{float(main['low']):.2f}, {float(main['high']):.2f}]"
    verdict = (f"partly: {main['word']} than the best baseline at the study's small scale ({interval} {best}'s test "
               "perplexity)" if word == PARTLY else
               f"{NOT_CONFIRMED} at the study's small scale: LightRNN's test perplexity is {interval} the best "
               f"baseline's ({best}), above it beyond the test sample's uncertainty")
    verdict += (" (the best model at each size, smallest first: "
                + " < ".join(f"{labels[r['model']]} {float(r['test_ppl_mean']):.1f}" for r in frontier) + ")")
    return Verdict(claim, measured, source, word, verdict + "; ACLW and One Billion Word not run here",
                   {"ratio_best_baseline": float(main["ratio"]), "ratio_low": float(main["low"]),
                    "ratio_high": float(main["high"])})


def tuned_reallocation_row(study_dir: Path | str) -> Verdict:
    """LightRNN with reallocations over the same model keeping its first table, with its interval."""
    claim = next(claim for claim in paper.CLAIMS if claim.key == "reallocation")
    _, ratios, source = _tuned_tables(study_dir)
    pair = next((r for r in ratios if r["numerator"] == "lightrnn" and r["denominator"] == "lightrnn-no-realloc"),
                None)
    if pair is None or pair.get("status") != "run":
        return Verdict(claim, "the tuned study's LightRNN parts have not run", source, NOT_RUN,
                       f"{NOT_RUN}: run the study's lightrnn-grid and lightrnn-seeds parts", {})
    measured = (_ratio_text(pair, {"lightrnn": "LightRNN", "lightrnn-no-realloc": "LightRNN keeping its first table"})
                + "; the epoch after each reallocation against the no-reallocation run at the same epoch: the "
                "study's tables/study-spike")
    word = {"better": CONFIRMED, "no clear difference": PARTLY}.get(pair["word"], NOT_CONFIRMED)
    interval = (f"test perplexity {float(pair['ratio']):.2f}x [{float(pair['low']):.2f}, {float(pair['high']):.2f}] "
                "that of keeping the first table, each at its recipe chosen on valid")
    verdict = {CONFIRMED: f"{CONFIRMED} at the study's small scale: reallocating beats keeping the table ({interval})",
               PARTLY: f"partly: no clear difference from keeping the table at the study's small scale ({interval})",
               NOT_CONFIRMED: f"{NOT_CONFIRMED}: keeping the table is better at the study's small scale ({interval})"}[word]
    return Verdict(claim, measured, source, word, verdict, {"ratio_no_realloc": float(pair["ratio"])})


def study_perplexity_row(study_dir: Path | str) -> Verdict:
    """LightRNN's best recipe against every baseline's best (or only) recipe in the ablation study."""
    from lightrnn.report.tuned_study import is_tuned_study

    if is_tuned_study(study_dir):
        return tuned_perplexity_row(study_dir)
    claim = next(claim for claim in paper.CLAIMS if claim.key == "perplexity")
    records = _study_records(study_dir)
    best = {r["model"]: r for r in records if str(r.get("best_recipe")) == "True" and r.get("test_ppl_mean") != ""}
    if "lightrnn" not in best or not set(best) & set(BASELINES):
        return Verdict(claim, "the study has no best recipe of LightRNN and of a baseline", "–",
                       NOT_RUN, f"{NOT_RUN}: run the study's recipe group", {})
    light = best["lightrnn"]
    ratios = {m: float(light["test_ppl_mean"]) / float(r["test_ppl_mean"]) for m, r in best.items() if m != "lightrnn"}
    strongest = min(ratios, key=lambda m: float(best[m]["test_ppl_mean"]))
    measured = (f"best recipe against best recipe, test perplexity: LightRNN ({light['label']}) "
                f"{float(light['test_ppl_mean']):.1f}; " + "; ".join(
                    f"{model_label(m).lower()} ({best[m]['label']}) {float(best[m]['test_ppl_mean']):.1f} "
                    f"(LightRNN / it = {ratio:.3f})" for m, ratio in sorted(ratios.items(), key=lambda i: i[1])))
    ratio = ratios[strongest]
    if ratio <= SIMILAR:
        word = PARTLY
        verdict = (f"partly: similar or better at the study's small scale (within {100 * (SIMILAR - 1):.0f}% of the "
                   f"best baseline, {model_label(strongest).lower()}); ACLW and One Billion Word not run here")
    else:
        word = NOT_CONFIRMED
        verdict = (f"{NOT_CONFIRMED} at the study's small scale: {100 * (ratio - 1):.0f}% above the best baseline "
                   f"({model_label(strongest).lower()}); ACLW and One Billion Word not run here")
    return Verdict(claim, measured, _study_source(records, study_dir), word, verdict, {"ratio_best_baseline": ratio})


def _study_spikes(study_dir: Path | str, label: str) -> tuple[str, list[float]]:
    """The spike as the paper measures it (valid ppl one epoch after each reallocation over the end of
    the round before) for the study's `label` LightRNN runs, beside the paper's and the frozen model's."""
    from lightrnn.core.csvio import read_csv
    from lightrnn.report.study import paper_spikes

    path = Path(study_dir) / "tables" / "study-realloc.csv"
    if not path.is_file():
        return "", []
    records = [r for r in read_csv(path) if r.get("label") == label and r.get("group") == "recipe"
               and r.get("valid_spike_one_epoch") not in (None, "")]
    if not records:
        return "", []
    by_round: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_round.setdefault(int(record["round"]), []).append(record)

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(float(row[key]) for row in rows) / len(rows)

    def spikes(rows_by_round, key: str) -> str:
        values = [[float(r[key]) for r in rows if r.get(key) not in (None, "")] for _, rows in sorted(rows_by_round)]
        return ", ".join(f"{100 * sum(v) / len(v):+.0f}%" for v in values if v)

    published = paper_spikes()
    ours_valid = spikes(by_round.items(), "valid_spike_one_epoch")
    ours_test = spikes(by_round.items(), "test_spike_one_epoch")
    paper_valid = spikes(((r["round"], [r]) for r in published), "valid_spike_one_epoch")
    paper_test = spikes(((r["round"], [r]) for r in published), "test_spike_one_epoch")
    first = by_round[min(by_round)]
    valid_means = [mean(rows, "valid_spike_one_epoch") for _, rows in sorted(by_round.items())]
    return (f"; the spike as the paper measures it (one epoch on the new table over the end of the round before): "
            f"valid {ours_valid}" + (f", test {ours_test}" if ours_test else "")
            + f" (paper: valid {paper_valid}, test {paper_test}: {published[0]['test_before']:.0f} -> "
            f"{published[0]['test_after_one_epoch']:.0f}); right after the first reallocation, before any training on "
            f"the new table (a number the paper does not show): valid {mean(first, 'valid_before'):.0f} -> "
            f"{mean(first, 'valid_right_after'):,.0f}"), valid_means


def study_reallocation_row(study_dir: Path | str) -> Verdict:
    """The study's LightRNN at its default recipe with and without reallocation (the fixed-table control)."""
    from lightrnn.report.tuned_study import is_tuned_study

    if is_tuned_study(study_dir):
        return tuned_reallocation_row(study_dir)
    claim = next(claim for claim in paper.CLAIMS if claim.key == "reallocation")
    records = _study_records(study_dir)
    light = [r for r in records if r["model"] == "lightrnn" and r.get("test_ppl_mean") != ""]
    control = next((r for r in light if r["group"] == "reallocation" and "no reallocation" in str(r["label"])), None)
    default = next((r for r in light if r["group"] == "recipe" and "default" in str(r["label"])), None)
    if control is None or default is None:
        return Verdict(claim, "the study has no LightRNN pair with and without reallocation", "–",
                       NOT_RUN, f"{NOT_RUN}: run the study's reallocation group", {})
    with_, without = float(default["test_ppl_mean"]), float(control["test_ppl_mean"])
    moved = default.get("realloc_moved_mean")
    measured = (f"LightRNN, same recipe and epochs, test perplexity {with_:.1f} with reallocations vs {without:.1f} "
                f"with its first table kept ({100 * (with_ / without - 1):+.1f}%)"
                + (f"; each reallocation moved {100 * float(moved):.0f}% of the words" if moved not in (None, "") else ""))
    spike_text, spikes = _study_spikes(study_dir, default["label"])
    measured += spike_text
    # Beyond the seed spread: every seed with reallocation below every seed without.
    worst_with = float(default.get("test_ppl_max") or with_)
    best_without = float(control.get("test_ppl_min") or without)
    if worst_with < best_without:
        word = CONFIRMED
        verdict = f"{CONFIRMED} at the study's small scale: reallocating beats keeping the table, beyond the seed spread"
    elif with_ < without:
        word = PARTLY
        verdict = "partly: lower with reallocation on average, but within the seed spread"
    else:
        word = NOT_CONFIRMED
        verdict = f"{NOT_CONFIRMED} at the study's small scale: keeping the table is as good"
    if spikes and max(spikes) <= 0:
        verdict += ("; no spike where the paper measures it: one epoch after each reallocation the perplexity is "
                    f"already below the end of the round before (the paper's rounds were "
                    f"{paper.ACLW_FR_CURVE.realloc_after[0]} epochs, ending near a plateau)")
    elif spikes:
        verdict += f"; a spike where the paper measures it (up to {100 * max(spikes):+.0f}% one epoch after)"
    return Verdict(claim, measured, _study_source(records, study_dir), word, verdict,
                   {"ppl_with_realloc": with_, "ppl_without_realloc": without,
                    **({"valid_spike_one_epoch": " ".join(f"{value:.4f}" for value in spikes)} if spikes else {})})


# ----------------------------------------------------------------------------- LightRNN's variants at the paper's size
SIZE_OPTIONS = ("word_bias", "word_dim", "word_input_dim")  # the model options that change the parameter count
TRADE_OFF_DIMS = (0, 8, 16, 32)  # k of "word bias + output and input vectors k" (0: plain LightRNN)


def _run_config(study_dir: Path | str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The config.yaml of the record's first run that has one (its train keys), None when none does."""
    from lightrnn.core.loaders import parse_yaml

    for variant in str(record.get("variants") or "").split():
        path = Path(study_dir) / str(record.get("dataset")) / variant / "config.yaml"
        if path.is_file():
            config = parse_yaml(path.read_text(encoding="utf-8"), str(path))
            if isinstance(config, dict):
                return config
    return None


def _size_options(config: dict[str, Any]) -> dict[str, Any]:
    options = config.get("model_options") or {}
    return {key: options[key] for key in SIZE_OPTIONS if options.get(key)}


def _paper_size(options: dict[str, Any]) -> int:
    """LightRNN's parameters at One Billion Word's V and the paper's 1500/1500, 2 layers, with `options`."""
    size = paper.BILLIONW_LIGHTRNN.hidden_dim
    return registry.param_count("lightrnn", paper.BILLIONW_VOCAB, size, size, 2, **options)


def _lightrnn_records(study_dir: Path | str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(study record, run config) of every LightRNN row of the study with a test perplexity: the
    ablation study's rows, or a tuned study's models (at their chosen recipes, mean of seeds)."""
    from lightrnn.core.csvio import read_csv
    from lightrnn.report.tuned_study import is_tuned_study

    if is_tuned_study(study_dir):
        records = [{**r, "model": r.get("registered_model"), "dataset": "ptb"}
                   for r in read_csv(Path(study_dir) / "tables" / "study.csv") if r.get("status") == "run"]
    else:
        records = _study_records(study_dir)
    pairs = []
    for record in records:
        if record.get("model") != "lightrnn" or record.get("test_ppl_mean") in (None, ""):
            continue
        config = _run_config(study_dir, record)
        if config is not None:
            pairs.append((record, config))
    return pairs


def variant_sizes_table(study_dir: Path | str) -> Table:
    """Each LightRNN variant of the study: parameters at the study's V and at One Billion Word's
    (1500/1500, closed form), the full and adaptive softmax over it there, its study perplexity."""
    V, size = paper.BILLIONW_VOCAB, paper.BILLIONW_LIGHTRNN.hidden_dim
    full = registry.param_count("full_softmax", V, size, size, 2)
    adaptive = registry.param_count("adaptive_softmax", V, size, size, 2)
    cells, records = [], []
    for record, config in _lightrnn_records(study_dir):
        options = _size_options(config)
        count = _paper_size(options)
        ppl = float(record["test_ppl_mean"])
        cells.append([str(record["label"]), format_count(float(record["params"])), format_count(count),
                      f"{full / count:.1f}x", f"{adaptive / count:.1f}x", f"{ppl:.1f}"])
        records.append({"table": "variant-sizes", "label": record["label"], "group": record["group"],
                        "size_options": json.dumps(options, sort_keys=True), "params_study": record["params"],
                        "params_billionw_1500": count, "full_over_it": full / count,
                        "adaptive_over_it": adaptive / count, "test_ppl_mean": ppl})
    return Table(
        name="variant-sizes",
        title="LightRNN's variants: size at One Billion Word beside the study's perplexity",
        header=["LightRNN variant (study label)", "params (study)", f"params at V = {V:,}, {size}/{size}",
                "full softmax / it", "adaptive softmax / it", "test ppl (study)"],
        cells=cells, records=records,
        note=(f"Parameters at V = {V:,} from the closed form (`lightrnn.registry.param_count`) with each variant's "
              "size options (word_bias, word_dim, word_input_dim) from its run's config.yaml; the paper's size claim "
              "is 40-100x below the full softmax. The perplexity is the study's (its V, its size), not the paper's; "
              "LightRNN runs made before the normalised model used the paper's form, which gives empty "
              "table slots mass, so their perplexity is an upper bound (the tuned study's V is a square: no "
              "empty slot)."),
        left=1,
    )


def trade_off_table(study_dir: Path | str) -> Table:
    """Per-word bias + output and input vectors of dimension k: parameters at One Billion Word (1500/1500)
    against the study's perplexity, for k in TRADE_OFF_DIMS (k = 0: plain LightRNN); "not run" where the
    study has no such variant at the capacity group's recipe (a tuned study: each LightRNN model at its
    own chosen recipe, whatever its reallocation)."""
    from lightrnn.report.tuned_study import is_tuned_study

    tuned = is_tuned_study(study_dir)
    pairs = [(record, config) for record, config in _lightrnn_records(study_dir)
             if (tuned and record.get("group") == "lightrnn") or (
                 record.get("group") in ("recipe", "capacity")
                 and (config.get("model_options") or {}).get("realloc_columns", "separable") == "separable")]
    recipe_lr = None if tuned else next(
        (config.get("lr") for record, config in pairs if record.get("group") == "capacity"), None)
    cells, records = [], []
    for k in TRADE_OFF_DIMS:
        options = {"word_bias": True, "word_dim": k, "word_input_dim": k} if k else {}
        match = next((record for record, config in pairs
                      if _size_options(config) == options and (recipe_lr is None or config.get("lr") == recipe_lr)), None)
        count = _paper_size(options)
        ppl = float(match["test_ppl_mean"]) if match else None
        cells.append([str(k), "plain LightRNN" if not k else f"word bias + output and input vectors k={k}",
                      format_count(count), f"{ppl:.1f}" if ppl is not None else "not run",
                      str(match["label"]) if match else "–"])
        records.append({"table": "trade-off", "k": k, "params_billionw_1500": count, "test_ppl_mean": ppl,
                        "study_label": match["label"] if match else None})
    return Table(
        name="trade-off",
        title="Per-word capacity k: size at One Billion Word against the study's perplexity",
        header=["k", "variant", f"params at V = {paper.BILLIONW_VOCAB:,}", "test ppl (study)", "study row"],
        cells=cells, records=records,
        note=("Sizes from the closed form at 1500/1500, 2 layers; perplexity from the committed study "
              + ("(each LightRNN model at its recipe chosen on valid, mean of its seeds)" if tuned else
                 "at the capacity group's recipe (the paper's separable reallocation)")
              + ", \"not run\" where it has no such k."),
        left=2,
    )


# ----------------------------------------------------------------------------- the table
def verdict_rows(
    results: Results, bench_dir: Path | str | None, run: str, study_dir: Path | str | None = None,
    gpu_dir: Path | str | None = None,
) -> list[Verdict]:
    """One verdict per claim of `paper.CLAIMS`, in that order.

    With `study_dir` (an ablation study's run folder) perplexity and reallocation come from the
    study (best recipe against best recipe, and a fixed-table control), else from the run's rows.
    """
    by_key = {row.claim.key: row for row in size_rows()}
    by_key["speed"] = speed_row(bench_dir, gpu_dir)
    if study_dir is not None:
        by_key["perplexity"] = study_perplexity_row(study_dir)
        by_key["reallocation"] = study_reallocation_row(study_dir)
    else:
        by_key["perplexity"] = perplexity_row(results.summaries, run)
        by_key["reallocation"] = reallocation_row(results, run)
    return [by_key[claim.key] for claim in paper.CLAIMS]


def verdict_table(
    results: Results, date: str, bench_dir: Path | str | None = None, run: str = "this run",
    study_dir: Path | str | None = None, gpu_dir: Path | str | None = None,
) -> Table:
    """The verdict as a `Table` (rendered like every other table: Markdown, LaTeX, CSV)."""
    verdicts = verdict_rows(results, bench_dir, run, study_dir, gpu_dir)
    revisions = sorted({str(row["git_rev"]) for row in results.rows if row.get("git_rev")})
    devices = sorted({str(row["device"]) for row in results.rows if row.get("device")})
    cells, records = [], []
    for item in verdicts:
        says = f"{item.claim.paper_says} ({paper.SHORT_SOURCES[item.claim.source]})"
        cells.append([item.claim.claim, says, item.measured, item.source, item.verdict])
        records.append({
            "table": "verdict",
            "claim": item.claim.key,
            "paper_says": item.claim.paper_says,
            "paper_source": item.claim.source,
            "measured": item.measured,
            "measured_from": item.source,
            "verdict": item.word,
            "verdict_detail": item.verdict,
            **{key: value for key, value in item.numbers.items()},
            "git_rev": ", ".join(revisions) or None,
            "device": ", ".join(devices) or None,
            "date": date,
        })
    return Table(
        name="verdict",
        title="Does the paper hold? One row per claim, the paper's numbers beside this suite's",
        header=["Claim", "The paper says", "Measured here", "From (run, device, scale)", "Verdict"],
        cells=cells,
        records=records,
        note="Verdicts: confirmed / not confirmed / partly (how) / not run here. A run far smaller than "
        "the paper's compares models with each other; it does not reproduce the paper's absolute perplexity.",
        left=5,
    )


def verdict_summary(table: Table) -> Table:
    """The verdict table cut to claim, verdict word and evidence: the front page of the HTML report.

    The README's answer (docs/verdict.md's table) reads the committed study and benchmark, a run's
    report its own metrics: the evidence column and the note say so, so that two different verdicts
    of one claim are never left unexplained."""
    return Table(
        name="verdict-summary",
        title="Does the paper hold? (this run's evidence)",
        header=["Claim", "Verdict", "Evidence (run, device, scale)"],
        cells=[[line[0], record["verdict"], line[3]] for line, record in zip(table.cells, table.records)],
        records=[],
        note="Each verdict is read from the evidence beside it: this run's metrics, its `lightrnn bench` "
        "folder when it has one, and the closed-form sizes. The README's answer (docs/verdict.md) reads the "
        "committed ablation study and CPU benchmark in results/paper/ instead, so a row of a small run can "
        "read differently there. What the paper says and what was measured: Results, Does the paper hold "
        "(the full verdict table).",
        left=3,
    )


# ----------------------------------------------------------------------------- README section
README_SECTION = "verdict"  # the full table: docs/verdict.md
ANSWER_SECTION = "answer"  # the README's five lines: one per claim, its verdict's first clause


def readme_section(
    results: Path | str | None, bench_dir: Path | str | None, command: str, study_dir: Path | str | None = None,
    gpu_dir: Path | str | None = None,
) -> str:
    """The `verdict` section (docs/verdict.md): provenance sentence, the verdict table, its note."""
    return readme_verdict(results, bench_dir, command, study_dir, gpu_dir)[0]


def readme_answer(table: Table, full_table: str) -> str:
    """The README's `answer` section: one line per claim (its verdict up to the first ';'), the link to
    FULL_TABLE (the page with the whole verdict table, relative to the README)."""
    lines = [f"- **{cells[0]}**: {record['verdict_detail'].split(';')[0].strip()}"
             for cells, record in zip(table.cells, table.records)]
    note = (f"Generated by `lightrnn report readme` (`make docs`) from the same evidence as the full table "
            f"([{full_table}]({full_table}): what the paper says, what was measured, from which run, device and "
            f"scale); do not edit by hand.")
    return "\n".join([*lines, "", *wrap_prose([note])])


def readme_verdict(
    results: Path | str | None, bench_dir: Path | str | None, command: str, study_dir: Path | str | None = None,
    gpu_dir: Path | str | None = None,
) -> tuple[str, Table]:
    """The `verdict` section's body (provenance sentence, the verdict table, its note) and the table.

    Perplexity and reallocation come from RESULTS's metrics files when the folder has any (else
    those rows read "not run here"); speed from BENCH_DIR; sizes from the closed form.
    """
    from lightrnn.report.results import find_results, load_evals, load_metrics

    rows: list[Row] = []
    evals: list[Row] = []
    run = "none"
    if results is not None and Path(results).is_dir() and any(Path(results).glob("*/*/metrics.jsonl")):
        metrics_paths, eval_paths = find_results(results)
        rows, evals = load_metrics(metrics_paths), load_evals(eval_paths)
        run = Path(results).resolve().name
    if bench_dir is not None and not (Path(bench_dir) / "throughput-repeats.csv").is_file():
        raise FileNotFoundError(f"--bench-dir {bench_dir}: no throughput-repeats.csv; run `lightrnn bench all "
                                f"--out {bench_dir}` first")
    table = verdict_table(Results(rows, evals), date="", bench_dir=bench_dir, run=run, study_dir=study_dir,
                          gpu_dir=gpu_dir)
    used = [f"`{Path(bench_dir).as_posix()}/` (speed)"] if bench_dir else []
    if gpu_dir is not None:
        used.append(f"`{Path(gpu_dir).as_posix()}/` (speed at the paper's sizes on a GPU)")
    if study_dir is not None:
        from lightrnn.report.tuned_study import is_tuned_study

        kind = "the tuned study" if is_tuned_study(study_dir) else "the ablation study"
        used.append(f"`{Path(study_dir).as_posix()}/` (perplexity and reallocation: {kind})")
    elif rows:
        used.append(f"`{Path(results).as_posix()}/` (perplexity and reallocation: the {run} run's metrics)")  # type: ignore[arg-type]
    else:
        used.append("no training run (perplexity and reallocation rows: not run here)")
    sentence = (
        f"Generated by `{command}` from the closed-form parameter counts (sizes), {' and '.join(used)}, and the "
        "published numbers in `lightrnn/report/paper.py` (each with its source; recalled ones marked); do not "
        "edit by hand. Every run's report opens with this table built from that run's own evidence "
        "(`tables/verdict.md`), so the rows of a small run can read differently."
    )
    lines = [*wrap_prose([sentence]), ""]
    lines += markdown_table(table.header, table.cells, table.left)
    lines += ["", *wrap_prose([table.note])]
    if study_dir is not None:  # what each LightRNN variant costs at the paper's size, beside its perplexity
        for extra in (variant_sizes_table(study_dir), trade_off_table(study_dir)):
            lines += ["", f"**{extra.title}**", "", *markdown_table(extra.header, extra.cells, extra.left)]
            lines += ["", *wrap_prose([extra.note])]
    return "\n".join(lines), table
