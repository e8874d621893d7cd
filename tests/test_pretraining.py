"""Pretraining: n-gram masking, SOP instances, LAMB, the training loop (loss goes down, exact
resume, gradient accumulation, 2-process gloo), and the checkpoint transformers loads."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


def test_bf16_moves_the_numbers_by_a_rounding_error(text_file, vocab_dir, tmp_path) -> None:
    """Same weights, same batch, fp32 against bf16 autocast: a bf16 setting that did nothing would
    give bit-identical numbers (the fp32 run repeated does), one that broke the maths far more."""
    runs = {p: Pretrainer(settings(text_file, vocab_dir, tmp_path / p, max_steps=3, precision=p, dev_fraction=0.2))
            for p in ("float32", "bfloat16")}  # fmt: skip
    fp32, bf16 = runs["float32"], runs["bfloat16"]
    for name, weight in fp32.model.state_dict().items():
        assert torch.equal(weight, bf16.model.state_dict()[name]), name
    # Held-out evaluation (the trainer's own, which passes its precision on).
    e32, e32_again, e16 = fp32.evaluate(), fp32.evaluate(), bf16.evaluate()
    assert e32 == e32_again and e16["masked_pieces"] == e32["masked_pieces"] > 100
    # Untrained, the logits are small and bf16 moves this mean by ~5e-6 only; a no-op moves it by 0.
    assert 0 < abs(e16["mlm_loss"] - e32["mlm_loss"]) < 1e-3
    # One training step: the loss and the gradient (its norm, before clipping).
    a, b = fp32.train_step(), bf16.train_step()
    assert 0 < abs(a["loss"] - b["loss"]) < 1e-3
    assert 1e-4 < abs(a["grad_norm"] - b["grad_norm"]) < 1e-2 * a["grad_norm"]


def test_bad_settings_give_clear_errors(text_file, vocab_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="divisible"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", batch_size=6, grad_accum=4))
    with pytest.raises(ValueError, match="training instances"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", batch_size=4096))
    with pytest.raises(ValueError, match="precision"):
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", precision="fp8"))
    with pytest.raises(ValueError, match=r"precision='bf16' \(write 'bfloat16'\)"):  # one vocabulary everywhere
        Pretrainer(settings(text_file, vocab_dir, tmp_path / "x", precision="bf16"))


ECHO_LOGIT = 3.0


class EchoModel(torch.nn.Module):
    """A stand-in for AlbertForPreTraining that predicts, at each position, the piece it is given
    (MLM logits: ECHO_LOGIT x its one-hot) and sentence order 1 (SOP logits [0, 1])."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # evaluate() takes the device from a parameter
        self.predictions = torch.nn.Identity()
        self.sop_classifier = torch.nn.Identity()

    def albert(self, input_ids, attention_mask, token_type_ids, return_dict) -> SimpleNamespace:
        hidden = ECHO_LOGIT * torch.nn.functional.one_hot(input_ids, self.vocab_size).float()
        return SimpleNamespace(last_hidden_state=hidden, pooler_output=torch.tensor([0.0, 1.0]).expand(len(hidden), 2))


def test_evaluate_scores_a_model_that_echoes_its_input(tokenizer, text_file) -> None:
    from spacy_albert.pretraining.corpus import read_documents
    from spacy_albert.pretraining.trainer import EVAL_EPOCH, Masker, evaluate

    instances = build_instances(read_documents(text_file), tokenizer, max_seq_length=48, seed=0)[:50]
    masker = Masker.for_tokenizer(tokenizer, seed=0, max_seq_length=48)
    masks = [masker(instance, EVAL_EPOCH, i) for i, instance in enumerate(instances)]
    chosen = [labels != IGNORE_INDEX for _, labels in masks]
    n_masked = sum(int(c.sum()) for c in chosen)
    n_kept = sum(int((ids[c] == labels[c]).sum()) for (ids, labels), c in zip(masks, chosen))
    sop_share = np.mean([instance.sentence_order_label for instance in instances])
    model, pad, vocab_size = EchoModel(len(tokenizer)), tokenizer.pad_token_id, len(tokenizer)
    logsumexp = np.log(np.exp(ECHO_LOGIT) + vocab_size - 1)
    sop_loss = sop_share * np.log1p(np.exp(-1.0)) + (1 - sop_share) * np.log1p(np.exp(1.0))

    def unreplaced(instance, epoch, index):
        """The same choice of pieces, left in place: the echo of each is its gold piece."""
        return np.asarray(instance.input_ids, dtype=np.int64), masker(instance, epoch, index)[1]

    # Batches of 16 (the last of 2): padding differs from batch to batch.
    gold = evaluate(model, instances, unreplaced, pad, batch_size=16)
    assert gold == {"mlm_accuracy": 1.0, "mlm_loss": pytest.approx(logsumexp - ECHO_LOGIT, rel=1e-6),
                    "sop_accuracy": pytest.approx(sop_share), "sop_loss": pytest.approx(sop_loss, rel=1e-6),
                    "instances": 50, "masked_pieces": n_masked}  # fmt: skip
    # With the real masks only the pieces kept as they were (about 10%) are echoed right.
    real = evaluate(model, instances, masker, pad, batch_size=16)
    assert 0.03 < n_kept / n_masked < 0.3
    assert real["mlm_accuracy"] == pytest.approx(n_kept / n_masked)
    assert real["mlm_loss"] == pytest.approx(logsumexp - ECHO_LOGIT * n_kept / n_masked, rel=1e-6)


ORACLE_MLM_LOGIT, ORACLE_SOP_LOGIT = 3.0, 2.0


def oracle_checkpoint(source: Path, target: Path, piece: int, sop_label: int) -> None:
    """`source` with heads that ignore the encoder: MLM logits ORACLE_MLM_LOGIT at `piece` and 0
    elsewhere, SOP logits ORACLE_SOP_LOGIT at `sop_label` and 0 at the other label."""
    from spacy_albert.models.modeling_albert import AlbertForPreTraining

    model = AlbertForPreTraining.from_pretrained(source)
    mlm, sop = model.predictions, model.sop_classifier.classifier
    with torch.no_grad():
        for param in [*mlm.dense.parameters(), *mlm.LayerNorm.parameters(), mlm.bias, *sop.parameters()]:
            param.zero_()  # the decoder's input is 0 and its bias is `mlm.bias`
        mlm.bias[piece] = ORACLE_MLM_LOGIT
        sop.bias[sop_label] = ORACLE_SOP_LOGIT
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints"))
    model.save_pretrained(target)


def oracle_metrics(vocab_size: int, mlm_share: float, sop_share: float, instances: int, masked: int) -> dict:
    """The metrics of `oracle_checkpoint`'s model on text where a `mlm_share` of the masked pieces
    are its MLM answer and a `sop_share` of the instances have its SOP label; its accuracies are
    those shares, its losses the cross-entropies of its fixed logits."""
    logsumexp = np.log(np.exp(ORACLE_MLM_LOGIT) + vocab_size - 1)
    sop_right, sop_wrong = np.log1p(np.exp(-ORACLE_SOP_LOGIT)), np.log1p(np.exp(ORACLE_SOP_LOGIT))
    return {
        "mlm_accuracy": pytest.approx(mlm_share, abs=1e-12),
        "mlm_loss": pytest.approx(logsumexp - ORACLE_MLM_LOGIT * mlm_share, rel=1e-5),
        "sop_accuracy": pytest.approx(sop_share, abs=1e-12),
        "sop_loss": pytest.approx(sop_share * sop_right + (1 - sop_share) * sop_wrong, rel=1e-5),
        "instances": instances,
        "masked_pieces": masked,
    }


def test_cli_pretrain_and_evaluate(text_file, vocab_dir, tmp_path) -> None:
    from spacy_albert.pretraining.corpus import read_documents
    from spacy_albert.pretraining.trainer import EVAL_EPOCH, Masker
    from spacy_albert.tokenization import AlbertTokenizerFast

    out = tmp_path / "cli"
    args = ["pretrain", str(text_file), "--vocab", str(vocab_dir), "--output", str(out), "--max-steps", "4",
            "--batch-size", "4", "--embedding-size", "16", "--hidden-size", "32", "--num-layers", "2",
            "--num-heads", "2", "--intermediate-size", "48", "--max-seq-length", "48", "--no-progress",
            "--num-groups", "2", "--inner-group-num", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["num_hidden_groups"] == 2
    bad = CliRunner().invoke(app, args[:-4] + ["--batch-size", "100000"])
    assert bad.exit_code == 1 and "training instances" in bad.output

    # The trained encoder under oracle heads: MLM always answers "▁a", SOP always "swapped" (1).
    tokenizer = AlbertTokenizerFast.from_pretrained(out)
    piece = tokenizer.convert_tokens_to_ids("▁a")
    oracle_checkpoint(out, tmp_path / "oracle", piece, sop_label=1)
    # Text made of that piece alone: every masked piece's gold is the oracle's answer.
    rng = random.Random(0)
    a_text = "\n\n".join("\n".join(" ".join(["a"] * rng.randint(3, 12)) for _ in range(rng.randint(3, 6)))
                         for _ in range(30))  # fmt: skip
    (tmp_path / "a.txt").write_text(a_text + "\n", encoding="utf-8")
    assert tokenizer("a a a", add_special_tokens=False)["input_ids"] == [piece] * 3
    for path in (tmp_path / "a.txt", text_file):
        metrics_path = tmp_path / "metrics.json"
        result = CliRunner().invoke(app, ["evaluate-pretraining", str(tmp_path / "oracle"), str(path),
                                          "--max-seq-length", "48", "--output", str(metrics_path)])  # fmt: skip
        assert result.exit_code == 0, result.output
        # What the evaluation sees (the command's defaults: seed 0, its fixed evaluation masks).
        instances = build_instances(read_documents(path), tokenizer, max_seq_length=48, seed=0)
        masker = Masker.for_tokenizer(tokenizer, seed=0, max_seq_length=48)
        masks = [masker(instance, EVAL_EPOCH, i) for i, instance in enumerate(instances)]
        gold = np.concatenate([labels[labels != IGNORE_INDEX] for _, labels in masks])
        mlm_share = float(np.mean(gold == piece))
        sop_share = float(np.mean([i.sentence_order_label == 1 for i in instances]))
        assert sop_share != 0.5  # a label compared the wrong way round would score 1 - share
        if path.name == "a.txt":
            assert mlm_share == 1.0
            # Every piece is a word: 15% of each instance's pieces, at most max_predictions (8).
            assert len(gold) == sum(min(8, max(1, round(0.15 * (len(i.input_ids) - 3)))) for i in instances)
        else:
            assert 0.05 < mlm_share < 0.5
        expected = oracle_metrics(len(tokenizer), mlm_share, sop_share, len(instances), len(gold))
        assert json.loads(metrics_path.read_text()) == expected


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
    # --standalone: a local rendezvous on a port the OS picks free (no fixed port to collide on).
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
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


# ---------------------------------------------------------------------------------------
# Checkpoint safety: data-only trainer state, atomic saves, no pickle on resume
# ---------------------------------------------------------------------------------------
_CLI_TINY = ["--embedding-size", "16", "--hidden-size", "32", "--num-layers", "2", "--num-heads", "2",
             "--intermediate-size", "48", "--max-seq-length", "48", "--batch-size", "8", "--optimizer", "lamb",
             "--lr", "5e-3", "--warmup-steps", "3", "--log-every", "1", "--eval-every", "0", "--seed", "3",
             "--classifier-dropout", "0", "--no-progress"]  # fmt: skip


def test_checkpoints_hold_no_pickle(text_file, vocab_dir, tmp_path) -> None:
    out = tmp_path / "run"
    pretrain(settings(text_file, vocab_dir, out, max_steps=4, save_every=2, optimizer="lamb"))
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000004"]  # no partial folders
    files = {p.name for p in (root / "step-00000004").iterdir()}
    assert {"trainer_state.json", "trainer_state.safetensors", "model.safetensors"} <= files
    assert not {"trainer_state.pt", "pytorch_model.bin"} & files
    state = json.loads((root / "step-00000004" / "trainer_state.json").read_text())
    assert state["format"] == "spacy-albert-trainer-state" and state["state"]["step"] == 4
    # A folder left by a save that died before its rename is never resumed from.
    import shutil

    from spacy_albert.pretraining.trainer import latest_checkpoint

    shutil.copytree(root / "step-00000004", root / ".step-00000006.partial-0000")
    assert latest_checkpoint(out) == root / "step-00000004"


def test_cli_resume_is_bit_identical(text_file, vocab_dir, tmp_path) -> None:
    base = ["pretrain", str(text_file), "--vocab", str(vocab_dir), "--max-steps", "6", *_CLI_TINY]
    full, part = tmp_path / "full", tmp_path / "part"
    assert CliRunner().invoke(app, base + ["--output", str(full), "--save-every", "0"]).exit_code == 0
    first = CliRunner().invoke(app, base + ["--output", str(part), "--save-every", "0", "--max-minutes", "0"])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == ["step-00000001"]
    resumed = CliRunner().invoke(app, base + ["--output", str(part), "--save-every", "0", "--resume", "auto"])
    assert resumed.exit_code == 0, resumed.output
    assert train_losses(part) == train_losses(full) and len(train_losses(full)) == 6


def test_crash_while_saving_leaves_the_previous_checkpoint(text_file, vocab_dir, tmp_path, monkeypatch) -> None:
    from spacy_albert.pretraining import trainer as trainer_module

    full = tmp_path / "full"
    pretrain(settings(text_file, vocab_dir, full, max_steps=6, optimizer="lamb"))
    out = tmp_path / "crash"
    real = trainer_module.save_trainer_state

    def crash_at_step_4(directory, state):
        if state["step"] == 4:
            real(directory, state)  # everything written ... then the process dies before the rename
            raise KeyboardInterrupt
        real(directory, state)

    monkeypatch.setattr(trainer_module, "save_trainer_state", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain(settings(text_file, vocab_dir, out, max_steps=6, save_every=2, optimizer="lamb"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002"]
    monkeypatch.undo()
    pretrain(settings(text_file, vocab_dir, out, max_steps=6, save_every=2, optimizer="lamb", resume="auto"))
    assert train_losses(out) == train_losses(full)  # steps 3..6 re-run from step 2, identically


def test_resume_refuses_a_legacy_pickle_state(text_file, vocab_dir, tmp_path) -> None:
    from spacy_albert.pretraining.state import TrainerStateError

    out = tmp_path / "run"
    pretrain(settings(text_file, vocab_dir, out, max_steps=2, save_every=2, optimizer="lamb"))
    checkpoint = out / "checkpoints" / "step-00000002"
    for name in ("trainer_state.json", "trainer_state.safetensors"):
        (checkpoint / name).unlink()
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"step": 2, "payload": Payload()}, checkpoint / "trainer_state.pt")
    for resume in ("auto", str(checkpoint)):
        with pytest.raises(TrainerStateError, match=r"trainer_state\.pt.*no longer loaded.*--init"):
            Pretrainer(settings(text_file, vocab_dir, out, max_steps=4, optimizer="lamb", resume=resume))
    args = ["pretrain", str(text_file), "--vocab", str(vocab_dir), "--output", str(out), "--max-steps", "4",
            "--resume", str(checkpoint), *_CLI_TINY]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "old pickle format" in result.output and "--init" in result.output
    assert not marker.exists()
    # The suggested way on: a new run from the checkpoint's weights.
    pretrain(settings(text_file, vocab_dir, tmp_path / "again", max_steps=2, optimizer="lamb", init=str(checkpoint)))


def test_resume_from_a_truncated_state_names_the_file(text_file, vocab_dir, tmp_path) -> None:
    from spacy_albert.pretraining.state import TrainerStateError

    out = tmp_path / "run"
    pretrain(settings(text_file, vocab_dir, out, max_steps=2, save_every=2, optimizer="lamb"))
    tensors = out / "checkpoints" / "step-00000002" / "trainer_state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(TrainerStateError, match=r"trainer_state\.safetensors' is truncated or corrupted.*--init"):
        Pretrainer(settings(text_file, vocab_dir, out, max_steps=4, optimizer="lamb", resume="auto"))
    tensors.unlink()
    with pytest.raises(TrainerStateError, match=r"trainer_state\.safetensors' is missing"):
        Pretrainer(settings(text_file, vocab_dir, out, max_steps=4, optimizer="lamb", resume="auto"))
