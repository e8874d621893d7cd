"""The `albert_qa` component: parity with transformers' question-answering pipeline, training,
its loss and gradient (against the reference model's and autograd's), spaCy's dropout in
`update` and `spacy train`, serialization, export, the SQuAD converter, the scorer, bad input
and the training config."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
import transformers as hf
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam

from spacy_albert import AlbertTokenizerFast
from spacy_albert.errors import AlbertError
from spacy_albert.layers.data import PieceSequences
from spacy_albert.layers.transformer import albert_state, get_torch_encoder
from spacy_albert.pipeline.qa import (
    AlbertQuestionAnswering,
    exact_score,
    f1_score,
    normalize_answer,
    qa_inputs,
    score_qa,
    window_ranges,
)
from spacy_albert.pipeline.squad import convert_squad, squad_to_docs

from conftest import TINY_ALBERT, make_corpus

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "albert_qa.cfg"
ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
ARCH = {"@architectures": "spacy-albert.QuestionAnswering.v1", "encoder": ENCODER}
WINDOW = {"max_seq_len": 64, "doc_stride": 16}  # max_position_embeddings is 64


def _filler(n_lines: int, seed: int) -> str:
    return " ".join(line.rstrip(".!?,") + "." for line in make_corpus(n_lines, seed=seed))


SHORT = "Alice lives in Paris with her mother, and Bob works in Berlin."
LONG = _filler(4, 1) + " The old house stands near the river. " + _filler(4, 2)
QUESTIONS = ["Where does Alice live?", "Who works in Berlin?", "What stands near the river?"]


@pytest.fixture(scope="module")
def qa_checkpoint(tmp_path_factory, spm_dir):
    """A random-init transformers AlbertForQuestionAnswering with `spm_dir`'s vocabulary."""
    directory = tmp_path_factory.mktemp("albert_qa_checkpoint")
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    hf.AlbertForQuestionAnswering(hf.AlbertConfig(vocab_size=vocab_size, **TINY_ALBERT)).save_pretrained(directory)
    shutil.copy(spm_dir / "spiece.model", directory / "spiece.model")
    return directory


@pytest.fixture(scope="module")
def reference(qa_checkpoint):
    """transformers' question-answering pipeline (results memoised: it is slow)."""
    model = hf.AlbertForQuestionAnswering.from_pretrained(qa_checkpoint)
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(qa_checkpoint)
    pipe = hf.pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    cache = {}

    def run(**kwargs):
        key = json.dumps(kwargs, sort_keys=True)
        if key not in cache:
            cache[key] = pipe(**kwargs)
        return cache[key]

    return run


def make_nlp(checkpoint=None, *, init_checkpoint=None, initialize=True, encoder=None, **settings):
    nlp = spacy.blank("en")
    model = {**ARCH, "encoder": {**ENCODER, **(encoder or {}), "checkpoint": str(checkpoint) if checkpoint else None}}
    nlp.add_pipe("albert_qa", config={"model": model, **WINDOW, **settings})
    if init_checkpoint is not None:
        nlp.config["initialize"]["components"]["albert_qa"] = {"checkpoint": str(init_checkpoint)}
    if initialize:
        nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def nlp(qa_checkpoint):
    return make_nlp(qa_checkpoint)


def as_list(result):
    return result if isinstance(result, list) else [result]


def assert_same_answers(ours, theirs):
    ours, theirs = as_list(ours), as_list(theirs)
    def key(a):
        return a["answer"], a["start"], a["end"]

    assert [key(a) for a in ours] == [key(a) for a in theirs]
    for a, b in zip(ours, theirs):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


# ---- parity with the reference pipeline -----------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"top_k": 1}, {"top_k": 3}, {"top_k": 3, "handle_impossible_answer": True}],
    ids=["top1", "top3", "impossible"],
)
def test_parity_with_reference_pipeline(nlp, reference, settings):
    qa = nlp.get_pipe("albert_qa")
    for context, question in [(SHORT, QUESTIONS[0]), (LONG, QUESTIONS[2])]:
        theirs = reference(question=question, context=context, **WINDOW, **settings)
        assert_same_answers(qa.qa(question, context, **settings), theirs)
    # Through docs too: several questions per doc, answers best first per question.
    component = AlbertQuestionAnswering(nlp.vocab, qa.model, settings=dataclasses.replace(qa.settings, **settings))
    doc = nlp.make_doc(LONG)
    doc._.questions = QUESTIONS
    component(doc)
    for question in QUESTIONS:
        entries = [e for e in doc._.qa_answers if e["question"] == question]
        assert [e["rank"] for e in entries] == list(range(len(entries)))
        assert_same_answers(entries, reference(question=question, context=LONG, **WINDOW, **settings))


def test_long_context_uses_several_windows(nlp):
    qa = nlp.get_pipe("albert_qa")
    items = qa._items(LONG, [QUESTIONS[2]], qa.settings)
    windows = items[0].windows
    assert len(windows) > 2 and all(len(w.input_ids) <= 64 for w in windows)
    # Consecutive windows overlap by doc_stride pieces; the last reaches the end.
    assert all(a.end - b.start == 16 for a, b in zip(windows, windows[1:]))
    assert windows[-1].end == len(items[0].context.ids)
    assert window_ranges(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert window_ranges(10, 4, 9) == window_ranges(10, 4, 2)  # a stride beyond the room is halved


def test_long_questions_are_truncated_like_the_reference(nlp, reference):
    qa = nlp.get_pipe("albert_qa")
    question = "Where does the old house stand and who lives in it with her mother and father today?"
    enc = albert_state(qa.encoder).backend.encode(question, add_special_tokens=False)
    # Cut at a word end, so that the cut text tokenizes to the same first pieces.
    n = next(i + 1 for i in range(8, len(enc.ids) - 1) if enc.word_ids[i] != enc.word_ids[i + 1])
    assert n < len(enc.ids)
    ours = qa.qa(question, LONG, top_k=3, max_question_len=n)
    cut = question[: enc.offsets[n - 1][1]]
    assert_same_answers(ours, reference(question=cut, context=LONG, top_k=3, **WINDOW))
    # A question longer than a window still leaves room for context.
    items = qa._items(LONG, [question * 4], dataclasses.replace(qa.settings, max_question_len=500))
    assert all(len(w.input_ids) <= 64 and w.end > w.start for w in items[0].windows)


def test_null_score_threshold(nlp):
    qa = nlp.get_pipe("albert_qa")
    base = as_list(qa.qa(QUESTIONS[0], SHORT, top_k=5, handle_impossible_answer=True))
    null = next(a for a in base if a["answer"] == "")
    best = max(a["score"] for a in base if a["answer"])
    favour_null = as_list(qa.qa(QUESTIONS[0], SHORT, top_k=5, handle_impossible_answer=True,
                                null_score_threshold=null["score"] - best - 1e-3))  # fmt: skip
    assert favour_null[0]["answer"] == ""
    against_null = as_list(
        qa.qa(QUESTIONS[0], SHORT, top_k=50, handle_impossible_answer=True, null_score_threshold=1.0)
    )
    assert against_null[0]["answer"] != "" and [a["answer"] for a in against_null].index("") > 0


# ---- docs, spans and extensions -------------------------------------------------------------


def test_doc_answers_spans_and_extensions(nlp):
    doc = nlp.make_doc(SHORT)
    doc._.questions = QUESTIONS[0]  # a single string is accepted
    nlp.get_pipe("albert_qa")(doc)
    (entry,) = doc._.qa_answers
    assert set(entry) == {"question", "answer", "start", "end", "score", "rank"}
    assert entry["answer"] == SHORT[entry["start"] : entry["end"]] and entry["rank"] == 0
    (span,) = doc.spans["answers"]
    assert span.label_ == QUESTIONS[0] and span.text == entry["answer"].strip()
    assert (span._.qa_question, span._.qa_answer, span._.qa_start, span._.qa_end, span._.qa_score, span._.qa_rank) == (
        entry["question"], entry["answer"], entry["start"], entry["end"], entry["score"], 0
    )  # fmt: skip


@pytest.mark.parametrize("text,questions", [
    (SHORT, None), (SHORT, []), (SHORT, ["", "   "]), ("", QUESTIONS), ("   \n ", QUESTIONS), ("\u3000\t\xa0", QUESTIONS),
])  # fmt: skip
def test_bad_input_gives_empty_answers(nlp, text, questions):
    doc = nlp.make_doc(text)
    doc._.questions = questions
    docs = list(nlp.pipe([doc, nlp.make_doc(SHORT)]))
    assert docs[0]._.qa_answers == [] and len(docs[0].spans["answers"]) == 0
    assert nlp.get_pipe("albert_qa").qa("Who?", "  ") == []


def test_settings_are_validated(nlp):
    qa = nlp.get_pipe("albert_qa")
    with pytest.raises(ValueError, match="top_k"):
        qa.qa(QUESTIONS[0], SHORT, top_k=0)
    with pytest.raises(ValueError, match="doc_stride"):
        make_nlp(initialize=False, doc_stride=100)


# ---- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_from_initialize_and_base_checkpoints(qa_checkpoint, albert_checkpoint, nlp, tmp_path):
    # A checkpoint with a QA head, given at initialize: the same answers as the model setting.
    from_init = make_nlp(init_checkpoint=qa_checkpoint).get_pipe("albert_qa")
    expected = nlp.get_pipe("albert_qa").qa(QUESTIONS[0], LONG, top_k=3)
    assert_same_answers(from_init.qa(QUESTIONS[0], LONG, top_k=3), expected)
    # A checkpoint without a QA head: its encoder, a new head, and the answers the reference
    # pipeline gives with those weights.
    base = make_nlp(albert_checkpoint).get_pipe("albert_qa")
    base.export(tmp_path / "export")
    model = hf.AlbertForQuestionAnswering.from_pretrained(tmp_path / "export").eval()
    encoder = hf.AlbertModel.from_pretrained(albert_checkpoint).state_dict()
    for name, weight in model.albert.state_dict().items():
        assert torch.equal(weight, encoder[name]), name
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(tmp_path / "export")
    ref = hf.pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    expected = ref(question=QUESTIONS[0], context=SHORT, top_k=2, **WINDOW)
    assert_same_answers(base.qa(QUESTIONS[0], SHORT, top_k=2), expected)
    with pytest.raises(AlbertError, match="no vocabulary yet: run nlp.initialize"):
        make_nlp(initialize=False).get_pipe("albert_qa").qa(QUESTIONS[0], SHORT)


# ---- training, serialization and export ---------------------------------------------------------

TRAIN = [
    (SHORT, [("Where does Alice live?", "Paris"), ("Who works in Berlin?", "Bob"), ("Who lives with Alice?", "her mother")]),
    ("The old house stands near the river, and the new school is in the city.",
     [("What stands near the river?", "The old house"), ("Where is the new school?", "in the city")]),
    (_filler(5, 3) + " The money was found under the table. " + _filler(3, 4),
     [("Where was the money found?", "under the table"), ("What was found under the table?", "The money")]),
    ("Nothing happened on that day at all.", [("Who won the war?", "")]),
]  # fmt: skip


def make_examples(nlp, data=TRAIN):
    examples = []
    for context, qas in data:
        reference = nlp.make_doc(context)
        reference._.questions = [q for q, _ in qas]
        reference._.qa_answers = [
            {"question": q, "answer": a, "start": context.index(a), "end": context.index(a) + len(a)}
            if a else {"question": q, "answer": "", "start": 0, "end": 0}
            for q, a in qas
        ]  # fmt: skip
        predicted = nlp.make_doc(context)
        predicted._.questions = reference._.questions
        examples.append(Example(predicted, reference))
    return examples


@pytest.fixture(scope="module")
def trained(qa_checkpoint):
    nlp = make_nlp(qa_checkpoint, handle_impossible_answer=True)
    examples = make_examples(nlp)
    qa = nlp.get_pipe("albert_qa")
    assert len(qa._items(TRAIN[2][0], ["x"], qa.settings)[0].windows) > 1  # an answer in a later window
    before = nlp.evaluate(examples)
    optimizer = Adam(0.003)
    history = []
    random.seed(0)
    for _ in range(40):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        history.append(losses["albert_qa"])
    return nlp, history, before, nlp.evaluate(make_examples(nlp))


def test_component_learns(trained):
    nlp, history, before, after = trained
    assert history[-1] < 0.25 * history[0]
    assert after["qa_f1"] > before["qa_f1"] and after["qa_exact"] > before["qa_exact"]
    assert after["qa_f1"] >= 0.8 and after["qa_exact"] >= 0.6


def _predictions(nlp):
    docs = []
    for context, qas in TRAIN:
        doc = nlp.make_doc(context)
        doc._.questions = [q for q, _ in qas]
        docs.append(doc)
    return [doc._.qa_answers for doc in nlp.pipe(docs)]


def test_save_load_and_bytes_keep_predictions(trained, tmp_path):
    nlp = trained[0]
    expected = _predictions(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    assert _predictions(spacy.load(tmp_path / "pipeline")) == expected
    fresh = make_nlp(initialize=False, handle_impossible_answer=True)
    assert _predictions(fresh.from_bytes(nlp.to_bytes())) == expected


def _run_window(model, window, **kwargs):
    """A transformers model on one window alone (no padding)."""
    ids, types = torch.tensor([window.input_ids]), torch.tensor([window.token_type_ids])
    return model(input_ids=ids, token_type_ids=types, **kwargs)


def test_export_to_transformers(trained, tmp_path):
    qa = trained[0].get_pipe("albert_qa")
    qa.export(tmp_path / "export")
    model = hf.AlbertForQuestionAnswering.from_pretrained(tmp_path / "export").eval()
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(tmp_path / "export")
    # The component's logits of each window (packed, no padding) are the exported model's.
    items = qa._items(TRAIN[2][0], [QUESTIONS[0], QUESTIONS[1]], qa.settings)
    windows = [w for item in items for w in item.windows]
    assert len(windows) > 2
    ours = qa._logits(windows)
    with torch.no_grad():
        for window, logits in zip(windows, ours):
            out = _run_window(model, window)
            theirs = torch.stack([out.start_logits[0], out.end_logits[0]], dim=1).numpy()
            np.testing.assert_allclose(logits, theirs, atol=1e-5, rtol=0)
    # ... and the tokenizer's: a padded batch of the reference's own inputs.
    inputs = tokenizer([QUESTIONS[0], QUESTIONS[1]], [SHORT, TRAIN[1][0]], padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**inputs)
    sequences = [ids[mask.bool()].numpy() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    types = [t[mask.bool()].numpy() for t, mask in zip(inputs["token_type_ids"], inputs["attention_mask"])]
    logits = qa.model.ops.to_numpy(qa.model.predict(PieceSequences(ids=sequences, type_ids=types)))
    for i, part in enumerate(np.split(logits, np.cumsum([len(x) for x in sequences])[:-1])):
        n = len(part)
        np.testing.assert_allclose(part[:, 0], theirs.start_logits[i, :n].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(part[:, 1], theirs.end_logits[i, :n].numpy(), atol=1e-5, rtol=0)
    ref = hf.pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    expected = ref(question=QUESTIONS[0], context=SHORT, top_k=2, **WINDOW)
    assert_same_answers(qa.qa(QUESTIONS[0], SHORT, top_k=2), expected)


# ---- loss, dropout and thinc training ----------------------------------------------------------


def _window_targets(qa, examples):
    """The training windows of `examples` with their target positions, and each window's
    first row in the concatenated positions."""
    features = qa._training_windows(examples)
    lengths = [len(w.input_ids) for w, _, _ in features]
    return features, np.cumsum(lengths) - lengths


def test_get_loss_is_the_reference_loss_with_its_gradient(qa_checkpoint):
    """`get_loss` on `predict`'s scores: the mean over windows of the reference model's own
    loss on each window alone (AlbertForQuestionAnswering with start/end positions, no
    padding), and its gradient is torch autograd's and a finite difference's. On
    `begin_update`'s scores (no dropout anywhere) it is the same, and backprop reaches the
    head and the encoder."""
    nlp = make_nlp(qa_checkpoint, handle_impossible_answer=True)
    qa = nlp.get_pipe("albert_qa")
    examples = make_examples(nlp)
    features, offsets = _window_targets(qa, examples)
    targets = {(s, e) for _, s, e in features}
    assert len(features) > len(TRAIN) + 2 and (0, 0) in targets and len(targets) > 3  # answers in and out of windows
    scores = qa.predict([eg.predicted for eg in examples])
    loss, d_scores = qa.get_loss(examples, scores)
    flat = np.concatenate(scores.logits)
    assert d_scores.shape == flat.shape and d_scores.dtype == np.float32

    reference = hf.AlbertForQuestionAnswering.from_pretrained(qa_checkpoint).eval()
    expected = []
    with torch.no_grad():
        for window, start, end in features:
            targets = {"start_positions": torch.tensor([start]), "end_positions": torch.tensor([end])}
            out = _run_window(reference, window, **targets)
            expected.append(float(out.loss))
    assert loss == pytest.approx(float(np.mean(expected)), rel=1e-5)

    logits = torch.tensor(flat, dtype=torch.float64, requires_grad=True)
    total = 0
    for (window, start, end), offset in zip(features, offsets):
        part = logits[offset : offset + len(window.input_ids)]
        ce = torch.nn.functional.cross_entropy
        total = total + (ce(part[None, :, 0], torch.tensor([start])) + ce(part[None, :, 1], torch.tensor([end]))) / 2
    total = total / len(features)
    total.backward()
    assert loss == pytest.approx(float(total.detach()), rel=1e-6)
    np.testing.assert_allclose(d_scores, logits.grad.numpy(), atol=1e-7, rtol=1e-4)
    # Finite differences on a target entry (a later window's start) and a non-target one.
    _, start, _ = features[-1]
    for row, col in [(offsets[-1] + start, 0), (offsets[1] + 2, 1)]:
        eps, bumped = 1e-2, []
        for sign in (1, -1):
            moved = flat.copy()
            moved[row, col] += sign * eps
            bumped.append(qa.get_loss(examples, moved)[0])
        assert (bumped[0] - bumped[1]) / (2 * eps) == pytest.approx(float(d_scores[row, col]), abs=2e-5)

    # The same scores as one array, as begin_update gives them; a mismatch is refused.
    assert qa.get_loss(examples, flat)[0] == loss and qa.get_loss(examples, scores.logits)[0] == loss
    with pytest.raises(ValueError, match="positions"):
        qa.get_loss(examples, flat[:-1])
    assert qa.get_loss([], np.zeros((0, 2), "f"))[0] == 0.0
    train_scores, backprop = qa.model.begin_update(qa_inputs([w for w, _, _ in features]))
    train_loss, d_train = qa.get_loss(examples, train_scores)
    assert train_loss == pytest.approx(loss, rel=1e-5)
    backprop(d_train)
    assert np.abs(qa.model.get_ref("qa_outputs").get_grad("W")).sum() > 0
    encoder = get_torch_encoder(qa.encoder)
    assert encoder.albert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # The reference's padded batch: its loss runs its softmax over the padding positions too
    # (a different number; no test depends on it); over each window's own positions, its
    # logits give this loss.
    inputs = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    longest = max(len(w.input_ids) for w, _, _ in features)
    for window, _, _ in features:
        pad = longest - len(window.input_ids)
        inputs["input_ids"].append(window.input_ids + [0] * pad)
        inputs["token_type_ids"].append(window.token_type_ids + [0] * pad)
        inputs["attention_mask"].append([1] * len(window.input_ids) + [0] * pad)
    starts, ends = torch.tensor([s for _, s, _ in features]), torch.tensor([e for _, _, e in features])
    with torch.no_grad():
        out = reference(**{k: torch.tensor(v) for k, v in inputs.items()}, start_positions=starts, end_positions=ends)
    assert np.isfinite(float(out.loss)) and float(out.loss) != pytest.approx(loss, rel=1e-3)
    own = []
    for i, (window, _, _) in enumerate(features):
        n, row = len(window.input_ids), slice(i, i + 1)
        own.append((ce(out.start_logits[row, :n], starts[row]) + ce(out.end_logits[row, :n], ends[row])) / 2)
    assert float(torch.stack(own).mean()) == pytest.approx(loss, rel=1e-5)


def _one_update(data, examples_data, drop, encoder):
    nlp = make_nlp(initialize=False, handle_impossible_answer=True, encoder=encoder).from_bytes(data)
    examples = make_examples(nlp, examples_data)
    spacy.util.fix_random_seed(0)
    losses = nlp.update(examples, drop=drop, sgd=Adam(0.001))
    qa = nlp.get_pipe("albert_qa")
    weights = (qa.model.get_ref("qa_outputs").get_param("W").copy(),
               get_torch_encoder(qa.encoder).albert.embeddings.word_embeddings.weight.detach().clone())  # fmt: skip
    return losses["albert_qa"], weights, nlp


@pytest.mark.parametrize("encoder_dropout", [0.0, 0.1])
def test_update_is_reproducible_and_honours_drop(qa_checkpoint, encoder_dropout):
    """From the same saved state and seed, `nlp.update(drop=0.0)` twice gives the same loss
    and weights; `drop=0.1` (the head's dropout) another loss. Without encoder dropout, the
    drop=0.0 loss is `get_loss` on `predict`'s scores."""
    encoder = {"hidden_dropout_prob": encoder_dropout}
    base = make_nlp(qa_checkpoint, handle_impossible_answer=True, encoder=encoder)
    data = base.to_bytes()
    loss, weights, nlp = _one_update(data, TRAIN, 0.0, encoder)
    again, again_weights, _ = _one_update(data, TRAIN, 0.0, encoder)
    assert again == loss
    assert np.array_equal(again_weights[0], weights[0]) and torch.equal(again_weights[1], weights[1])
    start = base.get_pipe("albert_qa").model.get_ref("qa_outputs").get_param("W")
    assert not np.array_equal(weights[0], start)  # the optimizer stepped
    dropped, dropped_weights, _ = _one_update(data, TRAIN, 0.1, encoder)
    assert dropped != loss and not np.array_equal(dropped_weights[0], weights[0])
    examples = make_examples(base)
    qa = base.get_pipe("albert_qa")
    eval_loss = qa.get_loss(examples, qa.predict([eg.predicted for eg in examples]))[0]
    if encoder_dropout == 0.0:
        assert loss == pytest.approx(eval_loss, rel=1e-5)
    else:  # the encoder's own dropout acts in training (and the seed fixes it)
        assert loss != pytest.approx(eval_loss, rel=1e-4)


RECORDED: dict = {}


@spacy.registry.loggers("test_qa.record_losses.v1")
def record_losses(run: str):
    """A training logger that keeps each step's losses under `run` (in RECORDED)."""

    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        RECORDED[run] = []

        def log_step(info):
            if info is not None:
                RECORDED[run].append(info["losses"].get("albert_qa"))

        return log_step, lambda: None

    return setup


def test_spacy_train_takes_the_training_dropout(tmp_path, corpus_files, qa_checkpoint):
    """`spacy train` (its training loop) with the shipped config: the same seed and
    `[training] dropout = 0.0` twice give the same losses and weights, 0.3 others."""
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train

    train_path, dev_path = corpus_files

    def run(name, dropout):
        overrides = {
            "paths.train": str(train_path), "paths.dev": str(dev_path), "paths.checkpoint": str(qa_checkpoint),
            "components.albert_qa.max_seq_len": 64, "components.albert_qa.doc_stride": 16,
            "training.dropout": dropout, "training.max_steps": 2, "training.eval_frequency": 1,
            "training.optimizer.learn_rate.warmup_steps": 1, "training.optimizer.learn_rate.total_steps": 2,
            "training.optimizer.learn_rate.initial_rate": 0.001,
            "training.logger": {"@loggers": "test_qa.record_losses.v1", "run": name},
        }  # fmt: skip
        config = spacy.util.load_config(CONFIG, overrides=overrides, interpolate=False)
        nlp, _ = train(init_nlp(config), None, stdout=io.StringIO(), stderr=io.StringIO())
        return RECORDED[name], nlp.get_pipe("albert_qa").model.get_ref("qa_outputs").get_param("W").copy()

    losses, weights = run("a", 0.0)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    again, again_weights = run("b", 0.0)
    assert again == losses and np.array_equal(again_weights, weights)
    dropped, dropped_weights = run("c", 0.3)
    assert dropped[0] != losses[0] and not np.array_equal(dropped_weights, weights)


# ---- SQuAD conversion ---------------------------------------------------------------------------

SQUAD_V1 = {
    "version": "1.1",
    "data": [{"title": "T", "paragraphs": [
        {"context": "Alice lives in Paris. Bob lives in Berlin.", "qas": [
            {"id": "q1", "question": "Where does Alice live?", "answers": [
                {"text": "Paris", "answer_start": 15}, {"text": "in Paris", "answer_start": 12},
                {"text": "Paris", "answer_start": 3}]},  # a wrong offset, moved to the text
            {"id": "q2", "question": "Where does Bob live?", "answers": [{"text": "Berlin", "answer_start": 35}]}]},
        {"context": "The café is open.", "qas": [
            {"id": "q3", "question": "What is open?", "answers": [{"text": "The café", "answer_start": 0}]}]},
    ]}],
}  # fmt: skip
SQUAD_V2 = {
    "version": "v2.0",
    "data": [{"title": "T", "paragraphs": [{"context": "Bob works in Berlin.", "qas": [
        {"id": "a", "question": "Where does Bob work?", "answers": [{"text": "Berlin", "answer_start": 13}],
         "is_impossible": False},
        {"id": "b", "question": "Where does Carol work?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Berlin", "answer_start": 13}]},
    ]}]}],
}  # fmt: skip


def test_squad_v1_to_docs():
    docs = squad_to_docs(json.dumps(SQUAD_V1))
    assert [d.text for d in docs] == ["Alice lives in Paris. Bob lives in Berlin.", "The café is open."]
    doc = docs[0]
    assert doc._.questions == ["Where does Alice live?", "Where does Bob live?"]
    assert [(e["question"], e["answer"], e["start"], e["end"]) for e in doc._.qa_answers] == [
        ("Where does Alice live?", "Paris", 15, 20), ("Where does Alice live?", "in Paris", 12, 20),
        ("Where does Alice live?", "Paris", 15, 20), ("Where does Bob live?", "Berlin", 35, 41),
    ]  # fmt: skip
    span = doc.spans["answers"][-1]
    assert (span.text, span.label_, span._.qa_answer, span._.qa_start) == ("Berlin", "Where does Bob live?", "Berlin", 35)


def test_squad_v2_and_docbin_round_trip(tmp_path):
    (tmp_path / "v2.json").write_text(json.dumps(SQUAD_V2), encoding="utf-8")
    assert convert_squad(tmp_path / "v2.json", tmp_path / "v2.spacy") == 1
    nlp = spacy.blank("en")
    (doc,) = DocBin().from_disk(tmp_path / "v2.spacy").get_docs(nlp.vocab)
    # (msgpack gives the lists back as tuples)
    assert list(doc._.questions) == ["Where does Bob work?", "Where does Carol work?"]
    impossible = doc._.qa_answers[1]
    assert impossible["answer"] == "" and impossible["is_impossible"]
    assert list(impossible["plausible_answers"]) == [{"answer": "Berlin", "start": 13, "end": 19}]
    (span,) = doc.spans["answers"]
    assert (span.text, span.label_, span._.qa_start) == ("Berlin", "Where does Bob work?", 13)
    assert span._.qa_question == "Where does Bob work?" and span._.qa_answer == "Berlin"
    # The scorer reads these golds: a perfect prediction scores 1.
    predicted = nlp.make_doc(doc.text)
    predicted._.qa_answers = [{"question": "Where does Bob work?", "answer": "Berlin", "start": 13, "end": 19},
                              {"question": "Where does Carol work?", "answer": "", "start": 0, "end": 0}]  # fmt: skip
    assert score_qa([Example(predicted, doc)]) == {"qa_exact": 1.0, "qa_f1": 1.0}


# ---- scorer -------------------------------------------------------------------------------------


def test_official_normalisation_and_scores():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an Apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("  theory  ") == "theory"  # "the" only as a word
    assert exact_score("The Cat", "cat.") == 1 and exact_score("cat", "cats") == 0
    assert f1_score("the big red cat", "red cat sat") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert f1_score("", "") == 1.0 and f1_score("", "cat") == 0.0 and f1_score("a", "the") == 1.0


def test_scorer_takes_the_best_gold_and_handles_impossible_questions():
    nlp = spacy.blank("en")
    text = "Alice lives in Paris with her mother."
    reference = nlp.make_doc(text)
    reference._.questions = ["Where?", "With whom?", "Why?", "When?"]
    reference._.qa_answers = [
        {"question": "Where?", "answer": "in Paris", "start": 12, "end": 20},
        {"question": "Where?", "answer": "Paris", "start": 15, "end": 20},
        {"question": "With whom?", "answer": "her mother", "start": 26, "end": 36},
        {"question": "Why?", "answer": "", "start": 0, "end": 0},
    ]  # "When?" has no gold answer: unanswerable
    predicted = nlp.make_doc(text)
    predicted._.qa_answers = [
        {"question": "Where?", "answer": " Paris", "start": 14, "end": 20, "rank": 0},
        {"question": "Where?", "answer": "lives", "start": 6, "end": 11, "rank": 1},
        {"question": "With whom?", "answer": " mother.", "start": 29, "end": 37, "rank": 0},
        {"question": "Why?", "answer": "", "start": 0, "end": 0, "rank": 0},
        {"question": "When?", "answer": "Alice", "start": 0, "end": 5, "rank": 0},
    ]
    scores = score_qa([Example(predicted, reference)])
    assert scores["qa_exact"] == pytest.approx(2 / 4)
    assert scores["qa_f1"] == pytest.approx((1 + 2 * 0.5 * 1 / 1.5 + 1 + 0) / 4)
    # Gold spans without `_.qa_answers` also work; a question without prediction answers "".
    reference._.qa_answers = None
    reference.spans["answers"] = [reference.char_span(15, 20, label="Where?")]
    predicted._.qa_answers = []
    assert score_qa([Example(predicted, reference)]) == {"qa_exact": 0.75, "qa_f1": 0.75}


# ---- the training config -------------------------------------------------------------------------


def _write_corpus(nlp, path, data):
    DocBin(store_user_data=True, docs=[eg.reference for eg in make_examples(nlp, data)]).to_disk(path)


def _spacy_cli(args, tmp_path, timeout):
    # One thread: the same numbers on any machine's core count.
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def corpus_files(tmp_path):
    nlp = spacy.blank("en")
    _write_corpus(nlp, tmp_path / "train.spacy", TRAIN)
    _write_corpus(nlp, tmp_path / "dev.spacy", TRAIN[:2])
    return tmp_path / "train.spacy", tmp_path / "dev.spacy"


def test_debug_config_passes(tmp_path, corpus_files, qa_checkpoint):
    train, dev = corpus_files
    proc = _spacy_cli(["debug", "config", str(CONFIG), "--paths.train", str(train), "--paths.dev", str(dev),
                       "--paths.checkpoint", str(qa_checkpoint)], tmp_path, timeout=60)  # fmt: skip
    assert "Config is valid" in proc.stdout


@pytest.mark.slow
def test_spacy_train_with_the_config(tmp_path, corpus_files, qa_checkpoint):
    train, dev = corpus_files
    output, log = tmp_path / "output", tmp_path / "train.jsonl"
    overrides = [
        "--paths.train", train, "--paths.dev", dev, "--paths.checkpoint", qa_checkpoint,
        "--components.albert_qa.max_seq_len", "64", "--components.albert_qa.doc_stride", "16",
        "--training.max_steps", "9", "--training.eval_frequency", "3",
        "--training.optimizer.learn_rate.warmup_steps", "2", "--training.optimizer.learn_rate.total_steps", "9",
        "--training.optimizer.learn_rate.initial_rate", "0.001",
        "--training.logger.@loggers=spacy.ConsoleLogger.v3", f"--training.logger.output_file={log}",
        "--training.logger.progress_bar=null",
    ]  # fmt: skip
    _spacy_cli(["train", str(CONFIG), "--output", str(output), *map(str, overrides)], tmp_path, timeout=180)
    # Step 0 is scored after an update at learn rate 0 (the warm-up's start): the checkpoint.
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    # (9 steps: with the padded loss of the old task model, 6 were enough for the answer below;
    # the packed loss, without padding positions in its softmax, takes a few more.)
    assert [e["step"] for e in evaluations] == [0, 3, 6, 9]
    best = max(e["score"] for e in evaluations)
    assert best > evaluations[0]["score"]
    nlp = spacy.load(output / "model-best")
    # The saved pipeline scores what training logged for it on the dev set.
    assert nlp.evaluate(make_examples(nlp, TRAIN[:2]))["qa_f1"] == pytest.approx(best)
    doc = nlp.make_doc(SHORT)
    doc._.questions = QUESTIONS[:2]
    doc = nlp(doc)
    assert [e["question"] for e in doc._.qa_answers] == QUESTIONS[:2]
    assert all(e["answer"] == SHORT[e["start"] : e["end"]] for e in doc._.qa_answers)
    assert exact_score(doc._.qa_answers[0]["answer"], "Paris") == 1  # a known answer: "Where does Alice live?"


def test_shares_of_a_batch_add_up_to_its_loss_and_gradient(qa_checkpoint, monkeypatch):
    """Data-parallel training (`python -m spacy_albert train` under torchrun): each rank's
    get_loss on its share of the batch, normalised by the whole batch's number of windows
    (`global_count`), adds up to the one-process loss and gradient."""
    import spacy_albert.pipeline.qa.component as module

    nlp = make_nlp(qa_checkpoint, handle_impossible_answer=True)
    qa = nlp.get_pipe("albert_qa")
    examples = make_examples(nlp)
    positions = [sum(len(w.input_ids) for w, _, _ in qa._training_windows([eg])) for eg in examples]
    n_windows = len(qa._training_windows(examples))

    def blocks(gradient, which):  # the gradient rows of each example of `which`
        bounds = np.cumsum([0] + [positions[i] for i in which])
        return dict(zip(which, (gradient[a:b] for a, b in zip(bounds[:-1], bounds[1:]))))

    everything = list(range(len(examples)))
    loss, d_scores = qa.get_loss(examples, qa.predict([eg.predicted for eg in examples]))
    expected = blocks(d_scores, everything)
    monkeypatch.setattr(module, "global_count", lambda n: n_windows)  # the all-reduce of two ranks
    total = 0.0
    for share in (everything[0::2], everything[1::2]):
        part = [examples[i] for i in share]
        part_loss, part_grad = qa.get_loss(part, qa.predict([eg.predicted for eg in part]))
        total += part_loss
        for i, block in blocks(part_grad, share).items():
            np.testing.assert_allclose(block, expected[i], rtol=1e-5, atol=1e-8)
    assert total == pytest.approx(loss, rel=1e-6)
