"""The baselines honour LightRNN's contract, and the mathematical facts behind each output layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.adaptive_softmax import AdaptiveSoftmaxLM, mass_cutoffs
from baselines.class_softmax import ClassSoftmaxLM, frequency_classes
from baselines.full_softmax import FullSoftmaxLM
from lightrnn import registry

BASELINES = ["full_softmax", "class_softmax", "adaptive_softmax"]
VOCAB = 41  # not a square, so ceil(sqrt(V)) rounds up

# (model name, model-specific options): every option path the models have.
VARIANTS = [
    ("full_softmax", {}),
    ("full_softmax", {"tie_weights": True}),
    ("full_softmax", {"sparse_embedding": True}),
    ("full_softmax", {"rank": 4}),
    ("full_softmax", {"rank": 4, "sparse_embedding": True}),
    ("class_softmax", {}),
    ("class_softmax", {"num_classes": 1}),
    ("class_softmax", {"num_classes": VOCAB}),
    ("class_softmax", {"num_classes": 5, "word_counts": "shuffled"}),
    ("adaptive_softmax", {}),
    ("adaptive_softmax", {"cutoffs": [3, 10, 30], "div_value": 2.0, "head_bias": True}),
    ("adaptive_softmax", {"cutoff_mass": [0.5], "word_counts": "shuffled"}),
]


def resolve(options: dict) -> dict:
    """Replace the "shuffled" marker with word counts that are not in id order (ties included)."""
    options = dict(options)
    if options.get("word_counts") == "shuffled":
        rng = np.random.default_rng(3)
        options["word_counts"] = rng.integers(0, 50, size=VOCAB).astype(np.float64)
    return options


def build(name: str, options: dict, embed_dim: int = 16, hidden_dim: int = 16, num_layers: int = 2):
    torch.manual_seed(0)
    return registry.build(
        name, VOCAB, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers,
        dropout=0.2, **resolve(options),
    )


def batch(seed: int = 0, batch_size: int = 3, steps: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens, targets [B, T] from one random stream, so targets[:, :-1] == tokens[:, 1:]."""
    generator = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, VOCAB, (batch_size, steps + 1), generator=generator)
    return stream[:, :-1], stream[:, 1:]


@pytest.mark.parametrize("name,options", VARIANTS)
def test_log_prob_is_a_distribution_and_matches_nll(name, options):
    model = build(name, options).eval()
    tokens, targets = batch()
    state = model.init_state(tokens.shape[0])
    state = (torch.randn_like(state[0]), torch.randn_like(state[1]))  # a carried, nonzero state
    with torch.no_grad():
        log_probs, lp_state = model.log_prob(tokens, state)  # [B, T, V]
        output = model(tokens, targets, state)
    assert log_probs.shape == (*tokens.shape, VOCAB)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(tokens.shape), atol=1e-5, rtol=0)
    target_log_probs = log_probs.gather(-1, targets[..., None]).squeeze(-1)
    assert output.nll.shape == targets.shape
    torch.testing.assert_close(output.nll, -target_log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.state[0], lp_state[0])


@pytest.mark.parametrize("name,options", VARIANTS)
def test_training_gradient_equals_the_full_distribution_gradient(name, options):
    # The cheap training path must be the same function of the weights as log_prob, not just
    # the same value: compare gradients of sum(nll) from both.
    model = build(name, options).eval()
    tokens, targets = batch(seed=1)

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return [p.grad.to_dense().clone() for p in model.parameters() if p.grad is not None]

    from_forward = gradients(model(tokens, targets).nll.sum())
    log_probs, _ = model.log_prob(tokens)
    from_log_prob = gradients(-log_probs.gather(-1, targets[..., None]).sum())
    assert len(from_forward) == len(from_log_prob) == len(list(model.parameters()))
    for grad_forward, grad_log_prob in zip(from_forward, from_log_prob):
        torch.testing.assert_close(grad_forward, grad_log_prob, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BASELINES)
def test_state_carries_across_windows(name):
    model = build(name, {}).eval()
    tokens, targets = batch(steps=10)
    with torch.no_grad():
        whole = model(tokens, targets).nll
        first = model(tokens[:, :4], targets[:, :4])
        second = model(tokens[:, 4:], targets[:, 4:], first.state)
    torch.testing.assert_close(torch.cat([first.nll, second.nll], dim=1), whole)


def test_class_softmax_with_one_class_equals_full_softmax():
    full = build("full_softmax", {}).eval()
    classed = build("class_softmax", {"num_classes": 1}).eval()
    classed.trunk.load_state_dict(full.trunk.state_dict())
    with torch.no_grad():
        # word_decoder rows are in class-sorted order: copy the full layer's rows across.
        classed.word_decoder.weight.copy_(full.decoder.weight[classed.sorted_words])
        classed.word_decoder.bias.copy_(full.decoder.bias[classed.sorted_words])
        classed.class_decoder.weight.normal_()  # a 1-way softmax ignores its weights
    tokens, targets = batch(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(classed(tokens, targets).nll, full(tokens, targets).nll)
        torch.testing.assert_close(classed.log_prob(tokens)[0], full.log_prob(tokens)[0])


def test_frequency_classes_bin_equal_mass_contiguously():
    uniform = frequency_classes(np.ones(100), 10)
    assert np.array_equal(uniform, np.repeat(np.arange(10), 10))

    zipf = 1.0 / np.arange(1, 1001)
    classes = frequency_classes(zipf, 20)
    assert np.all(np.diff(classes) >= 0)  # contiguous in frequency order
    assert set(classes.tolist()) == set(range(20))  # no empty class
    mass = np.bincount(classes, weights=zipf) / zipf.sum()
    # The first words alone hold more than 1/20 each and push the class starts along; once the
    # words are small, every class holds 1/20 of the mass.
    assert mass[0] == pytest.approx(zipf[0] / zipf.sum())
    assert np.all(np.abs(mass[12:] - 1 / 20) < 0.002)

    # Out of id order, with a dominant word: still every class used, ordered by frequency.
    counts = np.array([1.0, 1000.0, 2.0, 1.0, 3.0])
    # Ranks: id 1, 4, 2, 0, 3; id 1 alone holds 99% of the mass, so the rest share classes 1, 2.
    assert frequency_classes(counts, 3).tolist() == [2, 0, 2, 2, 1]


def test_class_softmax_layout_follows_word_counts():
    counts = np.array([5.0, 40.0, 5.0, 30.0, 10.0, 10.0])
    model = ClassSoftmaxLM(6, 4, 4, 1, 0.0, word_counts=counts, num_classes=3)
    assert model.word_class.tolist() == frequency_classes(counts, 3).tolist()
    rows = model.word_row[model.sorted_words]
    assert rows.tolist() == list(range(6))  # word_row and sorted_words are inverse
    assert model.row_class.tolist() == sorted(model.row_class.tolist())
    assert model.class_start.tolist()[-1] == 6
    # The layout is in the state_dict, so a checkpoint carries it.
    assert {"word_class", "word_row", "sorted_words", "class_start"} <= set(model.state_dict())


def test_adaptive_default_cutoffs_follow_the_mass():
    assert mass_cutoffs(np.ones(100), (0.8, 0.95)) == [80, 95]
    model = AdaptiveSoftmaxLM(100, 16, 16, 1, 0.0, word_counts=np.ones(100))
    assert model.cutoffs == [80, 95]
    # Zipfian fallback when no counts are given: a short head, a longer tail.
    assert AdaptiveSoftmaxLM(10000, 16, 16, 1, 0.0).cutoffs == [1412, 6130]
    assert AdaptiveSoftmaxLM(2, 16, 16, 1, 0.0).cutoffs == [1]  # clipped into [1, V - 1]


SIZES = [(16, 16, 1), (16, 16, 3), (7, 32, 2)]  # (embed_dim, hidden_dim, num_layers)


@pytest.mark.parametrize(
    "name,options,sizes",
    [
        (name, options, sizes)
        for name, options in VARIANTS
        for sizes in SIZES
        if not options.get("tie_weights") or sizes[0] == sizes[1]  # tying needs E == H
    ],
)
def test_param_count_matches_the_allocated_model(name, options, sizes):
    embed_dim, hidden_dim, num_layers = sizes
    model = build(name, options, embed_dim, hidden_dim, num_layers)
    allocated = sum(p.numel() for p in model.parameters())
    closed_form = registry.model_class(name).param_count(
        VOCAB, embed_dim, hidden_dim, num_layers, **resolve(options)
    )
    assert closed_form == allocated


@pytest.mark.parametrize("name", BASELINES)
def test_param_count_at_paper_scale_on_the_meta_device(name):
    # What `lightrnn params` does: build without allocating, count, compare with the closed form.
    sizes = dict(embed_dim=1000, hidden_dim=1000, num_layers=2)
    with torch.device("meta"):
        model = registry.build(name, 136912, dropout=0.5, **sizes)
    allocated = sum(p.numel() for p in model.parameters())
    assert registry.model_class(name).param_count(136912, **sizes) == allocated
    if name == "full_softmax":  # 2 * V * 1000 + V + 16,016,000 for the LSTM
        assert allocated == 2 * 136912 * 1000 + 136912 + 16_016_000


def test_sparse_embedding_gives_sparse_gradients():
    model = build("class_softmax", {"sparse_embedding": True})
    tokens, targets = batch()
    model(tokens, targets).nll.mean().backward()
    assert model.trunk.embedding.weight.grad.is_sparse
    assert not model.word_decoder.weight.grad.is_sparse


def markov_stream(length: int, seed: int = 0) -> torch.Tensor:
    """A learnable token stream [length]: each word's successor is mostly one fixed word."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(VOCAB)
    stream = np.empty(length, dtype=np.int64)
    stream[0] = 0
    noise = rng.random(length) < 0.1
    random_words = rng.integers(0, VOCAB, size=length)
    for t in range(1, length):
        stream[t] = random_words[t] if noise[t] else successor[stream[t - 1]]
    return torch.from_numpy(stream)


@pytest.mark.parametrize("name,options", [v for v in VARIANTS if v[1].get("word_counts") is None])
def test_short_training_lowers_the_loss(name, options):
    torch.manual_seed(0)
    model = build(name, options, embed_dim=16, hidden_dim=16, num_layers=1)
    if options.get("sparse_embedding"):
        # The documented recipe: SparseAdam for the sparse embedding, Adam for the rest.
        embedding = model.trunk.embedding.weight
        rest = [p for p in model.parameters() if p is not embedding]
        optimizers = [torch.optim.SparseAdam([embedding], lr=0.02), torch.optim.Adam(rest, lr=0.02)]
    else:
        optimizers = [torch.optim.Adam(model.parameters(), lr=0.02)]
    stream = markov_stream(8 * 20 + 1)
    tokens, targets = stream[:-1].view(8, 20), stream[1:].view(8, 20)
    losses = []
    for _ in range(60):
        model.zero_grad()
        loss = model(tokens, targets).nll.mean()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::10]


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("full_softmax", {"vocab_size": 1}, "vocab_size"),
        ("full_softmax", {"embed_dim": 0}, "embed_dim"),
        ("full_softmax", {"hidden_dim": 2.5}, "hidden_dim"),
        ("full_softmax", {"num_layers": 0}, "num_layers"),
        ("full_softmax", {"dropout": 1.0}, "dropout"),
        ("full_softmax", {"tie_weights": True, "embed_dim": 8}, "tie_weights needs embed_dim"),
        ("full_softmax", {"tie_weights": True, "sparse_embedding": True}, "tie_weights and sparse"),
        ("full_softmax", {"num_classes": 3}, "unknown option.*num_classes"),
        ("full_softmax", {"rank": -1}, "rank must be an integer >= 0"),
        ("full_softmax", {"rank": 4, "tie_weights": True}, "rank and tie_weights"),
        ("class_softmax", {"num_classes": 0}, "num_classes"),
        ("class_softmax", {"num_classes": VOCAB + 1}, "num_classes must be at most"),
        ("class_softmax", {"word_counts": np.ones(3)}, "word_counts must have shape"),
        ("class_softmax", {"word_counts": -np.ones(VOCAB)}, "word_counts must be finite"),
        ("adaptive_softmax", {"cutoffs": [10, 5]}, "cutoffs"),
        ("adaptive_softmax", {"cutoffs": [VOCAB]}, "cutoffs"),
        ("adaptive_softmax", {"cutoff_mass": [0.9, 0.5]}, "cutoff_mass"),
        ("adaptive_softmax", {"cutoff_mass": [1.0]}, "cutoff_mass"),
        ("adaptive_softmax", {"div_value": 0.5}, "div_value"),
        ("adaptive_softmax", {"div_value": 32.0}, "div_value=32.0"),
        ("adaptive_softmax", {"head_bias": "yes"}, "head_bias"),
    ],
)
def test_bad_arguments_name_themselves(name, options, message):
    arguments = dict(vocab_size=VOCAB, embed_dim=16, hidden_dim=16, num_layers=1, dropout=0.0)
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        registry.model_class(name)(**arguments)
    arguments.pop("dropout")
    if "dropout" not in options:  # param_count takes no dropout
        with pytest.raises(ValueError, match=message):
            registry.model_class(name).param_count(**arguments)


def test_mismatched_targets_are_rejected():
    model = FullSoftmaxLM(VOCAB, 4, 4, 1, 0.0)
    with pytest.raises(ValueError, match="tokens and targets"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
