"""What switching a migrated spacy-transformers pipeline to spacy-albert's alignment does to its
predictions, and whether fine-tuning after the switch recovers them.

1. The albert_ner project's offline steps (generated CoNLL-style sample, SentencePiece
   vocabulary, a tiny ALBERT pretrained on the sample's raw text) run in a copy of the project;
   a second sample (another seed, `--test-sents` sentences) is the test set.
2. A spacy-transformers pipeline (`transformer` with `spacy-transformers.TransformerModel.v3`,
   strided spans; `ner` with `spacy-transformers.TransformerListener.v1`) is trained on that
   checkpoint with `spacy train` (in process, one torch thread) for `--train-steps` steps; as a
   reference, the same training with `spacy-albert.TransformerModel.v1` and alignment "albert".
3. `python -m spacy_albert migrate` (default mode: alignment "spacy-transformers"): the entities
   must be identical to the original's on the test set.
4. The migrated pipeline loaded with `alignment = "albert"`: the docs and entities that change,
   and entity P/R/F on the test set before and after the switch.
5. Fine-tuning with `spacy train`, both components sourced from the saved pipeline (switched,
   and as the control the unswitched migrated one), two recipes: "constant" (`--finetune-steps`
   at the constant learning rate `--finetune-lr`) and "retrain" (the original training's own
   schedule and steps again); scored on the test set every `--eval-every` steps.

One JSON record is printed and appended to benchmarks/results/alignment_switch.jsonl.

    python benchmarks/alignment_switch.py                    # ~10 min on 2 CPU cores
    python benchmarks/alignment_switch.py --project DIR      # reuse a prepared project copy
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from data import append_record  # benchmarks/data.py (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "alignment_switch.jsonl"
SWITCH = {"components": {"transformer": {"model": {"alignment": "albert"}}}}
RECORDED: list[dict] = []  # (step, scores) of the current `spacy train` run

TRAIN_CONFIG = """
[paths]
train = null
dev = null

[system]
seed = 0
gpu_allocator = null

[nlp]
lang = "en"
pipeline = ["transformer","ner"]
batch_size = 64

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{checkpoint}"
tokenizer_config = {{"use_fast": true}}

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = {window}
stride = {stride}

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false
nO = null

[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${{paths.train}}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${{paths.dev}}

[training]
seed = ${{system.seed}}
gpu_allocator = ${{system.gpu_allocator}}
dropout = 0.1
accumulate_gradient = 1
patience = 0
max_epochs = 0
max_steps = {steps}
eval_frequency = {eval_every}
frozen_components = []
annotating_components = []
dev_corpus = "corpora.dev"
train_corpus = "corpora.train"

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
size = {batch_words}
tolerance = 0.2
discard_oversize = false

[training.optimizer]
@optimizers = "Adam.v1"
grad_clip = 1.0
L2 = 0.01
L2_is_weight_decay = true

[training.optimizer.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = 20
total_steps = {steps}
initial_rate = {lr}

[training.score_weights]
ents_f = 1.0
ents_p = 0.0
ents_r = 0.0

[training.logger]
@loggers = "alignment_switch.Recorder.v1"

[initialize]
"""


def register_recorder() -> None:
    """A `spacy train` logger that keeps each evaluation's step and entity scores in RECORDED."""
    import spacy

    @spacy.registry.loggers("alignment_switch.Recorder.v1")
    def recorder():
        def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
            def log_step(info):
                if info is not None:
                    prf = {k: info["other_scores"][k] for k in ("ents_p", "ents_r", "ents_f")}
                    RECORDED.append({"step": info["step"], **prf})
                    loss = info["losses"].get("ner", 0.0)
                    print(f"  step {info['step']:>4}  loss {loss:8.2f}  F {prf['ents_f']:.3f}", flush=True)

            return log_step, lambda: None

        return setup


def spacy_train(config_text: str, work: Path, name: str, overrides: dict) -> tuple[Path, list[dict], float]:
    """`spacy train` (spaCy's own in-process entry point) of `config_text`: model-last, the
    evaluations and the seconds taken."""
    from spacy.cli.train import train

    config_path = work / f"{name}.cfg"
    config_path.write_text(config_text, encoding="utf8")
    RECORDED.clear()
    started = time.perf_counter()
    train(config_path, work / name, use_gpu=-1, overrides=overrides)
    return work / name / "model-last", list(RECORDED), time.perf_counter() - started


def finetune_config(pipeline: Path, steps: int, eval_every: int, lr: float | dict) -> str:
    """The pipeline's own config with both components sourced from it (spaCy's way to continue
    training a trained pipeline), this run's learning rate (a number or a schedule) and steps."""
    from thinc.api import Config

    config = Config().from_disk(pipeline / "config.cfg")
    for name in ("transformer", "ner"):
        config["components"][name] = {"source": str(pipeline)}
    config["training"].update({"max_steps": steps, "eval_frequency": eval_every, "patience": 0})
    config["training"]["optimizer"]["learn_rate"] = lr
    config["training"]["logger"] = {"@loggers": "alignment_switch.Recorder.v1"}
    return config.to_str()


def prepare_project(work: Path, test_sents: int) -> Path:
    """The albert_ner project's sample, convert, vocab and pretrain steps in a copy, plus a test set."""
    project = work / "albert_ner"
    shutil.copytree(ROOT / "projects" / "albert_ner", project)
    for step in ("sample", "convert", "vocab", "pretrain"):
        subprocess.run([sys.executable, "-m", "spacy", "project", "run", step, str(project)], check=True)
    make_test_set(project, test_sents)
    return project


def make_test_set(project: Path, test_sents: int) -> None:
    if (project / "corpus" / "test.spacy").exists():
        return
    sample = project / "corpus" / "test_sample"
    run = [sys.executable, str(project / "scripts" / "make_sample.py"), str(sample), "--n-train", "10",
           "--n-dev", str(test_sents), "--n-text", "10", "--seed", "1"]  # fmt: skip
    subprocess.run(run, check=True)
    convert = [sys.executable, "-m", "spacy_albert", "convert", str(sample / "dev.conll"),
               str(project / "corpus" / "test.spacy"), "--format", "conll", "--n-sents", "1"]  # fmt: skip
    subprocess.run(convert, check=True)


def entities(nlp: Any, examples: list) -> list[set]:
    """The entities `nlp` predicts on fresh unannotated docs of the examples' reference tokens
    (fresh for each pipeline: `ner` keeps entities already set on a doc)."""
    from spacy.tokens import Doc

    docs = [Doc(nlp.vocab, words=[t.text for t in eg.reference], spaces=[bool(t.whitespace_) for t in eg.reference])
            for eg in examples]  # fmt: skip
    return [{(e.start, e.end, e.label_) for e in doc.ents} for doc in nlp.pipe(docs, batch_size=64)]


def scores(nlp: Any, examples: list) -> dict:
    result = nlp.evaluate(examples)
    return {k: round(result[k], 4) for k in ("ents_p", "ents_r", "ents_f")}


def compare(reference: list[set], other: list[set]) -> dict:
    changed_docs = sum(a != b for a, b in zip(reference, other))
    changed_ents = sum(len(a - b) for a, b in zip(reference, other))
    total = sum(map(len, reference))
    return {"docs": len(reference), "docs_changed": changed_docs, "docs_changed_share": round(changed_docs / len(reference), 4),
            "entities": total, "entities_lost": changed_ents, "entities_new": sum(len(b - a) for a, b in zip(reference, other)),
            "entities_changed_share": round(changed_ents / total, 4) if total else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a prepared copy of projects/albert_ner (its steps up to pretrain run)")
    parser.add_argument("--work", type=Path, help="keep the pipelines here (default: a temporary folder)")
    parser.add_argument("--test-sents", type=int, default=500)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.002, help="peak learning rate of the spacy-transformers training")
    parser.add_argument("--batch-words", type=int, default=1000)
    parser.add_argument("--window", type=int, default=20, help="strided_spans window (tokens)")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--finetune-lr", type=float, default=0.0005, help="constant learning rate after the switch")
    parser.add_argument("--seed", type=int, default=0, help="[system] seed of every training run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    import spacy
    import spacy_transformers  # noqa: F401  (the transformer factory)
    import torch
    from spacy.training import Corpus

    from spacy_albert.interop.migrate import migrate

    torch.set_num_threads(args.threads)
    register_recorder()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        project = args.project or prepare_project(work, args.test_sents)
        make_test_set(project, args.test_sents)
        corpus = project / "corpus"
        checkpoint = project / "training" / "albert-tiny"
        paths = {"paths.train": str(corpus / "train.spacy"), "paths.dev": str(corpus / "test.spacy"),
                 "system.seed": args.seed}
        print(f"== spacy-transformers training ({args.train_steps} steps)", flush=True)
        config = TRAIN_CONFIG.format(checkpoint=checkpoint, window=args.window, stride=args.stride, steps=args.train_steps,
                                     eval_every=args.eval_every * 2, batch_words=args.batch_words, lr=args.lr)  # fmt: skip
        original_path, train_curve, train_s = spacy_train(config, work, "trf", paths)
        print("== the same training with spacy-albert.TransformerModel.v1, alignment albert", flush=True)
        ours = config.replace('@architectures = "spacy-transformers.TransformerModel.v3"',
                              '@architectures = "spacy-albert.TransformerModel.v1"\nalignment = "albert"')
        ours_path, ours_curve, ours_s = spacy_train(ours, work, "ours", paths)

        migrated_path = work / "migrated"
        migrate(original_path, migrated_path, force=True)
        original, migrated = spacy.load(original_path), spacy.load(migrated_path)
        switched = spacy.load(migrated_path, config=SWITCH)
        switched_path = work / "switched"
        switched.to_disk(switched_path)
        assert spacy.load(switched_path).config["components"]["transformer"]["model"]["alignment"] == "albert"

        test = list(Corpus(corpus / "test.spacy")(original))
        dev = list(Corpus(corpus / "dev.spacy")(original))
        reference = entities(original, test)
        migrated_ents = entities(migrated, test)
        result: dict[str, Any] = {
            "original": {"test": scores(original, test), "dev": scores(original, dev), "train_s": round(train_s),
                         "curve": train_curve},
            "migrated": {"test": scores(migrated, test), "dev": scores(migrated, dev),
                         "identical_entities": migrated_ents == reference, **compare(reference, migrated_ents)},
            "switched": {"test": scores(switched, test), "dev": scores(switched, dev),
                         **compare(reference, entities(switched, test))},
        }  # fmt: skip
        scratch = spacy.load(ours_path)
        result["albert_alignment_from_scratch"] = {"test": scores(scratch, test), "dev": scores(scratch, dev),
                                                   "train_s": round(ours_s), "curve": ours_curve}  # fmt: skip
        print(json.dumps({k: {kk: v for kk, v in r.items() if kk != "curve"} for k, r in result.items()}), flush=True)
        if not result["migrated"]["identical_entities"]:
            print("WARNING: the migrated pipeline's entities differ from the original's", flush=True)

        schedule = {"@schedules": "warmup_linear.v1", "warmup_steps": 20, "total_steps": args.train_steps,
                    "initial_rate": args.lr}  # fmt: skip
        recipes = {"constant": (args.finetune_steps, args.finetune_lr), "retrain": (args.train_steps, schedule)}
        for recipe, (steps, lr) in recipes.items():
            for name, path in (("switched", switched_path), ("unswitched", migrated_path)):
                print(f"== fine-tuning the {name} pipeline: {recipe} ({steps} steps, learn rate {lr})", flush=True)
                text = finetune_config(path, steps, args.eval_every, lr)
                tuned_path, curve, seconds = spacy_train(text, work, f"finetune-{recipe}-{name}", paths)
                tuned = spacy.load(tuned_path)
                result[f"finetuned_{recipe}_{name}"] = {"steps": steps, "curve": curve, "seconds": round(seconds),
                                                        "test": scores(tuned, test), "dev": scores(tuned, dev)}  # fmt: skip
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
        "torch": torch.__version__, "spacy": spacy.__version__, "spacy_transformers": version("spacy-transformers"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "test_sents": len(test), "dev_docs": len(dev), "total_s": round(time.perf_counter() - started), "results": result,
    }  # fmt: skip
    print(json.dumps(record))
    if not args.no_record:
        append_record(RESULTS, record)


if __name__ == "__main__":
    main()
