"""The numbers the LightRNN paper and its official code published, as data, each with its source.

Li, Qin, Yang, Liu, "LightRNN: Memory and Computation-Efficient Recurrent Neural Networks",
NIPS 2016, arXiv:1610.09893; official code: the CNTK example `Examples/Text/LightRNN` in
microsoft/CNTK. Every value is a `Published` carrying its source key (see `SOURCES`) and two
flags: `recalled` (the value could not be checked against the paper's text and is the best
available reading) and `approximate` (read by eye from a published figure). Tables, figures and
the verdict read only this module; nothing else in the package types a published number.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES: dict[str, str] = {
    "paper": "LightRNN paper (NIPS 2016, arXiv:1610.09893), results tables; rows as quoted by "
    "Gupta & Agrawal 2020 (arXiv:2008.05221), Table 6",
    "abstract": "LightRNN paper (NIPS 2016, arXiv:1610.09893), abstract",
    "cntk-readme": "official example README (microsoft/CNTK Examples/Text/LightRNN/README.md)",
    "figure": "official example's ACLW-French perplexity figure, read from the published figure by eye",
    "recalled": "LightRNN paper, recalled: not checked against the paper's text",
}

# The same sources in a few words, for table cells.
SHORT_SOURCES: dict[str, str] = {
    "paper": "paper, results tables",
    "abstract": "paper, abstract",
    "cntk-readme": "official example README",
    "figure": "official figure, read by eye",
    "recalled": "paper, recalled",
}


@dataclass(frozen=True)
class Published:
    """One published number. `recalled`: not verified against the paper's text; `approximate`: read by eye."""

    value: float
    source: str
    recalled: bool = False
    approximate: bool = False

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; add it to SOURCES")

    @property
    def flag(self) -> str:
        """'' or a short marker for tables: 'recalled' / 'approx.'."""
        return "recalled" if self.recalled else "approx." if self.approximate else ""


def _paper(value: float) -> Published:
    return Published(value, "paper")


def _recalled(value: float) -> Published:
    return Published(value, "recalled", recalled=True)


# Paper models: KN-5 (Kneser-Ney 5-gram), HSM (word LSTM with hierarchical softmax), C-HSM (a
# character-CNN input with hierarchical softmax), LightRNN. None of this suite's baselines is the
# same model as the paper's; only "lightrnn" is compared value against value.
PAPER_MODELS: dict[str, str] = {
    "kn5": "KN-5",
    "hsm": "HSM (word LSTM)",
    "c_hsm": "C-HSM (char CNN)",
    "lightrnn": "LightRNN",
}
# Our model -> the paper's model it reproduces (the baselines differ from the paper's: not mapped).
SAME_MODEL: dict[str, str] = {"lightrnn": "lightrnn"}


@dataclass(frozen=True)
class Result:
    """A published (test perplexity, parameters) pair of one model on one dataset."""

    ppl: Published
    params: Published | None = None


# ACLW test perplexity (parameters), on the paper's large sets, per language code.
ACLW: dict[str, dict[str, Result]] = {
    "es": {
        "kn5": Result(_recalled(219)),
        "hsm": Result(_paper(186), _paper(61e6)),
        "c_hsm": Result(_paper(169), _paper(48e6)),
        "lightrnn": Result(_paper(157), _paper(18e6)),
    },
    "fr": {
        "kn5": Result(_recalled(243)),
        "hsm": Result(_paper(202), _paper(56e6)),
        "c_hsm": Result(_paper(190), _paper(44e6)),
        "lightrnn": Result(_paper(176), _paper(17e6)),
    },
    "en": {
        "kn5": Result(_recalled(291)),
        "hsm": Result(_paper(236), _paper(25e6)),
        "c_hsm": Result(_paper(216), _paper(20e6)),
        "lightrnn": Result(_paper(191), _paper(17e6)),
    },
    "cs": {
        "kn5": Result(_recalled(862)),
        "hsm": Result(_paper(701), _paper(83e6)),
        "c_hsm": Result(_paper(578), _paper(64e6)),
        "lightrnn": Result(_paper(558), _paper(18e6)),
    },
    "de": {
        "kn5": Result(_recalled(463)),
        "hsm": Result(_paper(347), _paper(137e6)),
        "c_hsm": Result(_paper(305), _paper(104e6)),
        "lightrnn": Result(_paper(281), _paper(18e6)),
    },
    "ru": {
        "kn5": Result(_recalled(390)),
        "hsm": Result(_paper(353), _paper(200e6)),
        "c_hsm": Result(_paper(313), _paper(152e6)),
        "lightrnn": Result(_paper(288), _paper(19e6)),
    },
}

# One Billion Word test perplexity (parameters).
BILLIONW: dict[str, Result] = {
    "kn5": Result(_recalled(68)),
    "hsm": Result(_paper(85), _paper(1.6e9)),
    "lightrnn": Result(_paper(66), _paper(41e6)),
}


@dataclass(frozen=True)
class Setting:
    """A published model configuration: vocabulary, embedding/hidden sizes, layers."""

    vocab_size: int
    embed_dim: int
    hidden_dim: int
    num_layers: int
    source: str
    recalled: bool = False


# The vocabularies and sizes the paper's parameter counts belong to.
BILLIONW_VOCAB = 793_471  # words with count >= 3 plus <S>, </S>, <UNK>
ACLW_FR_VOCAB = 136_912
BILLIONW_LIGHTRNN = Setting(BILLIONW_VOCAB, 1500, 1500, 2, "cntk-readme")
ACLW_FR_LIGHTRNN = Setting(ACLW_FR_VOCAB, 1000, 1000, 2, "cntk-readme")


@dataclass(frozen=True)
class SpeedRow:
    """One row of the official example's One Billion Word speed table (GeForce GTX Titan X)."""

    embed_dim: int
    hidden_dim: int
    batch_size: int
    params: Published
    tokens_per_s_1gpu: Published
    tokens_per_s_2gpu: Published
    gpu_memory_mb: Published
    hours_per_epoch_1gpu: Published
    hours_per_epoch_2gpu: Published


def _readme(value: float) -> Published:
    return Published(value, "cntk-readme")


SPEED_GPU = "GeForce GTX Titan X"
SPEED: tuple[SpeedRow, ...] = tuple(
    SpeedRow(e, h, b, *(_readme(v) for v in values))
    for e, h, b, *values in (
        (500, 500, 100, 5.7e6, 24_615, 40_000, 901, 9.01, 5.54),
        (500, 500, 200, 5.7e6, 32_000, 49_230, 1_558, 6.93, 4.50),
        (500, 500, 500, 5.7e6, 32_000, 56_140, 3_528, 6.93, 3.95),
        (1000, 1000, 100, 19e6, 12_300, 19_768, 1_640, 18.04, 11.22),
        (1000, 1000, 200, 19e6, 13_000, 24_150, 2_858, 17.07, 9.19),
        (1000, 1000, 500, 19e6, 14_280, 28_268, 6_526, 15.54, 7.85),
        (1500, 1500, 100, 41e6, 6_900, 11_034, 2_408, 32.16, 20.11),
        (1500, 1500, 200, 41e6, 7_250, 13_061, 4_238, 30.61, 16.99),
    )
)
# ACLW-French on one Titan X (1000/1000, 2 layers, batch 100, seq 32).
ACLW_FR_TOKENS_PER_S = _readme(12_080)
ACLW_FR_HOURS_PER_EPOCH = _readme(1.28)


@dataclass(frozen=True)
class Curve:
    """The published ACLW-French training curve: perplexity after each epoch, read by eye.

    `epochs` are the figure's x values (0-based: 0 is the end of the first epoch), so epoch e
    is e + 1 epochs completed. `realloc_after` are epochs completed when the words were
    reallocated; `baseline` is the dashed best-baseline line.
    """

    epochs: tuple[int, ...]
    valid: tuple[float, ...]
    test: tuple[float, ...]
    realloc_after: tuple[int, ...]
    baseline: Published
    source: str = "figure"

    def epochs_completed(self) -> list[int]:
        return [epoch + 1 for epoch in self.epochs]


# Read from the published figure (800 x 600 px, 2.67 px per perplexity unit): test markers by
# their centres (to about +-1), valid markers by eye (about +-2; most of them sit under the test
# markers, so they equal the test value within the marker's size). Epoch 24's test marker was
# read beside the legend.
ACLW_FR_CURVE = Curve(
    epochs=tuple(range(30)),
    valid=(332, 282, 260, 247, 240, 233, 229, 224, 222, 219,
           247, 224, 213, 206, 201, 198, 195, 192, 190, 189,
           216, 200, 193, 187, 184, 181, 180, 179, 177, 177),
    test=(334, 283, 261, 247, 240, 234, 229, 224.5, 222, 219,
          246, 222, 211, 203, 199, 196, 193, 191, 189, 188,
          215.5, 200, 193, 188, 185, 182.5, 181.5, 180, 178, 178),
    realloc_after=(10, 20),
    baseline=Published(190, "figure", approximate=True),
)

CURVE_NOTE = "read from the published figure, approximate"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper the verdict checks."""

    key: str
    claim: str
    paper_says: str
    source: str
    recalled: bool = False


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "size-ratio",
        "40-100x smaller model on One Billion Word",
        "40-100x fewer parameters than the baselines; 41M vs 1.6G for the HSM word LSTM",
        "abstract",
    ),
    Claim("speed", "2x faster training", "training 2x faster than the baselines", "abstract"),
    Claim(
        "perplexity",
        "perplexity similar or better than the baselines (ACLW, One Billion Word)",
        "ACLW: lower than HSM and C-HSM in all 6 languages (French 176 vs 190); "
        "One Billion Word: 66 vs 85 (HSM), 68 (KN-5, recalled)",
        "paper",
    ),
    Claim(
        "reallocation",
        "reallocation lowers perplexity round after round",
        "ACLW-French: end of round 1/2/3 at ~219/~188/~177, after a spike right after each "
        "reallocation (~246, ~215)",
        "figure",
    ),
    Claim(
        "sizes",
        "sizes 41M (One Billion Word) and 17M (ACLW-French)",
        "41M at 1500/1500, V = 793,471; 17M at 1000/1000, V = 136,912 (2 layers)",
        "paper",
    ),
)
