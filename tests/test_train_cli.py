"""`spacy debug config` and `spacy train` with the shipped listener config, on tiny data."""

from __future__ import annotations

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
    result = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_debug_config_passes(albert_checkpoint, corpus, config):
    run("debug", "config", config, *tiny_overrides(config, albert_checkpoint, *corpus))


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_spacy_train_runs_and_saves_a_loadable_pipeline(albert_checkpoint, corpus, tmp_path, config):
    out = tmp_path / "out"
    run("train", config, "--output", str(out), *tiny_overrides(config, albert_checkpoint, *corpus),
        "--training.max_steps=12", "--training.eval_frequency=6", "--training.optimizer.learn_rate.warmup_steps=2",
        "--training.optimizer.learn_rate.initial_rate=0.005", "--training.batcher.size=200")  # fmt: skip
    nlp = spacy.load(out / "model-best")
    assert nlp.pipe_names == CONFIGS[config][1]
    doc = nlp("Alice lives in Berlin.")
    if "albert_textcat" in nlp.pipe_names:
        assert set(doc.cats) == {"POS", "NEG"}
    else:
        assert all(ent.label_ in ("PER", "LOC") for ent in doc.ents)
