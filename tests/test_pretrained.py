"""Using a trained model: the self-contained file, lightrnn.load, score, generate, export,
data encode --vocab, each model's sampler, and the optional TensorBoard curves."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lightrnn
from lightrnn import cli, registry
from lightrnn.training.checkpoint import load_checkpoint, save_checkpoint
from lightrnn.config import TrainConfig
from lightrnn.data.encode import encode
from lightrnn.data.prepare import prepare
from lightrnn.data.tiny import make_tiny_archive
from lightrnn.core.fileio import read_jsonl
from lightrnn.training.train import train

ROOT = Path(__file__).resolve().parent.parent
MODELS = registry.names()
TINY = ["embed_dim=16", "hidden_dim=24", "num_layers=1", "dropout=0.1", "batch_size=8", "bptt=12", "lr=0.01",
        "eval_batch_size=4", "device=cpu", "rounds=[1]", "max_steps_per_epoch=6", "log_every_s=0",
        "checkpoint_every_s=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The tiny PTB archive (real layout: lower case, N, <unk>), prepared and encoded."""
    root = tmp_path_factory.mktemp("use")
    make_tiny_archive("ptb", root / "raw")
    prepare("ptb", root / "raw", root / "text")
    encode(root / "text", root / "data")
    return {"root": root, "text": root / "text", "data": root / "data"}


@pytest.fixture(scope="module")
def trained(corpus) -> dict[str, Path]:
    """best.pt of each registered model, trained for a few steps (seconds)."""
    files = {}
    for name in MODELS:
        out = corpus["root"] / name
        train(TrainConfig.from_yaml(None, [*TINY, f"model={name}"]), corpus["data"], out)
        files[name] = out / "best.pt"
    return files


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tokens(text: str) -> int:
    """Sampled tokens in generated text: words, plus one eos per line break."""
    return len(text.split()) + text.count("\n")


# ----- every model: score a text file and generate 50 tokens, from the CLI and the API ------------

@pytest.mark.parametrize("name", MODELS)
def test_every_model_scores_and_generates_from_the_cli_and_the_api(name, trained, corpus, capsys) -> None:
    model_file = trained[name]
    assert "vocab" in load_checkpoint(model_file)  # best.pt is self-contained
    text = corpus["text"] / "test.txt"
    sentences = [line for line in text.read_text().splitlines() if line.split()]
    summary_path = corpus["root"] / f"{name}-score.json"
    code, out, err = _run(["score", "--model", str(model_file), "--text", str(text), "--format", "jsonl",
                           "--device", "cpu", "--summary", str(summary_path)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    summary = json.loads(summary_path.read_text())
    assert len(rows) == len(sentences) == summary["sentences"]
    # Every word and every eos is predicted once (an eos is read before the first sentence).
    assert sum(row["tokens"] for row in rows) == summary["tokens"] == sum(len(s.split()) + 1 for s in sentences)
    assert summary["ppl"] == pytest.approx(math.exp(-sum(row["log_prob"] for row in rows) / summary["tokens"]))
    assert 1 < summary["ppl"] < 401 * 2 and f"ppl {summary['ppl']:.4f}" in err

    lm = lightrnn.load(model_file, device="cpu")
    scores = lm.score(sentences)
    assert scores.ppl == pytest.approx(summary["ppl"], rel=1e-9)
    assert [s.log_prob for s in scores.sentences] == pytest.approx([row["log_prob"] for row in rows], rel=1e-9)

    code, out, err = _run(["generate", "--model", str(model_file), "--tokens", "50", "--seed", "3",
                           "--temperature", "0.9", "--top-k", "30", "--prompt", "the", "--device", "cpu"], capsys)
    assert code == 0, err
    generated = lm.generate("the", tokens=50, temperature=0.9, top_k=30, seed=3)
    assert out == generated.rstrip(" ") + ("" if generated.endswith("\n") else "\n")  # same seed, same text
    assert _tokens(generated) == 1 + 50 and generated.startswith("the")
    assert all(word in lm.word_to_id for word in generated.split())
    assert lm.generate(tokens=50, seed=4) != lm.generate(tokens=50, seed=5)
    assert _tokens(lm.generate(tokens=50, seed=4)) == 50


@pytest.mark.parametrize("name", MODELS)
def test_score_like_eval_equals_eval_on_the_encoded_split(name, trained, corpus, capsys) -> None:
    code, out, err = _run(["eval", "--checkpoint", str(trained[name]), "--data", str(corpus["data"]),
                           "--split", "test", "--device", "cpu"], capsys)
    assert code == 0, err
    evaluated = json.loads(out)
    summary_path = corpus["root"] / f"{name}-like-eval.json"
    code, _, err = _run(["score", "--model", str(trained[name]), "--text", str(corpus["text"] / "test.txt"),
                         "--like-eval", "--device", "cpu", "--summary", str(summary_path)], capsys)
    assert code == 0, err
    summary = json.loads(summary_path.read_text())
    assert summary["tokens"] == evaluated["tokens"]
    assert summary["ppl"] == pytest.approx(evaluated["ppl"], rel=1e-9)


def _hostile(text: str, seed: int) -> bytes:
    """The text's words with a BOM in front, Windows line ends, blank lines, and between words every
    character Python breaks lines at but "\\n" (\\r, \\x0c, \\x1c, U+2028, ...)."""
    rng = random.Random(seed)
    separators = [" ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
    lines = []
    for line in text.splitlines():
        words = line.split()
        lines.append("".join(word + rng.choice(separators) for word in words) + rng.choice(["", "\r", "\x0c"]))
        if rng.random() < 0.1:
            lines.append(rng.choice(["", "  ", "\u2028", "\r"]))  # not sentences
    return ("\ufeff" + "\n".join(lines)).encode("utf-8")


@pytest.mark.parametrize("name", ["lightrnn", "class_softmax"])
def test_score_like_eval_equals_encode_vocab_and_eval_on_hostile_text(name, trained, corpus, tmp_path, capsys,
                                                                      monkeypatch) -> None:
    """One text reader: the text `score` reads is the split `data encode --vocab` writes, whatever its
    bytes (issue 35, class 1), and stdin reads as the file does."""
    raw = _hostile((corpus["text"] / "test.txt").read_text(), seed=3)
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    for split in ("train", "valid", "test"):
        (text_dir / f"{split}.txt").write_bytes(raw)
    code, _, err = _run(["data", "encode", "--text", str(text_dir), "--out", str(tmp_path / "data"),
                         "--vocab", str(trained[name])], capsys)
    assert code == 0, err
    code, out, err = _run(["eval", "--checkpoint", str(trained[name]), "--data", str(tmp_path / "data"),
                           "--split", "test", "--device", "cpu"], capsys)
    assert code == 0, err
    evaluated = json.loads(out)
    summaries = {}
    for source in ("file", "stdin"):
        summary_path = tmp_path / f"{source}.json"
        if source == "stdin":
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
        code, out, err = _run(["score", "--model", str(trained[name]), "--text",
                               "-" if source == "stdin" else str(text_dir / "test.txt"), "--like-eval",
                               "--device", "cpu", "--summary", str(summary_path)], capsys)
        assert code == 0, err
        summaries[source] = {**json.loads(summary_path.read_text()), "rows": out}
    summary = summaries["file"]
    assert summary["tokens"] == evaluated["tokens"] and summary["sentences"] == len(
        [line for line in raw.decode("utf-8").split("\n") if line.split()])
    assert summary["ppl"] == pytest.approx(evaluated["ppl"], rel=1e-9)
    assert summary["unknown"] == 0  # the BOM did not turn the first word into unk
    assert {k: v for k, v in summaries["stdin"].items() if k not in ("text", "tokens_per_s")} == {
        k: v for k, v in summary.items() if k not in ("text", "tokens_per_s")}


def test_lightrnn_scores_are_its_exact_log_prob(trained) -> None:
    """Each sentence's log-probability is the sum of LightRNN.log_prob at its targets (not an estimate),
    read alone from the state after one eos, whatever the other sentences and the batch."""
    lm = lightrnn.load(trained["lightrnn"], device="cpu")
    sentences = ["the N of lobo " * 5 + "to", "a <unk> to the", "lone nebo"]  # the first is longer than bptt
    scores = lm.score(sentences, batch_size=2)
    for sentence, scored in zip(sentences, scores.sentences):
        ids = torch.tensor([lm.eos_id, *[lm.word_to_id[word] for word in sentence.split()], lm.eos_id])
        log_probs, _ = lm.model.log_prob(ids[None, :-1])  # [1, T, V], the exact distribution
        expected = log_probs[0].gather(1, ids[1:, None]).double().sum().item()
        assert scored.log_prob == pytest.approx(expected, rel=1e-5) and scored.tokens == len(ids) - 1
        alone = lm.score([sentence], batch_size=1).sentences[0]
        assert alone.log_prob == pytest.approx(scored.log_prob, rel=1e-6)


def test_unknown_words_map_to_unk_and_are_counted(trained, corpus, capsys) -> None:
    text = corpus["root"] / "unknown.txt"
    text.write_text("the zzqx of lobo\n\n   \nqqzz N\n")
    summary_path = corpus["root"] / "unknown.json"
    code, out, err = _run(["score", "--model", str(trained["full_softmax"]), "--text", str(text),
                           "--device", "cpu", "--summary", str(summary_path)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "line\ttokens\tlog_prob\tppl\tunknown"
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "4"]  # blank lines are not sentences
    assert [line.split("\t")[4] for line in lines[1:]] == ["1", "1"]
    summary = json.loads(summary_path.read_text())
    assert summary["unknown"] == 2 and summary["unk_token"] == "<unk>" and summary["words"] == 6
    assert "2 unknown word(s) -> <unk>" in err
    # The same as scoring the text with <unk> written in.
    lm = lightrnn.load(trained["full_softmax"], device="cpu")
    assert lm.score(["the <unk> of lobo", "<unk> N"]).ppl == pytest.approx(summary["ppl"], rel=1e-12)


def test_score_reads_stdin(trained, capsys, monkeypatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("the N of lobo\n"))
    code, out, _ = _run(["score", "--model", str(trained["class_softmax"]), "--text", "-", "--device", "cpu"], capsys)
    assert code == 0 and out.splitlines()[1].startswith("1\t5\t")


# ----- bad input: one line, exit 2 -----------------------------------------------------------------

def _old_layout(model_file: Path, target: Path) -> Path:
    payload = load_checkpoint(model_file)
    payload.pop("vocab")
    payload.pop("format")
    save_checkpoint(target, payload)
    return target


@pytest.mark.parametrize(("damage", "field"), [
    (lambda v: v.update(words=v["words"] + "\nextra"), "vocab.words"),
    (lambda v: v.update(words="\n".join(["same"] * len(v["words"].split("\n")))), "vocab.words"),
    (lambda v: v.update(counts=v["counts"][:-1]), "vocab.counts"),
    (lambda v: v.update(counts=-v["counts"] - 1), "vocab.counts"),
    (lambda v: v.update(unk_token="not-a-word"), "vocab.unk_token"),
    (lambda v: v.update(eos_token=5), "vocab.eos_token"),
], ids=["more words than V", "repeated words", "short counts", "negative counts", "unk not a word", "eos not text"])
def test_a_damaged_vocabulary_in_a_model_file_is_named(damage, field, trained, corpus, capsys) -> None:
    """The vocabulary inside a model file is checked when it is loaded: one line naming the file and field."""
    payload = load_checkpoint(trained["lightrnn"])
    damage(payload["vocab"])
    bad = save_checkpoint(corpus["root"] / "bad-vocab.pt", payload)
    code, _, err = _run(["score", "--model", str(bad), "--text", str(corpus["text"] / "valid.txt")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(bad) in err and field in err, err


def test_an_old_checkpoint_says_how_to_export_it_and_export_makes_it_usable(trained, corpus, capsys) -> None:
    old = _old_layout(trained["lightrnn"], corpus["root"] / "old.pt")
    text = corpus["text"] / "valid.txt"
    code, out, err = _run(["score", "--model", str(old), "--text", str(text), "--device", "cpu"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "holds no vocabulary" in err and f"lightrnn export --checkpoint {old} --data" in err
    with pytest.raises(ValueError, match="lightrnn export"):
        lightrnn.load(old)
    # --data makes it load; export writes a file that loads alone and scores the same.
    expected = lightrnn.load(trained["lightrnn"], device="cpu").score(text.read_text().splitlines(), skip_blank=True)
    with_data = lightrnn.load(old, data=corpus["data"], device="cpu")
    assert with_data.score(text.read_text().splitlines(), skip_blank=True).ppl == pytest.approx(expected.ppl, rel=1e-12)
    exported = corpus["root"] / "exported.pt"
    code, out, err = _run(["export", "--checkpoint", str(old), "--data", str(corpus["data"]), "--out", str(exported)],
                          capsys)
    assert code == 0, err
    payload = torch.load(exported, weights_only=True)
    assert "optimizer" not in payload and payload["kind"] == "model"
    assert torch.equal(payload["model"]["word_row"], load_checkpoint(old)["model"]["word_row"])  # the table
    again = lightrnn.load(exported, device="cpu").score(text.read_text().splitlines(), skip_blank=True)
    assert again.ppl == pytest.approx(expected.ppl, rel=1e-12)
    code, _, err = _run(["export", "--checkpoint", str(old), "--out", str(corpus["root"] / "x.pt")], capsys)
    assert code == 2 and "--data" in err


@pytest.mark.parametrize("argv, message", [
    (["--tokens", "0"], "--tokens must be an integer from 1 to 1,000,000"),
    (["--tokens", "1000000000"], "--tokens must be an integer from 1 to 1,000,000, got 1000000000"),
    (["--temperature", "0"], "--temperature must be a finite number > 0"),
    (["--temperature", "-1"], "--temperature must be a finite number > 0"),
    (["--temperature", "inf"], "--temperature must be a finite number > 0"),
    (["--seed", str(2**64)], "--seed must be an integer from"),
    (["--seed", str(-(2**63) - 1)], "--seed must be an integer from"),
    (["--prompt", "the \udcff"], "--prompt: line 1 is not valid UTF-8"),
    (["--top-k", "0"], "--top-k must be an integer >= 1"),
    (["--prompt", "zzqx qqzz"], "none of its 2 word(s) is in the model's vocabulary"),
    (["--prompt", "   "], "--prompt is empty"),
])
def test_generate_refuses_bad_options_in_one_line(argv, message, trained, capsys) -> None:
    code, out, err = _run(["generate", "--model", str(trained["adaptive_softmax"]), "--device", "cpu", *argv], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_generate_streams_its_tokens_and_bounds_their_count(trained, capsys, monkeypatch) -> None:
    """Each token is printed as it is drawn (issue 35, class 4): the first line is out after the first
    draws, not after all of them; nothing is kept, and --tokens is bounded."""
    model_class = registry.model_class("full_softmax")
    draws = []
    original = model_class.generate_step

    def counted(self, *args, **kwargs):
        draws.append(1)
        return original(self, *args, **kwargs)

    class Recorder:
        def __init__(self) -> None:
            self.pieces: list[tuple[int, str]] = []

        def write(self, text: str) -> int:
            self.pieces.append((len(draws), text))
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(model_class, "generate_step", counted)
    recorder = Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    assert cli.main(["generate", "--model", str(trained["full_softmax"]), "--tokens", "300", "--seed", "2",
                     "--device", "cpu"]) == 0
    assert len(draws) == 300 and recorder.pieces[0][0] <= 2  # the first word is out after its own draw
    text = "".join(piece for _, piece in recorder.pieces)
    expected = lightrnn.load(trained["full_softmax"], device="cpu").generate(tokens=300, seed=2)
    assert text == expected.rstrip(" ") + ("" if expected.endswith("\n") else "\n")
    lm = lightrnn.load(trained["full_softmax"], device="cpu")
    first = next(iter(lm.sample_ids([], tokens=1_000_000, seed=1)))  # lazy: one draw, not a million
    assert 0 <= first < len(lm.words)
    with pytest.raises(ValueError, match="--tokens must be an integer from 1 to 1,000,000"):
        lm.sample_ids([], tokens=1_000_001)


def test_score_refuses_empty_text_in_one_line(trained, corpus, capsys) -> None:
    empty = corpus["root"] / "empty.txt"
    empty.write_text("\n  \n")
    code, out, err = _run(["score", "--model", str(trained["lightrnn"]), "--text", str(empty)], capsys)
    assert code == 2 and out == "" and "holds no sentence" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(["score", "--model", str(trained["lightrnn"]), "--text", str(corpus["root"] / "no.txt")], capsys)
    assert code == 2 and "does not exist" in err
    lm = lightrnn.load(trained["lightrnn"], device="cpu")
    with pytest.raises(ValueError, match="sentence 2 is empty"):
        lm.score(["the N", ""])


# ----- each model samples from its own distribution --------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_generate_step_samples_the_exact_distribution(name) -> None:
    """Frequencies of 20k draws of one step match exp(log_prob) (total variation distance < 0.03)."""
    torch.manual_seed(0)
    vocab = 16  # LightRNN: a full 4 x 4 table
    options = {"cutoffs": [4, 9], "div_value": 2.0} if name == "adaptive_softmax" else {}
    model = registry.build(name, vocab, embed_dim=8, hidden_dim=12, num_layers=1, dropout=0.0, **options).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))  # a peaked, far from uniform distribution
    draws = 20000
    token = torch.full((draws,), 3, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    words, _ = model.generate_step(token, None, 1.0, None, generator)
    empirical = np.bincount(words.numpy(), minlength=vocab) / draws
    with torch.no_grad():
        exact = model.log_prob(token[:1, None])[0][0, 0].exp().double().numpy()
    assert 0.5 * np.abs(empirical - exact).sum() < 0.03
    # top_k=1 at every stage: deterministic.
    first, _ = model.generate_step(token[:4], None, 1.0, 1, torch.Generator().manual_seed(1))
    assert len(set(first.tolist())) == 1


def test_lightrnn_never_samples_an_empty_slot() -> None:
    model = registry.build("lightrnn", 10, embed_dim=8, hidden_dim=8, num_layers=1, dropout=0.0).eval()  # 4 x 4, 6 empty
    words, _ = model.generate_step(torch.zeros(5000, dtype=torch.long), None, 3.0, None, torch.Generator().manual_seed(0))
    assert words.min() >= 0 and words.max() < 10


# ----- data encode --vocab ---------------------------------------------------------------------------

def test_data_encode_with_a_model_vocabulary_round_trips(trained, corpus, capsys) -> None:
    data = corpus["data"]
    for source in (data / "vocab.tsv", trained["class_softmax"]):
        out = corpus["root"] / f"again-{source.suffix[1:]}"
        code, _, err = _run(["data", "encode", "--text", str(corpus["text"]), "--out", str(out), "--vocab",
                             str(source)], capsys)
        assert code == 0, err
        assert (out / "vocab.tsv").read_bytes() == (data / "vocab.tsv").read_bytes()
        for split in ("train", "valid", "test"):
            assert np.array_equal(np.load(out / f"{split}.npy"), np.load(data / f"{split}.npy"))
        meta = json.loads((out / "meta.json").read_text())
        assert meta["vocab_source"] == str(source) and meta["unk_token"] == "<unk>"
    # New text: its words come back as they were, or as <unk> when the model does not know them.
    new_text = corpus["root"] / "new-text"
    new_text.mkdir()
    lines = ["the zzqx of lobo", "N qqzz the"]
    for split in ("train", "valid", "test"):
        (new_text / f"{split}.txt").write_text("\n".join(lines) + "\n")
    out = corpus["root"] / "new-encoded"
    code, _, err = _run(["data", "encode", "--text", str(new_text), "--out", str(out), "--vocab",
                         str(trained["lightrnn"])], capsys)
    assert code == 0, err
    lm = lightrnn.load(trained["lightrnn"], device="cpu")
    assert lm.decode(np.load(out / "test.npy").tolist()) == "the <unk> of lobo\nN <unk> the\n"
    assert json.loads((out / "meta.json").read_text())["oov_rate"]["test"] == pytest.approx(2 / 7)
    # The encoded new text evaluates with the model (eval works on any corpus).
    code, out_text, err = _run(["eval", "--checkpoint", str(trained["lightrnn"]), "--data", str(out), "--device", "cpu"],
                               capsys)
    assert code == 0 and json.loads(out_text)["tokens"] == 8


def test_data_encode_vocab_excludes_min_count(corpus, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["data", "encode", "--text", str(corpus["text"]), "--out", "x", "--vocab",
                  str(corpus["data"] / "vocab.tsv"), "--min-count", "2"])
    assert "not allowed with" in capsys.readouterr().err


# ----- live curves -------------------------------------------------------------------------------------

def test_tensorboard_events_appear_when_asked(corpus, tmp_path, capsys) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, curves = tmp_path / "run", tmp_path / "curves"
    code, _, err = _run(["train", "--data", str(corpus["data"]), "--model", "lightrnn", "--out", str(out),
                         "--tensorboard", str(curves), *[f"--set={item}" for item in TINY], "--set", "rounds=[1,1]"],
                        capsys)
    assert code == 0, err
    events = EventAccumulator(str(curves))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"ppl/train", "ppl/valid", "ppl/test", "speed/train_tokens_per_s", "lr", "realloc/objective",
            "realloc/valid_ppl", "realloc/seconds"} <= tags
    rows = read_jsonl(out / "metrics.jsonl")
    valid = [row["valid_ppl"] for row in rows if row["kind"] == "epoch"]
    assert [event.value for event in events.Scalars("ppl/valid")] == pytest.approx(valid, rel=1e-6)
    assert not (out / "tensorboard").exists()
    # The config key writes them to OUT/tensorboard.
    out2 = tmp_path / "run2"
    train(TrainConfig.from_yaml(None, [*TINY, "model=full_softmax", "tensorboard=true"]), corpus["data"], out2)
    assert list((out2 / "tensorboard").glob("events.out.tfevents.*"))


def test_nothing_imports_tensorboard_unless_asked() -> None:
    code = (
        "import sys, lightrnn, lightrnn.training.train, lightrnn.training.curves, lightrnn.pretrained, lightrnn.cli\n"
        "lightrnn.cli.build_parser()\n"
        "loaded = [name for name in sys.modules if 'tensorboard' in name]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
