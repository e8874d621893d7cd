"""`convert` (CoNLL/IOB NER, SQuAD, TSV/JSONL classification to .spacy) and `export` (a trained
pipeline's component to a transformers checkpoint) on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_albert.cli import app

from conftest import TINY_ALBERT, first_piece_logits

runner = CliRunner()

CONLL = (
    "-DOCSTART- -X- -X- O\n"  # CoNLL-2003's document line (not spaCy's "-DOCSTART- -X- O O")
    "\n"
    "Alice\tB-PER\n"
    "lives\tO\n"
    "in\tO\n"
    "Zürich\tB-LOC\n"
    ".\tO\n"
    "\t\n"  # WNUT-17's sentence break: a line holding a single TAB
    "New\tI-LOC\n"  # IOB1: an entity may start with I-
    "York\tI-LOC\n"
    "Berlin\tB-LOC\n"  # IOB1: B- only where an entity follows one of the same type
    "und\tO\n"
    "東京\tI-LOC\n"
    "   \n"
    "\n"
    "\n"
    "@user\tO\n"
    "likes\tO\n"
    "Star\tB-creative-work\n"
    "Wars\tI-creative-work\n"
    "😀\tO\n"
    "\n"
    "-DOCSTART-\tO\n"
    "Bob\tB-PER\n"
    "Dylan\tI-PER\n"
    "sang\tO\n"
)
CONLL_ENTS = [
    ("Alice", "PER"), ("Zürich", "LOC"), ("New York", "LOC"), ("Berlin", "LOC"), ("東京", "LOC"),
    ("Star Wars", "creative-work"), ("Bob Dylan", "PER"),
]  # fmt: skip


def invoke(*args) -> "object":
    return runner.invoke(app, [str(a) for a in args])


def read_docs(path: Path, nlp=None) -> list:
    nlp = nlp or spacy.blank("en")
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def ents(docs) -> list:
    return [(e.text, e.label_) for doc in docs for e in doc.ents]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.output


def fails(result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    message = result.stderr
    assert message.startswith(("convert: ", "export: ")) and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- convert: NER -----------------------------------------------------------------------------
def test_convert_conll_groups_sentences_per_document(tmp_path):
    source = write(tmp_path / "train.conll", CONLL)
    out = ok(invoke("convert", source, tmp_path / "train.spacy", "--format", "conll", "--n-sents", "2"))
    docs = read_docs(tmp_path / "train.spacy")
    assert ents(docs) == CONLL_ENTS
    # Three sentences in the first document (2 + 1 per Doc), one in the second: never merged.
    assert [len(list(doc.sents)) for doc in docs] == [2, 1, 1]
    assert [t.text for t in docs[0]][:5] == ["Alice", "lives", "in", "Zürich", "."]
    assert "Wrote 3 docs (4 sentences, 7 entities)" in out
    assert "Labels (3): LOC, PER, creative-work" in out

    # --n-sents 0: one Doc per -DOCSTART- document; iob accepts the same columns.
    ok(invoke("convert", source, tmp_path / "docs.spacy", "-f", "iob", "-n", "0"))
    docs = read_docs(tmp_path / "docs.spacy")
    assert [len(list(doc.sents)) for doc in docs] == [3, 1] and ents(docs) == CONLL_ENTS


def test_convert_conll_without_docstart_and_bioes(tmp_path):
    text = "\n\n".join(f"w{i}\tO\nAnn\tS-PER\nvon\tB-PER\nX\tE-PER" for i in range(5)) + "\n"
    ok(invoke("convert", write(tmp_path / "a.conll", text.replace("\n", "\r\n")), tmp_path / "out", "-f", "conll"))
    docs = read_docs(tmp_path / "out")  # OUTPUT is written as given
    assert len(docs) == 1 and len(list(docs[0].sents)) == 5
    assert ents(docs)[:2] == [("Ann", "PER"), ("von X", "PER")] and len(ents(docs)) == 10


def test_convert_spacy_iob_lines(tmp_path):
    text = "I|O like|O London|I-GPE and|O New|B-GPE York|I-GPE City|I-GPE .|O\n\nBob|B-PER ran|O\n"
    out = ok(invoke("convert", write(tmp_path / "a.iob", text), tmp_path / "a.spacy", "--format", "iob", "-n", "1"))
    docs = read_docs(tmp_path / "a.spacy")
    assert len(docs) == 2 and ents(docs) == [("London", "GPE"), ("New York City", "GPE"), ("Bob", "PER")]
    assert "Labels (2): GPE, PER" in out


def test_convert_conll_errors_name_the_line(tmp_path):
    source = write(tmp_path / "bad.conll", "Alice\tB-PER\nlives\n")
    fails(invoke("convert", source, tmp_path / "x.spacy", "-f", "conll"), "line 2", "token<TAB>tag")
    source = write(tmp_path / "bad2.conll", "Alice\tPER\n")
    fails(invoke("convert", source, tmp_path / "x.spacy", "-f", "conll"), "line 1", "'PER'")
    assert not (tmp_path / "x.spacy").exists()


# ---- convert: classification ------------------------------------------------------------------
def test_convert_tsv_with_header_and_dev_split(tmp_path):
    rows = [f'it is "good" number {i} \t{i % 2}' for i in range(20)]
    source = write(tmp_path / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n\t1\n")
    args = ["convert", source, tmp_path / "train.spacy", "-f", "tsv", "--dev-fraction", "0.25", "--dev-output", tmp_path / "dev.spacy"]
    result = ok(invoke(*args))
    assert "skipped 1 row(s) with an empty text" in result
    assert "Wrote 15 docs (15 examples)" in result and "Wrote 5 docs (5 examples)" in result and "Labels (2): 0, 1" in result
    train, dev = read_docs(tmp_path / "train.spacy"), read_docs(tmp_path / "dev.spacy")
    texts = [doc.text for doc in train + dev]
    assert sorted(texts) == sorted(r.split("\t")[0].strip() for r in rows)  # QUOTE_NONE: quotes kept
    for doc in train + dev:
        i = int(doc.text.split()[-1])
        assert doc.cats == {"0": float(i % 2 == 0), "1": float(i % 2 == 1)}
    # Seeded: the same split again, another with another seed.
    ok(invoke(*args[:-2], "--dev-output", tmp_path / "dev2.spacy"))
    assert [d.text for d in read_docs(tmp_path / "dev2.spacy")] == [d.text for d in dev]
    ok(invoke(*args[:-2], "--dev-output", tmp_path / "dev3.spacy", "--seed", "1"))
    assert [d.text for d in read_docs(tmp_path / "dev3.spacy")] != [d.text for d in dev]


def test_convert_tsv_headerless_multilabel_and_custom_fields(tmp_path):
    source = write(tmp_path / "a.tsv", "great film, loud music\tFILM,MUSIC\ntasty food\tFOOD\nboth\tFOOD|FILM\n")
    ok(invoke("convert", source, tmp_path / "a.spacy", "-f", "tsv", "--multilabel"))
    cats = [doc.cats for doc in read_docs(tmp_path / "a.spacy")]
    assert cats == [{"FILM": 1.0, "FOOD": 0.0, "MUSIC": 1.0}, {"FILM": 0.0, "FOOD": 1.0, "MUSIC": 0.0},
                    {"FILM": 1.0, "FOOD": 1.0, "MUSIC": 0.0}]  # fmt: skip
    source = write(tmp_path / "b.tsv", "id\tbody\ttopic\n1\tSome text\tsports\n2\tMore\tnews\n")
    ok(invoke("convert", source, tmp_path / "b.spacy", "-f", "tsv", "--text-field", "body", "--label-field", "topic"))
    docs = read_docs(tmp_path / "b.spacy")
    assert [(d.text, d.cats) for d in docs] == [("Some text", {"news": 0.0, "sports": 1.0}), ("More", {"news": 1.0, "sports": 0.0})]


def test_convert_tsv_missing_label_names_the_line(tmp_path):
    source = write(tmp_path / "a.tsv", "sentence\tlabel\ngood\t1\nbad\t0\nno label here\n")
    fails(invoke("convert", source, tmp_path / "a.spacy", "-f", "tsv"), "line 4", "no label")
    source = write(tmp_path / "b.tsv", "good\t1\nbad\t \n")
    fails(invoke("convert", source, tmp_path / "b.spacy", "-f", "tsv"), "line 2", "no label")


def test_convert_jsonl_label_labels_and_cats(tmp_path):
    records = [
        {"text": "I love it", "label": "POS"},
        {"text": "Ünïcödé hate", "labels": ["NEG"]},
        {"text": "meh", "cats": {"POS": 0.0, "NEG": 1.0, "NEU": 0.0}},
        {"text": "   ", "label": "POS"},
    ]
    source = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n")
    out = ok(invoke("convert", source, tmp_path / "a.spacy", "--format", "jsonl"))
    assert "skipped 1 row(s)" in out and "Labels (3): NEG, NEU, POS" in out
    docs = read_docs(tmp_path / "a.spacy")
    assert [(d.text, d.cats) for d in docs] == [
        ("I love it", {"NEG": 0.0, "NEU": 0.0, "POS": 1.0}),
        ("Ünïcödé hate", {"NEG": 1.0, "NEU": 0.0, "POS": 0.0}),
        ("meh", {"NEG": 1.0, "NEU": 0.0, "POS": 0.0}),
    ]
    multi = write(tmp_path / "m.jsonl", '{"text": "a", "labels": ["X", "Y"]}\n{"text": "b", "labels": []}\n')
    fails(invoke("convert", multi, tmp_path / "m.spacy", "-f", "jsonl"), "line 1", "--multilabel")
    ok(invoke("convert", multi, tmp_path / "m.spacy", "-f", "jsonl", "--multilabel"))
    assert [d.cats for d in read_docs(tmp_path / "m.spacy")] == [{"X": 1.0, "Y": 1.0}, {"X": 0.0, "Y": 0.0}]


def test_convert_jsonl_errors(tmp_path):
    source = write(tmp_path / "a.jsonl", '{"text": "fine", "label": "A"}\n{"text": "no label"}\n')
    fails(invoke("convert", source, tmp_path / "a.spacy", "-f", "jsonl"), "line 2", "no label")
    source = write(tmp_path / "b.jsonl", '{"text": "fine", "label": "A"}\n{"text": oops}\n')
    fails(invoke("convert", source, tmp_path / "b.spacy", "-f", "jsonl"), "line 2", "not JSON")


# ---- convert: SQuAD ---------------------------------------------------------------------------
def test_convert_squad_keeps_questions_and_answers(tmp_path):
    from spacy_albert.pipeline.qa import ANSWERS_EXT, QUESTIONS_EXT

    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": "Alice lives in Paris. Bob lives in Berlin.", "qas": [
            {"id": "q1", "question": "Where does Alice live?", "answers": [{"text": "Paris", "answer_start": 15}]},
            {"id": "q2", "question": "Where does Carol live?", "answers": [], "is_impossible": True}]},
        {"context": "The sky is blue.", "qas": [
            {"id": "q3", "question": "What colour is the sky?", "answers": [{"text": "blue", "answer_start": 11}]}]},
    ]}]}  # fmt: skip
    source = write(tmp_path / "dev-v2.0.json", json.dumps(squad))
    out = ok(invoke("convert", source, tmp_path / "dev.spacy", "-f", "squad"))
    assert "Wrote 2 docs (3 questions, 1 without an answer)" in out
    docs = read_docs(tmp_path / "dev.spacy")
    assert list(docs[0]._.get(QUESTIONS_EXT)) == ["Where does Alice live?", "Where does Carol live?"]
    answers = docs[0]._.get(ANSWERS_EXT)
    assert answers[0]["answer"] == "Paris" and answers[0]["start"] == 15 and answers[1]["is_impossible"]
    assert [s.text for s in docs[1].spans["answers"]] == ["blue"]
    fails(invoke("convert", write(tmp_path / "x.json", "[1, 2"), tmp_path / "x.spacy", "-f", "squad"), "not JSON")


# ---- convert: bad usage -----------------------------------------------------------------------
def test_convert_bad_usage(tmp_path):
    source = write(tmp_path / "a.tsv", "good\t1\nbad\t0\n")
    fails(invoke("convert", source, tmp_path / "a.spacy", "-f", "csv"), "unknown format 'csv'", "tsv")
    fails(invoke("convert", source, tmp_path / "a.spacy", "-f", "tsv", "--dev-fraction", "0.5"), "--dev-output")
    fails(invoke("convert", source, tmp_path / "a.spacy", "-f", "conll", "--multilabel"), "--multilabel")
    fails(invoke("convert", write(tmp_path / "e.tsv", "\n"), tmp_path / "a.spacy", "-f", "tsv"), "no examples")
    assert invoke("convert", tmp_path / "missing.tsv", tmp_path / "a.spacy", "-f", "tsv").exit_code == 2  # typer: exists=True


def test_commands_run_through_the_entry_points():
    """`spacy albert convert` (spaCy's `spacy_cli` entry point) and `python -m spacy_albert`."""
    spacy_script = Path(sys.executable).with_name("spacy")
    spacy_cmd = [str(spacy_script)] if spacy_script.exists() else [sys.executable, "-m", "spacy"]
    for cmd in (spacy_cmd + ["albert", "convert", "--help"], [sys.executable, "-m", "spacy_albert", "convert", "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
        assert "--format" in proc.stdout and "--dev-fraction" in proc.stdout, proc.stdout


# ---- export -----------------------------------------------------------------------------------
ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
NER_DATA = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
]
CAT_DATA = [("I love this film, great!", {"POS": 1.0, "NEG": 0.0}), ("Terrible and boring.", {"POS": 0.0, "NEG": 1.0})]
TEXTS = ["Bob visited Berlin yesterday.", "Zürich, 1,000,000 naïve cafés!"]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory, albert_checkpoint):
    """Two saved pipelines: `both` has a shared `albert` encoder, an `albert_ner` listening to
    it and an `albert_textcat` with its own encoder; `ner` has an `albert_ner` alone."""
    from spacy.training import Example
    from thinc.api import Adam

    spacy.util.fix_random_seed(0)
    root = tmp_path_factory.mktemp("pipelines")
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": ENCODER})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    listener = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"], "pooling": "first"}
    nlp.add_pipe("albert_ner", config={"model": {"@architectures": "spacy-albert.TokenClassifier.v1", "tok2vec": listener}})
    textcat_model = {"@architectures": "spacy-albert.SequenceClassifier.v1",
                     "tok2vec": {**ENCODER, "checkpoint": str(albert_checkpoint)}}  # fmt: skip
    nlp.add_pipe("albert_textcat", config={"model": textcat_model})
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e, "cats": c}) for (t, e), (_, c) in zip(NER_DATA, CAT_DATA)]
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.005)
    for _ in range(3):  # a few steps: trained weights differ from the checkpoint's
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(root / "both")

    single = spacy.blank("en")
    ner_model = {"@architectures": "spacy-albert.TokenClassifier.v1",
                 "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first",
                             "encoder": {**ENCODER, "checkpoint": str(albert_checkpoint)}}}  # fmt: skip
    single.add_pipe("albert_ner", config={"scheme": "BIO", "model": ner_model})
    single.initialize(lambda: [Example.from_dict(single.make_doc(t), {"entities": e}) for t, e in NER_DATA])
    single.to_disk(root / "ner")
    return root


def test_export_lists_candidates_and_rejects_unknown_components(pipelines, tmp_path):
    fails(invoke("export", pipelines / "both", tmp_path / "out"), "--component", "albert_ner, albert_textcat")
    fails(invoke("export", pipelines / "both", tmp_path / "out", "--component", "albert"), "'albert' is not exportable")
    fails(invoke("export", pipelines / "both", tmp_path / "out", "-c", "parser"), "'parser' is not in the pipeline", "albert_ner")
    fails(invoke("export", tmp_path / "missing", tmp_path / "out"), "cannot load", "missing")
    assert not (tmp_path / "out").exists()


def test_export_ner_through_the_shared_encoder(pipelines, tmp_path):
    import transformers as hf

    out = ok(invoke("export", pipelines / "both", tmp_path / "ner", "--component", "albert_ner"))
    nlp = spacy.load(pipelines / "both")
    ner = nlp.get_pipe("albert_ner")
    assert f"Exported 'albert_ner' (AlbertForTokenClassification, {len(ner.tags)} labels) to {tmp_path / 'ner'}" in out
    model = hf.AlbertForTokenClassification.from_pretrained(tmp_path / "ner").eval()
    assert model.config.id2label == dict(enumerate(ner.tags)) and "B-PER" in ner.tags
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(tmp_path / "ner")
    for text in TEXTS:
        doc = nlp.get_pipe("albert")(nlp.make_doc(text))
        np.testing.assert_allclose(ner.predict([doc])[0], first_piece_logits(model, tokenizer, doc), atol=1e-5)


def test_export_textcat(pipelines, tmp_path):
    import torch
    import transformers as hf

    out = ok(invoke("export", pipelines / "both", tmp_path / "cat", "-c", "albert_textcat"))
    assert "(AlbertForSequenceClassification, 2 labels)" in out
    nlp = spacy.load(pipelines / "both")
    textcat = nlp.get_pipe("albert_textcat")
    model = hf.AlbertForSequenceClassification.from_pretrained(tmp_path / "cat").eval()
    assert model.config.id2label == dict(enumerate(textcat.labels)) and set(textcat.labels) == {"POS", "NEG"}
    assert model.config.problem_type == "single_label_classification"
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(tmp_path / "cat")
    for text in TEXTS:
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy()
        np.testing.assert_allclose(textcat.model.predict([nlp.make_doc(text)])[0], logits, atol=1e-5)
        cats = nlp(text).cats
        np.testing.assert_allclose([cats[label] for label in textcat.labels], np.exp(logits) / np.exp(logits).sum(), atol=1e-5)


def test_export_picks_the_only_component(pipelines, tmp_path):
    import transformers as hf

    ok(invoke("export", pipelines / "ner", tmp_path / "out"))
    nlp = spacy.load(pipelines / "ner")
    ner = nlp.get_pipe("albert_ner")
    model = hf.AlbertForTokenClassification.from_pretrained(tmp_path / "out").eval()
    assert model.config.id2label == dict(enumerate(ner.tags)) == {0: "O", 1: "B-LOC", 2: "I-LOC", 3: "B-PER", 4: "I-PER"}
    doc = nlp.make_doc(TEXTS[1])
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(tmp_path / "out")
    np.testing.assert_allclose(ner.predict([doc])[0], first_piece_logits(model, tokenizer, doc), atol=1e-5)
