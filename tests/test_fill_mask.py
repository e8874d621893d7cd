"""`albert_fill_mask`: parity with transformers' fill-mask pipeline, the reference masking
recipe, masked-LM training, serialization, export, and the shipped config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import spacy
import torch
import transformers
from spacy.tokens import DocBin
from spacy.training import Example

from conftest import TINY_ALBERT
from spacy_albert import AlbertTokenizerFast
from spacy_albert.errors import AlbertError
from spacy_albert.layers.task_model import export_task_model, get_module, run_task_model
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


def model_config(**overrides) -> dict:
    return {"@architectures": "spacy-albert.AlbertTaskModel.v1", "task": "masked-lm", **TINY_ALBERT, **overrides}


def make_nlp(checkpoint: Path | None = None, **cfg) -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_fill_mask", config={"model": model_config(), **cfg})
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
    with pytest.raises(ValueError, match="masked-lm"):
        nlp.add_pipe("albert_fill_mask", config={"model": model_config(task="question-answering")})
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
    input_ids, _ = fill_mask._pad(sequences)
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
    input_ids, _ = fill_mask._pad(windows)
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


def test_training_loss_is_the_reference_loss(fill_mask, reference):
    windows = [fill_mask._windows(text)[0] for text in TRAIN_TEXTS]
    input_ids, attention_mask = fill_mask._pad(windows)
    masked, labels = fill_mask._mask(input_ids, torch.Generator().manual_seed(3))
    rows, cols = (labels != -100).nonzero(as_tuple=True)
    logits = fill_mask._logits_at(masked, attention_mask, rows, cols, is_train=False)
    ours = torch.nn.functional.cross_entropy(logits, labels[rows, cols])
    inputs = {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}
    assert ours.item() == pytest.approx(run_task_model(fill_mask.model, inputs, is_train=False).loss.item(), abs=1e-5)
    with torch.no_grad():
        assert ours.item() == pytest.approx(reference.model(**inputs).loss.item(), abs=1e-5)


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
    assert fill_mask.update(examples, sgd=nlp.create_optimizer()) == {"albert_fill_mask": 0.0}
    assert fill_mask.mlm_scores(examples) == {"mlm_acc": None, "mlm_loss": None}


def test_long_training_docs_are_windowed(mlm_checkpoint):
    nlp = make_nlp(mlm_checkpoint, max_batch_pieces=200)
    fill_mask = nlp.get_pipe("albert_fill_mask")
    text = " ".join(TRAIN_TEXTS * 4)
    windows = fill_mask._windows(text)
    assert len(windows) > 2 and all(len(w) <= fill_mask.window for w in windows)
    assert sum(len(w) - 2 for w in windows) == len(fill_mask.tokenizer(text, add_special_tokens=False)["input_ids"])
    losses = fill_mask.update([Example(nlp.make_doc(text), nlp.make_doc(text))], sgd=nlp.create_optimizer())
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
    export_task_model(fill_mask.model, tmp_path / "export")
    model = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "export").eval()
    tokenizer = transformers.AlbertTokenizerFast.from_pretrained(tmp_path / "export")
    inputs = tokenizer([ONE_MASK, TWO_MASKS], padding=True, return_tensors="pt")
    assert inputs["input_ids"].tolist() == fill_mask.tokenizer([ONE_MASK, TWO_MASKS], padding=True)["input_ids"]
    with torch.no_grad():
        theirs = model(**inputs).logits
        ours = get_module(fill_mask.model).eval()(**inputs).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
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
    shapes = [f"--components.albert_fill_mask.model.{k}={v}" for k, v in TINY_ALBERT.items()]
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
