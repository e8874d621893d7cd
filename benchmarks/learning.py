"""Learning check on real data: `albert_ner` on WNUT-17 and `albert_textcat` on SST-2 against
transformers' `AlbertForTokenClassification` / `AlbertForSequenceClassification` trained by a
plain PyTorch loop, from the same checkpoint with the same hyperparameters and data.

Both sides get the same random-init (or given) checkpoint (pooler included), the same initial
classifier (ours, copied into the reference), the same SentencePiece vocabulary,
the same sentences in the same order, batch size, learning rate (Adam, no weight decay, no
clipping, constant rate), dropout (`--dropout`, in the encoder and before the classifier) and
epochs; both are scored with spaCy's scorer on the same dev docs. Each seed (`--seeds`)
shuffles the training data and draws the initial classifier; the training losses of the two
sides are compared step by step (equal at step 1 when both compute the same thing; float
rounding then makes them drift apart slowly), and scores and seconds per epoch are averaged
over the seeds. Prints the scores per seed, the means, differences and time ratios, and
appends a JSON line to benchmarks/results/learning.jsonl. Data: ../shared/data (never copied).

    python benchmarks/learning.py --epochs 1 --train-limit 2000
    python benchmarks/learning.py --checkpoint path/to/pretrained/albert --epochs 4 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import spacy
import torch
import transformers as hf
from spacy.scorer import Scorer
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_albert
from spacy_albert.layers.heads import linear_params
from spacy_albert.pipeline.ner import transition_masks, viterbi

from data import append_record, ner_examples, read_conll, tagged_doc  # benchmarks/data.py (benchmarks/ is on sys.path when run as a script)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results" / "learning.jsonl"
SMALL = dict(embedding_size=128, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
             max_position_embeddings=512)  # fmt: skip


def read_sst2(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(sentence.strip(), int(label)) for sentence, label in rows[1:]]


def make_checkpoint(directory: Path, texts: list[str], head: type, vocab_size: int, seed: int, **config: Any) -> Path:
    spacy_albert.train_sentencepiece(texts, directory, vocab_size=vocab_size)
    n = len(spacy_albert.AlbertTokenizerFast(vocab_file=str(directory / "spiece.model")))
    torch.manual_seed(seed)
    head(hf.AlbertConfig(vocab_size=n, **SMALL, **config)).save_pretrained(directory)
    return directory


def batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---- NER --------------------------------------------------------------------------------
def ours_ner(checkpoint: Path, train, dev, args) -> dict:
    nlp = spacy.blank("en")
    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **SMALL, "checkpoint": str(checkpoint),
               "hidden_dropout_prob": args.dropout}  # fmt: skip
    nlp.add_pipe("albert_ner", config={"scheme": "BIO", "model": {
        "@architectures": "spacy-albert.TokenClassifier.v1", "dropout": 0.1,
        "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first", "encoder": encoder}}})  # fmt: skip
    train_eg, dev_eg = ner_examples(nlp, train), ner_examples(nlp, dev)
    nlp.initialize(lambda: train_eg)
    labels = nlp.get_pipe("albert_ner").tags
    initial = [torch.tensor(nlp.get_pipe("albert_ner").model.ops.to_numpy(a).copy())
               for a in linear_params(nlp.get_pipe("albert_ner").model.get_ref("classifier"))]  # fmt: skip
    epoch_times, step_losses = train_ours(nlp, train_eg, args)
    scores = nlp.evaluate(dev_eg)
    return {"f": scores["ents_f"] * 100, "seconds_per_epoch": float(np.mean(epoch_times)), "labels": labels,
            "initial": initial, "losses": step_losses}  # fmt: skip


def train_ours(nlp, train_eg: list[Example], args) -> tuple[list[float], list[float]]:
    """`nlp.update` over the batches for `args.epochs`: seconds per epoch and the loss of each step."""
    optimizer = Adam(args.lr, L2=0.0, grad_clip=0.0, use_averages=False)
    epoch_times, step_losses = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for batch in batches(train_eg, args.batch_size):
            losses: dict[str, float] = {}
            nlp.update(batch, sgd=optimizer, drop=args.dropout, losses=losses)
            step_losses.append(sum(losses.values()))
        epoch_times.append(time.perf_counter() - start)
    return epoch_times, step_losses


def reference_ner(checkpoint: Path, train, dev, labels: list[str], initial, args) -> dict:
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(checkpoint)
    label2id = {t: i for i, t in enumerate(labels)}
    model = hf.AlbertForTokenClassification.from_pretrained(
        checkpoint, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
        classifier_dropout_prob=args.dropout, hidden_dropout_prob=args.dropout,
    )  # fmt: skip
    with torch.no_grad():  # start from our initial classifier, so both sides start equal
        model.classifier.weight.copy_(initial[0])
        model.classifier.bias.copy_(initial[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    def encode(sentences):
        enc = tokenizer([w for w, _ in sentences], is_split_into_words=True, truncation=True, max_length=512,
                        padding=True, return_tensors="pt")  # fmt: skip
        labels_ = torch.full(enc["input_ids"].shape, -100)
        for i, (_, tags) in enumerate(sentences):
            previous = None
            for j, word in enumerate(enc.word_ids(i)):
                if word is not None and word != previous:
                    labels_[i, j] = label2id.get(tags[word], label2id["O"])
                previous = word
        return enc, labels_

    epoch_times, step_losses = [], []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for batch in batches(train, args.batch_size):
            enc, labels_ = encode(batch)
            loss = model(**enc, labels=labels_).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item())
        epoch_times.append(time.perf_counter() - start)
    model.eval()
    nlp = spacy.blank("en")
    allowed, start, end = transition_masks(labels, "BIO")
    examples: dict[str, list[Example]] = {"argmax": [], "viterbi": []}
    with torch.no_grad():
        for batch in batches(dev, 64):
            enc, _ = encode(batch)
            logits = model(**enc).logits.numpy()
            for i, (words, tags) in enumerate(batch):
                rows, previous = [0] * len(words), None
                for j, word in enumerate(enc.word_ids(i)):
                    if word is not None and word != previous:
                        rows[word] = j
                    previous = word
                word_logits = logits[i, rows]
                decoded = {
                    "argmax": [labels[k] for k in word_logits.argmax(-1)],
                    "viterbi": [labels[k] for k in viterbi(word_logits, allowed, start, end)],
                }
                gold = tagged_doc(nlp.vocab, words, tags)
                for name, word_tags in decoded.items():
                    examples[name].append(Example(tagged_doc(nlp.vocab, words, word_tags), gold))
    f = {name: Scorer.score_spans(egs, "ents")["ents_f"] * 100 for name, egs in examples.items()}
    return {"f": f["argmax"], "f_constrained_decoding": f["viterbi"], "seconds_per_epoch": float(np.mean(epoch_times)),
            "losses": step_losses}  # fmt: skip


# ---- text classification ----------------------------------------------------------------
def ours_textcat(checkpoint: Path, train, dev, args) -> dict:
    nlp = spacy.blank("en")
    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **SMALL, "checkpoint": str(checkpoint),
               "hidden_dropout_prob": args.dropout}  # fmt: skip
    nlp.add_pipe("albert_textcat", config={"model": {"@architectures": "spacy-albert.SequenceClassifier.v1",
                                                     "dropout": 0.1, "tok2vec": encoder}})  # fmt: skip

    def examples(rows):
        return [Example.from_dict(nlp.make_doc(t), {"cats": {"NEG": float(y == 0), "POS": float(y == 1)}}) for t, y in rows]

    train_eg, dev_eg = examples(train), examples(dev)
    nlp.initialize(lambda: train_eg)
    textcat = nlp.get_pipe("albert_textcat")
    assert textcat.labels == ("NEG", "POS")
    initial = [torch.tensor(textcat.model.ops.to_numpy(a).copy()) for a in linear_params(textcat.model.get_ref("classifier"))]
    epoch_times, step_losses = train_ours(nlp, train_eg, args)
    scores = nlp.evaluate(dev_eg)
    return {"accuracy": _accuracy(dev_eg, nlp) * 100, "macro_f": scores["cats_macro_f"] * 100,
            "seconds_per_epoch": float(np.mean(epoch_times)), "initial": initial, "losses": step_losses}  # fmt: skip


def _accuracy(examples: list[Example], nlp) -> float:
    docs = list(nlp.pipe([eg.reference.text for eg in examples]))
    right = sum(max(d.cats, key=d.cats.get) == max(eg.reference.cats, key=eg.reference.cats.get)
                for d, eg in zip(docs, examples))  # fmt: skip
    return right / len(examples)


def reference_textcat(checkpoint: Path, train, dev, initial, args) -> dict:
    tokenizer = hf.AlbertTokenizerFast.from_pretrained(checkpoint)
    model = hf.AlbertForSequenceClassification.from_pretrained(
        checkpoint, num_labels=2, classifier_dropout_prob=args.dropout, hidden_dropout_prob=args.dropout
    )
    with torch.no_grad():  # start from our initial classifier (labels NEG=0, POS=1 on both sides)
        model.classifier.weight.copy_(initial[0])
        model.classifier.bias.copy_(initial[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    epoch_times, step_losses = [], []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for batch in batches(train, args.batch_size):
            enc = tokenizer([t for t, _ in batch], truncation=True, max_length=512, padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item())
        epoch_times.append(time.perf_counter() - start)
    model.eval()
    right, predicted_all, gold_all = 0, [], []
    with torch.no_grad():
        for batch in batches(dev, 64):
            enc = tokenizer([t for t, _ in batch], truncation=True, max_length=512, padding=True, return_tensors="pt")
            predicted = model(**enc).logits.argmax(-1).tolist()
            predicted_all += predicted
            gold_all += [y for _, y in batch]
    right = sum(p == g for p, g in zip(predicted_all, gold_all))
    f = []
    for c in (0, 1):
        tp = sum(p == c and g == c for p, g in zip(predicted_all, gold_all))
        prec = tp / max(1, sum(p == c for p in predicted_all))
        rec = tp / max(1, sum(g == c for g in gold_all))
        f.append(2 * prec * rec / max(1e-12, prec + rec))
    return {"accuracy": right / len(dev) * 100, "macro_f": float(np.mean(f)) * 100,
            "seconds_per_epoch": float(np.mean(epoch_times)), "losses": step_losses}  # fmt: skip


def loss_agreement(ours: list[float], ref: list[float], steps_per_epoch: int) -> dict:
    """How closely the two training runs follow each other, step by step."""
    diff = np.abs(np.asarray(ours) - np.asarray(ref)) / np.maximum(np.abs(ref), 1e-12)
    apart = np.flatnonzero(diff > 0.01)
    return {"first_step_loss": [ours[0], ref[0]], "first_step_relative_diff": float(diff[0]),
            "steps_within_1pct": int(apart[0]) if len(apart) else len(diff),
            "last_epoch_mean_loss": [float(np.mean(ours[-steps_per_epoch:])), float(np.mean(ref[-steps_per_epoch:]))]}  # fmt: skip


def print_agreement(agreement: dict) -> None:
    (ours_first, ref_first), (ours_last, ref_last) = agreement["first_step_loss"], agreement["last_epoch_mean_loss"]
    print(f"  losses: step 1 {ours_first:.6f} vs {ref_first:.6f}, within 1% for {agreement['steps_within_1pct']} "
          f"steps; last epoch {ours_last:.4f} vs {ref_last:.4f}")  # fmt: skip


def run_seed(args, seed: int, tmp: Path) -> dict[str, Any]:
    """One seed: it orders the training data and draws the classifier that both sides start from."""
    record: dict[str, Any] = {}
    steps = lambda n: -(-n // args.batch_size)  # noqa: E731
    if "ner" in args.tasks:
        full_train = read_conll(DATA / "wnut17" / "wnut17train.conll")
        train = full_train[: args.train_limit]
        random.Random(seed).shuffle(train)
        dev = read_conll(DATA / "wnut17" / "emerging.dev.conll")[: args.dev_limit]
        texts = [" ".join(w) for w, _ in full_train]
        checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(
            tmp / f"ner-{seed}", texts, hf.AlbertModel, args.vocab_size, seed)  # fmt: skip
        fix_random_seed(seed)
        ours = ours_ner(checkpoint, train, dev, args)
        ref = reference_ner(checkpoint, train, dev, ours.pop("labels"), ours.pop("initial"), args)
        agreement = loss_agreement(ours.pop("losses"), ref.pop("losses"), steps(len(train)))
        record["ner"] = {"ours": ours, "reference": ref, "loss_agreement": agreement}
        print(f"seed {seed}: WNUT-17 NER ({len(train)} train, {len(dev)} dev, {args.epochs} epoch(s))")
        print(f"  spacy-albert  F1 {ours['f']:.2f}  {ours['seconds_per_epoch']:.1f} s/epoch")
        print(f"  transformers  F1 {ref['f']:.2f} (argmax), {ref['f_constrained_decoding']:.2f} (our constrained "
              f"decoding)  {ref['seconds_per_epoch']:.1f} s/epoch")  # fmt: skip
        print_agreement(agreement)
    if "textcat" in args.tasks:
        rows = read_sst2(DATA / "sst2" / "train.tsv")
        random.Random(seed).shuffle(rows)
        train, dev = rows[: args.train_limit], read_sst2(DATA / "sst2" / "dev.tsv")[: args.dev_limit]
        checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(
            tmp / f"textcat-{seed}", [t for t, _ in rows[:20000]], hf.AlbertModel, args.vocab_size, seed)  # fmt: skip
        fix_random_seed(seed)
        ours = ours_textcat(checkpoint, train, dev, args)
        ref = reference_textcat(checkpoint, train, dev, ours.pop("initial"), args)
        agreement = loss_agreement(ours.pop("losses"), ref.pop("losses"), steps(len(train)))
        record["textcat"] = {"ours": ours, "reference": ref, "loss_agreement": agreement}
        print(f"seed {seed}: SST-2 sentiment ({len(train)} train, {len(dev)} dev, {args.epochs} epoch(s))")
        for name, r in (("spacy-albert", ours), ("transformers", ref)):
            print(f"  {name}  accuracy {r['accuracy']:.2f}  macro F {r['macro_f']:.2f}  {r['seconds_per_epoch']:.1f} s/epoch")
        print_agreement(agreement)
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each score and time, and ours minus the reference."""
    metrics = {"ner": [("f", "f_constrained_decoding")], "textcat": [("accuracy", "accuracy"), ("macro_f", "macro_f")]}
    summary: dict[str, Any] = {}
    for task, pairs in metrics.items():
        if task not in runs[0]:
            continue
        summary[task] = {}
        for ours_key, ref_key in pairs + [("seconds_per_epoch", "seconds_per_epoch")]:
            ours = np.array([r[task]["ours"][ours_key] for r in runs])
            ref = np.array([r[task]["reference"][ref_key] for r in runs])
            summary[task][ours_key] = {"ours": [float(ours.mean()), float(ours.std())],
                                       "reference": [float(ref.mean()), float(ref.std())],
                                       "difference": float(ours.mean() - ref.mean()),
                                       "ratio": float(ours.mean() / ref.mean()) if ref.mean() else None}  # fmt: skip
    print(f"\nover {len(runs)} seed(s): mean ± std (ours - reference; ours / reference for time)")
    for task, entries in summary.items():
        for key, e in entries.items():
            (om, os_), (rm, rs) = e["ours"], e["reference"]
            tail = f"ratio {e['ratio']:.2f}" if key == "seconds_per_epoch" else f"difference {e['difference']:+.2f} points"
            print(f"  {task:8s} {key:18s} ours {om:7.2f} ± {os_:5.2f}   reference {rm:7.2f} ± {rs:5.2f}   {tail}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a local ALBERT checkpoint (else a small random-init one per seed)")
    parser.add_argument("--tasks", nargs="+", default=["ner", "textcat"], choices=["ner", "textcat"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--dev-limit", type=int, default=1000)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; means are compared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        record["runs"] = [run_seed(args, seed, Path(tmp)) for seed in args.seeds]
    record["summary"] = summarize(record["runs"])
    append_record(RESULTS, record)


if __name__ == "__main__":
    main()
