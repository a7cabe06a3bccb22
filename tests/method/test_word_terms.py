"""LightRNN's per-word capacity options (word_bias, word_dim, word_input_dim): the same contract as
the plain model (an exact distribution, nll = -log P(target), the training gradient equal to the
full distribution's, a closed-form parameter count), and the terms follow a word when it moves."""

from __future__ import annotations

import pytest
import torch

from lightrnn.method.model import LightRNN
from lightrnn.registry import build, param_count
from lightrnn.method.word_table import WordTable

OPTIONS = [
    {"word_bias": True},
    {"word_dim": 3},
    {"word_input_dim": 2},
    {"word_bias": True, "word_dim": 4, "word_input_dim": 3},
]


def _model(vocab_size: int, options: dict, seed: int = 0) -> LightRNN:
    torch.manual_seed(seed)
    model = LightRNN(vocab_size, embed_dim=6, hidden_dim=10, num_layers=2, dropout=0.0, **options).double()
    with torch.no_grad():  # nonzero per-word terms, so a wrong gather shows
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def _stream(vocab_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    stream = torch.randint(0, vocab_size, (3, 8), generator=torch.Generator().manual_seed(seed))
    return stream[:, :-1], stream[:, 1:]


@pytest.mark.parametrize("options", OPTIONS)
def test_log_prob_is_a_distribution_and_matches_nll_and_slot_log_probs(options):
    model = _model(16, options)
    tokens, targets = _stream(16)
    state = tuple(torch.randn(2, 3, 10, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        log_prob, _ = model.log_prob(tokens, state, max_candidates=7)  # several chunks
        output = model(tokens, targets, state)
        row_logp, col_logp, _ = model.slot_log_probs(tokens, targets, state)
    torch.testing.assert_close(log_prob.exp().sum(-1), torch.ones(3, 7, dtype=torch.float64))
    torch.testing.assert_close(output.nll, -log_prob.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
    rows, cols = model.word_row[targets], model.word_col[targets]
    from_slots = -(row_logp.gather(-1, rows.unsqueeze(-1)) + col_logp.gather(-1, cols.unsqueeze(-1))).squeeze(-1)
    torch.testing.assert_close(output.nll, from_slots)


@pytest.mark.parametrize("options", OPTIONS)
def test_training_gradient_equals_the_full_distribution_gradient(options):
    model = _model(16, options)
    tokens, targets = _stream(16, seed=2)

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    from_forward = gradients(model(tokens, targets).nll.sum())
    from_log_prob = gradients(-torch.gather(_log_prob_with_grad(model, tokens), -1, targets[..., None]).sum())
    assert len(from_forward) == len(from_log_prob) == len(list(model.parameters()))
    for grad_forward, grad_log_prob in zip(from_forward, from_log_prob):
        torch.testing.assert_close(grad_forward, grad_log_prob)


def _log_prob_with_grad(model: LightRNN, tokens: torch.Tensor) -> torch.Tensor:
    """log_prob is decorated no_grad; call the undecorated function to differentiate through it."""
    return LightRNN.log_prob.__wrapped__(model, tokens)[0]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("sizes", [(7, 12, 1), (16, 16, 2)])
def test_param_count_matches_the_allocated_model(options, sizes):
    embed_dim, hidden_dim, num_layers = sizes
    model = build("lightrnn", 41, embed_dim, hidden_dim, num_layers, **options)
    allocated = sum(p.numel() for p in model.parameters())
    assert param_count("lightrnn", 41, embed_dim, hidden_dim, num_layers, **options) == allocated
    plain = param_count("lightrnn", 41, embed_dim, hidden_dim, num_layers)
    slots = 7 * 7  # the output terms are stored by slot: R C = 49 of them for V = 41 (8 empty slots)
    expected = (slots if options.get("word_bias") else 0) + options.get("word_dim", 0) * (slots + hidden_dim) \
        + options.get("word_input_dim", 0) * (41 + embed_dim)
    assert allocated - plain == expected


def test_the_terms_follow_a_word_when_it_moves():
    # Swapping two words' slots and their per-word parameters' owners changes nothing about a word's
    # own terms: the bias of word 3 is read wherever word 3 sits.
    model = _model(16, {"word_bias": True})
    tokens, targets = _stream(16, seed=3)
    with torch.no_grad():
        model.slot_bias.zero_()
        word = int(targets[0, 0])  # that word takes (nearly) all of its row's column mass:
        model.slot_bias[model.word_row[word], model.word_col[word]] = 50.0
        row_logp, col_logp, _ = model.slot_log_probs(tokens, targets)
        table = model.table
        word = int(targets[0, 0])
        other = int((table.rows != table.rows[word]).nonzero()[0][0])
        rows, cols = table.rows.copy(), table.cols.copy()
        rows[[word, other]], cols[[word, other]] = rows[[other, word]], cols[[other, word]]
        model.set_table(WordTable(rows, cols, table.num_rows, table.num_cols))
        output = model(tokens, targets)
        row_nll = -model.slot_log_probs(tokens, targets)[0][0, 0, rows[word]]
    assert float(-col_logp[0, 0, table.cols[word]]) < 1e-6  # its own column, under its old row
    assert float(output.nll[0, 0] - row_nll) < 1e-6  # and under its new row too: the bias moved with it


def test_bad_options_name_themselves():
    with pytest.raises(ValueError, match="word_dim"):
        LightRNN(16, 4, 4, 1, word_dim=-1)
    with pytest.raises(ValueError, match="word_bias"):
        LightRNN(16, 4, 4, 1, word_bias=1)
    with pytest.raises(ValueError, match="realloc_columns"):
        LightRNN(16, 4, 4, 1, realloc_columns="joint")
    with pytest.raises(ValueError, match="realloc_alternate"):
        LightRNN(16, 4, 4, 1, realloc_alternate=0)


@pytest.mark.parametrize("options", OPTIONS)
def test_generate_step_samples_the_exact_distribution_with_word_terms(options):
    """Frequencies of 20k one-step draws match exp(log_prob): sampling reads the same per-word terms."""
    import numpy as np

    model = _model(16, options).float()
    token = torch.full((20000,), 3, dtype=torch.long)
    words, _ = model.generate_step(token, None, 1.0, None, torch.Generator().manual_seed(0))
    empirical = np.bincount(words.numpy(), minlength=16) / len(token)
    with torch.no_grad():
        exact = model.log_prob(token[:1, None])[0][0, 0].exp().double().numpy()
    assert 0.5 * np.abs(empirical - exact).sum() < 0.03


@pytest.mark.parametrize("vocab_size", [13, 16, 150])
def test_sparse_per_word_gradients_equal_the_dense_ones(vocab_size):
    """sparse_embedding changes only the gradients' layout: same loss, same gradient values, and the
    per-word tables' gradients are sparse (rows of the words read, no V x k tensor)."""
    options = {"word_bias": True, "word_dim": 4, "word_input_dim": 3}
    dense = _model(vocab_size, options)
    sparse = _model(vocab_size, {**options, "sparse_embedding": True})
    sparse.load_state_dict(dense.state_dict())
    tokens, targets = _stream(vocab_size, seed=3)
    losses = []
    for model in (dense, sparse):
        model.train().zero_grad()
        loss = model(tokens, targets).nll.sum()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters()):
        if name.split(".")[0] in ("slot_bias", "slot_out", "word_in"):
            assert p_sparse.grad.is_sparse and not p_dense.grad.is_sparse, name
            touched = set(p_sparse.grad.coalesce().indices()[0].tolist())
            # word_in: the input words' rows; the slot-ordered output terms: the target rows (a
            # parameter row holds a table row's C words, all of which the column normaliser reads).
            read = set(tokens.flatten().tolist()) if name == "word_in.weight" else set(
                dense.word_row[targets].flatten().tolist())
            assert touched == read, name
            torch.testing.assert_close(p_sparse.grad.to_dense(), p_dense.grad, msg=name)
        else:
            torch.testing.assert_close(p_sparse.grad, p_dense.grad, msg=name)


def test_sparse_per_word_tables_train_with_sparse_adam():
    from lightrnn.training.optim import Optimizers

    model = _model(13, {"word_bias": True, "word_dim": 3, "word_input_dim": 2, "sparse_embedding": True}).float()
    optimizers = Optimizers(model, "adam", 1e-2)
    assert optimizers.label == "Adam+SparseAdam"
    tokens, targets = _stream(13, seed=4)
    before = model.slot_out.detach().clone()
    first = None
    for _ in range(5):
        optimizers.zero_grad()
        loss = model.train()(tokens, targets).nll.mean()
        loss.backward()
        optimizers.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first and not torch.equal(before, model.slot_out)


@pytest.mark.parametrize("bias_key", ["word_bias", "word_bias.weight"])
def test_a_checkpoint_with_the_per_word_id_tables_loads(bias_key):
    # Earlier revisions stored the output terms by word id: the bias as a [V] parameter, then a [V, 1]
    # embedding, and u as word_out.weight [V, k]; they load into the slot-ordered parameters.
    model = _model(13, {"word_bias": True, "word_dim": 3})
    with torch.no_grad():
        model.slot_bias.normal_()
    bias, out = model.word_output_terms()
    state = {k: v for k, v in model.state_dict().items() if k not in ("slot_bias", "slot_out")}
    state[bias_key] = bias.detach().clone() if bias_key == "word_bias" else bias.detach().unsqueeze(1).clone()
    state["word_out.weight"] = out.detach().clone()
    fresh = LightRNN(13, embed_dim=6, hidden_dim=10, num_layers=2, dropout=0.0, word_bias=True, word_dim=3,
                     table=model.table).double()
    fresh.load_state_dict(state)
    for mine, theirs in zip(fresh.word_output_terms(), (bias, out)):
        torch.testing.assert_close(mine, theirs)
    tokens, targets = _stream(13, seed=2)
    torch.testing.assert_close(fresh.eval()(tokens, targets).nll, model.eval()(tokens, targets).nll)


def test_moving_words_moves_their_output_terms_and_the_optimizer_state():
    # set_table moves each word's slot-ordered b and u (and Optimizers.follow its Adam moments)
    # with the word: the model's distribution over words and each word's moments are unchanged.
    from lightrnn.training.optim import Optimizers

    model = _model(13, {"word_bias": True, "word_dim": 3, "sparse_embedding": True}).float().train()
    optimizers = Optimizers(model, "adam", 1e-2)
    tokens, targets = _stream(13, seed=7)
    optimizers.zero_grad()
    model(tokens, targets).nll.mean().backward()
    optimizers.step()
    sparse_adam = optimizers.optimizers[1]
    moments = {id(p): sparse_adam.state[p]["exp_avg"].clone() for p in (model.slot_bias, model.slot_out)}

    def by_word(value):  # [V, ...] in word order
        slots = model.word_row * model.num_cols + model.word_col
        return value.reshape(model.num_rows * model.num_cols, -1)[slots]

    before_terms = [t.detach().clone() for t in model.word_output_terms()]
    before_moments = {k: by_word(v) for k, v in moments.items()}
    before_logp = model.eval().log_prob(tokens)[0]
    model.set_table(WordTable.random(13, seed=5))
    optimizers.follow(model)
    for before, after in zip(before_terms, model.word_output_terms()):
        torch.testing.assert_close(after, before)
    for p in (model.slot_bias, model.slot_out):
        torch.testing.assert_close(by_word(sparse_adam.state[p]["exp_avg"]), before_moments[id(p)])
    assert model.take_moved_rows() == []  # follow took them
    # The column softmaxes now group the words differently, so log P moves; it stays a distribution.
    torch.testing.assert_close(model.log_prob(tokens)[0].exp().sum(-1), torch.ones(tokens.shape), atol=1e-5, rtol=0)
    assert not torch.allclose(model.log_prob(tokens)[0], before_logp)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_the_grouped_row_dot_products_and_their_gradients(monkeypatch, chunk):
    """_RowDot (the u_w . P h terms, one matmul per group of equally read rows) against the plain
    gather: the same terms, gradcheck'd, and its sparse weight gradient equal to the dense one,
    with nothing for the words of unread rows or the empty slots."""
    import lightrnn.method.model as model_module

    monkeypatch.setattr(model_module, "ROW_DOT_CHUNK_FLOATS", chunk)  # 7: one row per chunk
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3 * 2, dtype=torch.float64, generator=generator, requires_grad=True)  # R = 4, C = 3, k = 2
    query = torch.randn(9, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    rows = torch.tensor([3, 0, 3, 3, 1, 0, 3, 1, 0])  # row 2 unread; counts 4, 3, 2
    layout = model_module._RowLayout(rows, 3, 2)
    assert len(layout.chunks) == 3  # one group per read count (4, 3, 2 readers)
    assert layout.sorted_rows.tolist() == [0, 1, 3]
    assert torch.equal(layout.sorted_rows[layout.sorted_of], layout.distinct)
    expected = (weight.view(4, 3, 2)[rows] * query[:, None, :]).sum(-1)

    def terms(w, q, sparse=False):
        return model_module._RowDot.apply(w, q, layout, layout.distinct, layout.sorted_rows, sparse)

    torch.testing.assert_close(terms(weight, query), expected)
    assert torch.autograd.gradcheck(lambda q: terms(weight.detach(), q), (query,))
    upstream = torch.randn(9, 3, dtype=torch.float64, generator=generator)
    upstream[rows == 3, 2] = 0.0  # an empty slot's term is masked by the caller: no gradient flows there
    (reference,) = torch.autograd.grad((expected * upstream).sum(), weight)
    (dense,) = torch.autograd.grad((terms(weight, query) * upstream).sum(), weight)
    (sparse,) = torch.autograd.grad((terms(weight, query, True) * upstream).sum(), weight)
    torch.testing.assert_close(dense, reference)
    assert sparse.is_sparse and sparse.is_coalesced()
    assert sparse._indices()[0].tolist() == [0, 1, 3]  # the read rows, each once, not row 2
    torch.testing.assert_close(sparse.to_dense(), reference)


def test_the_sparse_output_gradient_reuses_its_storage_only_once_released():
    """_RowDot writes the word_out gradient into the last step's storage (no fresh tens-of-MB tensor per
    step on the CPU) only when nothing holds that gradient any more: a kept gradient never changes."""
    model = _model(150, {"word_dim": 4, "sparse_embedding": True}).float().train()
    tokens, targets = _stream(150, seed=5)

    def backward() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        model(tokens, targets).nll.sum().backward()
        return model.slot_out.grad

    kept = backward()
    snapshot = kept.to_dense().clone()
    second = backward()  # `kept` is still held here: a fresh tensor, `kept` untouched
    torch.testing.assert_close(kept.to_dense(), snapshot)
    assert second._values().data_ptr() != kept._values().data_ptr()
    reused_ptr = second._values().data_ptr()
    del kept, second
    third = backward()  # both released: the kept storage is written again, with the same values
    assert third._values().data_ptr() == reused_ptr
    torch.testing.assert_close(third.to_dense(), snapshot)


@pytest.mark.parametrize("vocab_size", [13, 150])
def test_one_training_step_with_sparse_tables_equals_the_reference_step(vocab_size):
    """A training step (forward, backward, clipping, optimizer) of the sparse variant equals the reference:
    the dense model's gradients, clipped by torch, the per-word tables' rows given to torch.optim.SparseAdam
    (lazy Adam: the documented semantics of sparse_embedding) and the rest to torch.optim.Adam."""
    from lightrnn.training.optim import Optimizers
    from lightrnn.training.step import train_step

    options = {"word_bias": True, "word_dim": 4, "word_input_dim": 3}
    dense = _model(vocab_size, options).float().train()
    sparse = _model(vocab_size, {**options, "sparse_embedding": True}).float().train()
    sparse.load_state_dict(dense.state_dict())
    start = {name: p.detach().clone() for name, p in dense.named_parameters()}
    tokens, targets = _stream(vocab_size, seed=6)
    optimizers = Optimizers(sparse, "adam", 1e-2)
    assert optimizers.label == "Adam+SparseAdam"
    for _ in range(2):  # the second step starts from moments the first left
        nll, _ = train_step(sparse, optimizers, tokens, targets, None, clip=0.05)  # a clip that bites
    tables = {"slot_bias", "slot_out", "word_in.weight"}
    named = dict(dense.named_parameters())
    adam = torch.optim.Adam([p for name, p in named.items() if name not in tables], lr=1e-2)
    lazy = torch.optim.SparseAdam([named[name] for name in sorted(tables)], lr=1e-2)
    for _ in range(2):
        adam.zero_grad()
        lazy.zero_grad()
        reference = dense(tokens, targets)
        reference.nll.mean().backward()
        torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.05)
        for name in tables:
            named[name].grad = named[name].grad.to_sparse(1)  # the rows with gradient
        adam.step()
        lazy.step()
    torch.testing.assert_close(nll, reference.nll.detach())
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(p_sparse, p_dense, msg=name)
    moved = (sparse.slot_out != start["slot_out"]).any(dim=1)  # [R]: a row of slot_out is a table row's words
    assert torch.equal(moved, torch.isin(torch.arange(sparse.num_rows), sparse.word_row[targets].unique()))


@pytest.mark.parametrize("vocab_size", [13, 150])
@pytest.mark.parametrize("clip", [0.05, 50.0])
def test_sgd_steps_with_the_factored_output_gradient_equal_the_reference_sgd(vocab_size, clip):
    """Under plain SGD slot_out's gradient stays factored (`RowGradient`: no .grad, its norm in
    closed form, the products added where they are made); the steps equal torch's SGD on the dense
    model's gradients clipped by torch, whether or not the clip bites, with rows read several times."""
    from lightrnn.method.model import RowGradient
    from lightrnn.training.optim import Optimizers
    from lightrnn.training.step import train_step

    options = {"word_bias": True, "word_dim": 4, "word_input_dim": 3}
    dense = _model(vocab_size, options).float().train()
    sparse = _model(vocab_size, {**options, "sparse_embedding": True}).float().train()
    sparse.load_state_dict(dense.state_dict())
    tokens, targets = _stream(vocab_size, seed=6)
    assert targets.numel() > sparse.word_row[targets].unique().numel()  # some rows are read several times
    optimizers = Optimizers(sparse, "sgd", 0.5)
    reference = torch.optim.SGD(dense.parameters(), lr=0.5)
    for _ in range(3):
        train_step(sparse, optimizers, tokens, targets, None, clip=clip)
        reference.zero_grad()
        dense(tokens, targets).nll.mean().backward()
        torch.nn.utils.clip_grad_norm_(dense.parameters(), clip)
        reference.step()
    assert sparse.slot_out.grad is None and isinstance(sparse.row_gradient, RowGradient)
    assert sparse.row_gradients() == []  # the step consumed it
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(p_sparse, p_dense, msg=name)


def test_the_factored_gradient_norm_and_products_equal_the_materialised_gradient():
    """RowGradient's closed-form squared norm and its products equal the autograd gradient, for one
    backward pass and for two accumulated ones (their rows overlap: the norm is of the sum)."""
    model = _model(150, {"word_dim": 4, "sparse_embedding": True}).float().train()
    reference = _model(150, {"word_dim": 4}).float().train()
    reference.load_state_dict(model.state_dict())
    model.defer_row_gradients(True)
    for passes in (1, 2):
        reference.zero_grad()
        for seed in range(passes):
            tokens, targets = _stream(150, seed=seed + 3)
            model(tokens, targets).nll.sum().backward()
            reference(tokens, targets).nll.sum().backward()
        ((param, gradient),) = model.row_gradients()
        assert param is model.slot_out and len(gradient.parts) == passes
        torch.testing.assert_close(gradient.dense(param), reference.slot_out.grad)
        torch.testing.assert_close(gradient.square_norm(param), reference.slot_out.grad.square().sum())
        with pytest.raises(RuntimeError, match="pending"):
            model.set_table(model.table)
        gradient.clear()
        assert model.row_gradients() == []


def test_only_plain_sgd_defers_the_output_gradient(monkeypatch):
    """Adam needs the gradient's values (its moments), and DDP all-reduces .grad: neither defers."""
    from lightrnn.core import distributed
    from lightrnn.training.optim import Optimizers

    model = _model(40, {"word_dim": 3, "sparse_embedding": True}).float().train()
    Optimizers(model, "sgd", 1.0)
    assert model.row_gradient is not None
    Optimizers(model, "adam", 1e-3)
    assert model.row_gradient is None
    tokens, targets = _stream(40)
    model(tokens, targets).nll.mean().backward()
    assert model.slot_out.grad is not None and model.slot_out.grad.is_sparse
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    Optimizers(model, "sgd", 1.0)
    assert model.row_gradient is None
    dense = _model(40, {"word_dim": 3}).float()
    Optimizers(dense, "sgd", 1.0)  # dense gradients asked for: no deferral
    assert dense.row_gradient is None
