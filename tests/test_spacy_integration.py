"""ALBERT inside spaCy: encoder parity through Docs, windows, listeners, training,
serialization and the registered entry points."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import spacy
import torch
import transformers as hf
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from thinc.api import Adam, NumpyOps

from spacy_albert.errors import AlbertError, ShapeMismatchError
from spacy_albert.layers.data import AlbertDocData
from spacy_albert.layers.windows import span_windows, window_starts
from spacy_albert.layers.pooling import pool_pieces
from spacy_albert.layers.transformer import albert_state, get_torch_encoder
from spacy_albert.tokenization.alignment import Alignment

from conftest import TINY_ALBERT

ARCH = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
TRAIN = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
    ("Yesterday Alice flew to Berlin.", [(10, 15, "PER"), (24, 30, "LOC")]),
    ("Nothing happened here.", []),
]
TEST_TEXTS = ["Alice lives in Berlin.", "Bob visited Paris with Alice.", "", "   ", "Nothing here."]


def make_nlp(checkpoint, albert_cfg=None, ner_tok2vec=None):
    nlp = spacy.blank("en")
    if ner_tok2vec is None:
        nlp.add_pipe("albert", config={"model": {**ARCH, **(albert_cfg or {})}})
        nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(checkpoint)}
        ner_tok2vec = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"]}
    nlp.add_pipe(
        "ner",
        config={
            "model": {
                "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "hidden_width": 32,
                "maxout_pieces": 2, "use_upper": True, "extra_state_tokens": False, "tok2vec": ner_tok2vec,
            }
        },
    )  # fmt: skip
    return nlp


def examples_for(nlp):
    return [Example.from_dict(nlp.make_doc(t), {"entities": ents}) for t, ents in TRAIN]


def train(nlp, steps=60):
    examples = examples_for(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.005)
    history = []
    for _ in range(steps):  # as `spacy train` does: all updates, then all optimizer steps
        losses = {}
        nlp.update(examples, sgd=False, losses=losses)
        for _, proc in nlp.pipeline:
            proc.finish_update(optimizer)
        history.append(losses["ner"])
    return history


def ents(nlp, texts=TEST_TEXTS):
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]


@pytest.fixture(scope="module")
def trained(albert_checkpoint):
    nlp = make_nlp(albert_checkpoint)
    history = train(nlp)
    return nlp, history


@pytest.fixture(scope="module")
def reference_model(albert_checkpoint):
    return hf.AlbertModel.from_pretrained(albert_checkpoint, add_pooling_layer=False).eval()


def reference_states(reference_model, tokenizer, piece_ids: np.ndarray, cls: bool = False) -> np.ndarray:
    ids = [tokenizer.cls_token_id, *piece_ids.tolist(), tokenizer.sep_token_id]
    with torch.no_grad():
        states = reference_model(torch.tensor([ids])).last_hidden_state[0]
    return states[0].numpy() if cls else states[1:-1].numpy()


def encoder_only(checkpoint, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": {**ARCH, **cfg}})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(checkpoint)}
    nlp.initialize()
    return nlp


# ---- encoder parity through spaCy -------------------------------------------------------
def test_piece_states_equal_albert_model(albert_checkpoint, reference_model):
    nlp = encoder_only(albert_checkpoint)
    tokenizer = albert_state(nlp.get_pipe("albert").model).tokenizer
    texts = ["Hello world, this is Zürich!", "Short.", "", "A somewhat longer sentence with 1,000,000 things in it."]
    for doc in nlp.pipe(texts, batch_size=2):
        data = doc._.albert_data
        assert data.hidden.shape == (1, len(data.piece_ids), TINY_ALBERT["hidden_size"])
        expected = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        assert data.piece_ids.tolist() == expected
        np.testing.assert_allclose(data.hidden[0], reference_states(reference_model, tokenizer, data.piece_ids),
                                   atol=1e-5, rtol=0)  # fmt: skip
        # The [CLS] state too (an empty doc is "[CLS] [SEP]", as the reference encodes "").
        np.testing.assert_allclose(data.cls[0], reference_states(reference_model, tokenizer, data.piece_ids, cls=True),
                                   atol=1e-5, rtol=0)  # fmt: skip


def test_long_document_is_windowed_without_losing_pieces(albert_checkpoint, reference_model, corpus_lines):
    window, stride = 62, 40
    nlp = encoder_only(albert_checkpoint, window=window, stride=stride)
    tokenizer = albert_state(nlp.get_pipe("albert").model).tokenizer
    doc = nlp(" ".join(corpus_lines[:150]))
    data = doc._.albert_data
    n = len(data.piece_ids)
    assert n > 1500
    assert data.piece_ids.tolist() == tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    total, counts = np.zeros((n, TINY_ALBERT["hidden_size"])), np.zeros(n)
    for start in window_starts(n, window, stride):
        total[start : start + window] += reference_states(reference_model, tokenizer, data.piece_ids[start : start + window])
        counts[start : start + window] += 1
    assert counts.min() >= 1
    np.testing.assert_allclose(data.hidden[0], total / counts[:, None], atol=1e-5, rtol=0)
    # Every token with text gets a vector built from its pieces.
    assert all(data.alignment.lengths[t.i] > 0 for t in doc if not t.is_space)


def test_sentence_spans_encode_each_sentence_alone(albert_checkpoint, reference_model):
    nlp = encoder_only(albert_checkpoint, spans="sentences")
    tokenizer = albert_state(nlp.get_pipe("albert").model).tokenizer
    doc = nlp.make_doc("Alice lives in Paris. Bob went to Berlin yesterday. The end.")
    for i, token in enumerate(doc):
        token.is_sent_start = i == 0 or doc[i - 1].text == "."
    doc = nlp.get_pipe("albert")(doc)
    data = doc._.albert_data
    pieces = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [s.start_char for s in doc.sents] + [len(doc.text)]
    bounds = [next(i for i, (a, b) in enumerate(pieces["offset_mapping"]) if b > s) if s < len(doc.text) else
              len(data.piece_ids) for s in starts]  # fmt: skip
    # A bare "▁" split off a sentence's first word starts that sentence, as it does when the
    # sentence is tokenized alone.
    bounds = [i - 1 if 0 < i < len(data.piece_ids) and pieces.tokens()[i - 1] == "▁" else i for i in bounds]
    assert any(pieces.tokens()[i] == "▁" for i in bounds[1:-1])  # "Bob" -> "▁" "b" "o" "b"
    for a, b in zip(bounds, bounds[1:]):
        np.testing.assert_allclose(
            data.hidden[0, a:b], reference_states(reference_model, tokenizer, data.piece_ids[a:b]), atol=1e-5, rtol=0
        )


def test_windows_cover_every_piece():
    for n in (0, 1, 5, 62, 63, 200, 1501):
        for window, stride in ((62, 40), (62, 62), (10, 3)):
            covered = np.zeros(n, dtype=int)
            for start, end in span_windows([(0, n)] if n else [], window, stride):
                assert end - start <= window
                covered[start:end] += 1
            assert (covered >= 1).all()


def test_empty_and_whitespace_docs(albert_checkpoint, reference_model):
    nlp = encoder_only(albert_checkpoint)
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(albert_checkpoint)
    for text in ["", "   ", "\n\n", "\t"]:
        data = nlp(text)._.albert_data
        ids = tokenizer(text)["input_ids"][1:-1]  # the reference's pieces: none, or a bare "▁"
        assert data.piece_ids.tolist() == ids and data.hidden.shape == (1, len(ids), 32)
        assert data.alignment.lengths.tolist() == [0] * len(nlp.make_doc(text))  # whitespace tokens: no piece
        np.testing.assert_allclose(data.cls[-1], reference_states(reference_model, tokenizer, np.array(ids), cls=True), atol=1e-5)
        if ids:
            np.testing.assert_allclose(data.hidden[-1], reference_states(reference_model, tokenizer, np.array(ids)), atol=1e-5)
    docs = list(nlp.pipe(["", "Alice lives in Berlin.", "  "]))
    assert [d.text for d in docs] == ["", "Alice lives in Berlin.", "  "]


# ---- pooling ------------------------------------------------------------------------------
def _random_data(rng, n_layers=3, width=4):
    """7 pieces for 6 tokens: a token without pieces, and piece 1 shared by tokens 0 and 2."""
    n_tokens, n_pieces = 6, 7
    lengths = np.array([2, 0, 2, 3, 1, 0], dtype="int32")
    indices = np.array([0, 1, 1, 2, 3, 4, 5, 6], dtype="int32")
    hidden = rng.standard_normal((n_layers, n_pieces, width)).astype("float32")
    return AlbertDocData(np.arange(n_pieces), hidden, Alignment(lengths, indices)), n_tokens


def _direct_pooling(mode, stack, alignment, d_tokens):
    """Token vectors of one layer stack [pieces, width] and the exact gradient of each piece
    for the token gradients `d_tokens`, computed token by token."""
    n_tokens, width = len(alignment.lengths), stack.shape[1]
    Y, d_stack = np.zeros((n_tokens, width), "float32"), np.zeros_like(stack)
    for t in range(n_tokens):
        pieces = alignment.pieces_of(t)
        if not len(pieces):
            continue
        if mode == "mean":
            Y[t] = stack[pieces].mean(axis=0)
            for p in pieces:
                d_stack[p] += d_tokens[t] / len(pieces)
        elif mode in ("first", "last"):
            p = pieces[0] if mode == "first" else pieces[-1]
            Y[t] = stack[p]
            d_stack[p] += d_tokens[t]
        else:
            best = pieces[stack[pieces].argmax(axis=0)]  # the winning piece of each feature
            Y[t] = stack[best, np.arange(width)]
            d_stack[best, np.arange(width)] += d_tokens[t]
    return Y, d_stack


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("mode", ["mean", "first", "last", "max"])
def test_pooling_modes_match_a_direct_computation(mode, layers):
    rng = np.random.default_rng(0)
    data, n_tokens = _random_data(rng)
    layer = pool_pieces(mode, layers=layers)
    layer.initialize(X=[data])
    if layers == 1:
        weights, gamma, stack = np.ones(1, "float32"), 1.0, data.hidden[-1]
    else:
        mix = np.array([0.4, -0.3], dtype="float32")
        layer.set_param("mix", mix)
        layer.set_param("gamma", np.array([1.7], dtype="float32"))
        weights, gamma = np.exp(mix) / np.exp(mix).sum(), 1.7
        stack = gamma * np.tensordot(weights, data.hidden[-2:], axes=(0, 0))
    d_tokens = rng.standard_normal((n_tokens, 4)).astype("float32")
    expected_Y, d_stack = _direct_pooling(mode, stack, data.alignment, d_tokens)
    (Y,), backprop = layer.begin_update([data])
    np.testing.assert_allclose(Y, expected_Y, atol=1e-6)
    assert not Y[1].any() and not Y[5].any()  # tokens without pieces get zero vectors
    (d_data,) = backprop([d_tokens])
    expected = np.zeros_like(data.hidden)
    for j, w in enumerate(weights):  # each mixed layer gets its share of the piece gradient
        expected[len(data.hidden) - layers + j] = gamma * w * d_stack
    np.testing.assert_allclose(d_data.hidden, expected, atol=1e-6)


def test_layer_mix_learns_and_its_gradient_is_right():
    rng = np.random.default_rng(1)
    data, _ = _random_data(rng, n_layers=3)
    layer = pool_pieces("mean", layers=2)
    layer.initialize(X=[data])
    layer.set_param("mix", np.array([0.3, -0.2], dtype="float32"))
    target = rng.standard_normal((6, 4)).astype("float32")

    def loss():
        (Y,) = layer.predict([data])
        return float(((Y - target) ** 2).sum() / 2)

    Y, backprop = layer.begin_update([data])
    backprop([Y[0] - target])
    analytic = layer.get_grad("mix").copy()
    numeric = []
    for i in range(2):
        mix = layer.get_param("mix").copy()
        for sign in (1, -1):
            bumped = mix.copy()
            bumped[i] += sign * 1e-3
            layer.set_param("mix", bumped)
            numeric.append(loss())
        layer.set_param("mix", mix)
    numeric = np.array([(numeric[0] - numeric[1]) / 2e-3, (numeric[2] - numeric[3]) / 2e-3])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-2, atol=1e-3)


# ---- training, listeners, replace_listeners --------------------------------------------
def test_ner_on_albert_features_learns(trained):
    nlp, history = trained
    assert history[-1] < 0.5 * history[0], history
    found = ents(nlp, [TRAIN[0][0]])[0]
    assert (0, 5, "PER") in found, found


def test_trained_pipeline_round_trips(trained, tmp_path):
    nlp, _ = trained
    before = ents(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert ents(loaded) == before
    doc_a, doc_b = nlp(TEST_TEXTS[1]), loaded(TEST_TEXTS[1])
    np.testing.assert_array_equal(doc_a._.albert_data.hidden, doc_b._.albert_data.hidden)
    from_bytes = spacy.blank("en").from_config(nlp.config)
    from_bytes.from_bytes(nlp.to_bytes())
    assert ents(from_bytes) == before
    assert (tmp_path / "pipeline" / "albert" / "model").exists()


def test_replace_listeners_keeps_predictions(trained, tmp_path):
    nlp, _ = trained
    before = ents(nlp)
    nlp.to_disk(tmp_path / "p")
    copy = spacy.load(tmp_path / "p")
    copy.replace_listeners("albert", "ner", ["model.tok2vec"])
    assert copy.config["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy-albert.AlbertTok2Vec.v1"
    copy.remove_pipe("albert")
    assert ents(copy) == before
    copy.to_disk(tmp_path / "q")
    assert ents(spacy.load(tmp_path / "q")) == before


def test_component_with_its_own_encoder_learns(albert_checkpoint):
    tok2vec = {
        "@architectures": "spacy-albert.AlbertTok2Vec.v1",
        "pooling": "first",
        "encoder": {**ARCH, "checkpoint": str(albert_checkpoint)},
    }
    nlp = make_nlp(albert_checkpoint, ner_tok2vec=tok2vec)
    history = train(nlp, steps=40)
    assert history[-1] < 0.5 * history[0]


def test_two_listeners_share_one_encoder(albert_checkpoint):
    nlp = make_nlp(albert_checkpoint)
    nlp.add_pipe("tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": {
        "@architectures": "spacy-albert.AlbertListener.v1", "width": 32, "pooling": "max"}}})  # fmt: skip
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e, "tags": [("X", "Y")[i % 2] for i in range(len(nlp.make_doc(t)))]})
                for t, e in TRAIN]  # fmt: skip
    optimizer = nlp.initialize(lambda: examples)
    assert sorted(nlp.get_pipe("albert").listening_components) == ["ner", "tagger"]
    module = get_torch_encoder(nlp.get_pipe("albert").model)
    listeners = {name: listener for name, (listener,) in nlp.get_pipe("albert").listener_map.items()}

    def encoder_gradient(**grad_factors):
        """The encoder's gradient from one update (no optimizer step) with these factors."""
        for name, listener in listeners.items():
            listener.attrs["grad_factor"] = grad_factors.get(name, 1.0)
        module.zero_grad(set_to_none=True)
        spacy.util.fix_random_seed(0)  # spaCy's parser draws where it cuts its oracle sequences
        nlp.update(examples, sgd=False, losses={})
        return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])

    for _ in range(2):  # spaCy's tagger and parser start with zero output layers: no gradient yet
        nlp.update(examples, sgd=optimizer)
    both = encoder_gradient()
    ner_only, tagger_only = encoder_gradient(tagger=0.0), encoder_gradient(ner=0.0)
    assert ner_only.abs().max() > 0 and tagger_only.abs().max() > 0
    assert not torch.allclose(ner_only, tagger_only, atol=1e-6)
    torch.testing.assert_close(both, ner_only + tagger_only, atol=1e-6, rtol=1e-5)  # the sum of both
    half = encoder_gradient(tagger=0.5)
    torch.testing.assert_close(half, ner_only + 0.5 * tagger_only, atol=1e-6, rtol=1e-5)
    for listener in listeners.values():
        listener.attrs["grad_factor"] = 1.0
    encoder_before = module.albert.encoder.embedding_hidden_mapping_in.weight.clone()
    losses = {}
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, losses=losses)
    assert not torch.equal(encoder_before, module.albert.encoder.embedding_hidden_mapping_in.weight)
    assert losses["tagger"] > 0 and losses["ner"] > 0


# ---- docs, DocBin, multiprocessing -------------------------------------------------------
def test_doc_serialization_and_docbin_keep_outputs(trained):
    nlp, _ = trained
    docs = list(nlp.pipe(TEST_TEXTS))
    restored = Doc(nlp.vocab).from_bytes(docs[1].to_bytes())
    np.testing.assert_array_equal(restored._.albert_data.hidden, docs[1]._.albert_data.hidden)
    np.testing.assert_array_equal(restored._.albert_data.alignment.indices, docs[1]._.albert_data.alignment.indices)
    doc_bin = DocBin(store_user_data=True, docs=docs)
    again = list(DocBin().from_bytes(doc_bin.to_bytes()).get_docs(nlp.vocab))
    assert [d.text for d in again] == TEST_TEXTS
    np.testing.assert_array_equal(again[0]._.albert_data.hidden, docs[0]._.albert_data.hidden)
    without = list(DocBin(store_user_data=False, docs=docs).get_docs(nlp.vocab))
    assert without[1]._.albert_data is None and [e.text for e in without[1].ents] == [e.text for e in docs[1].ents]


def test_multiprocess_pipe_matches_single_process(trained):
    import signal

    nlp, _ = trained
    texts = TEST_TEXTS * 3
    single = list(nlp.pipe(texts))

    def deadlock(signum, frame):
        raise TimeoutError("nlp.pipe(n_process=2) did not finish in 120 s (a fork deadlock?)")

    previous = signal.signal(signal.SIGALRM, deadlock)
    signal.alarm(120)
    try:
        multi = list(nlp.pipe(texts, n_process=2, batch_size=4))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in multi] == ents(nlp, texts)
    assert any(d.ents for d in multi)
    for a, b in zip(single, multi):
        assert a.text == b.text
        np.testing.assert_allclose(b._.albert_data.hidden, a._.albert_data.hidden, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(b._.albert_data.alignment.lengths, a._.albert_data.alignment.lengths)


# ---- registration, precision, errors -----------------------------------------------------
COMPONENTS = ["albert", "albert_ner", "albert_textcat", "albert_qa", "albert_fill_mask", "albert_multiple_choice"]


def test_entry_points_and_registry():
    factories = {e.name: e.value for e in importlib.metadata.entry_points(group="spacy_factories")}
    assert factories["albert"] == "spacy_albert.pipeline.albert:make_albert"
    assert set(COMPONENTS) <= set(factories)
    nlp = spacy.blank("en")
    for name in COMPONENTS:  # each default_config builds a model without touching files
        nlp.add_pipe(name)
    assert nlp.pipe_names == COMPONENTS
    archs = {e.name for e in importlib.metadata.entry_points(group="spacy_architectures")}
    for name in ("spacy-albert.AlbertTransformer.v1", "spacy-albert.AlbertListener.v1", "spacy-albert.AlbertTok2Vec.v1"):
        assert name in archs
        assert callable(spacy.registry.architectures.get(name))


def test_bfloat16_on_cpu_is_close_to_float32(albert_checkpoint):
    full = encoder_only(albert_checkpoint)("Alice lives in Paris with Bob.")._.albert_data.hidden
    low = encoder_only(albert_checkpoint, precision="bfloat16")("Alice lives in Paris with Bob.")._.albert_data.hidden
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal (the setting acts).
    assert low.dtype == np.float32 and 1e-4 < np.abs(low - full).max() < 0.1


def test_uninitialised_and_mismatched_encoders_fail_clearly(albert_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ARCH})
    with pytest.raises(AlbertError, match="no vocabulary yet"):
        nlp("Hello")
    nlp = spacy.blank("en")  # config sizes that the checkpoint contradicts: the checkpoint wins
    nlp.add_pipe("albert", config={"model": {**ARCH, "hidden_size": 64, "num_attention_heads": 16}})
    nlp.get_pipe("albert").initialize(lambda: examples_for(nlp), checkpoint=str(albert_checkpoint))
    assert nlp("Hello")._.albert_data.width == 32 and nlp.get_pipe("albert").model.get_dim("nO") == 32
    nlp = make_nlp(albert_checkpoint)
    nlp.remove_pipe("albert")
    nlp.initialize(lambda: examples_for(nlp))
    with pytest.raises(AlbertError, match="must run before its listeners"):
        nlp("Alice lives here.")


def test_pooling_handles_docs_without_tokens():
    ops = NumpyOps()
    layer = pool_pieces("max")
    empty = AlbertDocData(np.zeros(0), np.zeros((1, 0, 4), "float32"), Alignment(np.zeros(0, "int32"), np.zeros(0, "int32")))
    layer.initialize(X=[empty])
    (Y,) = layer.predict([empty])
    assert Y.shape == (0, 4)


LISTENER = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"]}
BUILTINS = {
    "textcat": ({"@architectures": "spacy.TextCatReduce.v1", "exclusive_classes": True, "use_reduce_first": False,
                 "use_reduce_last": False, "use_reduce_max": True, "use_reduce_mean": True, "nO": None},
                lambda doc, i: {"cats": {"A": float(i % 2 == 0), "B": float(i % 2 == 1)}}),
    "spancat": ({"@architectures": "spacy.SpanCategorizer.v1",
                 "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 16},
                 "scorer": {"@layers": "spacy.LinearLogistic.v1", "nO": None, "nI": None}},
                lambda doc, i: {"spans": {"sc": [(0, len(doc[0].text), "FIRST")]}}),
}  # fmt: skip


BUILTIN_FLOORS = {"textcat": ("cats_score", 0.99), "spancat": ("spans_sc_f", 0.8)}  # reached: 1.0, 0.857


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_components_train_on_listener_features(albert_checkpoint, name):
    architecture, annotate = BUILTINS[name]
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ARCH})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    nlp.add_pipe(name, config={"model": {**architecture, "tok2vec": LISTENER}})
    examples = []
    for i, (text, _) in enumerate(TRAIN):
        doc = nlp.make_doc(text)
        examples.append(Example.from_dict(doc, annotate(doc, i)))
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(25):
        nlp.update(examples, sgd=optimizer)
    score, floor = BUILTIN_FLOORS[name]
    assert nlp.evaluate(examples)[score] >= floor
    # The same pipeline with the listener's features zeroed at prediction falls below it.
    import spacy_albert.layers.listener as listener

    stored = listener._stored_outputs
    zeroed = lambda model, docs: [d.with_arrays(0 * d.hidden, 0 * d.cls) for d in stored(model, docs)]  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listener, "_stored_outputs", zeroed)
        assert nlp.evaluate(examples)[score] < floor
