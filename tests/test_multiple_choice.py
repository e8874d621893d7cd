"""The `albert_multiple_choice` component: parity with transformers' AlbertForMultipleChoice
(probabilities, loss, truncation), bad input, batch independence, learning, serialization,
checkpoint export, and the shipped config under `spacy debug config` / `spacy train`."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import spacy
import torch
import transformers as hf
from spacy.tokens import DocBin
from spacy.training import Corpus, Example
from thinc.api import Adam

from spacy_albert import AlbertTokenizerFast
from spacy_albert.layers.task_model import export_task_model
from spacy_albert.pipeline.multiple_choice import AlbertMultipleChoice, make_copy_extensions

from conftest import TINY_ALBERT

NAME = "albert_multiple_choice"
CONFIG = "configs/albert_multiple_choice.cfg"
MODEL = {"@architectures": "spacy-albert.AlbertTaskModel.v1", "task": "multiple-choice", **TINY_ALBERT}
QUESTIONS = [
    ("In Italy, pizza served in formal settings is presented unsliced.",
     ["It is eaten with a fork and a knife.", "It is eaten while held in the hand."]),
    ("The children went to school early.", ["They were late.", "They came first.", "Nothing happened."]),
    ("Music played in the garden all night", ["a party", "the river", "some money", "a quiet house"]),
    ("Where is the water?", ["in the river", "on the table"]),
    ("", ["an empty prompt", "still works"]),
    ("Social policy changed the city.", ["Yes.", "No.", "Perhaps, in some areas."]),
]  # fmt: skip
WORDS = "house water school night city music party money table river garden window forest summer".split()


@pytest.fixture(scope="module")
def mc_checkpoint(tmp_path_factory, spm_dir):
    """A random-init checkpoint saved by transformers, with weights large enough that the
    choice probabilities differ clearly (with the default init they are all about 1/n)."""
    directory = tmp_path_factory.mktemp("albert_mc")
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    model = hf.AlbertForMultipleChoice(hf.AlbertConfig(vocab_size=vocab_size, initializer_range=0.2, **TINY_ALBERT))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
    model.save_pretrained(directory)
    shutil.copy(spm_dir / "spiece.model", directory / "spiece.model")
    return directory


@pytest.fixture(scope="module")
def reference(mc_checkpoint):
    model = hf.AlbertForMultipleChoice.from_pretrained(mc_checkpoint).eval()
    return model, hf.AlbertTokenizerFast.from_pretrained(mc_checkpoint)


def make_nlp(checkpoint, **component_cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe(NAME, config={"model": MODEL, **component_cfg})
    nlp.config["initialize"]["components"][NAME] = {"checkpoint": str(checkpoint)}
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def nlp(mc_checkpoint):
    return make_nlp(mc_checkpoint, max_batch_pairs=5)


def make_doc(nlp, prompt, choices, answer=None):
    doc = nlp.make_doc(prompt)
    doc._.choices = choices
    if answer is not None:
        doc._.correct_choice = answer
    return doc


def reference_logits(reference, prompt, choices, **tokenizer_kwargs):
    """The reference docs' example: one [1, choices, sequence] batch per question."""
    model, tokenizer = reference
    encoding = tokenizer([prompt] * len(choices), choices, return_tensors="pt", padding=True, **tokenizer_kwargs)
    with torch.no_grad():
        return model(**{k: v.unsqueeze(0) for k, v in encoding.items()}).logits[0].numpy()


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_probabilities_match_the_reference(nlp, reference):
    docs = list(nlp.pipe([make_doc(nlp, p, c) for p, c in QUESTIONS], batch_size=4))
    spread = 0.0
    for doc, (prompt, choices) in zip(docs, QUESTIONS):
        logits = reference_logits(reference, prompt, choices)
        np.testing.assert_allclose(doc._.choice_probs, softmax(logits.astype("float64")), atol=1e-5)
        assert doc.cats == pytest.approx(dict(zip(choices, doc._.choice_probs)))
        spread = max(spread, max(doc._.choice_probs) - min(doc._.choice_probs))
    assert spread > 0.1  # the comparison is not between near-uniform distributions
    pipe = nlp.get_pipe(NAME)
    for logits, (prompt, choices) in zip(pipe.predict(docs), QUESTIONS):
        np.testing.assert_allclose(logits, reference_logits(reference, prompt, choices), atol=1e-5)
        assert pipe.choose(prompt, choices) == pytest.approx(softmax(logits.astype("float64")).tolist(), abs=1e-6)


def test_loss_is_the_reference_cross_entropy(nlp, reference):
    model, tokenizer = reference
    pipe = nlp.get_pipe(NAME)
    three = [(p, c, i % 3) for i, (p, c) in enumerate(QUESTIONS) if len(c) == 3]
    examples = [Example(make_doc(nlp, p, c), make_doc(nlp, p, c, a)) for p, c, a in three]
    encoding = tokenizer([p for p, c, _ in three for _ in c], [x for _, c, _ in three for x in c],
                         return_tensors="pt", padding=True)  # fmt: skip
    with torch.no_grad():
        inputs = {k: v.view(len(three), 3, -1) for k, v in encoding.items()}
        expected = model(**inputs, labels=torch.tensor([a for _, _, a in three])).loss.item()
    loss, grads = pipe.get_loss(examples, pipe.predict([eg.predicted for eg in examples]))
    assert loss == pytest.approx(expected, abs=1e-5)
    # Mixed numbers of choices: the mean of each question's reference loss.
    mixed = [(p, c, len(c) - 1) for p, c in QUESTIONS]
    examples = [Example(make_doc(nlp, p, c), make_doc(nlp, p, c, a)) for p, c, a in mixed]
    per_question = [-np.log(softmax(reference_logits(reference, p, c).astype("float64"))[a]) for p, c, a in mixed]
    loss, grads = pipe.get_loss(examples, pipe.predict([eg.predicted for eg in examples]))
    assert loss == pytest.approx(np.mean(per_question), abs=1e-5)
    assert [len(g) for g in grads] == [len(c) for _, c, _ in mixed]


def test_truncation_matches_the_reference(nlp, reference):
    """max_length is capped by max_position_embeddings (64); longest_first like truncation=True."""
    rng = random.Random(1)
    long_prompt = " ".join(rng.choice(WORDS) for _ in range(90))
    cases = [(long_prompt, ["a short choice", "another one"]),
             ("Short prompt.", [" ".join(rng.choice(WORDS) for _ in range(80)), "tiny"])]  # fmt: skip
    docs = list(nlp.pipe([make_doc(nlp, p, c) for p, c in cases]))
    for doc, (prompt, choices) in zip(docs, cases):
        logits = reference_logits(reference, prompt, choices, truncation=True, max_length=64)
        np.testing.assert_allclose(doc._.choice_probs, softmax(logits.astype("float64")), atol=1e-5)


def test_bad_input(nlp, reference):
    pipe = nlp.get_pipe(NAME)
    no_choices, empty, one, dupes = nlp.pipe([
        nlp.make_doc("A prompt without choices."),
        make_doc(nlp, "Empty list.", []),
        make_doc(nlp, "Only one.", ["the only choice"]),
        make_doc(nlp, "Duplicates.", ["yes", "no", "yes"]),
    ])  # fmt: skip
    assert no_choices._.choice_probs == [] and no_choices.cats == {}
    assert empty._.choice_probs == [] and empty.cats == {}
    assert one._.choice_probs == [1.0] and one.cats == {"the only choice": 1.0}
    probs = dupes._.choice_probs
    assert len(probs) == 3 and probs[0] == pytest.approx(probs[2])
    assert dupes.cats == pytest.approx({"yes": probs[0] + probs[2], "no": probs[1]})
    assert pipe.choose("Anything", []) == []
    assert pipe.choose("", ["x", "y"]) == pytest.approx(softmax(reference_logits(reference, "", ["x", "y"])), abs=1e-5)
    assert list(nlp.pipe([])) == []
    with pytest.raises(TypeError):
        nlp(make_doc(nlp, "A string is not a list.", "yes"))
    bad = Example(make_doc(nlp, "Q", ["a", "b"]), make_doc(nlp, "Q", ["a", "b"], 2))
    with pytest.raises(ValueError, match="correct_choice"):
        pipe.update([bad])
    with pytest.raises(ValueError, match="truncation"):
        spacy.blank("en").add_pipe(NAME, config={"model": MODEL, "truncation": "middle"})
    with pytest.raises(ValueError, match="multiple-choice"):
        spacy.blank("en").add_pipe(NAME, config={"model": {**MODEL, "task": "masked-lm"}})


def test_results_do_not_depend_on_the_batch(nlp):
    """Docs with other numbers of choices and other lengths around, in other chunks."""
    target = make_doc(nlp, "The children went to school early.", ["They were late.", "They came first."])
    alone = nlp(target.copy())._.choice_probs
    others = [make_doc(nlp, p, c) for p, c in QUESTIONS] + [make_doc(nlp, " ".join(WORDS * 3), ["a", "b", "c", "d"])]
    for batch in ([*others, target], [target, *others[:2]], [others[-1], target]):
        batch = [doc.copy() for doc in batch]
        for doc in batch:
            doc._.choices = list(doc._.choices)
        done = list(nlp.pipe(batch))
        index = next(i for i, d in enumerate(done) if d.text == target.text and len(d._.choices) == 2)
        np.testing.assert_allclose(done[index]._.choice_probs, alone, rtol=0, atol=1e-6)


def test_extensions_round_trip_and_augmenter(nlp, tmp_path):
    docs = [make_doc(nlp, p, c, len(c) - 1) for p, c in QUESTIONS if p]
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "data.spacy")
    restored = list(DocBin().from_disk(tmp_path / "data.spacy").get_docs(nlp.vocab))
    # msgpack gives lists back as tuples; the component takes any sequence of strings.
    assert [list(d._.choices) for d in restored] == [d._.choices for d in docs]
    assert [d._.correct_choice for d in restored] == [d._.correct_choice for d in docs]
    # spaCy's reader builds predicted docs from the text alone; the augmenter adds the choices.
    plain = list(Corpus(tmp_path / "data.spacy")(nlp))
    assert all(eg.predicted._.choices is None for eg in plain)
    examples = list(Corpus(tmp_path / "data.spacy", augmenter=make_copy_extensions())(nlp))
    assert [eg.predicted._.choices for eg in examples] == [d._.choices for d in docs]
    assert all(eg.predicted._.correct_choice is None for eg in examples)
    # The score: the share of questions whose most probable choice is the gold one.
    probs = [doc._.choice_probs for doc in nlp.pipe(make_doc(nlp, d.text, d._.choices) for d in docs)]
    right = [int(np.argmax(p)) == d._.correct_choice for p, d in zip(probs, docs)]
    assert 0 < sum(right) < len(right)  # neither all nor none: a score off either way shows
    assert nlp.evaluate(examples)["choice_acc"] == sum(right) / len(right)
    with pytest.warns(UserWarning, match="augmenter"):
        assert nlp.evaluate(plain)["choice_acc"] == 0.0
    no_user_data = [Example(nlp.make_doc(eg.reference.text), nlp.make_doc(eg.reference.text)) for eg in plain]
    with pytest.warns(UserWarning, match="store_user_data"):
        assert nlp.get_pipe(NAME).update(no_user_data) == {NAME: 0.0}


def learnable_data(nlp, n=16, seed=0):
    """The right choice repeats a word of the prompt; 2-4 choices."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        k = rng.choice([2, 3, 4])
        words = rng.sample(WORDS, 4 + k)
        choices = words[4 : 3 + k]
        answer = rng.randrange(k)
        choices.insert(answer, rng.choice(words[:4]))
        prompt = " ".join(words[:4])
        examples.append(Example(make_doc(nlp, prompt, choices), make_doc(nlp, prompt, choices, answer)))
    return examples


@pytest.fixture(scope="module")
def trained(mc_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe(NAME, config={"model": {**MODEL, "checkpoint": str(mc_checkpoint)}})
    examples = learnable_data(nlp)
    nlp.initialize(lambda: examples)
    before = nlp.evaluate(examples)["choice_acc"]
    optimizer = Adam(0.003)
    rng = random.Random(0)
    epoch_losses = []
    for _ in range(20):
        rng.shuffle(examples)
        losses = {}
        for start in range(0, len(examples), 8):
            nlp.update(examples[start : start + 8], sgd=optimizer, losses=losses)
        epoch_losses.append(losses[NAME])
    return nlp, examples, before, nlp.evaluate(examples)["choice_acc"], epoch_losses


def test_learns_a_tiny_dataset(trained):
    nlp, examples, before, after, losses = trained
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert after > before and after >= 0.8


def probe(nlp):
    texts = [(p, c) for p, c in QUESTIONS] + [("school night music party", ["music", "river", "table"])]
    return [doc._.choice_probs for doc in nlp.pipe([make_doc(nlp, p, c) for p, c in texts])]


def test_save_and_load_keep_predictions(trained, tmp_path):
    nlp = trained[0]
    expected = probe(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    assert probe(spacy.load(tmp_path / "pipeline")) == expected
    fresh = spacy.blank("en")
    fresh.add_pipe(NAME, config={"model": MODEL})
    assert probe(fresh.from_bytes(nlp.to_bytes())) == expected


def test_export_loads_in_transformers(trained, tmp_path):
    nlp = trained[0]
    directory = export_task_model(nlp.get_pipe(NAME).model, tmp_path / "export")
    model = hf.AlbertForMultipleChoice.from_pretrained(directory).eval()
    exported = (model, hf.AlbertTokenizerFast.from_pretrained(directory))
    pipe = nlp.get_pipe(NAME)
    for prompt, choices in QUESTIONS:
        ours = pipe.predict([make_doc(nlp, prompt, choices)])[0]
        np.testing.assert_allclose(ours, reference_logits(exported, prompt, choices), atol=1e-5)


def spacy_cli(tmp_path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same numbers on any machine's core count
    result = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=timeout,
                            env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture
def corpus(tmp_path):
    nlp = spacy.blank("en")
    docs = [eg.reference for eg in learnable_data(nlp, n=12, seed=3)]
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs[:6], store_user_data=True).to_disk(tmp_path / "dev.spacy")
    return tmp_path / "train.spacy", tmp_path / "dev.spacy"


def cli_paths(checkpoint, train, dev):
    return [f"--paths.train={train}", f"--paths.dev={dev}", f"--paths.checkpoint={checkpoint}"]


def test_debug_config_passes(mc_checkpoint, corpus, tmp_path):
    spacy_cli(tmp_path, "debug", "config", CONFIG, *cli_paths(mc_checkpoint, *corpus))


@pytest.mark.slow
def test_spacy_train_learns_and_saves_a_loadable_pipeline(mc_checkpoint, corpus, tmp_path):
    out, log = tmp_path / "out", tmp_path / "train.jsonl"
    shapes = [f"--components.{NAME}.model.{k}={v}" for k, v in TINY_ALBERT.items()]
    result = spacy_cli(tmp_path, "train", CONFIG, "--output", str(out), *cli_paths(mc_checkpoint, *corpus), *shapes,
                       "--training.max_steps=16", "--training.eval_frequency=8",
                       "--training.optimizer.learn_rate.warmup_steps=2",
                       "--training.optimizer.learn_rate.initial_rate=0.01",
                       "--training.logger.@loggers=spacy.ConsoleLogger.v3",
                       f"--training.logger.output_file={log}", "--training.logger.progress_bar=null")  # fmt: skip
    assert "CHOICE_ACC" in result.stdout  # the config's score is shown
    # Step 0 is scored after an update at learn rate 0 (the warm-up's start): the checkpoint.
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in evaluations] == [0, 8, 16]
    assert evaluations[-1]["score"] > evaluations[0]["score"]
    nlp = spacy.load(out / "model-best")
    assert nlp.pipe_names == [NAME]
    assert isinstance(nlp.get_pipe(NAME), AlbertMultipleChoice)
    # Known answers: the best pipeline picks the gold choice of every dev question.
    dev = list(DocBin().from_disk(corpus[1]).get_docs(nlp.vocab))
    assert len(dev) == 6
    for gold in dev:
        doc = nlp(make_doc(nlp, gold.text, list(gold._.choices)))
        assert int(np.argmax(doc._.choice_probs)) == gold._.correct_choice, (gold.text, doc._.choice_probs)
        assert sum(doc._.choice_probs) == pytest.approx(1.0)
