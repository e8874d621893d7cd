"""`albert_fill_mask`: parity with transformers' fill-mask pipeline, the reference masking
recipe, masked-LM training (`get_loss` and its gradient, spaCy's `drop`, reproducibility),
serialization, export, and the shipped config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
import transformers
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam

from conftest import TINY_ALBERT
from spacy_albert import AlbertTokenizerFast
from spacy_albert.errors import AlbertError
from spacy_albert.layers.data import PieceSequences
from spacy_albert.layers.transformer import get_torch_encoder
from spacy_albert.pipeline.fill_mask import AlbertFillMask, mask_tokens

CONFIG = "configs/albert_fill_mask.cfg"
ONE_MASK = "The people of the [MASK] were good."
TWO_MASKS = "The [MASK] of the city [MASK] never seen before."
THREE_MASKS = "[MASK] people, [MASK] children and [MASK]."
TRAIN_TEXTS = [
    "the white house is near the old church.",
    "the young children saw the big water.",
    "my mother has a small white car.",
    "the old man took the little boy home.",
    "the school is across the long road.",
    "four people came to the city today.",
]


def model_config(dropout: float = 0.0, **encoder) -> dict:
    """The masked-LM head over a tiny encoder (`encoder`: settings of the encoder)."""
    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT, **encoder}
    return {"@architectures": "spacy-albert.MaskedLanguageModel.v1", "dropout": dropout, "encoder": encoder}


def make_nlp(checkpoint: Path | None = None, model: dict | None = None, **cfg) -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_fill_mask", config={"model": model or model_config(), **cfg})
    if checkpoint is not None:  # as `[initialize.components.albert_fill_mask] checkpoint` does
        nlp.config["initialize"]["components"]["albert_fill_mask"] = {"checkpoint": str(checkpoint)}
        nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def mlm_checkpoint(tmp_path_factory, spm_dir) -> Path:
    """A random-init transformers AlbertForMaskedLM; a wide init spreads the probabilities so
    that the top-k order is no tie-break between implementations."""
    directory = tmp_path_factory.mktemp("mlm_checkpoint")
    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    config = transformers.AlbertConfig(vocab_size=vocab_size, initializer_range=0.2, **TINY_ALBERT)
    transformers.AlbertForMaskedLM(config).save_pretrained(directory)
    shutil.copy(spm_dir / "spiece.model", directory / "spiece.model")
    return directory


@pytest.fixture(scope="module")
def reference(mlm_checkpoint):
    model = transformers.AlbertForMaskedLM.from_pretrained(mlm_checkpoint).eval()
    tokenizer = transformers.AlbertTokenizerFast.from_pretrained(mlm_checkpoint)
    return transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")


@pytest.fixture(scope="module")
def nlp(mlm_checkpoint):
    return make_nlp(mlm_checkpoint)


@pytest.fixture(scope="module")
def fill_mask(nlp) -> AlbertFillMask:
    return nlp.get_pipe("albert_fill_mask")


def assert_same_fills(ours, theirs, atol=1e-5):
    assert type(ours) is type(theirs) and len(ours) == len(theirs)
    if ours and isinstance(ours[0], list):
        for a, b in zip(ours, theirs):
            assert_same_fills(a, b, atol)
        return
    assert [f["token"] for f in ours] == [f["token"] for f in theirs]
    assert [f["token_str"] for f in ours] == [f["token_str"] for f in theirs]
    assert [f["sequence"] for f in ours] == [f["sequence"] for f in theirs]
    assert [f["score"] for f in ours] == pytest.approx([f["score"] for f in theirs], abs=atol)
    assert all(set(f) == {"score", "token", "token_str", "sequence"} for f in ours)


# ---- parity with transformers' fill-mask pipeline ---------------------------------------------


@pytest.mark.parametrize("text", [ONE_MASK, TWO_MASKS, THREE_MASKS, "[MASK]"])
@pytest.mark.parametrize("top_k", [1, 5])
def test_fill_matches_reference_pipeline(fill_mask, reference, text, top_k):
    assert_same_fills(fill_mask.fill(text, top_k=top_k), reference(text, top_k=top_k))


@pytest.mark.parametrize(
    "targets",
    [
        ["▁the", "▁people", "▁city", "▁good"],  # vocabulary entries
        "▁people",  # one target as a string
        ["the", "people", "children", "xqzv", ""],  # tokenized: first piece; no piece: dropped
    ],
)
@pytest.mark.parametrize("text", [ONE_MASK, TWO_MASKS])
def test_targets_match_reference_pipeline(fill_mask, reference, text, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fill_mask.fill(text, top_k=3, targets=targets)
    assert_same_fills(ours, reference(text, top_k=3, targets=targets))


def test_targets_warn_like_the_reference(fill_mask):
    with pytest.warns(UserWarning, match="Replacing with `▁people`"):
        fill_mask.fill(ONE_MASK, targets=["people", "▁the"])
    with pytest.warns(UserWarning, match="ignoring it"):
        fills = fill_mask.fill(ONE_MASK, targets=["", "▁the"])
    assert [f["token_str"] for f in fills] == ["the"]  # top_k capped at the number of targets
    with pytest.raises(ValueError, match="At least one target"):
        fill_mask.fill(ONE_MASK, targets=[])


def test_doc_extension_and_batches(nlp, fill_mask, reference):
    texts = [ONE_MASK, "no mask here", TWO_MASKS, THREE_MASKS + " " + ONE_MASK]
    docs = list(nlp.pipe(texts, batch_size=4))  # one padded forward pass
    for text, doc in zip(texts, docs):
        if "[MASK]" not in text:
            assert doc._.mask_fills == []
            continue
        expected = reference(text)
        expected = [expected] if isinstance(expected[0], dict) else expected
        assert_same_fills(doc._.mask_fills, expected)
    assert nlp.make_doc(ONE_MASK)._.mask_fills is None  # not processed yet


def test_configured_top_k_and_targets(mlm_checkpoint, reference):
    nlp = spacy.blank("en")  # the checkpoint from the architecture's own setting
    targets = ["▁the", "▁people", "▁city"]
    config = {"model": model_config(checkpoint=str(mlm_checkpoint)), "top_k": 2, "targets": targets}
    nlp.add_pipe("albert_fill_mask", config=config)
    nlp.initialize()
    assert_same_fills(nlp(ONE_MASK)._.mask_fills[0], reference(ONE_MASK, top_k=2, targets=targets))


@pytest.mark.parametrize("text", ["", "   ", "\n", "nothing to fill here.", "mask without brackets: MASK"])
def test_no_mask_gives_empty_results(nlp, fill_mask, text):
    assert fill_mask.fill(text) == []
    assert nlp(text)._.mask_fills == []


def test_long_text_is_windowed_around_each_mask(fill_mask, reference):
    words = "the old man took the little boy home across the long road".split()
    text = " ".join(words * 20)  # far over the 64 positions
    ids = fill_mask.tokenizer(text)["input_ids"]
    assert len(ids) > 3 * fill_mask.window
    words = text.split()
    for i in (0, len(words) // 2, len(words) - 1):
        words[i] = "[MASK]"
    text = " ".join(words)
    fills = fill_mask.fill(text, top_k=3)
    assert len(fills) == 3
    ids = fill_mask.tokenizer(text)["input_ids"]
    positions = [i for i, piece in enumerate(ids) if piece == fill_mask.tokenizer.mask_token_id]
    content, size = ids[1:-1], fill_mask.window - 2
    model = reference.model
    for pos, mask_fills in zip(positions, fills):
        start = min(max(pos - 1 - size // 2, 0), len(content) - size)
        window = [ids[0]] + content[start : start + size] + [ids[-1]]
        with torch.no_grad():
            probs = model(input_ids=torch.tensor([window])).logits[0, pos - start].softmax(-1)
        values, indices = probs.topk(3)
        assert [f["token"] for f in mask_fills] == indices.tolist()
        assert [f["score"] for f in mask_fills] == pytest.approx(values.tolist(), abs=1e-5)
        expected = list(ids)
        expected[pos] = indices[0].item()
        assert mask_fills[0]["sequence"] == fill_mask.tokenizer.decode(expected)  # the whole text


def test_bad_inputs(mlm_checkpoint, fill_mask):
    for top_k in (0, -1, 2.5, "5", True):
        with pytest.raises(ValueError, match="top_k"):
            fill_mask.fill(ONE_MASK, top_k=top_k)
    with pytest.raises(TypeError, match="one text"):
        fill_mask.fill([ONE_MASK])
    with pytest.raises(ValueError, match="mlm_probability"):
        make_nlp(mlm_probability=1.5)
    with pytest.raises(ValueError, match="top_k"):
        make_nlp(top_k=0)
    nlp = spacy.blank("en")
    qa_model = {"@architectures": "spacy-albert.QuestionAnswering.v1", "encoder": model_config()["encoder"]}
    with pytest.raises(ValueError, match="MaskedLanguageModel"):
        nlp.add_pipe("albert_fill_mask", config={"model": qa_model})
    uninitialized = make_nlp()
    with pytest.raises(AlbertError, match="initialize"):
        uninitialized(ONE_MASK)
    # top_k above the vocabulary: every piece once, best first; together, the whole distribution.
    vocab_size = len(fill_mask.tokenizer)
    fills = fill_mask.fill("[MASK]" * 3, top_k=vocab_size + 50)
    assert len(fills) == 3
    for mask_fills in fills:
        assert sorted(f["token"] for f in mask_fills) == list(range(vocab_size))
        scores = [f["score"] for f in mask_fills]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)


# ---- the masking recipe -----------------------------------------------------------------------


def test_mask_tokens_matches_the_reference_collator(fill_mask, mlm_checkpoint, corpus_lines):
    hf_tokenizer = transformers.AlbertTokenizerFast.from_pretrained(mlm_checkpoint)
    sequences = [hf_tokenizer(line)["input_ids"] for line in corpus_lines[:16]]
    collator = transformers.DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15, seed=42)
    expected = collator(sequences)
    input_ids = fill_mask._pad(sequences)
    special = torch.isin(input_ids, torch.tensor(fill_mask.tokenizer.all_special_ids))
    masked, labels = mask_tokens(
        input_ids, special, mask_token_id=fill_mask.tokenizer.mask_token_id, vocab_size=len(fill_mask.tokenizer),
        generator=torch.Generator().manual_seed(42),
    )  # fmt: skip
    assert torch.equal(masked, expected["input_ids"])
    assert torch.equal(labels, expected["labels"])


def test_masking_statistics(fill_mask, corpus_lines):
    tokenizer = fill_mask.tokenizer
    windows = [w for line in corpus_lines for w in fill_mask._windows(line)]
    input_ids = fill_mask._pad(windows)
    torch.manual_seed(0)
    masked, labels = fill_mask._mask(input_ids)
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids))
    selected = labels != -100
    assert not (selected & special).any()  # [CLS], [SEP], padding never selected
    assert torch.equal(labels[selected], input_ids[selected])
    assert torch.equal(masked[~selected], input_ids[~selected])
    n_candidates = int((~special).sum())
    assert n_candidates > 10_000
    assert int(selected.sum()) / n_candidates == pytest.approx(0.15, abs=0.01)
    as_mask = (masked == tokenizer.mask_token_id) & selected
    unchanged = (masked == input_ids) & selected
    random = selected & ~as_mask & ~unchanged
    n = int(selected.sum())
    assert int(as_mask.sum()) / n == pytest.approx(0.8, abs=0.03)
    assert int(random.sum()) / n == pytest.approx(0.1, abs=0.025)
    assert int(unchanged.sum()) / n == pytest.approx(0.1, abs=0.025)


def reference_batch(inputs: PieceSequences, labels: np.ndarray) -> dict:
    """A masked batch as the reference model takes it: padded, with labels -100 elsewhere."""
    longest = int(inputs.lengths.max())
    input_ids = torch.zeros((len(inputs.ids), longest), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, ids in enumerate(inputs.ids):
        input_ids[i, : len(ids)] = torch.from_numpy(ids)
        attention_mask[i, : len(ids)] = 1
    flat = torch.full((int(inputs.lengths.sum()),), -100, dtype=torch.long)
    flat[torch.from_numpy(inputs.rows)] = torch.from_numpy(labels)
    gold = torch.full(input_ids.shape, -100, dtype=torch.long)
    for i, (offset, length) in enumerate(zip(inputs.offsets, inputs.lengths)):
        gold[i, :length] = flat[offset : offset + length]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": gold}


def mlm_examples(nlp, texts=TRAIN_TEXTS):
    return [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts]


def test_masked_inputs_are_the_collators_batch(fill_mask):
    """The training batch is the reference collator's on the padded windows: the same masks,
    the rows are the selected positions, the labels the original pieces there."""
    examples = mlm_examples(spacy.blank("en"))
    windows = [w for eg in examples for w in fill_mask._windows(eg.predicted.text)]
    inputs, labels = fill_mask.masked_inputs(examples, torch.Generator().manual_seed(3))
    masked, gold = fill_mask._mask(fill_mask._pad(windows), torch.Generator().manual_seed(3))
    assert [ids.tolist() for ids in inputs.ids] == [masked[i, : len(w)].tolist() for i, w in enumerate(windows)]
    batch = reference_batch(inputs, labels)
    assert torch.equal(batch["labels"][batch["attention_mask"].bool()], gold[batch["attention_mask"].bool()])
    flat = np.concatenate([np.asarray(w) for w in windows])
    assert labels.dtype == np.int64 and np.array_equal(labels, flat[inputs.rows])
    assert len(labels) > 0 and np.all(np.diff(inputs.rows) > 0)


def test_get_loss_is_the_reference_loss_and_its_gradient(fill_mask, reference):
    """`get_loss` on the scores `predict` and `begin_update` give: the reference model's own
    masked-LM loss, and the gradient torch's autograd gives for it."""
    examples = mlm_examples(spacy.blank("en"))
    inputs, labels = fill_mask.masked_inputs(examples, torch.Generator().manual_seed(3))
    scores = fill_mask.model.predict(inputs)
    assert scores.shape == (len(labels), len(fill_mask.tokenizer)) and scores.dtype == np.float32
    loss, d_scores = fill_mask.get_loss(examples, scores)
    with torch.no_grad():
        expected = reference.model(**reference_batch(inputs, labels)).loss.item()
    assert loss == pytest.approx(expected, abs=1e-5)
    logits = torch.tensor(scores, requires_grad=True)
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()
    assert isinstance(d_scores, np.ndarray) and d_scores.shape == scores.shape
    np.testing.assert_allclose(d_scores, logits.grad.numpy(), atol=1e-7, rtol=1e-5)
    # A central finite difference on a few entries (the gold piece and another of a row).
    for row, col in [(0, int(labels[0])), (0, 7), (len(labels) - 1, int(labels[-1]))]:
        plus, minus = scores.astype("float64"), scores.astype("float64")
        plus[row, col] += 1e-2
        minus[row, col] -= 1e-2
        numeric = (fill_mask.get_loss(examples, plus)[0] - fill_mask.get_loss(examples, minus)[0]) / 2e-2
        assert d_scores[row, col] == pytest.approx(numeric, abs=2e-4)  # float32 losses
    # begin_update (drop 0, no dropout in the encoder) gives the same scores, and get_loss takes them.
    train_scores, backprop = fill_mask.model.begin_update(inputs)
    np.testing.assert_allclose(train_scores, scores, atol=1e-5)
    assert fill_mask.get_loss(examples, train_scores)[0] == pytest.approx(loss, abs=1e-5)
    # Explicit labels; scores of another batch are refused.
    assert fill_mask.get_loss(examples, scores, labels=labels)[0] == loss
    with pytest.raises(ValueError, match="masked pieces"):
        fill_mask.get_loss(examples, scores[:-1])


def test_get_loss_needs_a_masked_batch(mlm_checkpoint):
    fill_mask = make_nlp(mlm_checkpoint).get_pipe("albert_fill_mask")
    scores = np.zeros((2, len(fill_mask.tokenizer)), dtype="float32")
    with pytest.raises(AlbertError, match="masked_inputs"):
        fill_mask.get_loss([], scores)
    loss, d_scores = fill_mask.get_loss([], scores[:0], labels=np.zeros((0,), dtype="int64"))
    assert loss == 0.0 and d_scores.shape == (0, len(fill_mask.tokenizer))


def _update_losses(state: bytes, drop: float, steps: int = 2) -> list[float]:
    """Losses of `steps` nlp.update calls from a freshly loaded pipeline and seed 0."""
    nlp = make_nlp()
    nlp.from_bytes(state)
    examples = mlm_examples(nlp)
    spacy.util.fix_random_seed(0)  # numpy (thinc's dropout) and torch (the masks)
    optimizer = Adam(1e-3)
    return [nlp.update(examples, drop=drop, sgd=optimizer)["albert_fill_mask"] for _ in range(steps)]


def test_update_is_reproducible_and_honours_drop(nlp):
    state = nlp.to_bytes()
    first, again = _update_losses(state, 0.0), _update_losses(state, 0.0)
    assert first == again and all(loss > 0 for loss in first)
    assert first[1] != first[0]  # the second step saw the first one's update (and other masks)
    dropped = _update_losses(state, 0.1)
    assert dropped[0] != first[0]  # the same masks, the head's dropout on
    assert dropped == _update_losses(state, 0.1)


def test_drop_sets_the_head_dropout(fill_mask):
    from thinc.api import set_dropout_rate

    examples = mlm_examples(spacy.blank("en"))
    inputs, _ = fill_mask.masked_inputs(examples, torch.Generator().manual_seed(1))
    try:
        set_dropout_rate(fill_mask.model, 0.5)
        assert fill_mask.model.get_ref("dropout").attrs["dropout_rate"] == 0.5
        dropped, _ = fill_mask.model.begin_update(inputs)
        assert not np.allclose(dropped, fill_mask.model.predict(inputs), atol=1e-3)  # prediction: no dropout
    finally:
        set_dropout_rate(fill_mask.model, 0.0)


# ---- training, serialization, export ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(mlm_checkpoint):
    """A pipeline after a few dozen masked-LM updates on three sentences, with its history
    (mlm_probability 0.3 for more signal per step)."""
    nlp = make_nlp(mlm_checkpoint, mlm_probability=0.3)
    fill_mask = nlp.get_pipe("albert_fill_mask")
    examples = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in TRAIN_TEXTS[:3] * 4]
    before = nlp.evaluate(examples)
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = 1e-2
    torch.manual_seed(0)
    losses = []
    for _ in range(40):
        losses.append(fill_mask.update(examples, sgd=optimizer)["albert_fill_mask"])
    return nlp, before, nlp.evaluate(examples), losses


def test_component_learns(trained):
    nlp, before, after, losses = trained
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first
    assert after["mlm_loss"] < before["mlm_loss"]
    assert after["mlm_acc"] > before["mlm_acc"] + 0.3
    again = nlp.evaluate([Example(nlp.make_doc(t), nlp.make_doc(t)) for t in TRAIN_TEXTS[:3] * 4])
    assert (again["mlm_acc"], again["mlm_loss"]) == (after["mlm_acc"], after["mlm_loss"])  # fixed masks


def test_update_without_pieces_and_empty_docs(mlm_checkpoint):
    nlp = make_nlp(mlm_checkpoint)
    fill_mask = nlp.get_pipe("albert_fill_mask")
    examples = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in ("", "   ")]
    torch.manual_seed(0)  # "   " is one piece ("▁"), which this seed does not select
    assert fill_mask.update(examples, sgd=nlp.create_optimizer()) == {"albert_fill_mask": 0.0}
    assert len(fill_mask.masked_inputs(examples[:1])[1]) == 0  # "": no window at all
    assert fill_mask.mlm_scores(examples) == {"mlm_acc": None, "mlm_loss": None}


def test_long_training_docs_are_windowed(mlm_checkpoint):
    nlp = make_nlp(mlm_checkpoint, model=model_config(max_batch_pieces=200))  # the encoder runs chunks
    fill_mask = nlp.get_pipe("albert_fill_mask")
    text = " ".join(TRAIN_TEXTS * 4)
    windows = fill_mask._windows(text)
    assert len(windows) > 2 and all(len(w) <= fill_mask.window for w in windows)
    assert sum(len(w) - 2 for w in windows) == len(fill_mask.tokenizer(text, add_special_tokens=False)["input_ids"])
    examples = [Example(nlp.make_doc(text), nlp.make_doc(text))]
    # Scoring hands the encoder at most max_batch_pieces pieces at a time: the same scores.
    unchunked = make_nlp(mlm_checkpoint).get_pipe("albert_fill_mask").mlm_scores(examples)
    chunked = fill_mask.mlm_scores(examples)
    assert chunked["mlm_acc"] == unchunked["mlm_acc"]
    assert chunked["mlm_loss"] == pytest.approx(unchunked["mlm_loss"], abs=1e-5)
    losses = fill_mask.update(examples, sgd=nlp.create_optimizer())
    assert losses["albert_fill_mask"] > 0


def test_save_load_keeps_predictions(trained, tmp_path):
    nlp = trained[0]
    texts = [ONE_MASK, TWO_MASKS]
    expected = [doc._.mask_fills for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert [doc._.mask_fills for doc in loaded.pipe(texts)] == expected
    fresh = make_nlp()
    fresh.from_bytes(nlp.to_bytes())
    assert [doc._.mask_fills for doc in fresh.pipe(texts)] == expected
    # Settings come from the config a component is built from, not from the saved bytes.
    cfg, fresh_cfg = nlp.get_pipe("albert_fill_mask").cfg, fresh.get_pipe("albert_fill_mask").cfg
    assert cfg["mlm_probability"] == 0.3 and fresh_cfg == make_nlp().get_pipe("albert_fill_mask").cfg
    overridden = spacy.load(tmp_path / "pipeline", config={"components": {"albert_fill_mask": {"top_k": 2}}})
    assert overridden.get_pipe("albert_fill_mask").cfg == {**cfg, "top_k": 2}
    assert [len(fills) for fills in overridden(ONE_MASK)._.mask_fills] == [2]


def test_export_loads_in_transformers(trained, tmp_path):
    fill_mask = trained[0].get_pipe("albert_fill_mask")
    assert fill_mask.export(tmp_path / "export") == tmp_path / "export"
    model = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "export").eval()
    tokenizer = transformers.AlbertTokenizerFast.from_pretrained(tmp_path / "export")
    inputs = tokenizer([ONE_MASK, TWO_MASKS], padding=True, return_tensors="pt")
    assert inputs["input_ids"].tolist() == fill_mask.tokenizer([ONE_MASK, TWO_MASKS], padding=True)["input_ids"]
    with torch.no_grad():
        theirs = model(**inputs).logits[inputs["attention_mask"].bool()]  # every real position
    ids = [row[mask.bool()].numpy() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    n_positions = sum(len(i) for i in ids)
    ours = fill_mask.model.predict(PieceSequences(ids, rows=np.arange(n_positions)))
    torch.testing.assert_close(torch.from_numpy(ours), theirs, atol=1e-5, rtol=1e-5)
    # The MLM head's decoder is the word embedding matrix in both.
    module = get_torch_encoder(fill_mask.encoder)
    assert module.predictions.decoder.weight is module.albert.embeddings.word_embeddings.weight
    torch.testing.assert_close(model.predictions.decoder.weight, module.albert.embeddings.word_embeddings.weight)
    pipe = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    assert_same_fills(fill_mask.fill(TWO_MASKS), pipe(TWO_MASKS))


# ---- the shipped config -----------------------------------------------------------------------


def run_spacy(*args: str, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m spacy ...` (the factory comes in through its entry point), on one thread: the
    same numbers on any machine's core count."""
    cmd = [sys.executable, "-m", "spacy", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


DEV_TEXTS = TRAIN_TEXTS * 3


@pytest.fixture
def raw_corpus(tmp_path):
    """Sentences a tiny model can start to memorise in a few steps; the dev set holds the same."""
    nlp = spacy.blank("en")
    DocBin(docs=[nlp.make_doc(t) for t in TRAIN_TEXTS * 8]).to_disk(tmp_path / "train.spacy")
    DocBin(docs=[nlp.make_doc(t) for t in DEV_TEXTS]).to_disk(tmp_path / "dev.spacy")
    return tmp_path / "train.spacy", tmp_path / "dev.spacy"


def overrides(checkpoint, train, dev) -> list[str]:
    shapes = [f"--components.albert_fill_mask.model.encoder.{k}={v}" for k, v in TINY_ALBERT.items()]
    return shapes + [f"--paths.train={train}", f"--paths.dev={dev}", f"--paths.checkpoint={checkpoint}"]


def test_debug_config_passes(raw_corpus, tmp_path):
    train, dev = raw_corpus
    run_spacy("debug", "config", CONFIG, f"--paths.train={train}", f"--paths.dev={dev}", tmp_path=tmp_path)


@pytest.mark.slow
def test_spacy_train_learns_and_saves_a_loadable_pipeline(mlm_checkpoint, raw_corpus, tmp_path):
    out, log = tmp_path / "out", tmp_path / "train.jsonl"
    run_spacy(
        "train", CONFIG, "--output", str(out), *overrides(mlm_checkpoint, *raw_corpus),
        "--training.max_steps=12", "--training.eval_frequency=6", "--training.optimizer.learn_rate.warmup_steps=1",
        "--training.optimizer.learn_rate.initial_rate=0.01", "--training.batcher.size=200",
        "--training.logger.@loggers=spacy.ConsoleLogger.v3", f"--training.logger.output_file={log}",
        "--training.logger.progress_bar=null", tmp_path=tmp_path, timeout=240,
    )  # fmt: skip
    # Step 0 is scored after an update at learn rate 0 (the warm-up's start): the checkpoint.
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in evaluations] == [0, 6, 12]
    first, last = evaluations[0]["scores"]["mlm_acc"], evaluations[-1]["scores"]["mlm_acc"]
    assert last > first
    nlp = spacy.load(out / "model-best")
    assert nlp.pipe_names == ["albert_fill_mask"]
    fills = nlp(ONE_MASK)._.mask_fills
    assert len(fills) == 1 and len(fills[0]) == 5  # the config's top_k
    # The saved pipeline scores what training logged, and fits the dev text far better than the
    # checkpoint it started from (the same fixed masks: eval_seed).
    dev = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in DEV_TEXTS]
    before, after = make_nlp(mlm_checkpoint).evaluate(dev), nlp.evaluate(dev)
    assert after["mlm_acc"] == pytest.approx(last / 100) and before["mlm_acc"] == pytest.approx(first / 100)
    assert after["mlm_loss"] < before["mlm_loss"] - 1.0


def train_in_process(checkpoint: Path, train: Path, dev: Path, output: Path, dropout: float) -> list[float]:
    """`spacy train` of the shipped config for four steps; the losses it logged."""
    from spacy.cli.train import train as spacy_train

    log = output / "train.jsonl"
    shapes = {f"components.albert_fill_mask.model.encoder.{k}": v for k, v in TINY_ALBERT.items()}
    spacy_train(
        Path(CONFIG), output / "out",
        overrides={
            **shapes, "paths.train": str(train), "paths.dev": str(dev), "paths.checkpoint": str(checkpoint),
            "training.dropout": dropout, "training.max_steps": 4, "training.eval_frequency": 2,
            "training.optimizer.learn_rate.warmup_steps": 1, "training.optimizer.learn_rate.initial_rate": 0.01,
            "training.batcher.size": 100, "training.logger.@loggers": "spacy.ConsoleLogger.v3",
            "training.logger.output_file": str(log), "training.logger.progress_bar": None,
        },
    )  # fmt: skip
    return [e["losses"]["albert_fill_mask"] for e in map(json.loads, log.read_text().splitlines())]


def test_spacy_train_honours_training_dropout(mlm_checkpoint, raw_corpus, tmp_path):
    """`[training] dropout` reaches the head: the same config and seed train to the same losses
    with dropout 0.0 every time, and to other ones with 0.3."""
    without = train_in_process(mlm_checkpoint, *raw_corpus, tmp_path / "a", 0.0)
    assert len(without) == 3 and without[-1] > 0
    assert train_in_process(mlm_checkpoint, *raw_corpus, tmp_path / "b", 0.0) == without
    with_dropout = train_in_process(mlm_checkpoint, *raw_corpus, tmp_path / "c", 0.3)
    assert with_dropout[1] != without[1]
    weights = [get_torch_encoder(spacy.load(tmp_path / run / "out" / "model-last").get_pipe("albert_fill_mask").encoder)
               .albert.embeddings.word_embeddings.weight for run in "abc"]  # fmt: skip
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
