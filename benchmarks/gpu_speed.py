"""The speed part of benchmarks/gpu_check.py, through benchmarks/pipeline.py's variants on the
same docs and albert-base-sized random weights:

* `nlp.pipe` words/s of albert_ner in bf16 at batch 128, of spacy-transformers with its
  default config and with `mixed_precision = true`, and of transformers alone (length-sorted
  batches, bf16 autocast);
* training words/s (`nlp.update`) of albert_ner in bf16 and of spacy-transformers (mixed
  precision on a GPU);
* the encoder's achieved TFLOP/s (pipeline.py's `EncoderMeter`: the matmul FLOPs of its
  config over the pieces it ran, padding included, over the time in the encoder) as a
  fraction of the bf16 matmul peak measured in the same run.

The variants run one after the other in this process (pipeline.py's `child`, which writes no
results file). Time-boxed: a variant starts only while 20 s of the part's budget are left
(one that does not is recorded as skipped, and the part fails), and the figures so far are
printed after each, so a part stopped by its time box still reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

from gpu_check import MARK

# (record name, pipeline.py variant, precision); the first four are the figures.
VARIANTS = (
    ("spacy_albert_bf16", "spacy-albert", "bfloat16"),
    ("spacy_transformers", "spacy-transformers", "float32"),
    ("transformers_sorted", "transformers-sorted", "bfloat16"),
    ("spacy_transformers_mixed_precision", "spacy-transformers", "bfloat16"),  # pipeline.py: mixed_precision on CUDA
    ("train_spacy_albert_bf16", "train-spacy-albert", "bfloat16"),
    ("train_spacy_transformers", "train-spacy-transformers", "bfloat16"),
)
# The dry run's model: albert-base's layout at a tiny width.
QUICK_SIZES = dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                   max_position_embeddings=512)  # fmt: skip


def summarize(results: dict[str, dict], peak_tflops: float) -> dict:
    """The record's figures from the variants' results (None where a variant has none)."""

    def rate(name: str) -> float | None:
        return results.get(name, {}).get("words_per_s")

    ours = results.get("spacy_albert_bf16", {})
    refs = [r for r in (rate("spacy_transformers"), rate("spacy_transformers_mixed_precision")) if r]
    encoder_tflops = ours["encoder_gflops"] / 1e3 if ours.get("encoder_gflops") else None
    out = {
        "spacy_albert_bf16_words_per_s": rate("spacy_albert_bf16"),
        "spacy_transformers_words_per_s": rate("spacy_transformers"),
        "spacy_transformers_mixed_precision_words_per_s": rate("spacy_transformers_mixed_precision"),
        "transformers_sorted_words_per_s": rate("transformers_sorted"),
        "ratio_vs_best_spacy_transformers": rate("spacy_albert_bf16") / max(refs) if refs and rate("spacy_albert_bf16") else None,
        "train_spacy_albert_bf16_words_per_s": rate("train_spacy_albert_bf16"),
        "train_spacy_transformers_words_per_s": rate("train_spacy_transformers"),
        "encoder_tflops": encoder_tflops,
        "encoder_useful_tflops": ours["encoder_useful_gflops"] / 1e3 if ours.get("encoder_useful_gflops") else None,
        "bf16_matmul_peak_tflops": peak_tflops,
        "encoder_fraction_of_peak": encoder_tflops / peak_tflops if encoder_tflops and peak_tflops else None,
    }  # fmt: skip
    ratio, fraction = out["ratio_vs_best_spacy_transformers"], out["encoder_fraction_of_peak"]
    out["targets"] = {"ratio_vs_best_spacy_transformers >= 2": None if ratio is None else ratio >= 2,
                      "encoder_fraction_of_peak >= 0.5": None if fraction is None else fraction >= 0.5}  # fmt: skip
    out["pass"] = all(v is not None and v > 0 for k, v in out.items() if k.endswith(("_per_s", "tflops")))
    return out


def _run_variant(variant: str, precision: str, settings: dict, work: Path) -> dict:
    """pipeline.py's child for one variant, in this process (its imports are paid once)."""
    import gc

    import pipeline

    args = argparse.Namespace(variant=variant, precision=precision, workdir=str(work), **settings)
    try:
        return pipeline.child(args)
    except Exception as err:  # recorded; the next variant still runs
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {err}"[:1000]}
    finally:
        gc.collect()


def speed(args: argparse.Namespace, work: Path) -> dict:
    import spacy
    import torch

    import pipeline
    from encoder import matmul_peak_gflops

    started = time.perf_counter()
    budget = args.budget - 10  # the part's own time box, less the record's writing
    cuda = args.device == "cuda"
    directory = work / "speed"
    directory.mkdir(parents=True, exist_ok=True)
    if args.quick:  # a tiny model and generated text, whatever ../shared/data holds
        pipeline.BASE = {**pipeline.BASE, **QUICK_SIZES}
        pipeline.DATA = directory / "no-data"
    n_docs = 1024 if cuda and not args.quick else 16
    settings = {"device": args.device, "batch_size": 128 if cuda else 8, "threads": os.cpu_count() if cuda else 1,
                "repeats": 2 if cuda else 1, "train_steps": 4 if cuda else 1}  # fmt: skip
    texts, source = pipeline.benchmark_texts(n_docs, 0)
    words = sum(len(doc) for doc in spacy.blank("en").tokenizer.pipe(texts))
    (directory / "texts.json").write_text(json.dumps({"texts": texts, "words": words}))
    pipeline.make_checkpoint(directory / "checkpoint", 30000 if cuda else 2000, 0)
    peak_n = 8192 if cuda else 256
    peak = matmul_peak_gflops(torch.get_num_threads(), "bfloat16", args.device, n=peak_n) / 1e3
    results: dict[str, dict] = {}
    meta = {"source": source, "docs": len(texts), "words": words, **settings}
    for name, variant, precision in VARIANTS:
        if budget - (time.perf_counter() - started) < 20:
            results[name] = {"error": "skipped: the part's time box ran out"}
            continue
        results[name] = _run_variant(variant, precision, settings, directory)
        # the figures so far, in case the part's time box ends it during the next variant
        print(MARK + json.dumps({**summarize(results, peak), **meta, "pass": False}), flush=True)
    peak = max(peak, matmul_peak_gflops(torch.get_num_threads(), "bfloat16", args.device, n=peak_n) / 1e3)
    figures = summarize(results, peak)
    keep = ("words_per_s", "seconds", "encoder_gflops", "encoder_useful_gflops", "peak_gpu_mb", "peak_rss_mb", "error")
    return {
        **figures, **meta,
        "model": "tiny (dry run)" if args.quick else "albert-base-v2 shapes, random weights, 13 BIO labels",
        "precisions": {name: precision for name, _, precision in VARIANTS},
        "notes": "spacy_transformers_mixed_precision is mixed_precision = true (torch autocast fp16 on CUDA; "
                 "off on a CPU); transformers_sorted: bf16 autocast on CUDA; peak: bf16 "
                 f"{peak_n}^3 matmul, best of a measurement before and after the variants",
        "variants": {name: {k: v for k, v in r.items() if k in keep} for name, r in results.items()},
    }  # fmt: skip
