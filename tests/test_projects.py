"""The weasel projects in `projects/` run end to end: `spacy project run all` on a copy of
each, offline, and what they leave behind is checked (metrics, trained pipelines, the
packaged pipeline installed with pip and loaded by name). Each installed package is
uninstalled again at the end of its test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ROOT / "projects"
# What a project run writes; a copy starts without any of it.
GENERATED = ("assets", "corpus", "configs", "training", "metrics", "packages", "project.lock", "__pycache__")


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_NO_INDEX="1")
    # Tiny models on a small, shared CI machine: one thread each is much faster than
    # several threads competing for two cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_project(name: str, tmp_path: Path, *overrides: str, timeout: int = 600) -> Path:
    """Copy projects/<name> into tmp_path and run its `all` workflow there."""
    project = tmp_path / name
    shutil.copytree(PROJECTS / name, project, ignore=shutil.ignore_patterns(*GENERATED))
    args = [sys.executable, "-m", "spacy", "project", "run", "all", str(project), *overrides]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, f"{' '.join(args)}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    return project


def config_var(name: str) -> list:
    """The repository's config as an absolute path (the copy is outside the repository)."""
    return ["--vars.config", str(ROOT / "configs" / f"{name}.cfg")]


def load_installed(package: str, tmp_path: Path, code: str) -> dict:
    """Run `code` (which prints one JSON line) with `nlp = spacy.load(package)` in a fresh
    interpreter, away from the project directory."""
    script = (
        "import json, sys, spacy\n"
        f"nlp = spacy.load({package!r})\n"
        "package_file = sys.modules[" + repr(package) + "].__file__\n" + code
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=_env(), cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def uninstall(package: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", package], capture_output=True, timeout=120)


def check_package(project: Path, package: str, model_dir: Path, pipe_names: list) -> None:
    """model-best loads; the wheel was built, installed into site-packages and loads by name."""
    import spacy

    assert spacy.load(model_dir).pipe_names == pipe_names
    wheel = project / "packages" / "dist" / f"{package}-0.0.1-py3-none-any.whl"
    assert wheel.is_file(), sorted(p.name for p in (project / "packages").rglob("*"))
    smoke = json.loads((project / "metrics" / "smoke.json").read_text())
    assert smoke["package"] == package and smoke["pipe_names"] == pipe_names
    assert "site-packages" in smoke["package_file"] or "dist-packages" in smoke["package_file"], smoke["package_file"]


@pytest.mark.slow
def test_albert_pretrain_project(tmp_path: Path) -> None:
    from spacy_albert import AlbertForPreTraining, AlbertTokenizerFast

    project = run_project("albert_pretrain", tmp_path)  # the README's run: 1200 steps
    sample = project / "corpus" / "sample" / "train.txt"
    assert 30_000 < sample.stat().st_size < 300_000
    assert "\n\n" in sample.read_text(encoding="utf-8")  # documents separated by blank lines

    trained = json.loads((project / "metrics" / "pretraining.json").read_text())
    untrained = json.loads((project / "metrics" / "untrained.json").read_text())
    vocab_size = 320
    assert untrained["mlm_accuracy"] < 5 / vocab_size  # about chance
    # pretraining learned something real: far above chance and the untrained model. The README's
    # figures (README.md "Projects", projects/albert_pretrain/README.md): MLM accuracy 0.3% -> 16%,
    # SOP 50% -> 78%.
    assert trained["mlm_accuracy"] >= 0.13, (trained, untrained)
    assert trained["mlm_accuracy"] > 10 * untrained["mlm_accuracy"], (trained, untrained)
    assert trained["mlm_loss"] < untrained["mlm_loss"] - 1.0, (trained, untrained)
    assert trained["sop_accuracy"] >= 0.72, trained

    checkpoint = project / "training" / "albert"
    for name in ("config.json", "model.safetensors", "spiece.model", "pretraining_log.jsonl"):
        assert (checkpoint / name).is_file(), name
    model = AlbertForPreTraining.from_pretrained(checkpoint)
    assert model.config.hidden_size == 64 and model.config.vocab_size == vocab_size
    assert len(AlbertTokenizerFast.from_pretrained(checkpoint)) == vocab_size
    report = json.loads((project / "metrics" / "report.json").read_text())
    assert report["pronoun_probe"]["n"] > 50 and report["pronoun_probe"]["examples"]


# What the smoke step of albert_ner prints for scripts/smoke.py's five texts.
NER_SMOKE_ENTS = [
    [("Alice Smith", "PERSON"), ("Google", "ORG"), ("Paris", "LOC")],
    [("Bob", "PERSON"), ("Maria", "PERSON"), ("NASA", "ORG")],
    [("Acme Corp", "ORG"), ("New York", "LOC")],
    [("Tokyo", "LOC")],
    [],
]


@pytest.mark.slow
def test_albert_ner_project(tmp_path: Path) -> None:
    from spacy_albert import AlbertTokenizerFast

    package = "en_albert_ner_projecttest"
    try:
        project = run_project("albert_ner", tmp_path, *config_var("albert_ner"),
                              "--vars.package_name", "albert_ner_projecttest")  # fmt: skip
        assert (project / "training" / "albert-tiny" / "model.safetensors").is_file()
        # The vocabulary learned from the raw text keeps the sample's names as whole pieces, so
        # that no word starts with a bare "▁" piece shared by all names (which cost PERSON F).
        vocab = AlbertTokenizerFast.from_pretrained(project / "training" / "vocab")
        for name in ("Alice", "Bob", "Maria", "Paris", "Tokyo", "Google"):
            assert vocab.tokenize(name) == ["▁" + name.lower()], (name, vocab.tokenize(name))
        # The README's figures (projects/albert_ner/README.md and "Projects" in README.md):
        # entity F 99 (PERSON 99, ORG 98, LOC 100); the project pins torch's thread count
        # (`threads`), so these do not depend on the number of cores.
        metrics = json.loads((project / "metrics" / "ner.json").read_text())
        assert metrics["ents_f"] >= 0.96, metrics
        assert set(metrics["ents_per_type"]) == {"PERSON", "LOC", "ORG"}
        assert all(scores["f"] >= 0.93 for scores in metrics["ents_per_type"].values()), metrics["ents_per_type"]
        check_package(project, package, project / "training" / "ner" / "model-best", ["albert_ner"])
        # the smoke step's entities (scripts/smoke.py's texts), printed by the installed package
        smoke = json.loads((project / "metrics" / "smoke.json").read_text())
        assert [[tuple(ent[:2]) for ent in doc["ents"]] for doc in smoke["docs"]] == NER_SMOKE_ENTS, smoke
        result = load_installed(package, tmp_path, (
            "texts = ['Alice Smith works for Google in Paris .', 'Acme Corp opened a new store in New York !']\n"
            "ents = [[(e.text, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]\n"
            "print(json.dumps({'ents': ents, 'file': package_file}))\n"
        ))  # fmt: skip
        ents = [[tuple(ent) for ent in doc_ents] for doc_ents in result["ents"]]
        assert ents == [NER_SMOKE_ENTS[0], NER_SMOKE_ENTS[2]], result
    finally:
        uninstall(package)


@pytest.mark.slow
def test_albert_textcat_project(tmp_path: Path) -> None:
    package = "en_albert_textcat_projecttest"
    try:
        project = run_project("albert_textcat", tmp_path, *config_var("albert_textcat"),
                              "--vars.package_name", "albert_textcat_projecttest")  # fmt: skip
        metrics = json.loads((project / "metrics" / "textcat.json").read_text())
        # macro F; 0.33-0.5 without learning. The README's figure: 0.88.
        assert metrics["cats_score"] >= 0.84, metrics
        check_package(project, package, project / "training" / "textcat" / "model-best", ["albert_textcat"])
        result = load_installed(package, tmp_path, (
            "texts = ['the film is wonderful and the cast is truly brilliant', 'the plot is dull and the ending was terrible']\n"
            "print(json.dumps({'cats': [doc.cats for doc in nlp.pipe(texts)]}))\n"
        ))  # fmt: skip
        positive, negative = result["cats"]
        assert set(positive) == {"0", "1"}
        assert abs(sum(positive.values()) - 1.0) < 1e-4  # exclusive classes
        assert positive["1"] > 0.5 > negative["1"], result
    finally:
        uninstall(package)


@pytest.mark.slow
def test_albert_qa_project(tmp_path: Path) -> None:
    package = "en_albert_qa_projecttest"
    try:
        project = run_project("albert_qa", tmp_path, *config_var("albert_qa"),
                              "--vars.package_name", "albert_qa_projecttest")  # fmt: skip
        sample = json.loads((project / "corpus" / "sample" / "train.json").read_text())
        questions = [qa for article in sample["data"] for p in article["paragraphs"] for qa in p["qas"]]
        assert any(qa["is_impossible"] for qa in questions) and not all(qa["is_impossible"] for qa in questions)
        metrics = json.loads((project / "metrics" / "qa.json").read_text())
        assert metrics["n_questions"] > 100
        # answering "" everywhere scores about the share of unanswerable questions (~0.15). The
        # README's figures: F1 0.92, exact match 0.87.
        assert metrics["qa_f1"] >= 0.88 and metrics["qa_exact"] >= 0.83, metrics
        check_package(project, package, project / "training" / "qa" / "model-best", ["albert_qa"])
        result = load_installed(package, tmp_path, (
            "context = 'Lena Costa was born in Bergen in 1950. She studied law at Kyoto University.'\n"
            "doc = nlp.make_doc(context)\n"
            "doc._.questions = ['Where was Lena Costa born?', 'What did Lena Costa study?']\n"
            "doc = nlp(doc)\n"
            "answers = [(a['question'], a['answer'], a['start'], a['end']) for a in doc._.qa_answers if a['rank'] == 0]\n"
            "print(json.dumps({'answers': answers, 'context': context}))\n"
        ))  # fmt: skip
        assert len(result["answers"]) == 2, result
        for _, answer, start, end in result["answers"]:
            assert result["context"][start:end] == answer
        assert result["answers"][0][1].strip().startswith("Bergen"), result  # the tiny model may run on to "in 1950"
    finally:
        uninstall(package)
