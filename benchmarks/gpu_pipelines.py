"""The spaCy parts of benchmarks/gpu_check.py: `spacy train` on the device for every config,
every component's predictions on the device against the CPU, and pretraining with resume.

The data and the tiny checkpoint are the tests' (tests/conftest.py's corpus, vocabulary and
checkpoint writer; tests/test_checkpoint_shapes.py's corpus of each config's kind;
tests/test_pretraining.py's text and tiny CLI sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gpu_check import MARK
from gpu_compare import (
    COMPONENT_ATOL,
    COMPONENT_RTOL,
    LOW_PRECISION_COMPONENT_ATOL,
    compare_leaves,
    leaves,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("albert_fill_mask", "albert_multiple_choice", "albert_ner", "albert_qa", "albert_textcat",
           "ner_albert_listener")  # fmt: skip
# Extra texts every pipeline predicts on: long ones (several 62-piece windows of the tiny
# checkpoint) and a masked one for albert_fill_mask.
EXTRA_TEXTS = ["The old man saw the [MASK] near the river.", "Alice lives in Paris with Bob. " * 12]


def tiny_checkpoint(work: Path) -> Path:
    """The tests' tiny random ALBERT (conftest.TINY_ALBERT) with a vocabulary trained on
    their corpus, written once per run into `work`."""
    from conftest import TINY_ALBERT, make_checkpoint, make_corpus

    from spacy_albert.tokenization.training import train_sentencepiece

    directory = work / "tiny_checkpoint"
    if not (directory / "config.json").exists():
        spm = work / "spm"
        spm.mkdir(parents=True, exist_ok=True)
        train_sentencepiece(make_corpus(), spm, vocab_size=800, do_lower_case=True)
        directory.mkdir(parents=True, exist_ok=True)
        make_checkpoint(directory, spm, TINY_ALBERT)
    return directory


def use_device(device: str) -> None:
    """thinc (and so spacy-albert's encoder) on `device`."""
    from thinc.api import require_cpu, require_gpu, set_gpu_allocator

    if device == "cuda":
        set_gpu_allocator("pytorch")
        require_gpu(0)
    else:
        require_cpu()


def encoder_sections(config: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every `spacy-albert.AlbertTransformer.v1` block in a config."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            path = f"{prefix}{key}"
            if value.get("@architectures") == "spacy-albert.AlbertTransformer.v1":
                found.append(path)
            found += encoder_sections(value, path + ".")
    return found


def config_corpus(name: str, directory: Path) -> tuple[Path, Path]:
    from test_checkpoint_shapes import corpus

    directory.mkdir(parents=True, exist_ok=True)
    return corpus(name, directory)


def sample_docs(nlp: Any, train: Path) -> list[Any]:
    """Fresh docs of the corpus's texts with their inputs (questions, choices: user data),
    and EXTRA_TEXTS."""
    from spacy.tokens import DocBin

    docs = []
    for ref in DocBin().from_disk(train).get_docs(nlp.vocab):
        doc = nlp.make_doc(ref.text)
        doc.user_data.update(ref.user_data)
        docs.append(doc)
    return docs + [nlp.make_doc(text) for text in EXTRA_TEXTS]


def pipeline_outputs(nlp: Any, docs: list[Any]) -> dict[str, Any]:
    """The leaves of what a pipeline predicts for copies of `docs`: each spacy-albert
    component's `predict` output, and the annotations (entities, cats, extensions)."""
    docs = [doc.copy() for doc in docs]
    out: dict[str, Any] = {}
    for name, proc in nlp.pipeline:
        scores = proc.predict(docs)
        if type(proc).__module__.startswith("spacy_albert"):
            out.update(leaves(scores, f"{name}.predict"))
        proc.set_annotations(docs, scores)
    for i, doc in enumerate(docs):
        out[f"doc{i}.ents"] = repr([(e.start_char, e.end_char, e.label_) for e in doc.ents])
        out.update(leaves(dict(doc.cats), f"doc{i}.cats"))
        extensions = {key[1]: value for key, value in doc.user_data.items() if isinstance(key, tuple) and key[0] == "._."}
        extensions.pop("albert_data", None)  # the shared encoder's states: compared as albert.predict
        out.update(leaves(extensions, f"doc{i}._"))
    return out


def _losses(log: Path) -> list[tuple[int, float]]:
    """(step, summed loss) of each evaluation of a `spacy train` JSON log (losses summed over
    the steps since the previous evaluation)."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [(row["step"], sum(row["losses"].values())) for row in rows]


def _per_step(losses: list[tuple[int, float]]) -> list[float]:
    out, previous = [], -1
    for step, loss in losses:
        out.append(loss / max(1, step - previous))
        previous = step
    return out


def train_run(name: str, precision: str, accumulate: int, args: argparse.Namespace, work: Path) -> dict:
    """`spacy train` of configs/NAME.cfg on the device, then model-best on the device and on
    the CPU (in float32) predicting the same."""
    import spacy
    from spacy.cli.train import train
    from spacy.util import load_config

    steps = 12 if args.quick else 50
    directory = work / "train" / f"{name}-{precision}-{accumulate}"
    train_path, dev_path = config_corpus(name, directory)
    config_path = ROOT / "configs" / f"{name}.cfg"
    sections = encoder_sections(load_config(config_path, interpolate=False))
    log = directory / "log.jsonl"
    overrides: dict[str, Any] = {
        "paths.train": str(train_path), "paths.dev": str(dev_path), "paths.checkpoint": str(tiny_checkpoint(work)),
        "training.max_steps": steps, "training.eval_frequency": steps // 2,
        "training.accumulate_gradient": accumulate, "training.optimizer.learn_rate.warmup_steps": 2,
        "training.optimizer.learn_rate.initial_rate": 0.01 if name == "albert_textcat" else 0.005,
        "training.logger.@loggers": "spacy.ConsoleLogger.v3", "training.logger.output_file": str(log),
        "training.logger.progress_bar": None,
        **{f"{section}.precision": precision for section in sections},
    }  # fmt: skip
    train(config_path, directory / "out", use_gpu=0 if args.device == "cuda" else -1, overrides=overrides)
    losses = _losses(log)
    per_step = _per_step(losses)
    scores = [round(json.loads(line)["score"], 4) for line in log.read_text().splitlines() if line.strip()]
    # on the device (train left thinc there), in the trained precision
    nlp = spacy.load(directory / "out" / "model-best")
    docs = sample_docs(nlp, dev_path)
    on_device = pipeline_outputs(nlp, docs)
    use_device("cpu")
    cpu_nlp = spacy.load(directory / "out" / "model-best", config={f"{s}.precision": "float32" for s in sections})
    on_cpu = pipeline_outputs(cpu_nlp, docs)
    low = precision != "float32"
    atol = LOW_PRECISION_COMPONENT_ATOL if low else COMPONENT_ATOL
    compared = compare_leaves(on_device, on_cpu, atol, 0.0 if low else COMPONENT_RTOL)
    if low:  # a low-precision model's discrete choices may flip on near ties: counted, not failed
        compared["mismatches"] = compared["missing"] + compared["numeric_mismatches"]
    falls = per_step[-1] < per_step[0]
    return {
        "config": name, "precision": precision, "accumulate_gradient": accumulate, "steps": steps,
        "loss_per_step": [round(x, 5) for x in per_step], "loss_falls": falls,
        "scores": scores, "cpu_vs_device": compared, "pass": falls and compared["mismatches"] == 0,
    }  # fmt: skip


def spacy_train_gpu(args: argparse.Namespace, work: Path) -> dict:
    runs = [(name, "float32", 1) for name in CONFIGS] + [("albert_ner", "float16", 2), ("albert_ner", "bfloat16", 1)]
    results, errors = [], []
    for name, precision, accumulate in runs:
        try:
            results.append(train_run(name, precision, accumulate, args, work))
        except Exception as err:  # the other runs still run; the part fails
            import traceback

            errors.append(f"{name}/{precision}: {type(err).__name__}: {err}"[:500])
            traceback.print_exc()
        # the runs so far, in case the part's time box ends it during the next one
        print(MARK + json.dumps({"runs": results, "errors": errors, "pass": False}), flush=True)
    return {
        "gpu_id": 0 if args.device == "cuda" else None,
        "tolerance": {"float32": f"|device - cpu| <= {COMPONENT_ATOL} + {COMPONENT_RTOL} |cpu|",
                      "bf16/fp16 model on device vs its float32 on cpu": f"atol {LOW_PRECISION_COMPONENT_ATOL}"},
        "runs": results, "errors": errors,
        "pass": not errors and len(results) == len(runs) and all(r["pass"] for r in results),
    }  # fmt: skip


def components(args: argparse.Namespace, work: Path) -> dict:
    """Each config's pipeline, initialised from the tiny checkpoint on the CPU and saved,
    loaded on the CPU and on the device: the same predictions (fp32). The dry run loads the
    device copy with attention_buckets = "padded", the GPU's choice, against the CPU's "exact"."""
    import spacy
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    checkpoint = tiny_checkpoint(work)
    results, errors = {}, []
    for name in CONFIGS:
        try:
            directory = work / "components" / name
            train_path, dev_path = config_corpus(name, directory)
            overrides = {"paths.train": str(train_path), "paths.dev": str(dev_path), "paths.checkpoint": str(checkpoint)}
            config_path = ROOT / "configs" / f"{name}.cfg"
            config = load_config(config_path, overrides=overrides, interpolate=False)
            sections = encoder_sections(config)
            use_device("cpu")
            init_nlp(config, use_gpu=-1).to_disk(directory / "model")
            cpu_nlp = spacy.load(directory / "model", config={f"{s}.attention_buckets": "exact" for s in sections})
            docs = sample_docs(cpu_nlp, train_path)
            on_cpu = pipeline_outputs(cpu_nlp, docs)
            use_device(args.device)
            dev_nlp = spacy.load(directory / "model", config={f"{s}.attention_buckets": "padded" for s in sections})
            on_device = pipeline_outputs(dev_nlp, docs)
            compared = compare_leaves(on_device, on_cpu, COMPONENT_ATOL, COMPONENT_RTOL)
            buckets = sorted({node.attrs["settings"]["attention_buckets"] for _, proc in dev_nlp.components
                              if hasattr(proc, "model") for node in proc.model.walk() if node.name == "albert_transformer"})  # fmt: skip
            results[name] = {"components": dev_nlp.pipe_names, "device_attention_buckets": buckets, **compared,
                             "pass": compared["mismatches"] == 0 and buckets == ["padded"]}  # fmt: skip
        except Exception as err:
            import traceback

            errors.append(f"{name}: {type(err).__name__}: {err}"[:500])
            traceback.print_exc()
        print(MARK + json.dumps({"pipelines": results, "errors": errors, "pass": False}), flush=True)
    return {
        "tolerance": f"|device - cpu| <= {COMPONENT_ATOL} + {COMPONENT_RTOL} |cpu| (fp32); strings equal",
        "device_attention_buckets": "padded", "cpu_attention_buckets": "exact", "pipelines": results,
        "errors": errors, "pass": not errors and all(r["pass"] for r in results.values()),
    }  # fmt: skip


def _cli(*args: str) -> None:
    """`python -m spacy_albert ARGS`, in this process (typer's runner, as the tests run it)."""
    from typer.testing import CliRunner

    from spacy_albert.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exit_code:
        raise RuntimeError(f"spacy_albert {args[0]} failed ({result.exit_code}): {result.output[-2000:]}") from result.exception


def pretrain(args: argparse.Namespace, work: Path) -> dict:
    """`python -m spacy_albert pretrain --device DEVICE` for 20 steps; then the same run
    stopped after its first step (--max-minutes 0) and resumed (--resume auto): the same
    losses (bit-identical on the CPU; within 1e-3 relative on the GPU, whose embedding
    gradients are summed by atomics in no fixed order)."""
    from test_pretraining import _CLI_TINY, structured_text, train_losses

    directory = work / "pretrain"
    directory.mkdir(parents=True, exist_ok=True)
    text = directory / "train.txt"
    text.write_text(structured_text(), encoding="utf-8")
    _cli("train-vocab", str(text), "--output", str(directory / "vocab"), "--vocab-size", "60")
    steps = 6 if args.quick else 20
    base = ["pretrain", str(text), "--vocab", str(directory / "vocab"), "--max-steps", str(steps), *_CLI_TINY,
            "--device", args.device, "--save-every", "0"]  # fmt: skip
    _cli(*base, "--output", str(directory / "full"))
    _cli(*base, "--output", str(directory / "part"), "--max-minutes", "0")
    stopped_at = sorted(p.name for p in (directory / "part" / "checkpoints").iterdir())
    _cli(*base, "--output", str(directory / "part"), "--resume", "auto")
    full, resumed = train_losses(directory / "full"), train_losses(directory / "part")
    rtol = 1e-3 if args.device == "cuda" else 0.0
    same = sorted(full) == sorted(resumed) and all(abs(resumed[s] - full[s]) <= rtol * abs(full[s]) for s in full)
    losses = [full[s] for s in sorted(full)]
    k = max(1, len(losses) // 4)
    falls = sum(losses[-k:]) / k < sum(losses[:k]) / k
    return {
        "device": args.device, "steps": steps, "losses": [round(x, 5) for x in losses], "loss_falls": falls,
        "stopped_at": stopped_at, "resumed_losses_equal": same, "resume_rtol": rtol,
        "max_resume_diff": max((abs(resumed.get(s, float("inf")) - full[s]) for s in full), default=None),
        "checkpoint_written": (directory / "full" / "config.json").exists(), "pass": same and falls,
    }  # fmt: skip
