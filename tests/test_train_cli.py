"""`spacy debug config` and `spacy train` with the shipped configs, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import TINY_ALBERT

# config -> (where its encoder hyperparameters live, its pipeline)
CONFIGS = {
    "configs/ner_albert_listener.cfg": ("components.albert.model", ["albert", "ner"]),
    "configs/albert_ner.cfg": ("components.albert_ner.model.tok2vec.encoder", ["albert_ner"]),
    "configs/albert_textcat.cfg": ("components.albert_textcat.model.tok2vec", ["albert_textcat"]),
}
SENTENCES = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")], "POS"),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")], "NEG"),
    ("Yesterday Alice flew to Berlin.", [(10, 15, "PER"), (24, 30, "LOC")], "POS"),
]


def tiny_overrides(config: str, checkpoint, train, dev) -> list[str]:
    section = CONFIGS[config][0]
    args = [f"--{section}.{k}={v}" for k, v in TINY_ALBERT.items()]
    return args + [f"--paths.train={train}", f"--paths.dev={dev}", f"--paths.checkpoint={checkpoint}"]


@pytest.fixture
def corpus(tmp_path):
    nlp = spacy.blank("en")
    docs = []
    for text, entities, category in SENTENCES:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=l) for s, e, l in entities]
        doc.cats = {"POS": float(category == "POS"), "NEG": float(category == "NEG")}
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs[:2]).to_disk(tmp_path / "dev.spacy")
    return tmp_path / "train.spacy", tmp_path / "dev.spacy"


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same numbers on any machine's core count
    result = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=timeout,
                            env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def json_log(path) -> list[str]:
    """Overrides that make `spacy train` also write each evaluation as a JSON line to `path`."""
    return ["--training.logger.@loggers=spacy.ConsoleLogger.v3", f"--training.logger.output_file={path}",
            "--training.logger.progress_bar=null"]  # fmt: skip


def read_json_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_debug_config_passes(albert_checkpoint, corpus, config):
    run("debug", "config", config, *tiny_overrides(config, albert_checkpoint, *corpus))


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_spacy_train_learns_and_saves_a_loadable_pipeline(albert_checkpoint, corpus, tmp_path, config):
    out, log = tmp_path / "out", tmp_path / "train.jsonl"
    learn_rate = 0.01 if "textcat" in config else 0.005  # the classifier needs more to move in 12 steps
    run("train", config, "--output", str(out), *tiny_overrides(config, albert_checkpoint, *corpus),
        "--training.max_steps=12", "--training.eval_frequency=6", "--training.optimizer.learn_rate.warmup_steps=2",
        f"--training.optimizer.learn_rate.initial_rate={learn_rate}", "--training.batcher.size=200",
        *json_log(log))  # fmt: skip
    # Step 0 is scored after an update at learn rate 0 (the warm-up's start): the untrained pipeline.
    evaluations = read_json_log(log)
    assert [e["step"] for e in evaluations] == [0, 6, 12]
    assert evaluations[-1]["score"] > evaluations[0]["score"]
    nlp = spacy.load(out / "model-best")
    assert nlp.pipe_names == CONFIGS[config][1]
    # Known answers: the training data's.
    if "albert_textcat" in nlp.pipe_names:
        for text, _, category in SENTENCES:
            cats = nlp(text).cats
            assert set(cats) == {"POS", "NEG"} and max(cats, key=cats.get) == category, (text, cats)
    else:
        text, entities, _ = SENTENCES[0]
        assert [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents] == entities
