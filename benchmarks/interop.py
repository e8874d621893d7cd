"""spacy-transformers interoperability benchmark: a trained spacy-transformers pipeline
(`transformer` + `ner` with a `TransformerListener`) against the same pipeline migrated with
`python -m spacy_albert migrate` (`spacy-albert.TransformerModel.v1`, and `--native`).

A small random-init ALBERT (benchmarks/pipeline.py's SMALL sizes, a SentencePiece vocabulary of
WNUT-17 train) is fine-tuned with spacy-transformers' default settings (strided spans 128/96,
mean pooling) on WNUT-17 train for `--train-steps` batches, saved, and migrated both ways.
Then, on the same docs (WNUT-17 dev + SST-2 dev + WikiText-2 valid from ../shared/data, or
generated text without it), each pipeline's `nlp.pipe` words/second is measured (best of
`--repeats`, after a warm-up), and the entities are compared:

* the migrated pipelines (spacy-transformers' alignment) against the original: identical;
* with the alignment switched to spacy-albert's ("albert": the Metaspace offset trap fixed),
  the fraction of the original's entities that change, and the WNUT-17 dev F1 before and after
  fine-tuning the switched pipeline for `--finetune-steps` batches.

Ratios are printed last and one JSON line per run is appended to benchmarks/results/interop.jsonl.

    python benchmarks/interop.py                  # CPU, 300 docs, 2 threads
    python benchmarks/interop.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from data import append_record, ner_examples  # noqa: E402
from pipeline import WNUT_LABELS, benchmark_texts, generated_texts, make_small_checkpoint, ner_sentences  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "interop.jsonl"


def generated_ner(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Generated sentences whose names are entities (person: Alice, Bob; location: Paris,
    London, Berlin; corporation: Google, Microsoft): a task a small random ALBERT learns in a
    few hundred steps on a CPU, which WNUT-17 is not."""
    kinds = {"Alice": "person", "Bob": "person", "Paris": "location", "London": "location", "Berlin": "location",
             "Google": "corporation", "Microsoft": "corporation"}  # fmt: skip
    out = []
    for text in generated_texts(n, seed):
        words = text[:-1].split() + ["."]
        out.append((words, [f"B-{kinds[w]}" if w in kinds else "O" for w in words]))
    return out


def trf_config(checkpoint: Path) -> dict:
    """spacy-transformers' default transformer + ner settings on `checkpoint`."""
    return {
        "transformer": {"model": {
            "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(checkpoint),
            "tokenizer_config": {"use_fast": True},
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}},
        "ner": {"model": {
            "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
            "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None,
            "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                        "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}}},
    }  # fmt: skip


def train(nlp: Any, examples: list, steps: int, batch_size: int, seed: int, lr: float, optimizer: Any = None) -> Any:
    from thinc.api import Adam

    rng = random.Random(seed)
    optimizer = optimizer or nlp.resume_training(sgd=Adam(lr))
    for _ in range(steps):
        nlp.update(rng.sample(examples, batch_size), sgd=optimizer, drop=0.1)
    return optimizer


def entity_set(nlp: Any, texts: list[str]) -> list[set]:
    return [{(e.start_char, e.end_char, e.label_) for e in doc.ents} for doc in nlp.pipe(texts, batch_size=64)]


def changed_fraction(reference: list[set], other: list[set]) -> float | None:
    """Entities of `reference` missing from `other`, plus `other`'s extra ones, over `reference`'s
    count (None when `reference` has none)."""
    total = sum(map(len, reference))
    return sum(len(a ^ b) for a, b in zip(reference, other)) / total if total else None


def words_per_s(nlp: Any, texts: list[str], words: int, batch_size: int, repeats: int) -> float:
    list(nlp.pipe(texts[: batch_size], batch_size=batch_size))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=batch_size):
            pass
        best = min(best, time.perf_counter() - started)
    return words / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few docs and steps")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=60, help="batches of 16 training sentences")
    parser.add_argument("--finetune-steps", type=int, default=30, help="batches after switching the alignment")
    parser.add_argument("--lr", type=float, default=0.003, help="Adam learning rate of the training and fine-tuning")
    parser.add_argument("--dev-limit", type=int, default=300)
    parser.add_argument("--ner-data", choices=["wnut17", "generated"], default="generated",
                        help="what the NER is trained and scored on (WNUT-17 needs thousands of steps to learn)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.docs, args.repeats, args.train_steps, args.finetune_steps, args.dev_limit = 40, 1, 20, 10, 100

    import spacy
    import spacy_transformers  # noqa: F401  (the transformer factory)
    import torch
    from thinc.api import fix_random_seed

    from spacy_albert.interop.migrate import migrate

    torch.set_num_threads(args.threads)
    fix_random_seed(args.seed)
    texts, source = benchmark_texts(args.docs, args.seed)
    words = sum(len(doc) for doc in spacy.blank("en").tokenizer.pipe(texts))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = make_small_checkpoint(work / "checkpoint", args.seed)
        nlp = spacy.blank("en")
        for name, config in trf_config(checkpoint).items():
            nlp.add_pipe(name, config=config)
        if args.ner_data == "wnut17":
            train_examples = ner_examples(nlp, ner_sentences("train", 10**6))
            dev = ner_examples(nlp, ner_sentences("dev", args.dev_limit))
        else:
            train_examples = ner_examples(nlp, generated_ner(2000, args.seed + 10))
            dev = ner_examples(nlp, generated_ner(args.dev_limit, args.seed + 20))
        for label in WNUT_LABELS:
            nlp.get_pipe("ner").add_label(label)
        from thinc.api import Adam

        optimizer = nlp.initialize(lambda: train_examples[:200], sgd=Adam(args.lr))
        started = time.perf_counter()
        train(nlp, train_examples, args.train_steps, 16, args.seed, args.lr, optimizer)
        print(f"trained spacy-transformers for {args.train_steps} steps in {time.perf_counter() - started:.0f} s")
        nlp.to_disk(work / "original")
        for native in (False, True):
            migrate(work / "original", work / f"migrated-{'native' if native else 'transformer'}", native=native)
        variants = {
            "spacy-transformers": lambda: spacy.load(work / "original"),
            "migrated": lambda: spacy.load(work / "migrated-transformer"),
            "migrated-native": lambda: spacy.load(work / "migrated-native"),
        }
        switch = {"components": {"transformer": {"model": {"alignment": "albert"}}}}
        reference = None
        for variant, load in variants.items():
            pipeline = load()
            speed = words_per_s(pipeline, texts, words, args.batch_size, args.repeats)
            ents = entity_set(pipeline, texts)
            reference = reference or ents
            results[variant] = {"words_per_s": speed, "entities": sum(map(len, ents)),
                                "entities_changed": changed_fraction(reference, ents),
                                "dev_ents_f": pipeline.evaluate(dev)["ents_f"]}  # fmt: skip
            print(f"{variant:<34}{speed:>9.0f} words/s  {results[variant]}")
        if not sum(map(len, reference)):
            print("note: the trained pipeline predicts no entities, so the entity comparisons say nothing: "
                  "raise --train-steps or --lr")  # fmt: skip
        switched = spacy.load(work / "migrated-transformer", config=switch)
        ents = entity_set(switched, texts)
        results["migrated-albert-alignment"] = {"entities": sum(map(len, ents)),
                                                "entities_changed": changed_fraction(reference, ents),
                                                "dev_ents_f": switched.evaluate(dev)["ents_f"]}  # fmt: skip
        train(switched, train_examples, args.finetune_steps, 16, args.seed + 1, args.lr)
        results["migrated-albert-alignment-finetuned"] = {"steps": args.finetune_steps, "dev_ents_f": switched.evaluate(dev)["ents_f"]}
        original = spacy.load(work / "original")
        train(original, train_examples, args.finetune_steps, 16, args.seed + 1, args.lr)
        results["spacy-transformers-finetuned"] = {"steps": args.finetune_steps, "dev_ents_f": original.evaluate(dev)["ents_f"]}
        for key in ("migrated-albert-alignment", "migrated-albert-alignment-finetuned", "spacy-transformers-finetuned"):
            print(f"{key:<34}{results[key]}")
    base = results["spacy-transformers"]["words_per_s"]
    ratios = {f"{v} / spacy-transformers (pipe words/s)": results[v]["words_per_s"] / base for v in ("migrated", "migrated-native")}
    print()
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
        "torch": torch.__version__, "threads": args.threads, "docs": len(texts), "words": words, "source": source,
        "batch_size": args.batch_size, "train_steps": args.train_steps, "args": vars(args), "results": results,
        "ratios": ratios,
    }  # fmt: skip
    if args.quick:
        return  # smoke runs are not recorded
    append_record(RESULTS, record)


if __name__ == "__main__":
    main()
