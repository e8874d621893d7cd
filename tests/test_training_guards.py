"""Training guards: `albert_ner` never puts an entity edge on whitespace (decoding and gold
tags), and every trainable component refuses a non-finite loss or gradient, naming itself and
the update step, without touching its weights."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
import spacy
import torch
import transformers as hf
from spacy.pipeline._parser_internals.stateclass import StateClass
from spacy.tokens import Span
from spacy.training import Example
from thinc.api import Adam

from spacy_albert import AlbertTokenizerFast
from spacy_albert.layers.transformer import get_torch_encoder
from spacy_albert.pipeline.guards import NonFiniteError
from spacy_albert.pipeline.ner import (
    _space_flags,
    decode_batch,
    tag_names,
    transition_masks,
    viterbi,
    whitespace_masks,
)

from conftest import TINY_ALBERT

ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
SPACE_TEXTS = [" ", "I went to Paris \n\n and then", "we met  Bob   at   the   office"]
NAMES = {"Paris": "GPE", "Bob": "PERSON"}


@pytest.fixture(autouse=True)
def fixed_seed():
    spacy.util.fix_random_seed(0)


def ner_model(checkpoint=None):
    encoder = {**ENCODER, "checkpoint": None if checkpoint is None else str(checkpoint)}
    return {"@architectures": "spacy-albert.TokenClassifier.v1",
            "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first", "encoder": encoder}}  # fmt: skip


def blank_ner(scheme="BILUO"):
    """An (uninitialised) `albert_ner` with labels GPE and PERSON: enough to decode scores."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("albert_ner", config={"scheme": scheme, "model": ner_model()})
    for label in ("GPE", "PERSON"):
        ner.add_label(label)
    return nlp, ner


# ---- whitespace: decoding -----------------------------------------------------------------
def spans_of(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def favoured_scores(doc, tags, scheme):
    """Scores whose best tag is a strong entity tag on every whitespace token (a one-token
    PERSON, or one that starts or ends there: the issue's whitespace PERSON), a name's entity
    tag on the names and O elsewhere."""
    index = {t: i for i, t in enumerate(tags)}
    unit = "U" if scheme == "BILUO" else "B"
    rng = np.random.default_rng(len(doc))
    scores = rng.normal(0, 0.1, (len(doc), len(tags))).astype("float32")
    best = []
    for i, token in enumerate(doc):
        if token.is_space:
            tag = f"{unit}-PERSON" if i % 2 else "B-PERSON"
            scores[i, index[tag]] = 20.0
            scores[i, index["L-PERSON" if scheme == "BILUO" else "B-GPE"]] = 19.0
        else:
            tag = f"{unit}-{NAMES[token.text]}" if token.text in NAMES else "O"
            scores[i, index[tag]] = 5.0
        best.append(tag)
    return scores, best


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
@pytest.mark.parametrize("text", SPACE_TEXTS)
def test_whitespace_tokens_never_touch_an_entity(text, scheme):
    nlp, ner = blank_ner(scheme)
    doc = nlp.make_doc(text)
    assert any(t.is_space for t in doc)
    scores, best = favoured_scores(doc, ner.tags, scheme)
    ner.set_annotations([doc], [scores])
    for start, end, _ in spans_of(doc):
        assert not any(t.is_space for t in doc[start:end]), (text, spans_of(doc))
    # Every other token keeps its best tag: the names are entities, the rest is O.
    expected = [(t.i, t.i + 1, NAMES[t.text]) for t in doc if t.text in NAMES]
    assert spans_of(doc) == expected
    assert [t.ent_iob_ for t in doc if t.is_space] == ["O"] * sum(t.is_space for t in doc)
    # The single-doc Viterbi agrees with the batched decoding.
    allowed, start, end = transition_masks(ner.tags, scheme)
    log_probs = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    masks = whitespace_masks(ner.tags, scheme)
    single = viterbi(log_probs, allowed, start, end, _space_flags(doc), masks)
    assert single == list(decode_batch([log_probs], allowed, start, end, [_space_flags(doc)], masks)[0])
    kept = [not t.is_space for t in doc]
    assert [ner.tags[k] for k, keep in zip(single, kept) if keep] == [b for b, keep in zip(best, kept) if keep]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_inner_whitespace_may_stay_inside_an_entity(scheme):
    """As in spaCy's `ner`: "New  York" (with a whitespace token inside) can be one entity."""
    nlp, ner = blank_ner(scheme)
    doc = nlp.make_doc("to New  York now")
    assert [t.is_space for t in doc] == [False, False, True, False, False]
    index = {t: i for i, t in enumerate(ner.tags)}
    scores = np.zeros((len(doc), len(ner.tags)), dtype="float32")
    last = "L-GPE" if scheme == "BILUO" else "I-GPE"
    for i, tag in enumerate(["O", "B-GPE", "I-GPE", last, "O"]):
        scores[i, index[tag]] = 5.0
    ner.set_annotations([doc], [scores])
    assert spans_of(doc) == [(1, 4, "GPE")]


def test_whitespace_rule_matches_spacy_ner():
    """spaCy's `ner` never starts an entity (B, U) on whitespace and lets I cover inner
    whitespace; we forbid B, U and L there (no entity ends on whitespace either) and allow I."""
    nlp = spacy.blank("en")
    spacy_ner = nlp.add_pipe("ner")
    spacy_ner.add_label("GPE")
    nlp.initialize()
    moves = spacy_ner.moves
    names = [moves.get_class_name(i) for i in range(moves.n_moves)]
    doc = nlp.make_doc("New  York")
    state = StateClass(doc)
    moves.apply_transition(state, "B-GPE")
    assert doc[1].is_space and {n for n in names if moves.is_valid(state, n)} >= {"I-GPE"}
    assert not {"B-GPE", "U-GPE"} & {n for n in names if moves.is_valid(state, n)}
    state = StateClass(nlp.make_doc("\n Paris"))
    assert {n for n in names if moves.is_valid(state, n)} == {"O"}
    tags = tag_names(["GPE"], "BILUO")
    space_tags, _, space_end = whitespace_masks(tags, "BILUO")
    assert [t for t, ok in zip(tags, space_tags) if ok] == ["O", "I-GPE"]
    assert [t for t, ok in zip(tags, space_end) if ok] == ["O"]


def parse(tags, scheme):
    """(start, end) of each entity, or None for an invalid sequence: written from the tag
    grammar, independently of the masks."""
    spans, open_at, open_label = [], None, None
    for i, tag in enumerate(tags):
        kind, label = (tag.split("-", 1) + [None])[:2] if tag != "O" else ("O", None)
        if scheme == "BILUO":
            if open_at is not None:
                if kind not in ("I", "L") or label != open_label:
                    return None
                if kind == "L":
                    spans.append((open_at, i + 1))
                    open_at = None
            elif kind in ("I", "L"):
                return None
            elif kind == "B":
                open_at, open_label = i, label
            elif kind == "U":
                spans.append((i, i + 1))
        else:
            if kind == "I":
                if open_at is None or label != open_label:
                    return None
                continue
            if open_at is not None:
                spans.append((open_at, i))
                open_at = None
            if kind == "B":
                open_at, open_label = i, label
    if open_at is not None:
        if scheme == "BILUO":
            return None
        spans.append((open_at, len(tags)))
    return spans


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_constrained_viterbi_is_the_best_valid_sequence(scheme):
    """Brute force over every tag sequence of short docs with random whitespace flags."""
    tags = tag_names(["A", "B"], scheme)
    allowed, start, end = transition_masks(tags, scheme)
    masks = whitespace_masks(tags, scheme)
    rng = np.random.default_rng(0)
    for n in range(1, 5):
        sequences = list(itertools.product(range(len(tags)), repeat=n))
        parsed = [parse([tags[k] for k in seq], scheme) for seq in sequences]
        batch_lp, batch_space, expected = [], [], []
        for _ in range(12):
            space = rng.random(n) < 0.4
            log_probs = rng.standard_normal((n, len(tags))) * 3
            log_probs[space, 1:] += 4.0  # whitespace tokens favour the entity tags
            valid = [
                seq
                for seq, spans in zip(sequences, parsed)
                if spans is not None and not any(space[a] or space[b - 1] for a, b in spans)
            ]
            totals = [log_probs[np.arange(n), seq].sum() for seq in valid]
            best = list(valid[int(np.argmax(totals))])
            got = viterbi(log_probs, allowed, start, end, space, masks)
            assert got == best, (space, [tags[k] for k in got], [tags[k] for k in best])
            batch_lp.append(log_probs)
            batch_space.append(space)
            expected.append(best)
        assert [list(b) for b in decode_batch(batch_lp, allowed, start, end, batch_space, masks)] == expected


# ---- whitespace: gold tags and loss -------------------------------------------------------
def gold_example(nlp, text, spans):
    """An example whose reference has entities given as token (start, end, label)."""
    reference = nlp.make_doc(text)
    reference.ents = [Span(reference, a, b, label=label) for a, b, label in spans]
    return Example(nlp.make_doc(text), reference)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_gold_tags_of_whitespace_are_o(scheme):
    nlp, ner = blank_ner(scheme)
    tags = ner.tags
    unit = "U" if scheme == "BILUO" else "B"
    cases = [
        (" ", [], ["O"]),
        (" ", [(0, 1, "PERSON")], ["O"]),  # an entity of whitespace only is dropped
        ("I went to Paris \n\n and then", [(3, 4, "GPE")], ["O", "O", "O", f"{unit}-GPE", "O", "O", "O"]),
        ("I went to Paris \n\n and then", [(3, 5, "GPE")], ["O", "O", "O", f"{unit}-GPE", "O", "O", "O"]),  # trimmed
        ("we met  Bob   at   the   office", [(2, 5, "PERSON")],  # " Bob  " trimmed to Bob
         ["O", "O", "O", f"{unit}-PERSON", "O", "O", "O", "O", "O", "O"]),
        ("to New  York now", [(1, 4, "GPE")],  # inner whitespace: no gold (its neighbours decide)
         ["O", "B-GPE", None, "L-GPE" if scheme == "BILUO" else "I-GPE", "O"]),
    ]  # fmt: skip
    for text, spans, expected in cases:
        example = gold_example(nlp, text, spans)
        assert [t.is_space for t in example.reference] == [t.isspace() for t in (x.text for x in example.reference)]
        ids = ner._gold_ids(example)
        assert [tags[k] if k >= 0 else None for k in ids] == expected, (text, spans)
    # Missing gold on whitespace becomes O (as spaCy's aligned NER gold does).
    unannotated = Example(nlp.make_doc("we met  Bob"), nlp.make_doc("we met  Bob"))
    assert [tags[k] if k >= 0 else None for k in ner._gold_ids(unannotated)] == [None, None, "O", None]


def test_gold_tags_through_a_different_tokenization():
    """The aligned path (predicted tokens differ from the reference's) trims the same way."""
    nlp, ner = blank_ner("BILUO")
    reference = spacy.tokens.Doc(nlp.vocab, words=["we", "met", " ", "Bob", "\n", "x"],
                                 spaces=[True, False, False, False, False, False])  # fmt: skip
    reference.ents = [Span(reference, 2, 5, label="PERSON")]  # " Bob\n"
    predicted = spacy.tokens.Doc(nlp.vocab, words=["we", "me", "t", " ", "Bob", "\n", "x"],
                                 spaces=[True, False, False, False, False, False, False])  # fmt: skip
    assert predicted.text == reference.text
    ids = ner._gold_ids(Example(predicted, reference))
    assert [ner.tags[k] if k >= 0 else None for k in ids] == ["O", "O", "O", "O", "U-PERSON", "O", "O"]


def test_loss_never_pushes_entity_tags_on_whitespace():
    nlp, ner = blank_ner("BILUO")
    examples = [
        gold_example(nlp, "we met  Bob   at   the   office", [(2, 5, "PERSON")]),
        gold_example(nlp, "to New  York now", [(1, 4, "GPE")]),
    ]
    rng = np.random.default_rng(0)
    index = {t: i for i, t in enumerate(ner.tags)}
    scores = [rng.normal(0, 1, (len(eg.predicted), len(ner.tags))).astype("float32") for eg in examples]
    for eg, s in zip(examples, scores):
        for t in eg.predicted:
            if t.is_space:
                s[t.i, index["U-PERSON"]] = 8.0  # the model wrongly favours an entity there
    loss, grads = ner.get_loss(examples, scores)
    assert math.isfinite(loss)
    for eg, g in zip(examples, grads):
        for t in eg.predicted:
            if not t.is_space:
                continue
            row = np.asarray(g[t.i])
            if eg.reference.ents and eg.reference.ents[0].start < t.i < eg.reference.ents[0].end - 1:
                assert (row == 0).all()  # inner whitespace: no gold, no gradient
            else:  # gradient descent raises O and lowers every entity tag
                assert row[index["O"]] < 0 and (np.delete(row, index["O"]) >= 0).all()


# ---- non-finite losses and gradients ------------------------------------------------------
def snapshot(model):
    """Every thinc parameter and torch tensor of a model, copied."""
    out = {}
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                out[(node.id, name)] = np.array(node.ops.to_numpy(node.get_param(name)), copy=True)
        for i, shim in enumerate(node.shims):
            for key, value in shim._model.state_dict().items():
                out[(node.id, i, key)] = value.detach().cpu().clone().numpy()
    return out


def assert_unchanged(before, after):
    assert before.keys() == after.keys()
    changed = [k for k in before if not np.array_equal(before[k], after[k], equal_nan=True)]
    assert not changed, changed


def torch_params(model):
    return [p for node in model.walk() for shim in node.shims for p in shim._model.parameters()]


def ner_examples(nlp):
    data = [("Alice lives in Paris with Bob.", [(0, 5, "PERSON"), (15, 20, "GPE"), (26, 29, "PERSON")]),
            ("Bob visited Berlin yesterday.", [(0, 3, "PERSON"), (12, 18, "GPE")])]  # fmt: skip
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in data]


@pytest.mark.parametrize("spacy_loop", [False, True])
def test_albert_ner_refuses_a_nan_loss(albert_checkpoint, monkeypatch, spacy_loop):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("albert_ner", config={"model": ner_model(albert_checkpoint)})
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.001)
    nlp.update(examples, sgd=optimizer)  # step 1 is fine
    before = snapshot(ner.model)
    get_loss = ner.get_loss
    monkeypatch.setattr(ner, "get_loss", lambda egs, scores: (float("nan"), get_loss(egs, scores)[1]))
    with pytest.raises(NonFiniteError, match=r"'albert_ner', update step 2: the loss is nan"):
        if spacy_loop:  # as `spacy train` does: updates without sgd, then finish_update
            nlp.update(examples, sgd=False)
        else:
            nlp.update(examples, sgd=optimizer)
    assert_unchanged(before, snapshot(ner.model))
    assert all(p.grad is None for p in torch_params(ner.model))  # cleared
    monkeypatch.undo()
    losses = nlp.update(examples, sgd=optimizer)  # training can go on: step 3
    assert math.isfinite(losses["albert_ner"]) and ner._albert_update_step == 3


def test_albert_ner_refuses_a_nan_weight(albert_checkpoint):
    """A NaN that came from an earlier step (the issue's too-high learning rate) stops the
    next step; the weights are left as they were, NaN included, not spread further."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("albert_ner", config={"model": ner_model(albert_checkpoint)})
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    classifier = ner.model.get_ref("classifier")
    W = classifier.get_param("W").copy()
    W[0, 0] = np.nan
    classifier.set_param("W", W)
    before = snapshot(ner.model)
    with pytest.raises(NonFiniteError, match=r"'albert_ner', update step 1: the loss is nan"):
        nlp.update(examples, sgd=Adam(0.001))
    assert_unchanged(before, snapshot(ner.model))


def test_albert_textcat_refuses_an_infinite_gradient(albert_checkpoint, monkeypatch):
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("albert_textcat", config={"model": {"@architectures": "spacy-albert.SequenceClassifier.v1",
                                                               "tok2vec": {**ENCODER, "checkpoint": str(albert_checkpoint)}}})  # fmt: skip
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in
                [("I love it.", {"POS": 1.0, "NEG": 0.0}), ("Awful.", {"POS": 0.0, "NEG": 1.0})]]  # fmt: skip
    nlp.initialize(lambda: examples)
    before = snapshot(textcat.model)
    # A finite loss, but the encoder's weights get an infinite gradient in the backward pass.
    embeddings = next(p for n, p in torch_params_named(textcat.model) if "word_embeddings" in n)
    handle = embeddings.register_hook(lambda grad: grad * float("inf"))
    try:
        expected = r"'albert_textcat', update step 1: the gradient of torch parameter '.*word_embeddings"
        with pytest.raises(NonFiniteError, match=expected):
            nlp.update(examples, sgd=Adam(0.001))
    finally:
        handle.remove()
    assert_unchanged(before, snapshot(textcat.model))
    assert all(p.grad is None for p in torch_params(textcat.model))
    # Non-finite gradients of the scores are caught before the backward pass.
    get_loss = textcat.get_loss
    monkeypatch.setattr(textcat, "get_loss", lambda egs, s: (get_loss(egs, s)[0], get_loss(egs, s)[1] * np.inf))
    expected = r"'albert_textcat', update step 2: the gradient of the scores is not finite"
    with pytest.raises(NonFiniteError, match=expected):
        nlp.update(examples, sgd=Adam(0.001))
    assert_unchanged(before, snapshot(textcat.model))


def torch_params_named(model):
    return [(n, p) for node in model.walk() for shim in node.shims for n, p in shim._model.named_parameters()]


def shared_encoder_nlp(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ENCODER})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(checkpoint)}
    listener = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"]}
    nlp.add_pipe("ner", config={"model": {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "hidden_width": 32,
        "maxout_pieces": 2, "use_upper": True, "extra_state_tokens": False, "tok2vec": listener}})  # fmt: skip
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    return nlp, examples


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # spaCy's ner, given NaN weights
@pytest.mark.parametrize("spacy_loop", [False, True])
def test_shared_encoder_refuses_a_nan_gradient_from_spacy_ner(albert_checkpoint, spacy_loop):
    """spaCy's `ner` (a thinc parser: not ours) with a NaN weight sends a NaN gradient to the
    shared encoder: `albert` refuses it, and the encoder's weights stay as they were."""
    nlp, examples = shared_encoder_nlp(albert_checkpoint)
    albert = nlp.get_pipe("albert")
    optimizer = Adam(0.001)
    nlp.update(examples, sgd=optimizer)  # step 1 is fine
    lower = next(n for n in nlp.get_pipe("ner").model.walk() if n.has_param("W") and n.name.startswith("precomputable"))
    W = lower.get_param("W").copy()
    W[...] = np.nan
    lower.set_param("W", W)
    before = snapshot(albert.model)
    with pytest.raises(NonFiniteError, match=r"'albert', update step 2: the gradient from its listeners is not finite"):
        if spacy_loop:
            nlp.update(examples, sgd=False)
        else:
            nlp.update(examples, sgd=optimizer)
    assert_unchanged(before, snapshot(albert.model))
    assert all(p.grad is None for p in torch_params(albert.model))
    # Nor does a later optimizer step (as `spacy train` would take) move the encoder.
    albert.finish_update(optimizer)
    assert_unchanged(before, snapshot(albert.model))


def test_shared_encoder_refuses_a_nan_weight_gradient(albert_checkpoint):
    nlp, examples = shared_encoder_nlp(albert_checkpoint)
    albert = nlp.get_pipe("albert")
    embeddings = next(p for n, p in torch_params_named(albert.model) if "word_embeddings" in n)
    handle = embeddings.register_hook(lambda grad: grad * float("nan"))
    before = snapshot(albert.model)
    try:
        with pytest.raises(NonFiniteError, match=r"'albert', update step 1: the gradient of torch parameter"):
            nlp.update(examples, sgd=Adam(0.001))
    finally:
        handle.remove()
    assert_unchanged(before, snapshot(albert.model))


# ---- qa, fill_mask, multiple_choice -------------------------------------------------------
def task_checkpoint(tmp_path, spm_dir, head_class, **config):
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    head_class(hf.AlbertConfig(vocab_size=vocab_size, **TINY_ALBERT, **config)).save_pretrained(tmp_path)
    shutil.copy(spm_dir / "spiece.model", tmp_path / "spiece.model")
    return tmp_path


def task_nlp(factory, head, checkpoint, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"@architectures": head, "encoder": ENCODER}, **cfg})
    nlp.config["initialize"]["components"][factory] = {"checkpoint": str(checkpoint)}
    nlp.initialize()
    return nlp, nlp.get_pipe(factory)


def qa_examples(nlp):
    context = "Alice lives in Paris with her mother, and Bob works in Berlin."
    qas = [("Where does Alice live?", "Paris"), ("Who works in Berlin?", "Bob")]
    reference = nlp.make_doc(context)
    reference._.questions = [q for q, _ in qas]
    reference._.qa_answers = [{"question": q, "answer": a, "start": context.index(a), "end": context.index(a) + len(a)}
                              for q, a in qas]  # fmt: skip
    predicted = nlp.make_doc(context)
    predicted._.questions = reference._.questions
    return [Example(predicted, reference)]


def mc_examples(nlp):
    examples = []
    for prompt, choices, answer in [("Where is the water?", ["in the river", "on the table"], 0),
                                    ("The children went to school.", ["They were late.", "Nothing."], 1)]:  # fmt: skip
        predicted, reference = nlp.make_doc(prompt), nlp.make_doc(prompt)
        for doc in (predicted, reference):
            doc._.choices = choices
        reference._.correct_choice = answer
        examples.append(Example(predicted, reference))
    return examples


def mlm_examples(nlp):
    texts = ["the white house is near the old church.", "the young children saw the big water.",
             "my mother has a small white car.", "the old man took the little boy home."] * 3  # fmt: skip
    return [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts]


TASKS = {
    "qa": ("albert_qa", "spacy-albert.QuestionAnswering.v1", hf.AlbertForQuestionAnswering, qa_examples,
           {"max_seq_len": 64, "doc_stride": 16}),
    "fill_mask": ("albert_fill_mask", "spacy-albert.MaskedLanguageModel.v1", hf.AlbertForMaskedLM, mlm_examples, {}),
    "multiple_choice": ("albert_multiple_choice", "spacy-albert.MultipleChoice.v1", hf.AlbertForMultipleChoice,
                        mc_examples, {}),
}


@pytest.mark.parametrize("how", ["nan_weight", "inf_gradient"])
@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_components_refuse_non_finite_numbers(task, how, tmp_path, spm_dir):
    factory, task_name, head_class, make_examples, cfg = TASKS[task]
    nlp, component = task_nlp(factory, task_name, task_checkpoint(tmp_path, spm_dir, head_class), **cfg)
    examples = make_examples(nlp)
    optimizer = Adam(0.001)
    torch.manual_seed(0)
    nlp.update(examples, sgd=optimizer)  # step 1 is fine
    module = get_torch_encoder(component.model.get_ref("encoder"))
    embeddings = module.albert.embeddings.word_embeddings.weight
    if how == "nan_weight":
        with torch.no_grad():
            module.albert.embeddings.LayerNorm.weight[0] = float("nan")
        expected = rf"'{factory}', update step 2: the loss is nan"
    else:
        handle = embeddings.register_hook(lambda grad: grad * float("inf"))
        expected = rf"'{factory}', update step 2: the gradient of torch parameter '.*word_embeddings.weight' is not"
    before = snapshot(component.model)
    try:
        with pytest.raises(NonFiniteError, match=expected):
            nlp.update(examples, sgd=optimizer)
    finally:
        if how == "inf_gradient":
            handle.remove()
    assert_unchanged(before, snapshot(component.model))
    assert all(p.grad is None for p in module.parameters())


def test_float16_overflow_is_left_to_the_gradient_scaler():
    """An encoder in float16 scales its loss, and its scaler skips a step whose gradients
    overflowed (and lowers its scale): that is expected, not an error. Without one, it is."""
    from spacy_albert.layers.transformer import build_albert_transformer
    from spacy_albert.pipeline.guards import check_gradients

    for precision in ("float16", "float32"):
        model = build_albert_transformer(**TINY_ALBERT, precision=precision)
        weight = get_torch_encoder(model).albert.embeddings.word_embeddings.weight
        weight.grad = torch.full_like(weight, float("inf"))
        if precision == "float16":
            check_gradients("albert", 7, model)
            assert weight.grad is not None  # the scaler's own skip clears it at finish_update
        else:
            with pytest.raises(NonFiniteError, match=r"'albert', update step 7: the gradient of torch parameter"):
                check_gradients("albert", 7, model)
            assert weight.grad is None
