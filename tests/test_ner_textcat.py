"""`albert_ner` and `albert_textcat`: learning, fine-tuned heads from checkpoints, export to
transformers, own vs shared encoder, decoding validity, serialization and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import spacy
import torch
import transformers as hf
from spacy.training import Example
from thinc.api import Adam

from spacy_albert import AlbertTokenizerFast
from spacy_albert.errors import AlbertError
from spacy_albert.pipeline.ner import tag_names, transition_masks, viterbi

from conftest import TINY_ALBERT, first_piece_logits

ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
NER_DATA = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
    ("Yesterday Alice flew to New York City.", [(10, 15, "PER"), (24, 37, "LOC")]),
    ("Nothing happened here.", []),
]
CAT_DATA = [
    ("I love this film, great!", {"POS": 1.0, "NEG": 0.0}),
    ("Terrible and boring movie.", {"POS": 0.0, "NEG": 1.0}),
    ("What a great day.", {"POS": 1.0, "NEG": 0.0}),
    ("Awful, I hated it.", {"POS": 0.0, "NEG": 1.0}),
]
MULTI_DATA = [
    ("great film and great music", {"FILM": 1.0, "MUSIC": 1.0, "FOOD": 0.0}),
    ("the film was long", {"FILM": 1.0, "MUSIC": 0.0, "FOOD": 0.0}),
    ("tasty food, loud music", {"FILM": 0.0, "MUSIC": 1.0, "FOOD": 1.0}),
    ("the food", {"FILM": 0.0, "MUSIC": 0.0, "FOOD": 1.0}),
]


@pytest.fixture(autouse=True)
def fixed_seed():
    """Same initial classifier weights (and dropout masks) in every run."""
    spacy.util.fix_random_seed(0)


def ner_model(checkpoint=None, pooling="first"):
    encoder = {**ENCODER, "checkpoint": None if checkpoint is None else str(checkpoint)}
    return {"@architectures": "spacy-albert.TokenClassifier.v1",
            "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": pooling, "encoder": encoder}}  # fmt: skip


def textcat_model(checkpoint=None):
    return {"@architectures": "spacy-albert.SequenceClassifier.v1",
            "tok2vec": {**ENCODER, "checkpoint": None if checkpoint is None else str(checkpoint)}}  # fmt: skip


def ner_examples(nlp):
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in NER_DATA]


def cat_examples(nlp, data):
    return [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in data]


def train(nlp, examples, steps=30, lr=0.005):
    """Update as `spacy train` does: every component first, then every optimizer step (so a
    shared encoder also gets its listeners' gradients in the same step)."""
    optimizer = Adam(lr)
    history = []
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=False, losses=losses)
        for _, proc in nlp.pipeline:
            if getattr(proc, "is_trainable", False):
                proc.finish_update(optimizer)
        history.append(sum(losses.values()))
    return history


def with_head(tmp_path, spm_dir, head_class, **config):
    """A transformers checkpoint of `head_class` (random init) with the test vocabulary."""
    torch.manual_seed(1)
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    model = head_class(hf.AlbertConfig(vocab_size=vocab_size, **TINY_ALBERT, **config)).eval()
    path = tmp_path / head_class.__name__
    model.save_pretrained(path)
    shutil.copy(spm_dir / "spiece.model", path / "spiece.model")
    return model, path


# ---- albert_ner ---------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_ner_learns_and_round_trips(albert_checkpoint, scheme, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"scheme": scheme, "model": ner_model(albert_checkpoint)})
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    before = nlp.evaluate(examples)["ents_f"]
    history = train(nlp, examples)
    scores = nlp.evaluate(examples)
    assert history[-1] < 0.2 * history[0] and scores["ents_f"] > before and scores["ents_f"] >= 0.8, (history, scores)
    assert set(scores["ents_per_type"]) == {"PER", "LOC"}
    texts = [t for t, _ in NER_DATA] + ["", "   ", "Alice " * 200]
    expected = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "ner")
    loaded = spacy.load(tmp_path / "ner")
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in loaded.pipe(texts)] == expected
    assert loaded.get_pipe("albert_ner").tags == tag_names(["LOC", "PER"], scheme)


def test_ner_with_a_shared_encoder_and_spans_key(albert_checkpoint, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ENCODER})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    listener = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"], "pooling": "first"}
    nlp.add_pipe("albert_ner", config={"spans_key": "ents_copy",
                                       "model": {"@architectures": "spacy-albert.TokenClassifier.v1", "tok2vec": listener}})  # fmt: skip
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    train(nlp, examples)
    doc = nlp(NER_DATA[0][0])
    assert [e.text for e in doc.ents] == [e.text for e in doc.spans["ents_copy"]] and len(doc.ents) >= 2
    # Export needs the shared encoder: found through the pipeline.
    with pytest.raises(AlbertError, match="nlp=..."):
        nlp.get_pipe("albert_ner").export(tmp_path / "x")
    exported = nlp.get_pipe("albert_ner").export(tmp_path / "export", nlp=nlp)
    ref = hf.AlbertForTokenClassification.from_pretrained(exported).eval()
    scores = nlp.get_pipe("albert_ner").predict([nlp.get_pipe("albert")(nlp.make_doc(NER_DATA[1][0]))])[0]
    expected = first_piece_logits(ref, hf.AlbertTokenizerFast.from_pretrained(exported), nlp.make_doc(NER_DATA[1][0]))
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_ner_from_a_fine_tuned_checkpoint_needs_no_training(tmp_path, spm_dir):
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    ref, path = with_head(tmp_path, spm_dir, hf.AlbertForTokenClassification, id2label=dict(enumerate(tags)),
                          label2id={t: i for i, t in enumerate(tags)})  # fmt: skip
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"model": ner_model(path)})
    nlp.initialize()
    ner = nlp.get_pipe("albert_ner")
    assert ner.tags == tags and ner.cfg["scheme"] == "BIO" and ner.labels == ("LOC", "PER")
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(path)
    for text in ("Alice lives in Paris with Bob.", "Zürich, 1,000,000 naïve cafés!"):
        doc = nlp.make_doc(text)
        np.testing.assert_allclose(ner.predict([doc])[0], first_piece_logits(ref, tokenizer, doc), atol=1e-5)
    exported = ner.export(tmp_path / "again")
    again = hf.AlbertForTokenClassification.from_pretrained(exported)
    assert again.config.id2label == dict(enumerate(tags))
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, atol=1e-6, rtol=0)


def test_ner_decoding_is_always_valid():
    rng = np.random.default_rng(0)
    for scheme in ("BILUO", "BIO"):
        tags = tag_names(["A", "B", "C"], scheme)
        allowed, start, end = transition_masks(tags, scheme)
        for _ in range(200):
            n = int(rng.integers(0, 12))
            best = [tags[i] for i in viterbi(rng.standard_normal((n, len(tags))) * 3, allowed, start, end)]
            open_label = None
            for tag in best:
                kind, label = (tag.split("-") + [None])[:2]
                if kind in ("I", "L"):
                    assert open_label == label, best
                if scheme == "BILUO":
                    assert kind not in ("B", "U", "O") or open_label is None, best
                open_label = label if kind in ("B", "I") else None
            if scheme == "BILUO":
                assert open_label is None, best


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_transition_masks_allow_exactly_the_valid_sequences(scheme):
    """Sound and complete: a tag sequence passes the masks if and only if the tag grammar
    (an independent parser) accepts it, for every sequence of up to 4 tags over 2 labels."""
    import itertools

    from test_training_guards import parse

    tags = tag_names(["A", "B"], scheme)
    allowed, start, end = transition_masks(tags, scheme)
    for n in range(1, 5):
        for seq in itertools.product(range(len(tags)), repeat=n):
            by_masks = bool(start[seq[0]] and end[seq[-1]] and all(allowed[p, q] for p, q in zip(seq, seq[1:])))
            assert by_masks == (parse([tags[k] for k in seq], scheme) is not None), [tags[k] for k in seq]


def test_ner_rejects_unknown_labels_and_handles_empty_docs(albert_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"model": ner_model(albert_checkpoint)})
    nlp.initialize(lambda: ner_examples(nlp))
    bad = [Example.from_dict(nlp.make_doc("Acme Corp rocks."), {"entities": [(0, 9, "ORG")]})]
    with pytest.raises(AlbertError, match="'ORG'.*not one of its labels"):
        nlp.update(bad)
    assert [list(d.ents) for d in nlp.pipe(["", " ", "\n"])] == [[], [], []]


# ---- albert_textcat -----------------------------------------------------------------------
@pytest.mark.parametrize("exclusive,data", [(True, CAT_DATA), (False, MULTI_DATA)])
def test_textcat_learns_and_round_trips(albert_checkpoint, exclusive, data, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_textcat", config={"exclusive_classes": exclusive, "model": textcat_model(albert_checkpoint)})
    examples = cat_examples(nlp, data)
    nlp.initialize(lambda: examples)
    before = nlp.evaluate(examples)
    history = train(nlp, examples, steps=60, lr=0.001)
    after = nlp.evaluate(examples)
    assert history[-1] < 0.3 * history[0], history
    assert after["cats_score"] > before["cats_score"] and after["cats_macro_auc"] == 1.0, (before, after)
    cats = nlp(data[0][0]).cats
    if exclusive:
        assert abs(sum(cats.values()) - 1) < 1e-5
    texts = [t for t, _ in data] + ["", "word " * 300]
    expected = [d.cats for d in nlp.pipe(texts)]
    loaded = spacy.blank("en").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert [d.cats for d in loaded.pipe(texts)] == expected


def test_textcat_from_a_fine_tuned_checkpoint_and_export(tmp_path, spm_dir):
    labels = ["negative", "neutral", "positive"]
    ref, path = with_head(tmp_path, spm_dir, hf.AlbertForSequenceClassification, id2label=dict(enumerate(labels)),
                          label2id={t: i for i, t in enumerate(labels)})  # fmt: skip
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_textcat", config={"model": textcat_model(path)})
    nlp.initialize()
    assert nlp.get_pipe("albert_textcat").labels == tuple(labels)
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(path)
    for text in ("What a lovely day!", "", "Zürich 1,000,000"):
        with torch.no_grad():
            expected = ref(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0].numpy()
        np.testing.assert_allclose([nlp(text).cats[label] for label in labels], expected, atol=1e-5)
    exported = nlp.get_pipe("albert_textcat").export(tmp_path / "export")
    again = hf.AlbertForSequenceClassification.from_pretrained(exported)
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, atol=1e-6, rtol=0)


def test_textcat_with_a_shared_encoder_and_replace_listeners(albert_checkpoint, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ENCODER})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    listener = {"@architectures": "spacy-albert.AlbertDocListener.v1", "width": TINY_ALBERT["hidden_size"]}
    nlp.add_pipe("albert_textcat", config={"model": {"@architectures": "spacy-albert.SequenceClassifier.v1",
                                                     "tok2vec": listener}})  # fmt: skip
    examples = cat_examples(nlp, CAT_DATA)
    nlp.initialize(lambda: examples)
    history = train(nlp, examples, steps=40, lr=0.001)
    assert history[-1] < 0.3 * history[0], history
    expected = [d.cats for d in nlp.pipe([t for t, _ in CAT_DATA])]
    nlp.replace_listeners("albert", "albert_textcat", ["model.tok2vec"])
    nlp.remove_pipe("albert")
    got = [d.cats for d in nlp.pipe([t for t, _ in CAT_DATA])]
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, abs=1e-6)
    nlp.to_disk(tmp_path / "alone")
    assert [d.cats for d in spacy.load(tmp_path / "alone").pipe([t for t, _ in CAT_DATA])] == got


def test_textcat_rejects_unknown_categories(albert_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_textcat", config={"model": textcat_model(albert_checkpoint)})
    nlp.initialize(lambda: cat_examples(nlp, CAT_DATA))
    with pytest.raises(AlbertError, match="'SPAM'"):
        nlp.update([Example.from_dict(nlp.make_doc("buy now"), {"cats": {"SPAM": 1.0}})])


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_ner_gold_fast_path_equals_spacy_alignment(scheme):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("albert_ner", config={"scheme": scheme})
    for label in ("PER", "LOC", "creative-work"):
        ner.add_label(label)
    index = {t: i for i, t in enumerate(ner.tags)}
    data = NER_DATA + [("The Da Vinci Code is a book.", [(4, 17, "creative-work")])]
    for text, entities in data:
        example = Example.from_dict(nlp.make_doc(text), {"entities": entities})
        aligned = example.get_aligned_ner()
        if scheme == "BIO":
            aligned = [t.replace("L-", "I-").replace("U-", "B-") for t in aligned]
        assert ner._gold_ids_same_tokens(example.reference).tolist() == [index[t] for t in aligned]
    unannotated = Example(nlp.make_doc("Alice lives here"), nlp.make_doc("Alice lives here"))
    assert ner._gold_ids(unannotated).tolist() == [-1, -1, -1]  # missing gold is ignored


# ---- losses: the components' get_loss against the formulas written out ----------------------
def softmax64(x):
    x = np.asarray(x, dtype="float64")
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_ner_loss_is_token_cross_entropy_over_known_gold():
    """Mean softmax cross-entropy over the tokens with gold, its gradient (p - one-hot) / n on
    them and zero elsewhere: missing gold ("-", an unannotated doc, whitespace inside an
    entity) and empty docs give no gradient and do not count."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("albert_ner", config={"scheme": "BILUO"})
    for label in ("LOC", "PER"):
        ner.add_label(label)
    mk = nlp.make_doc
    cases = [
        (Example.from_dict(mk("Alice lives in Paris"), {"entities": [(0, 5, "PER"), (15, 20, "LOC")]}),
         ["U-PER", "O", "O", "U-LOC"]),
        (Example.from_dict(mk("Bob met Alice in Rome"), {"entities": ["-", "O", "U-PER", "-", "U-LOC"]}),
         [None, "O", "U-PER", None, "U-LOC"]),
        (Example(mk("Alice lives here"), mk("Alice lives here")), [None, None, None]),
        (Example.from_dict(mk(""), {"entities": []}), []),
        (Example.from_dict(mk("to New  York now"), {"entities": [(3, 12, "LOC")]}),
         ["O", "B-LOC", None, "L-LOC", "O"]),
    ]  # fmt: skip
    examples = [eg for eg, _ in cases]
    gold = [tag for _, tags in cases for tag in tags]
    assert [len(eg.predicted) for eg in examples] == [len(tags) for _, tags in cases]
    rng = np.random.default_rng(0)
    scores = [(rng.standard_normal((len(eg.predicted), len(ner.tags))) * 3).astype("float32") for eg in examples]
    scores[0][1, 0] += 100.0  # p(gold) underflows: floored at 1e-12 ...
    scores[0][1, 0] -= 200.0  # ... as O gets exp(-200)
    loss, grads = ner.get_loss(examples, scores)

    probs = softmax64(np.concatenate(scores))
    known = [i for i, tag in enumerate(gold) if tag is not None]
    ids = [ner.tags.index(gold[i]) for i in known]
    expected_loss = -np.log(np.maximum(probs[known, ids], 1e-12)).mean()
    expected_grad = np.zeros_like(probs)
    expected_grad[known] = probs[known]
    expected_grad[known, ids] -= 1.0
    expected_grad /= len(known)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert [g.shape for g in grads] == [s.shape for s in scores]
    got = np.concatenate([ner.model.ops.to_numpy(g) for g in grads])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected_grad, atol=1e-7, rtol=1e-5)
    # A batch without any gold: zero loss and gradients.
    loss, grads = ner.get_loss(examples[2:4], scores[2:4])
    assert loss == 0.0 and all(not np.asarray(g).any() for g in grads)
    assert ner.get_loss([], []) == (0.0, [])


CAT_GOLD = [
    {"A": 1.0, "B": 0.0, "C": 0.0},
    {"A": 0.0, "B": 0.0, "C": 1.0},
    {"A": 1.0},  # partly missing
    {},  # all missing
    {"A": 0.3, "B": 0.7, "C": 0.0},  # soft
]
CAT_LOGITS = np.array([[2.0, -1.0, 0.5], [25.0, -3.0, 40.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [-25.0, 0.0, 40.0]], "f")


@pytest.mark.parametrize("exclusive", [True, False])
def test_textcat_loss_is_cross_entropy_over_known_gold(exclusive):
    """Exclusive: softmax cross-entropy averaged over docs with complete gold; multi-label:
    binary cross-entropy averaged over the known values (each log floored at log 1e-12, and
    finite for saturated logits). The gradient is (p - gold) / n where the gold is known."""
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("albert_textcat", config={"exclusive_classes": exclusive})
    for label in "ABC":
        textcat.add_label(label)
    examples = [Example.from_dict(nlp.make_doc(f"doc {i}"), {"cats": c}) for i, c in enumerate(CAT_GOLD)]
    loss, grad = textcat.get_loss(examples, CAT_LOGITS)

    x = CAT_LOGITS.astype("float64")
    gold = np.array([[c.get(label, 0.0) for label in "ABC"] for c in CAT_GOLD])
    known = np.array([[label in c for label in "ABC"] for c in CAT_GOLD])
    expected_grad = np.zeros_like(x)
    if exclusive:
        rows = [0, 1, 4]  # complete gold only
        p = softmax64(x)
        expected_loss = -(gold[rows] * np.log(np.maximum(p[rows], 1e-12))).sum(axis=1).mean()
        expected_grad[rows] = (p[rows] - gold[rows]) / len(rows)
    else:
        p = 1 / (1 + np.exp(-x))
        log_p = np.maximum(-np.logaddexp(0, -x), np.log(1e-12))  # log p, floored
        log_not_p = np.maximum(-np.logaddexp(0, x), np.log(1e-12))  # log (1 - p), floored
        bce = -(gold * log_p + (1 - gold) * log_not_p)
        expected_loss = bce[known].mean()
        expected_grad[known] = (p - gold)[known] / known.sum()
    assert np.isfinite(loss) and loss == pytest.approx(expected_loss, rel=1e-6)
    got = textcat.model.ops.to_numpy(grad)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, expected_grad, atol=1e-7, rtol=1e-5)
    loss, grad = textcat.get_loss(examples[3:4], CAT_LOGITS[3:4])  # nothing known
    assert loss == 0.0 and not np.asarray(grad).any()


def test_textcat_rejects_gold_values_outside_0_1():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("albert_textcat", config={"exclusive_classes": False})
    for label in "AB":
        textcat.add_label(label)
    example = Example.from_dict(nlp.make_doc("x"), {"cats": {"A": 2.0, "B": 0.0}})
    with pytest.raises(AlbertError, match=r"value 2.0 for category 'A'"):
        textcat.get_loss([example], np.zeros((1, 2), "f"))


def test_albert_stores_its_outputs_as_they_are():
    """The shared component keeps each doc's output on the model's device, without a copy."""
    from spacy_albert.layers.data import AlbertDocData
    from spacy_albert.tokenization.alignment import Alignment

    nlp = spacy.blank("en")
    albert = nlp.add_pipe("albert", config={"model": ENCODER})
    doc = nlp.make_doc("two words")
    ops = albert.model.ops
    alignment = Alignment(np.ones(2, "int32"), np.arange(2, dtype="int32"))
    data = AlbertDocData(np.array([5, 6]), ops.alloc3f(1, 2, 4), alignment, ops.alloc2f(1, 4))
    albert.set_annotations([doc], [data])
    assert doc._.albert_data is data
