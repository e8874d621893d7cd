"""The `albert_multiple_choice` component (`spacy-albert.MultipleChoice.v1` over its own
encoder): parity with transformers' AlbertForMultipleChoice (probabilities, loss and its
gradient, truncation), bad input, batch independence, spaCy's dropout, learning,
serialization, checkpoint export, and the shipped config under `spacy debug config` /
`spacy train`."""

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
from spacy_albert.pipeline.multiple_choice import AlbertMultipleChoice, make_copy_extensions

from conftest import TINY_ALBERT

NAME = "albert_multiple_choice"
CONFIG = "configs/albert_multiple_choice.cfg"
ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
MODEL = {"@architectures": "spacy-albert.MultipleChoice.v1", "encoder": ENCODER}
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


def make_nlp(checkpoint, encoder=None, **component_cfg):
    nlp = spacy.blank("en")
    model = {**MODEL, "encoder": {**ENCODER, **(encoder or {})}}
    nlp.add_pipe(NAME, config={"model": model, **component_cfg})
    nlp.config["initialize"]["components"][NAME] = {"checkpoint": str(checkpoint)}
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def nlp(mc_checkpoint):
    # Few pieces per encoder call: a batch of docs runs in several chunks.
    return make_nlp(mc_checkpoint, encoder={"max_batch_pieces": 100})


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


def test_get_loss_of_begin_update_scores_is_the_reference_loss_and_gradient(nlp, reference):
    """get_loss takes begin_update's [n_pairs, 1] logits: the loss is the mean of each
    question's reference loss (transformers' AlbertForMultipleChoice with labels), the
    gradient torch's autograd of that mean (and a finite difference of get_loss itself); an
    example without gold contributes rows but no loss or gradient."""
    from thinc.api import set_dropout_rate

    pipe = nlp.get_pipe(NAME)
    mixed = [(p, c, len(c) - 1 - i % 2) for i, (p, c) in enumerate(QUESTIONS)]
    examples = [Example(make_doc(nlp, p, c), make_doc(nlp, p, c, a)) for p, c, a in mixed]
    examples.append(Example(make_doc(nlp, "No gold here.", ["x", "y"]), make_doc(nlp, "No gold here.", ["x", "y"])))
    set_dropout_rate(pipe.model, 0.0)
    scores, backprop = pipe.model.begin_update(pipe.get_inputs(examples))
    assert scores.shape == (sum(len(c) for _, c, _ in mixed) + 2, 1)
    loss, d_scores = pipe.get_loss(examples, scores)
    assert d_scores.shape == scores.shape and d_scores.dtype == np.float32
    # The loss: the reference model's own loss, question by question, averaged.
    model, tokenizer = reference
    expected = []
    for prompt, choices, answer in mixed:
        encoding = tokenizer([prompt] * len(choices), choices, return_tensors="pt", padding=True)
        with torch.no_grad():
            inputs = {k: v.unsqueeze(0) for k, v in encoding.items()}
            expected.append(model(**inputs, labels=torch.tensor([answer])).loss.item())
    assert loss == pytest.approx(np.mean(expected), abs=1e-5)
    # The gradient: autograd of the reference CrossEntropyLoss (mean over questions) at our scores.
    leaf = torch.tensor(pipe.model.ops.to_numpy(scores).reshape(-1), dtype=torch.float64, requires_grad=True)
    start, terms = 0, []
    for _, choices, answer in mixed:
        terms.append(torch.nn.functional.cross_entropy(leaf[start : start + len(choices)][None], torch.tensor([answer])))
        start += len(choices)
    torch.stack(terms).mean().backward()
    got = pipe.model.ops.to_numpy(d_scores).reshape(-1)
    np.testing.assert_allclose(got, leaf.grad.numpy(), atol=1e-7, rtol=1e-5)
    assert not got[-2:].any()  # the example without gold
    # A central finite difference of get_loss on a few entries.
    host = pipe.model.ops.to_numpy(scores).astype("float32")
    for row in (0, 3, 7):
        eps = 1e-2
        plus, minus = host.copy(), host.copy()
        plus[row, 0] += eps
        minus[row, 0] -= eps
        numeric = (pipe.get_loss(examples, plus)[0] - pipe.get_loss(examples, minus)[0]) / (2 * eps)
        assert numeric == pytest.approx(float(got[row]), abs=1e-4)
    # predict's per-doc form gives the same loss and the same gradient, split per doc.
    per_doc = pipe.predict([eg.predicted for eg in examples])
    loss2, grads = pipe.get_loss(examples, per_doc)
    assert loss2 == pytest.approx(loss, abs=1e-6)
    np.testing.assert_allclose(np.concatenate([pipe.model.ops.to_numpy(g) for g in grads]), got, atol=1e-7)
    backprop(d_scores)  # the gradient flows back through head and encoder
    with pytest.raises(ValueError, match="n_pairs, 1"):
        pipe.get_loss(examples, scores[:-1])


def test_backprop_gives_the_reference_gradients(mc_checkpoint, reference):
    """begin_update -> get_loss -> backprop leaves on the encoder's torch parameters and on
    the pooler and classifier the gradients that autograd gives the reference model for its
    loss (the mean over questions of its CrossEntropyLoss), dropout off."""
    from thinc.api import set_dropout_rate

    from spacy_albert.layers.transformer import get_torch_encoder

    nlp = make_nlp(mc_checkpoint)
    pipe = nlp.get_pipe(NAME)
    mixed = [(p, c, i % len(c)) for i, (p, c) in enumerate(QUESTIONS)]
    examples = [Example(make_doc(nlp, p, c), make_doc(nlp, p, c, a)) for p, c, a in mixed]
    set_dropout_rate(pipe.model, 0.0)
    scores, backprop = pipe.model.begin_update(pipe.get_inputs(examples))
    loss, d_scores = pipe.get_loss(examples, scores)
    backprop(d_scores)
    ours = {f"albert.{k}": p.grad for k, p in get_torch_encoder(pipe.encoder).albert.named_parameters()}
    for name in ("pooler", "classifier"):
        layer = pipe.model.get_ref(name)
        prefix = "albert.pooler" if name == "pooler" else name
        ours[f"{prefix}.weight"] = torch.from_numpy(pipe.model.ops.to_numpy(layer.get_grad("W")))
        ours[f"{prefix}.bias"] = torch.from_numpy(pipe.model.ops.to_numpy(layer.get_grad("b")))
    model, tokenizer = reference
    model.zero_grad()
    terms = []
    for prompt, choices, answer in mixed:
        encoding = tokenizer([prompt] * len(choices), choices, return_tensors="pt", padding=True)
        terms.append(model(**{k: v.unsqueeze(0) for k, v in encoding.items()}, labels=torch.tensor([answer])).loss)
    expected_loss = torch.stack(terms).mean()
    expected_loss.backward()
    assert loss == pytest.approx(expected_loss.item(), abs=1e-5)
    expected = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert set(expected) <= set(ours)
    for name, grad in expected.items():  # (key.bias and classifier.bias get ~0: softmax ignores a shift)
        torch.testing.assert_close(ours[name].float(), grad, atol=1e-5, rtol=1e-4, msg=name)
    model.zero_grad()


def test_a_plain_albert_checkpoint_keeps_its_pooler_and_starts_a_new_classifier(albert_checkpoint):
    """As the reference's from_pretrained does: pooler from the checkpoint, a classifier of
    shape [1, hidden] initialised as the reference initialises it; the export round-trips."""
    nlp = make_nlp(albert_checkpoint)
    pipe = nlp.get_pipe(NAME)
    plain = hf.AlbertModel.from_pretrained(albert_checkpoint)
    pooler, classifier = pipe.model.get_ref("pooler"), pipe.model.get_ref("classifier")
    np.testing.assert_array_equal(pooler.get_param("W"), plain.pooler.weight.detach().numpy())
    np.testing.assert_array_equal(pooler.get_param("b"), plain.pooler.bias.detach().numpy())
    W = classifier.get_param("W")
    assert W.shape == (1, TINY_ALBERT["hidden_size"]) and W.any() and not classifier.get_param("b").any()
    assert 0.005 < float(W.std()) < 0.05  # normal(0, initializer_range = 0.02)
    reference = hf.AlbertForMultipleChoice.from_pretrained(albert_checkpoint).eval()
    with torch.no_grad():
        reference.classifier.weight.copy_(torch.from_numpy(W))
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(albert_checkpoint)
    for prompt, choices in QUESTIONS[:3]:
        ours = pipe.predict([make_doc(nlp, prompt, choices)])[0]
        np.testing.assert_allclose(ours, reference_logits((reference, tokenizer), prompt, choices), atol=1e-5)


def fresh_pipeline_losses(path, drop, steps=2):
    """The losses of `steps` nlp.update calls from the pipeline saved at `path`, with fixed seeds."""
    nlp = spacy.load(path)
    examples = learnable_data(nlp, n=8, seed=5)
    spacy.util.fix_random_seed(0)
    torch.manual_seed(0)
    optimizer = Adam(0.001)
    losses = []
    for _ in range(steps):
        losses.append(nlp.update(examples, drop=drop, sgd=optimizer)[NAME])
    return losses


def test_same_state_and_seed_give_the_same_loss_and_drop_changes_it(mc_checkpoint, tmp_path):
    nlp = make_nlp(mc_checkpoint)
    nlp.to_disk(tmp_path / "pipeline")
    plain = fresh_pipeline_losses(tmp_path / "pipeline", 0.0)
    assert fresh_pipeline_losses(tmp_path / "pipeline", 0.0) == plain
    assert plain[1] != plain[0]  # the optimizer stepped
    dropped = fresh_pipeline_losses(tmp_path / "pipeline", 0.1)
    assert dropped[0] != plain[0]
    assert fresh_pipeline_losses(tmp_path / "pipeline", 0.1) == dropped  # the dropout masks are seeded too


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
    with pytest.raises(ValueError, match="MultipleChoice"):
        spacy.blank("en").add_pipe(NAME, config={"model": {**MODEL, "@architectures": "spacy-albert.QuestionAnswering.v1"}})


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
    nlp.add_pipe(NAME, config={"model": {**MODEL, "encoder": {**ENCODER, "checkpoint": str(mc_checkpoint)}}})
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
    directory = nlp.get_pipe(NAME).export(tmp_path / "export")
    model = hf.AlbertForMultipleChoice.from_pretrained(directory).eval()
    exported = (model, hf.AlbertTokenizerFast.from_pretrained(directory))
    pipe = nlp.get_pipe(NAME)
    for prompt, choices in QUESTIONS:
        ours = pipe.predict([make_doc(nlp, prompt, choices)])[0]
        # The encoder's [CLS] states agree to ~2e-6; the trained classifier's weights (up to ~3)
        # scale that rounding, hence the relative tolerance next to the absolute one.
        np.testing.assert_allclose(ours, reference_logits(exported, prompt, choices), atol=1e-5, rtol=1e-5)


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
    shapes = [f"--components.{NAME}.model.encoder.{k}={v}" for k, v in TINY_ALBERT.items()]
    result = spacy_cli(tmp_path, "train", CONFIG, "--output", str(out), *cli_paths(mc_checkpoint, *corpus), *shapes,
                       # Without dropout the 16 steps are deterministic; with the config's 0.1 whether all
                       # 6 dev answers are right after 16 steps depends on the masks (about half of the
                       # seeds, as with the reference model's own classifier dropout before).
                       "--training.dropout=0.0", "--training.max_steps=16", "--training.eval_frequency=8",
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



def train_in_process(checkpoint, train_path, dev_path, out, dropout):
    """A 4-step `spacy train` of the shipped config (in process); the head's trained weights."""
    from spacy.cli.train import train

    overrides = {
        "paths.train": str(train_path), "paths.dev": str(dev_path), "paths.checkpoint": str(checkpoint),
        "training.dropout": dropout, "training.max_steps": 4, "training.eval_frequency": 4,
        "training.optimizer.learn_rate.warmup_steps": 1, "training.optimizer.learn_rate.initial_rate": 0.01,
        "training.logger.progress_bar": False,
    }  # fmt: skip
    train(CONFIG, out, overrides=overrides)
    pipe = spacy.load(out / "model-last").get_pipe(NAME)
    return {name: pipe.model.get_ref(name).get_param("W").copy() for name in ("pooler", "classifier")}


def test_spacy_train_takes_the_training_dropout(mc_checkpoint, corpus, tmp_path):
    """[training] dropout reaches the head: two runs at 0.0 give the same weights, one at 0.3
    other ones."""
    plain = train_in_process(mc_checkpoint, *corpus, tmp_path / "a", 0.0)
    again = train_in_process(mc_checkpoint, *corpus, tmp_path / "b", 0.0)
    dropped = train_in_process(mc_checkpoint, *corpus, tmp_path / "c", 0.3)
    for name in plain:
        np.testing.assert_array_equal(plain[name], again[name])
    assert any(not np.array_equal(plain[name], dropped[name]) for name in plain)



def test_shares_of_a_batch_add_up_to_its_loss_and_gradient(nlp, monkeypatch):
    """Data-parallel training (`python -m spacy_albert train` under torchrun): each rank's
    get_loss on its share of the batch, normalised by the whole batch's count
    (`global_count`), adds up to the one-process loss and gradient."""
    import spacy_albert.pipeline.multiple_choice as module

    pipe = nlp.get_pipe(NAME)
    examples = [Example(make_doc(nlp, p, c), make_doc(nlp, p, c, len(c) - 1)) for p, c in QUESTIONS]
    scores = pipe.predict([eg.predicted for eg in examples])
    loss, grads = pipe.get_loss(examples, scores)
    monkeypatch.setattr(module, "global_count", lambda n: len(examples))  # the all-reduce of two ranks
    shares = [list(range(len(examples)))[rank::2] for rank in range(2)]
    parts = [pipe.get_loss([examples[i] for i in share], [scores[i] for i in share]) for share in shares]
    assert sum(part_loss for part_loss, _ in parts) == pytest.approx(loss, rel=1e-6)
    for share, (_, part_grads) in zip(shares, parts):
        for i, grad in zip(share, part_grads):
            np.testing.assert_allclose(grad, grads[i], rtol=1e-6, atol=1e-9)
