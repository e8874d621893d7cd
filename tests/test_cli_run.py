"""`run`: command-line inference for fill-mask, question-answering, ner and textcat, from a
Hugging Face checkpoint or a spaCy pipeline, against transformers' own pipelines on the same
checkpoints; malformed lines, the exit status, the one-line errors, and streaming."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import spacy
import torch
import transformers as hf
from spacy.training import Example
from typer.testing import CliRunner

from spacy_albert import AlbertTokenizerFast
from spacy_albert.cli import app

from conftest import TINY_ALBERT

runner = CliRunner()
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
CATS = ["negative", "positive", "neutral"]
TEXTS = ["Alice lives in Paris with her mother.", "Bob works in Berlin, far from the sea.", "Nothing here."]
MASKED = ["the [MASK] of the city.", "two [MASK] and one [MASK] were found."]
QUESTIONS = [
    {"question": "Where does Alice live?", "context": "Alice lives in Paris with her mother, and Bob works in Berlin."},
    {"question": "Who works in Berlin?", "context": "Alice lives in Paris with her mother, and Bob works in Berlin."},
]


def hf_checkpoint(directory: Path, spm_dir: Path, head_class: type, **config) -> Path:
    """A random-init (seed 0) transformers checkpoint of `head_class` with the test vocabulary."""
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    head_class(hf.AlbertConfig(vocab_size=vocab_size, **TINY_ALBERT, **config)).save_pretrained(directory)
    shutil.copy(spm_dir / "spiece.model", directory / "spiece.model")
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, spm_dir):
    root = tmp_path_factory.mktemp("run_checkpoints")
    return {
        "fill-mask": hf_checkpoint(root / "mlm", spm_dir, hf.AlbertForMaskedLM),
        "question-answering": hf_checkpoint(root / "qa", spm_dir, hf.AlbertForQuestionAnswering),
        "ner": hf_checkpoint(root / "tok", spm_dir, hf.AlbertForTokenClassification, id2label=dict(enumerate(TAGS))),
        "textcat": hf_checkpoint(root / "seq", spm_dir, hf.AlbertForSequenceClassification, id2label=dict(enumerate(CATS))),
        "multi-label": hf_checkpoint(root / "multi", spm_dir, hf.AlbertForSequenceClassification,
                                     id2label=dict(enumerate(CATS)), problem_type="multi_label_classification"),
        "encoder": hf_checkpoint(root / "base", spm_dir, hf.AlbertModel),
    }


def reference(task: str, checkpoint: Path):
    """transformers' pipeline for `task` on the checkpoint (offline: model and tokenizer given)."""
    head = {"fill-mask": hf.AlbertForMaskedLM, "question-answering": hf.AlbertForQuestionAnswering,
            "text-classification": hf.AlbertForSequenceClassification}[task]  # fmt: skip
    model = head.from_pretrained(checkpoint).eval()
    return hf.pipeline(task, model=model, tokenizer=hf.AlbertTokenizerFast.from_pretrained(checkpoint), device="cpu")


def run(*args: object, input: str | bytes = ""):
    return runner.invoke(app, ["run", *map(str, args)], input=input)


def outputs(result) -> list:
    return [json.loads(line) for line in result.stdout.splitlines()]


def lines(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def assert_same(ours, theirs) -> None:
    """Equal JSON values, floats (scores) within 1e-5."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), (ours, theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b)
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, abs=1e-5)
    else:
        assert ours == theirs


def checkpoint_nlp(factory: str, checkpoint: Path):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    nlp.config["initialize"]["components"][factory] = {"checkpoint": str(checkpoint)}
    nlp.initialize()
    return nlp


# ---- each task against the reference --------------------------------------------------------


def test_fill_mask_gives_the_reference_pipelines_output(checkpoints, tmp_path):
    checkpoint = checkpoints["fill-mask"]
    result = run("--task", "fill-mask", "--model", checkpoint, "--top-k", 3, input=lines(*MASKED))
    assert result.exit_code == 0, result.output
    fill_mask = reference("fill-mask", checkpoint)
    expected = [fill_mask(text, top_k=3) for text in MASKED]
    assert_same(outputs(result), json.loads(json.dumps(expected)))
    # The top candidate is AlbertForMaskedLM's argmax, its score the softmax there.
    tokenizer, model = fill_mask.tokenizer, fill_mask.model
    ids = tokenizer(MASKED[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = model(ids).logits[0, int((ids[0] == tokenizer.mask_token_id).nonzero())].softmax(-1)
    assert outputs(result)[0][0]["token"] == int(probs.argmax())
    assert outputs(result)[0][0]["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    # A saved spaCy pipeline with the component, in batches of one: its top_k setting (5) by default.
    checkpoint_nlp("albert_fill_mask", checkpoint).to_disk(tmp_path / "pipeline")
    from_pipeline = run("-t", "fill-mask", "-m", tmp_path / "pipeline", "-b", 1, input=lines(*MASKED))
    assert from_pipeline.exit_code == 0, from_pipeline.output
    assert_same(outputs(from_pipeline), json.loads(json.dumps([fill_mask(text, top_k=5) for text in MASKED])))


def test_question_answering_gives_the_reference_pipelines_output(checkpoints):
    checkpoint = checkpoints["question-answering"]
    qa = reference("question-answering", checkpoint)
    result = run("-t", "question-answering", "-m", checkpoint, input=lines(*QUESTIONS))
    assert result.exit_code == 0, result.output
    assert_same(outputs(result), [qa(**q) for q in QUESTIONS])
    assert list(outputs(result)[0]) == ["score", "start", "end", "answer"]
    top2 = run("-t", "question-answering", "-m", checkpoint, "--top-k", 2, input=lines(QUESTIONS[0]))
    assert_same(outputs(top2)[0], qa(**QUESTIONS[0], top_k=2))


def test_ner_gives_the_pipelines_entities(checkpoints):
    checkpoint = checkpoints["ner"]
    result = run("-t", "ner", "-m", checkpoint, "-b", 2, input=lines(TEXTS[0], {"text": TEXTS[1], "id": 7}, TEXTS[2]))
    assert result.exit_code == 0, result.output
    nlp = checkpoint_nlp("albert_ner", checkpoint)
    expected = [[{"label": e.label_, "start": e.start_char, "end": e.end_char, "text": e.text} for e in doc.ents]
                for doc in nlp.pipe(TEXTS)]  # fmt: skip
    assert outputs(result) == expected and any(expected)
    assert all(TEXTS[i][e["start"] : e["end"]] == e["text"] for i, ents in enumerate(expected) for e in ents)


def test_textcat_gives_the_reference_pipelines_labels_and_scores(checkpoints):
    checkpoint = checkpoints["textcat"]
    result = run("-t", "textcat", "-m", checkpoint, input=lines(*TEXTS))
    assert result.exit_code == 0, result.output
    classify = reference("text-classification", checkpoint)
    assert_same(outputs(result), [classify(text, top_k=None) for text in TEXTS])
    scores = [[c["score"] for c in out] for out in outputs(result)]
    assert all(s == sorted(s, reverse=True) and sum(s) == pytest.approx(1.0) for s in scores)
    best = run("-t", "textcat", "-m", checkpoint, "--top-k", 1, input=lines(TEXTS[0]))
    assert_same(outputs(best)[0], classify(TEXTS[0], top_k=1))
    # A multi-label checkpoint: sigmoid scores, as the reference applies them.
    multi = run("-t", "textcat", "-m", checkpoints["multi-label"], input=lines(TEXTS[0]))
    expected = reference("text-classification", checkpoints["multi-label"])(TEXTS[0], top_k=None)
    assert_same(outputs(multi)[0], expected)
    assert sum(c["score"] for c in expected) != pytest.approx(1.0)


def test_spacys_own_textcat_over_the_shared_encoder(albert_checkpoint, tmp_path):
    """A pipeline of the `albert` component with spaCy's `textcat` listening to it."""
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    listener = {"@architectures": "spacy-albert.AlbertListener.v1", "width": TINY_ALBERT["hidden_size"], "pooling": "mean"}
    nlp.add_pipe("textcat", config={"model": {"@architectures": "spacy.TextCatReduce.v1", "tok2vec": listener,
                                              "exclusive_classes": True, "use_reduce_first": False,
                                              "use_reduce_last": False, "use_reduce_max": False,
                                              "use_reduce_mean": True}})  # fmt: skip
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"A": i % 2 == 0, "B": i % 2 == 1}}) for i, t in enumerate(TEXTS)]
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    result = run("-t", "textcat", "-m", tmp_path / "pipeline", input=lines(*TEXTS))
    assert result.exit_code == 0, result.output
    expected = [sorted(({"label": k, "score": v} for k, v in doc.cats.items()), key=lambda c: -c["score"])
                for doc in spacy.load(tmp_path / "pipeline").pipe(TEXTS)]  # fmt: skip
    assert_same(outputs(result), expected)


# ---- malformed lines, errors ----------------------------------------------------------------


def test_malformed_lines_are_reported_and_the_others_processed(checkpoints):
    checkpoint = checkpoints["fill-mask"]
    good = run("-t", "fill-mask", "-m", checkpoint, input=lines(*MASKED))
    inputs = [MASKED[0], "no mask here", '{"text": "the [MASK]"', '{"txt": "a [MASK]"}', '{"text": 3}', "  ",
              b"caf\xe9 [MASK]".decode("latin-1"), json.dumps({"text": MASKED[1]})]  # fmt: skip
    data = lines(*inputs).encode("utf-8").replace("caf\xe9".encode("utf-8"), b"caf\xe9")
    result = run("-t", "fill-mask", "-m", checkpoint, "-b", 3, input=data)
    assert result.exit_code == 1
    out = outputs(result)
    assert len(out) == len(inputs)
    assert_same([out[0], out[7]], outputs(good))
    errors = {o["line"]: o["error"] for o in out if isinstance(o, dict)}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
    for line, fragment in [(2, "no [MASK]"), (3, "not JSON"), (4, "no 'text' field"), (5, "not a string"),
                           (6, "blank"), (7, "not UTF-8")]:  # fmt: skip
        assert fragment in errors[line]
        assert f"run: line {line}: {errors[line]}\n" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("run: 6 input lines failed (line 2, 3, 4, 5, 6, 7)")
    assert "Traceback" not in result.output
    qa = run("-t", "question-answering", "-m", checkpoints["question-answering"],
             input=lines("Where?", {"question": "Where?"}, {"question": " ", "context": "x"}, QUESTIONS[0]))  # fmt: skip
    assert qa.exit_code == 1 and [o.get("line") for o in outputs(qa)[:3]] == [1, 2, 3] and "answer" in outputs(qa)[3]


@spacy.Language.component("test_run_refuses_boom")
def refuse_boom(doc):
    if "boom" in doc.text:
        raise ValueError("this component refuses 'boom'")
    return doc


def test_a_line_the_pipeline_fails_on_is_reported_and_its_batch_processed(checkpoints, tmp_path):
    nlp = checkpoint_nlp("albert_textcat", checkpoints["textcat"])
    nlp.add_pipe("test_run_refuses_boom", first=True)
    nlp.to_disk(tmp_path / "pipeline")
    result = run("-t", "textcat", "-m", tmp_path / "pipeline", "-b", 3, input=lines(TEXTS[0], "a boom here", TEXTS[1]))
    assert result.exit_code == 1
    out = outputs(result)
    assert out[1] == {"error": "this component refuses 'boom'", "line": 2}
    expected = [[{"label": k, "score": v} for k, v in sorted(doc.cats.items(), key=lambda c: -c[1])]
                for doc in nlp.pipe([TEXTS[0], TEXTS[1]])]  # fmt: skip
    assert_same([out[0], out[2]], expected)
    assert "run: line 2: this component refuses 'boom'" in result.stderr


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("run: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_errors_are_one_line(checkpoints, tmp_path):
    one_line_error(run("-t", "ner", "-m", tmp_path / "missing"), "--model", "no such directory")
    (tmp_path / "empty").mkdir()
    one_line_error(run("-t", "ner", "-m", tmp_path / "empty"), "neither a spaCy pipeline", "config.json")
    one_line_error(run("-t", "fill-mask", "-m", checkpoints["encoder"]), "no predictions.* weights", "AlbertForMaskedLM")
    one_line_error(run("-t", "question-answering", "-m", checkpoints["encoder"]), "qa_outputs", "AlbertForQuestionAnswering")
    one_line_error(run("-t", "ner", "-m", checkpoints["textcat"]), "AlbertForTokenClassification", "id2label")
    checkpoint_nlp("albert_textcat", checkpoints["textcat"]).to_disk(tmp_path / "textcat")
    one_line_error(run("-t", "fill-mask", "-m", tmp_path / "textcat"), "no component for --task fill-mask", "albert_textcat")
    one_line_error(run("-t", "textcat", "-m", tmp_path / "textcat", "-c", "ner"), "--component 'ner' is not in the pipeline")
    one_line_error(run("-t", "ner", "-m", checkpoints["ner"], "--top-k", 2), "--top-k does not apply")
    one_line_error(run("-t", "ner", "-m", checkpoints["ner"], "--lang", "zz"), "--lang 'zz' is not a language")
    one_line_error(run("-t", "ner", "-m", checkpoints["ner"], "-i", tmp_path / "nope.txt"), "--input", "no such file")
    if not torch.cuda.is_available():
        one_line_error(run("-t", "ner", "-m", checkpoints["ner"], "--device", "cuda:0"), "--device cuda:0", "--device cpu")
    for bad in (["--device", "gpu"], ["--task", "summarization"]):
        result = run("-m", checkpoints["ner"], *(["-t", "ner"] if bad[0] != "--task" else []), *bad)
        assert result.exit_code == 2 and repr(bad[1]) in result.stderr


def test_input_file_and_empty_input(checkpoints, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\ufeff" + lines(*TEXTS), encoding="utf-8")
    from_file = run("-t", "textcat", "-m", checkpoints["textcat"], "--input", path)
    from_stdin = run("-t", "textcat", "-m", checkpoints["textcat"], "--input", "-", input=lines(*TEXTS))
    assert from_file.exit_code == 0 and len(outputs(from_file)) == 3
    assert_same(outputs(from_file), outputs(from_stdin))
    empty = run("-t", "textcat", "-m", checkpoints["textcat"], input="")
    assert empty.exit_code == 0 and empty.stdout == ""


# ---- streaming ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_first_batch_is_written_before_the_input_ends(checkpoints):
    command = [sys.executable, "-m", "spacy_albert", "run", "-t", "textcat", "-m", str(checkpoints["textcat"]), "-b", "2"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered, as usual
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(90, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(lines(*TEXTS[:2]))
        proc.stdin.flush()
        first = [json.loads(proc.stdout.readline()) for _ in range(2)]  # stdin still open
        assert proc.poll() is None and all(out and "label" in out[0] for out in first)
        proc.stdin.write(lines(TEXTS[2]))
        proc.stdin.close()
        rest = proc.stdout.read().splitlines()
        assert proc.wait() == 0 and len(rest) == 1, proc.stderr.read()
    finally:
        watchdog.cancel()
        proc.kill()
