"""Pretraining: n-gram masking, SOP instances, LAMB, the training loop (loss goes down, exact
resume, gradient accumulation, 2-process gloo), and the checkpoint transformers loads."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_albert.cli import app
from spacy_albert.pretraining.instances import build_instances, piece_starts_word, special_ids
from spacy_albert.pretraining.masking import IGNORE_INDEX, MaskingSettings, mask_ngrams, ngram_probabilities
from spacy_albert.pretraining.optim import Lamb, linear_schedule
from spacy_albert.pretraining.trainer import PretrainingSettings, Pretrainer, pretrain

_SUBJECTS = ["the farmer", "a teacher", "the old sailor", "my neighbour", "the young doctor", "a child"]
_VERBS = ["planted", "painted", "carried", "sold", "found", "washed", "repaired", "borrowed"]
_OBJECTS = ["the red boat", "a wooden chair", "the small garden", "an old bicycle", "the blue door"]
_PLACES = ["in the morning", "near the river", "after the storm", "before dinner", "in the village"]


def structured_text(n_docs: int = 60, seed: int = 0) -> str:
    """Documents of story-like sentences with learnable structure (subject verb object place)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(4, 8)):
            s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_PLACES)}."
            sentences.append(s[0].upper() + s[1:])
        docs.append(" ".join(sentences))
    return "\n\n".join(docs) + "\n"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pretrain_text") / "train.txt"
    path.write_text(structured_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> Path:
    out = tmp_path_factory.mktemp("pretrain_vocab")
    result = CliRunner().invoke(app, ["train-vocab", str(text_file), "--output", str(out), "--vocab-size", "60"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def tokenizer(vocab_dir: Path):
    from spacy_albert.tokenization import AlbertTokenizerFast

    return AlbertTokenizerFast.from_pretrained(vocab_dir)


TINY = dict(
    embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
    max_seq_length=48,
)  # fmt: skip


def settings(text_file: Path, vocab_dir: Path, output: Path, **overrides) -> PretrainingSettings:
    base = dict(
        train=[str(text_file)], vocab=str(vocab_dir), output=str(output), max_steps=30, batch_size=8,
        optimizer="adamw", lr=5e-3, warmup_steps=3, log_every=1, eval_every=0, save_every=0,
        classifier_dropout=0.0, progress=False, seed=3, **TINY,
    )  # fmt: skip
    base.update(overrides)
    return PretrainingSettings(**base)


def read_log(output: Path) -> list[dict]:
    lines = (output / "pretraining_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def train_losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(output) if "loss" in r}


# ---------------------------------------------------------------------------------------
# Masking and instances
# ---------------------------------------------------------------------------------------
def _masking(tokenizer, **kw) -> tuple[MaskingSettings, np.ndarray, np.ndarray]:
    s = MaskingSettings(tokenizer.mask_token_id, len(tokenizer), tuple(tokenizer.all_special_ids), **kw)
    return s, piece_starts_word(tokenizer), special_ids(tokenizer)


def test_ngram_probabilities_follow_the_paper() -> None:
    p = ngram_probabilities(3)
    np.testing.assert_allclose(p, np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3))


def test_masking_is_whole_word_ngrams_with_the_reference_rates(tokenizer) -> None:
    settings_, word_starts, special = _masking(tokenizer, max_predictions=1000)
    text = "The old sailor repaired an old bicycle near the river before dinner in the village."
    ids = tokenizer(text)["input_ids"]
    rng = np.random.default_rng(0)
    replaced = kept = randomised = total = 0
    span_lengths: list[int] = []
    fill: list[float] = []
    for _ in range(400):
        masked, labels = mask_ngrams(ids, settings_, word_starts, special, rng)
        chosen = labels != IGNORE_INDEX
        assert not chosen[[0, len(ids) - 1]].any()  # [CLS]/[SEP] never masked
        budget = round((len(ids) - 2) * 0.15)
        assert chosen.sum() <= budget
        fill.append(chosen.sum() / budget)
        np.testing.assert_array_equal(labels[chosen], np.asarray(ids)[chosen])
        # Whole words: a chosen piece that continues a word has its word's start chosen too.
        for pos in np.flatnonzero(chosen):
            if not word_starts[ids[pos]]:
                assert chosen[pos - 1]
        total += chosen.sum()
        replaced += (masked[chosen] == tokenizer.mask_token_id).sum()
        kept += (masked[chosen] == np.asarray(ids)[chosen]).sum()
        # Lengths (in words) of the maximal runs of chosen words.
        words = [chosen[p] for p in range(1, len(ids) - 1) if word_starts[ids[p]]]
        run = 0
        for w in words + [False]:
            if w:
                run += 1
            elif run:
                span_lengths.append(run)
                run = 0
    randomised = total - replaced - kept
    assert np.mean(fill) > 0.9  # whole words may leave the budget a little short, as in the reference
    assert 0.76 < replaced / total < 0.84
    assert 0.06 < kept / total < 0.14 and 0.06 < randomised / total < 0.14
    assert max(span_lengths) >= 2  # n-grams, not single words only


def test_masking_is_deterministic_and_respects_the_budget(tokenizer) -> None:
    settings_, word_starts, special = _masking(tokenizer, max_predictions=3)
    ids = tokenizer("the farmer planted the red boat in the morning " * 4)["input_ids"]
    a = mask_ngrams(ids, settings_, word_starts, special, np.random.default_rng([1, 2, 3]))
    b = mask_ngrams(ids, settings_, word_starts, special, np.random.default_rng([1, 2, 3]))
    np.testing.assert_array_equal(a[0], b[0])
    assert (a[1] != IGNORE_INDEX).sum() <= 3
    empty = mask_ngrams([2, 3], settings_, word_starts, special, np.random.default_rng(0))
    assert (empty[1] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="mlm_probability"):
        MaskingSettings(4, 100, (0, 1, 2, 3, 4), mlm_probability=1.5)


def test_sop_instances_are_consecutive_segments() -> None:
    from spacy_albert.pretraining.instances import document_instances

    # Piece ids count up through the document, so adjacency is visible in the ids.
    counter = iter(range(10, 100_000))
    docs = [[[next(counter) for _ in range(random.Random(d * 7 + k).randint(3, 9))] for k in range(12)]
            for d in range(30)]  # fmt: skip
    word_starts = np.ones(100_000, dtype=bool)
    kw = dict(short_seq_prob=0.2, cls_id=2, sep_id=3, word_starts=word_starts, rng=random.Random(0))
    instances = [i for doc in docs for i in document_instances(doc, max_seq_length=200, **kw)]
    assert len(instances) > 30
    assert 0.3 < np.mean([i.sentence_order_label for i in instances]) < 0.7
    for instance in instances:
        ids = instance.input_ids.tolist()
        assert ids[0] == 2 and ids[instance.n_first - 1] == 3 and ids[-1] == 3
        a, b = ids[1 : instance.n_first - 1], ids[instance.n_first : -1]
        first, second = (b, a) if instance.sentence_order_label else (a, b)
        joined = first + second
        assert a and b and joined == list(range(joined[0], joined[0] + len(joined)))  # adjacent text
    # Long documents are trimmed to the maximum length, with both segments kept.
    short = [i for doc in docs for i in document_instances(doc, max_seq_length=16, **kw)]
    assert all(len(i.input_ids) <= 16 and 2 < i.n_first < len(i.input_ids) - 1 for i in short)


def test_instances_from_text(tokenizer, text_file: Path) -> None:
    from spacy_albert.pretraining.corpus import read_documents

    docs = list(read_documents(text_file))
    assert len(docs) == 60 and all(len(d) >= 4 for d in docs)  # blank lines split documents, ". " sentences
    instances = build_instances(docs, tokenizer, max_seq_length=48, seed=0)
    assert len(instances) > 60 and all(len(i.input_ids) <= 48 for i in instances)
    again = build_instances(docs, tokenizer, max_seq_length=48, seed=0)  # deterministic
    assert [x.input_ids.tolist() for x in instances] == [y.input_ids.tolist() for y in again]


# ---------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------
def test_lamb_step_uses_the_trust_ratio() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    w0 = w.detach().clone()
    w.grad = torch.randn(4, 3)
    opt = Lamb([{"params": [w], "weight_decay": 0.1, "adapt": True}], lr=0.01, eps=1e-6)
    opt.step()
    g = w.grad
    update = (g / (g.abs() + 1e-6)) + 0.1 * w0  # bias-corrected m/sqrt(v) of step 1 is g/|g|
    expected = w0 - 0.01 * (w0.norm() / update.norm()) * update
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-6)


def test_linear_schedule_warms_up_and_decays() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = linear_schedule(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(schedule.get_last_lr()[0])
        opt.step()
        schedule.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] > lrs[5] > lrs[-1] > 0 and schedule.get_last_lr()[0] == 0


# ---------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------
def test_pretraining_lowers_the_loss_and_transformers_loads_the_output(text_file, vocab_dir, tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    summary = pretrain(settings(text_file, vocab_dir, out, max_steps=60, optimizer="lamb", lr=5e-2, eval_every=30,
                                dev_fraction=0.2))  # fmt: skip
    losses = list(train_losses(out).values())
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    evals = {r["step"]: r["eval"] for r in read_log(out) if "eval" in r}
    assert sorted(evals) == [0, 30, 60] and evals[0]["instances"] >= 10
    assert evals[60]["mlm_loss"] < evals[0]["mlm_loss"] - 0.3  # held-out MLM loss goes down
    assert evals[60]["mlm_accuracy"] > evals[0]["mlm_accuracy"] and summary["eval"] == evals[60]
    assert {"config.json", "model.safetensors", "spiece.model", "tokenizer.json"} <= {p.name for p in out.iterdir()}

    from spacy_albert.models.modeling_albert import AlbertForPreTraining

    ours = AlbertForPreTraining.from_pretrained(out).eval()
    theirs = transformers.AlbertForPreTraining.from_pretrained(out).eval()
    their_tok = transformers.AlbertTokenizerFast.from_pretrained(out)
    batch = their_tok(["The farmer sold the blue door.", "A child found"], ["Before dinner.", "a boat"],
                      return_tensors="pt", padding=True)  # fmt: skip
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.sop_logits, b.sop_logits, atol=1e-5, rtol=1e-5)


def test_resume_continues_the_same_trajectory(text_file, vocab_dir, tmp_path) -> None:
    full = tmp_path / "full"
    pretrain(settings(text_file, vocab_dir, full, max_steps=12, save_every=6, optimizer="lamb"))
    # Interrupted after one step (time limit), then resumed from its latest checkpoint.
    part = tmp_path / "part"
    first = pretrain(settings(text_file, vocab_dir, part, max_steps=12, max_minutes=0.0, optimizer="lamb"))
    assert first["stopped_early"] and first["steps"] == 1
    pretrain(settings(text_file, vocab_dir, part, max_steps=12, resume="auto", optimizer="lamb"))
    assert train_losses(part) == train_losses(full)  # bit-identical trajectory
    # Resuming another run's mid-way checkpoint reproduces the rest of that run too.
    other = tmp_path / "other"
    pretrain(settings(text_file, vocab_dir, other, max_steps=12, optimizer="lamb",
                      resume=str(full / "checkpoints" / "step-00000006")))  # fmt: skip
    expected = {k: v for k, v in train_losses(full).items() if k > 6}
    assert train_losses(other) == expected


def test_gradient_accumulation_matches_one_big_batch(text_file, vocab_dir, tmp_path) -> None:
    one = Pretrainer(settings(text_file, vocab_dir, tmp_path / "a", max_steps=3))
    acc = Pretrainer(settings(text_file, vocab_dir, tmp_path / "b", max_steps=3, grad_accum=4))
    for _ in range(3):
        la, lb = one.train_step(), acc.train_step()
        assert la["loss"] == pytest.approx(lb["loss"], abs=1e-5)
    for (name, p), q in zip(one.model.named_parameters(), acc.model.parameters()):
        torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4, msg=name)


def test_bf16_and_clear_errors(text_file, vocab_dir, tmp_path) -> None:
    summary = pretrain(settings(text_file, vocab_dir, tmp_path / "bf16", max_steps=3, precision="bf16"))
    assert np.isfinite(summary["eval"]["mlm_loss"])
    with pytest.raises(ValueError, match="divisible"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", batch_size=6, grad_accum=4))
    with pytest.raises(ValueError, match="training instances"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", batch_size=4096))
    with pytest.raises(ValueError, match="precision"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", precision="fp8"))


def test_cli_pretrain_and_evaluate(text_file, vocab_dir, tmp_path) -> None:
    out = tmp_path / "cli"
    args = ["pretrain", str(text_file), "--vocab", str(vocab_dir), "--output", str(out), "--max-steps", "4",
            "--batch-size", "4", "--embedding-size", "16", "--hidden-size", "32", "--num-layers", "2",
            "--num-heads", "2", "--intermediate-size", "48", "--max-seq-length", "48", "--no-progress",
            "--num-groups", "2", "--inner-group-num", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["num_hidden_groups"] == 2
    metrics_path = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["evaluate-pretraining", str(out), str(text_file), "--max-seq-length", "48",
                                      "--output", str(metrics_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(metrics_path.read_text())
    assert 0 <= metrics["mlm_accuracy"] <= 1 and 0 <= metrics["sop_accuracy"] <= 1 and metrics["instances"] > 10
    bad = CliRunner().invoke(app, args[:-4] + ["--batch-size", "100000"])
    assert bad.exit_code == 1 and "training instances" in bad.output


@pytest.mark.slow
def test_torchrun_two_processes_match_one(text_file, vocab_dir, tmp_path) -> None:
    common = ["--vocab", str(vocab_dir), "--max-steps", "6", "--batch-size", "8", "--optimizer", "lamb",
              "--lr", "5e-3", "--warmup-steps", "2", "--log-every", "1", "--eval-every", "0", "--save-every", "0",
              "--classifier-dropout", "0", "--no-progress", "--seed", "3", "--embedding-size", "16",
              "--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--intermediate-size", "48",
              "--max-seq-length", "48"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    run = [sys.executable, "-m", "spacy_albert", "pretrain", str(text_file), "--output"]
    subprocess.run(run + [str(single)] + common, check=True, env=env, timeout=300)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "spacy_albert", "pretrain", str(text_file), "--output"]  # fmt: skip
    subprocess.run(torchrun + [str(double)] + common, check=True, env=env, timeout=300)
    a, b = train_losses(single), train_losses(double)
    assert a.keys() == b.keys() == set(range(1, 7))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-4)
    from safetensors.torch import load_file

    wa, wb = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-4, rtol=1e-3, msg=name)


def test_spacy_files_are_documents_for_vocab_and_pretraining(tmp_path) -> None:
    import spacy
    from spacy.tokens import DocBin

    from spacy_albert.pretraining.corpus import read_documents

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    texts = structured_text(n_docs=40, seed=5).split("\n\n")
    DocBin(docs=list(nlp.pipe(texts))).to_disk(tmp_path / "docs.spacy")
    docs = list(read_documents(tmp_path / "docs.spacy"))
    assert len(docs) == 40 and all(sentence.endswith(".") for sentence in docs[0])
    assert sum(len(d) for d in docs) == sum(t.count(".") for t in texts)  # doc.sents kept
    result = CliRunner().invoke(app, ["train-vocab", str(tmp_path), "-o", str(tmp_path / "v"), "-v", "50", "--cased"])
    assert result.exit_code == 0, result.output
    from spacy_albert.tokenization import AlbertTokenizerFast

    tokenizer = AlbertTokenizerFast.from_pretrained(tmp_path / "v")
    assert len(tokenizer) == 50 and not tokenizer.do_lower_case
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    missing = CliRunner().invoke(app, ["train-vocab", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "w")])
    assert missing.exit_code != 0
