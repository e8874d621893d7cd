"""Command-line errors name the file, the line (or question id), the field and the fix: one line
on stderr, a non-zero exit, no traceback, no output file; and never silently wrong data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_albert.cli import app

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
LATIN1 = "café".encode("latin-1")  # b"caf\xe9": not UTF-8


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def fails(result, *fragments: str) -> str:
    """The one-line error of a command that exited with 1, checked to hold every fragment."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception  # no uncaught exception
    assert "Traceback" not in result.output
    message = result.stderr
    assert message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def usage_error(result, *fragments: str) -> str:
    """typer's usage error (exit 2) for a bad option value, checked to name it."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    message = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())  # unwrap rich's box
    for fragment in fragments:
        assert fragment in message, message
    return message


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def squad(answer_start: object = 14, **qa: object) -> str:
    question = {"id": "q1", "question": "Where does Alice live?", "answers": [{"text": "Paris", "answer_start": answer_start}]}
    paragraph = {"context": "Alice lives in Paris.", "qas": [{**question, **qa}]}
    return json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [paragraph]}]})


# ---- convert: tsv -----------------------------------------------------------------------------
def test_tsv_row_with_an_extra_cell_is_rejected(tmp_path):
    source = write(tmp_path / "reviews.tsv", "great\tPOS\nawful\tmovie, really\tNEG\n")
    fails(invoke("convert", source, tmp_path / "out.spacy", "-f", "tsv"), str(source), "line 2", "3 cells", "text<TAB>label")
    source = write(tmp_path / "header.tsv", "text\tlabel\ngreat\tPOS\nawful\tmovie, really\tNEG\n")
    fails(invoke("convert", source, tmp_path / "out.spacy", "-f", "tsv"), str(source), "line 3", "the header has 2")
    assert not (tmp_path / "out.spacy").exists()


def test_well_formed_tsv_keeps_its_labels(tmp_path):
    # trailing empty cells hold no data and are allowed; commas stay inside the text
    source = write(tmp_path / "a.tsv", "awful movie, really\tNEG\t\ngreat\tPOS\nfine\tPOS\n")
    result = invoke("convert", source, tmp_path / "a.spacy", "-f", "tsv")
    assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(tmp_path / "a.spacy").get_docs(spacy.blank("en").vocab))
    assert [(doc.text, doc.cats) for doc in docs] == [
        ("awful movie, really", {"NEG": 1.0, "POS": 0.0}),
        ("great", {"NEG": 0.0, "POS": 1.0}),
        ("fine", {"NEG": 0.0, "POS": 1.0}),
    ]
    assert "Labels (2): NEG, POS" in result.stdout


# ---- convert: non-UTF-8 input, every format ---------------------------------------------------
@pytest.mark.parametrize(
    "fmt, content",
    [
        ("tsv", b"good\tPOS\n" + LATIN1 + b"\tNEG\n"),
        ("jsonl", b'{"text": "good", "label": "POS"}\n{"text": "' + LATIN1 + b'", "label": "NEG"}\n'),
        ("conll", b"Alice\tB-PER\n" + LATIN1 + b"\tO\n"),
        ("iob", b"Alice|B-PER ran|O\n" + LATIN1 + b"|O\n"),
        ("squad", b'{"data": [\n{"paragraphs": [{"context": "' + LATIN1 + b'", "qas": []}]}]}'),
    ],
)
def test_non_utf8_input_names_file_and_line(tmp_path, fmt, content):
    source = write(tmp_path / f"data.{fmt}", content)
    fails(invoke("convert", source, tmp_path / "out.spacy", "-f", fmt), str(source), "line 2", "0xe9 is not UTF-8", "iconv")


# ---- convert: SQuAD ---------------------------------------------------------------------------
@pytest.mark.parametrize("answer_start, shown", [("12a", '"12a"'), (1.5, "1.5"), (True, "true"), (None, None)])
def test_squad_answer_start_must_be_an_int(tmp_path, answer_start, shown):
    source = write(tmp_path / "train.json", squad(answer_start))
    expected = f"'answer_start' must be a whole number, not {shown}" if shown else "'answer_start' is null"
    result = invoke("convert", source, tmp_path / "out.spacy", "-f", "squad")
    fails(result, str(source), "question 'q1'", "answers[0]", "'answer_start'", expected)


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"data": [{"paragraphs": [{"qas": []}]}]}, ["data[0].paragraphs[0]", "no 'context' field"]),
        ({"data": [{"paragraphs": [{"context": 5}]}]}, ["data[0].paragraphs[0]", "'context' must be a string"]),
        ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "q7"}]}]}]}, ["question 'q7'", "no 'question' field"]),
        ({"data": [{"paragraphs": [{"context": "x", "qas": [{"question": "?"}, {}]}]}]}, ["paragraphs[0].qas[1]", "'question'"]),
        ({"data": {}}, ["'data' must be a list"]),
        ([1, 2], ["expected a JSON object"]),
    ],
)
def test_squad_missing_or_mistyped_fields(tmp_path, data, fragments):
    source = write(tmp_path / "dev.json", json.dumps(data))
    fails(invoke("convert", source, tmp_path / "out.spacy", "-f", "squad"), str(source), *fragments)


def test_squad_other_field_types(tmp_path):
    source = write(tmp_path / "a.json", squad(is_impossible="no"))
    fails(invoke("convert", source, tmp_path / "o.spacy", "-f", "squad"), "question 'q1'", "'is_impossible' must be true")
    source = write(tmp_path / "b.json", squad(answers=[{"answer_start": 14}]))
    fails(invoke("convert", source, tmp_path / "o.spacy", "-f", "squad"), "question 'q1', answers[0]: no 'text' field")
    source = write(tmp_path / "c.json", '{"data": [\n  {"paragraphs": [}]}')
    fails(invoke("convert", source, tmp_path / "o.spacy", "-f", "squad"), str(source), "line 2, column", "not JSON")


def test_squad_library_raises_value_errors_naming_the_question():
    from spacy_albert.pipeline.squad import SquadError, squad_to_docs

    with pytest.raises(SquadError, match=r"question 'q1', answers\[0\]: 'answer_start'") as info:
        squad_to_docs(squad("12a"))
    assert isinstance(info.value, ValueError)
    (doc,) = squad_to_docs(squad(14))  # well-formed data still converts
    assert [span.text for span in doc.spans["answers"]] == ["Paris"]


# ---- convert: iob and jsonl fields ------------------------------------------------------------
def test_iob_fields_are_checked_on_every_line(tmp_path):
    for i, bad in enumerate(("ran", "ran|XX", "ran|O|x", "ran|E-PER")):
        source = write(tmp_path / f"{i}.iob", f"I|O like|O London|B-GPE\nBob|B-PER {bad}\n")
        fails(invoke("convert", source, tmp_path / "o.spacy", "-f", "iob"), str(source), "line 2", repr(bad), "IOB tag")


def test_jsonl_wrong_field_types(tmp_path):
    cases = [
        ('{"text": 12, "label": "A"}', "'text' must be a string"),
        ('{"body": "x", "label": "A"}', "no 'text' or 'sentence' field"),
        ('{"text": "x", "labels": [{"a": 1}]}', "labels must be strings or integers"),
        ('{"text": "x", "cats": {"A": "yes"}}', "'cats' score of 'A'"),
    ]
    for i, (record, fragment) in enumerate(cases):
        source = write(tmp_path / f"{i}.jsonl", '{"text": "fine", "label": "A"}\n' + record + "\n")
        fails(invoke("convert", source, tmp_path / "o.spacy", "-f", "jsonl"), str(source), "line 2", fragment)


# ---- configure --------------------------------------------------------------------------------
def checkpoint_dir(tmp_path: Path, **sizes: object) -> Path:
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    write(directory / "config.json", json.dumps({"model_type": "albert", "hidden_size": 64, "num_hidden_layers": 2, **sizes}))
    return directory


def test_configure_on_a_file_that_is_not_a_config(tmp_path):
    source = write(tmp_path / "notes.txt", "hello world\nthis is not a config\n")
    fails(invoke("configure", source, tmp_path / "out.cfg", "--checkpoint", checkpoint_dir(tmp_path)),
          str(source), "is not a spaCy config", "line 1", "configs/albert_ner.cfg")  # fmt: skip
    source = write(tmp_path / "dup.cfg", "[a]\nb = 1\nb = 2\n")
    fails(invoke("configure", source, tmp_path / "out.cfg", "--checkpoint", tmp_path / "checkpoint"), "line 3", "'b'")
    source = write(tmp_path / "plain.cfg", "[nlp]\nlang = \"en\"\n")
    fails(invoke("configure", source, tmp_path / "out.cfg", "--checkpoint", tmp_path / "checkpoint"),
          str(source), "spacy-albert.AlbertTransformer.v1")  # fmt: skip
    source = write(tmp_path / "latin1.cfg", b"[nlp]\nlang = \"" + LATIN1 + b"\"\n")
    fails(invoke("configure", source, tmp_path / "out.cfg", "--checkpoint", tmp_path / "checkpoint"), "line 2", "not UTF-8")
    assert not (tmp_path / "out.cfg").exists()


def test_configure_checkpoint_must_exist(tmp_path):
    config = CONFIGS / "albert_ner.cfg"
    missing = tmp_path / "no-such-checkpoint"
    result = invoke("configure", config, tmp_path / "out.cfg", "--checkpoint", missing)
    fails(result, "--checkpoint", str(missing), "does not exist")
    (tmp_path / "empty").mkdir()
    fails(invoke("configure", config, tmp_path / "out.cfg", "--checkpoint", tmp_path / "empty"), "has no config.json")
    broken = checkpoint_dir(tmp_path)
    write(broken / "config.json", "{oops")
    fails(invoke("configure", config, tmp_path / "out.cfg", "--checkpoint", broken), "config.json, line 1", "not JSON")
    assert not (tmp_path / "out.cfg").exists()
    usage_error(invoke("configure", config, tmp_path / "out.cfg"), "Missing option '--checkpoint'")


def test_configure_copies_the_checkpoint_sizes(tmp_path):
    from thinc.api import Config

    result = invoke("configure", CONFIGS / "albert_ner.cfg", tmp_path / "out.cfg", "--checkpoint", checkpoint_dir(tmp_path))
    assert result.exit_code == 0, result.output
    config = Config().from_disk(tmp_path / "out.cfg", interpolate=False)
    encoder = config["components"]["albert_ner"]["model"]["tok2vec"]["encoder"]
    assert (encoder["hidden_size"], encoder["num_hidden_layers"], encoder["embedding_size"]) == (64, 2, 128)


@pytest.mark.parametrize(
    "field, value", [("hidden_size", {"@readers": "spacy.Corpus.v1"}), ("num_hidden_layers", "${paths.train}"),
                     ("hidden_size", 0), ("hidden_size", True), ("hidden_act", "os.system")],
)  # fmt: skip
def test_configure_takes_only_plain_sizes_from_a_checkpoint(tmp_path, field, value):
    result = invoke("configure", CONFIGS / "albert_ner.cfg", tmp_path / "out.cfg", "--checkpoint",
                    checkpoint_dir(tmp_path, **{field: value}))  # fmt: skip
    fails(result, "config.json", field, "must be")
    assert not (tmp_path / "out.cfg").exists()


# ---- train-vocab, pretrain, evaluate-pretraining ----------------------------------------------
def test_text_inputs_must_be_utf8(tmp_path):
    text = write(tmp_path / "corpus.txt", b"A first sentence.\n\n" + LATIN1 + b" au lait.\n")
    fails(invoke("train-vocab", text, "-o", tmp_path / "vocab"), "train-vocab: ", str(text), "line 3", "not UTF-8")
    fails(invoke("pretrain", tmp_path, "--vocab", tmp_path, "-o", tmp_path / "out"), "pretrain: ", str(text), "line 3")
    fails(invoke("evaluate-pretraining", tmp_path, text), "evaluate-pretraining: ", str(text), "line 3")
    assert not (tmp_path / "vocab").exists() and not (tmp_path / "out").exists()


def test_output_directories_that_are_files(tmp_path):
    text = write(tmp_path / "corpus.txt", "A sentence.\n")
    fails(invoke("train-vocab", text, "-o", text), "--output", str(text), "is a file")
    fails(invoke("pretrain", text, "--vocab", tmp_path, "-o", text), "--output", str(text), "is a file")


def test_pretrain_argument_checks(tmp_path):
    text = write(tmp_path / "corpus.txt", "A sentence.\n")
    base = ["pretrain", text, "--vocab", tmp_path, "-o", tmp_path / "out"]
    usage_error(invoke(*base, "--grad-accum", "0"), "--grad-accum")
    usage_error(invoke(*base, "--batch-size", "0"), "--batch-size")
    usage_error(invoke(*base, "--log-every", "0"), "--log-every")
    usage_error(invoke(*base, "--optimizer", "sgd"), "--optimizer", "'sgd' is not one of: lamb, adamw")
    usage_error(invoke(*base, "--precision", "fp8"), "--precision", "float32, bfloat16, float16")
    usage_error(invoke(*base, "--device", "gpu"), "--device", "'gpu' is not a torch device")
    usage_error(invoke(*base, "--dev-fraction", "1"), "--dev-fraction", "not in [0, 1)")
    usage_error(invoke(*base, "--mlm-probability", "0"), "--mlm-probability", "not in (0, 1)")
    config = write(tmp_path / "config.json", "[]")
    fails(invoke(*base, "--config", config), "--config", str(config), "expected a JSON object")
    assert not (tmp_path / "out").exists()


# ---- export, quantize -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_directory_that_is_not_a_pipeline(tmp_path, command):
    (tmp_path / "empty").mkdir()
    fails(invoke(command, tmp_path / "empty", tmp_path / "out"), f"{command}: cannot load the pipeline", "empty")


# ---- QA corpus --------------------------------------------------------------------------------
def test_qa_corpus_without_questions_is_an_error(tmp_path):
    from spacy_albert.pipeline.qa import QACorpus

    nlp = spacy.blank("en")
    DocBin(docs=[nlp("Not a QA doc.")]).to_disk(tmp_path / "textcat.spacy")
    with pytest.raises(ValueError, match=r"no doc in .*textcat\.spacy has questions.*-f squad"):
        list(QACorpus(tmp_path / "textcat.spacy")(nlp))


# ---- program names ----------------------------------------------------------------------------
def test_help_shows_the_program_name():
    """`spacy-albert` (console script), `python -m spacy_albert`, and `spacy albert` (plugin)."""
    script = shutil.which("spacy-albert") or str(Path(sys.executable).with_name("spacy-albert"))
    spacy_script = Path(sys.executable).with_name("spacy")
    spacy_cmd = [str(spacy_script)] if spacy_script.exists() else [sys.executable, "-m", "spacy"]
    for cmd, expected in (
        ([script, "--help"], ["Usage: spacy-albert [OPTIONS] COMMAND", "configure"]),
        ([script, "convert", "--help"], ["Usage: spacy-albert convert [OPTIONS]", "--format"]),
        ([sys.executable, "-m", "spacy_albert", "--help"], ["Usage: python -m spacy_albert [OPTIONS] COMMAND", "configure"]),
        (spacy_cmd + ["albert", "--help"], ["albert [OPTIONS] COMMAND", "configure"]),
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
        assert all(fragment in proc.stdout for fragment in expected), (cmd, proc.stdout)
