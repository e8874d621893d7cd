"""`spacy debug config` and `spacy train` with the shipped listener config, on tiny data."""

from __future__ import annotations

import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import TINY_ALBERT

CONFIG = "configs/ner_albert_listener.cfg"
SENTENCES = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
    ("Yesterday Alice flew to Berlin.", [(10, 15, "PER"), (24, 30, "LOC")]),
]


def tiny_overrides(checkpoint, train, dev) -> list[str]:
    shapes = {k: v for k, v in TINY_ALBERT.items()}
    args = [f"--components.albert.model.{k}={v}" for k, v in shapes.items()]
    return args + [f"--paths.train={train}", f"--paths.dev={dev}", f"--paths.checkpoint={checkpoint}"]


@pytest.fixture
def corpus(tmp_path):
    nlp = spacy.blank("en")
    docs = []
    for text, entities in SENTENCES:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=l) for s, e, l in entities]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs[:2]).to_disk(tmp_path / "dev.spacy")
    return tmp_path / "train.spacy", tmp_path / "dev.spacy"


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_debug_config_passes(albert_checkpoint, corpus):
    run("debug", "config", CONFIG, *tiny_overrides(albert_checkpoint, *corpus))


@pytest.mark.slow
def test_spacy_train_runs_and_saves_a_loadable_pipeline(albert_checkpoint, corpus, tmp_path):
    out = tmp_path / "out"
    run("train", CONFIG, "--output", str(out), *tiny_overrides(albert_checkpoint, *corpus),
        "--training.max_steps=12", "--training.eval_frequency=6", "--training.optimizer.learn_rate.warmup_steps=2",
        "--training.optimizer.learn_rate.initial_rate=0.005", "--training.batcher.size=200")  # fmt: skip
    nlp = spacy.load(out / "model-best")
    assert nlp.pipe_names == ["albert", "ner"]
    doc = nlp("Alice lives in Berlin.")
    assert doc._.albert_data.hidden.shape[-1] == TINY_ALBERT["hidden_size"]
