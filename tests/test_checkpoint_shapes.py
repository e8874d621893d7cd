"""Every shipped config trains with `--paths.checkpoint` alone, whatever the checkpoint's
sizes: the checkpoint's config.json decides every shape of the encoder, and the listeners and
heads take its width (no `configure` step, no size overrides)."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import make_checkpoint
from spacy_albert.layers.transformer import albert_state
from test_multiple_choice import learnable_data
from test_qa import TRAIN as QA_TRAIN
from test_qa import _write_corpus as write_qa_corpus

# An ALBERT that no config's sizes describe (E 32, H 96, 3 heads of 32, 3 layers in 2 groups),
# and one of albert-base's shape.
ODD = dict(embedding_size=32, hidden_size=96, num_attention_heads=3, num_hidden_layers=3, num_hidden_groups=2,
           intermediate_size=120, max_position_embeddings=64)  # fmt: skip
BASE = dict(embedding_size=128, hidden_size=768, num_attention_heads=12, num_hidden_layers=12, num_hidden_groups=1,
            intermediate_size=3072, max_position_embeddings=512)  # fmt: skip
CONFIGS = ["albert_ner", "albert_textcat", "ner_albert_listener", "albert_qa", "albert_fill_mask",
           "albert_multiple_choice"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
NER = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")], "POS"),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")], "NEG"),
    ("Yesterday Alice flew to Berlin.", [(10, 15, "PER"), (24, 30, "LOC")], "POS"),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, spm_dir):
    root = tmp_path_factory.mktemp("shapes")
    return {"odd": make_checkpoint(root / "odd", spm_dir, ODD), "base": make_checkpoint(root / "base", spm_dir, BASE)}


def corpus(config: str, directory: Path) -> tuple[Path, Path]:
    """A tiny train/dev corpus of the kind `config` trains on."""
    nlp = spacy.blank("en")
    train, dev = directory / "train.spacy", directory / "dev.spacy"
    if config == "albert_qa":
        write_qa_corpus(nlp, train, QA_TRAIN)
        write_qa_corpus(nlp, dev, QA_TRAIN[:2])
        return train, dev
    if config == "albert_multiple_choice":
        docs = [eg.reference for eg in learnable_data(nlp, n=6, seed=3)]
    else:
        docs = []
        for text, entities, category in NER:
            doc = nlp.make_doc(text)
            doc.ents = [doc.char_span(s, e, label=label) for s, e, label in entities]
            doc.cats = {"POS": float(category == "POS"), "NEG": float(category == "NEG")}
            docs.append(doc)
    DocBin(docs=docs, store_user_data=True).to_disk(train)
    DocBin(docs=docs[:2], store_user_data=True).to_disk(dev)
    return train, dev


def train_with_checkpoint_only(config: str, checkpoint: Path, directory: Path) -> spacy.Language:
    from spacy.cli.train import train

    train_path, dev_path = corpus(config, directory)
    overrides = {"paths.train": str(train_path), "paths.dev": str(dev_path), "paths.checkpoint": str(checkpoint),
                 "training.max_steps": 2, "training.eval_frequency": 2}  # fmt: skip
    train(ROOT / "configs" / f"{config}.cfg", directory / "out", overrides=overrides)
    return spacy.load(directory / "out" / "model-last")


def encoder_widths(nlp: spacy.Language) -> set[int]:
    """The hidden_size of every ALBERT encoder in the pipeline (own, shared or task model)."""
    models = [pipe.model for _, pipe in nlp.components if hasattr(pipe, "model")]
    return {albert_state(node).config.hidden_size for model in models for node in model.walk()
            if node.name in ("albert_transformer", "albert_task_model")}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_trains_from_an_odd_sized_checkpoint_alone(checkpoints, tmp_path, config):
    nlp = train_with_checkpoint_only(config, checkpoints["odd"], tmp_path)
    assert encoder_widths(nlp) == {ODD["hidden_size"]}
    doc = nlp("Alice lives in Paris.")
    assert len(doc) == 5


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_trains_from_a_base_shaped_checkpoint_alone(checkpoints, tmp_path, config):
    nlp = train_with_checkpoint_only(config, checkpoints["base"], tmp_path)
    assert encoder_widths(nlp) == {BASE["hidden_size"]}
    assert len(nlp("Bob visited Berlin.")) == 4
