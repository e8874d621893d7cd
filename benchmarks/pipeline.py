"""End-to-end spaCy pipeline benchmark: spacy-albert's `albert_ner` against spacy-transformers
(`transformer` + `ner`), transformers alone and spacy-curated-transformers.

Every variant gets the same documents (real text from ../shared/data: WNUT-17 and SST-2
sentences and Wikipedia paragraphs; generated text without it), the same albert-base-sized
random weights saved once as a Hugging Face checkpoint (AlbertForTokenClassification with
the 13 WNUT-17 BIO tags, and a SentencePiece vocabulary trained on the same sources), the
same batch size and torch thread count, and runs in its own process, so its peak resident
memory is its own. Measured:

* words/second of `nlp.pipe` (spaCy tokens of the texts; the same count for every variant):
  `spacy-albert` (float32 by default: packed batching and length-sorted `pipe`),
  `spacy-albert-int8` (`quantize = "int8"`), `spacy-albert-unsorted` (`sort_buffer = 1`:
  plain batches of `--batch-size` docs in input order, still packed), `spacy-albert-padded`
  (the previous batching: padded chunks, no sorting across batches), `spacy-transformers` (its default config:
  strided spans 128/96, plus spaCy's `ner` on a `TransformerListener`), `transformers`
  (fast tokenizer + `AlbertForTokenClassification`, docs in input order),
  `transformers-sorted` (docs sorted by length) and `spacy-curated-transformers` where it
  is installed;
* training words/second of `nlp.update` (WNUT-17 train sentences with their entities) for
  `train-spacy-albert` and `train-spacy-transformers`;
* the encoder's achieved GFLOP/s (matmul FLOPs it computes, padding included, over the time
  spent in the encoder module) against this machine's measured float32 matmul GFLOP/s, and
  the "useful" GFLOP/s that count real positions only;
* the accuracy cost of int8: WNUT-17 dev F1 of a trained `albert_ner` before and after
  `quantize_pipeline` (`--ner-model PATH` for a trained pipeline; otherwise a small ALBERT
  is trained here for `--train-ner-steps` steps, from `--ner-checkpoint` if given).

Ratios against each anchor are printed last (with the targets of issue 6), and one JSON line
per run is appended to benchmarks/results/pipeline.jsonl.

    python benchmarks/pipeline.py                         # CPU float32 (+ int8), all variants
    python benchmarks/pipeline.py --quick                 # smoke run: few docs, few steps
    python benchmarks/pipeline.py --docs 400 --batch-size 32 --threads 2
    python benchmarks/pipeline.py --device cuda --precision bfloat16 --batch-size 128
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results" / "pipeline.jsonl"
BASE = dict(
    embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    max_position_embeddings=512,
)  # fmt: skip
SMALL = dict(
    embedding_size=128, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
    max_position_embeddings=512,
)  # fmt: skip
WNUT_LABELS = ["corporation", "creative-work", "group", "location", "person", "product"]
BIO_TAGS = ["O"] + [f"{p}-{label}" for label in WNUT_LABELS for p in "BI"]
INFERENCE = ("spacy-albert", "spacy-albert-int8", "spacy-albert-unsorted", "spacy-albert-padded", "spacy-transformers",
             "transformers", "transformers-sorted", "spacy-curated-transformers")  # fmt: skip
TRAINING = ("train-spacy-albert", "train-spacy-transformers")
VARIANTS = INFERENCE + TRAINING + ("int8-accuracy",)


# ---- data ----------------------------------------------------------------------------------
from data import append_record, ner_examples, read_conll, tagged_doc  # noqa: E402
from encoder import matmul_peak_gflops  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _wiki_paragraphs(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf8").splitlines():
        line = line.strip()
        if line and not line.startswith("="):
            out.append(line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", "."))
    return out


def _sst2(path: Path) -> list[str]:
    return [row.split("\t")[0].strip() for row in path.read_text(encoding="utf8").splitlines()[1:] if row.strip()]


def generated_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ("the of and to in is was for on that with as by at from his her they this have are not but had which "
             "one were all their when there been has would more will who out some can about into them time only "
             "Paris Alice Google London Bob Microsoft iPhone Berlin").split()  # fmt: skip
    texts = []
    for i in range(n):
        length = rng.choice([rng.randint(5, 30), rng.randint(5, 30), rng.randint(60, 250)])
        texts.append(" ".join(rng.choice(words) for _ in range(length)) + ".")
    return texts


def benchmark_texts(n: int, seed: int) -> tuple[list[str], str]:
    """`n` texts: 40% WNUT-17 dev sentences, 30% SST-2 dev sentences, 30% Wikipedia
    paragraphs (WikiText-2 valid), shuffled; generated text when ../shared/data is missing."""
    try:
        wnut = [" ".join(words) for words, _ in read_conll(DATA / "wnut17" / "emerging.dev.conll")]
        sst = _sst2(DATA / "sst2" / "dev.tsv")
        wiki = _wiki_paragraphs(DATA / "wikitext-2" / "wiki.valid.tokens")
    except OSError:
        return generated_texts(n, seed), "generated"
    rng = random.Random(seed)
    n_wnut, n_sst = int(n * 0.4), int(n * 0.3)
    texts = rng.sample(wnut, n_wnut) + rng.sample(sst, n_sst) + rng.sample(wiki, n - n_wnut - n_sst)
    rng.shuffle(texts)
    return texts, "wnut17 dev + sst2 dev + wikitext-2 valid"


def vocab_texts() -> list[str]:
    try:
        texts = [" ".join(w) for w, _ in read_conll(DATA / "wnut17" / "wnut17train.conll")]
        texts += _sst2(DATA / "sst2" / "train.tsv")[:20000]
        texts += _wiki_paragraphs(DATA / "wikitext-2" / "wiki.train.tokens")
        return texts
    except OSError:
        return generated_texts(5000, 1)


def ner_sentences(split: str, limit: int) -> list[tuple[list[str], list[str]]]:
    name = "wnut17train.conll" if split == "train" else "emerging.dev.conll"
    try:
        return read_conll(DATA / "wnut17" / name)[:limit]
    except OSError:
        rng = random.Random(0 if split == "train" else 1)
        out = []
        for text in generated_texts(limit, 2 if split == "train" else 3):
            words = text.split()
            tags = ["B-person" if w in ("Alice", "Bob") else "B-location" if w in ("Paris", "London", "Berlin")
                    else "B-corporation" if w in ("Google", "Microsoft") else "O" for w in words]  # fmt: skip
            out.append((words, tags))
        rng.shuffle(out)
        return out


def make_checkpoint(directory: Path, vocab_size: int, seed: int) -> Path:
    """The benchmark's checkpoint: albert-base-sized random-init AlbertForTokenClassification
    (WNUT-17 BIO tags; 30000 embedding rows) with a SentencePiece vocabulary trained on the
    benchmark's sources (WNUT-17 and SST-2 train, WikiText-2 train)."""
    import torch
    import transformers as hf

    import spacy_albert

    spacy_albert.train_sentencepiece(vocab_texts(), directory, vocab_size=vocab_size, hard_vocab_limit=False, num_threads=2)
    tokenizer = hf.AlbertTokenizerFast(vocab_file=str(directory / "spiece.model"))
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    hf_config = hf.AlbertConfig(
        vocab_size=max(len(tokenizer), 30000), num_labels=len(BIO_TAGS), id2label=dict(enumerate(BIO_TAGS)),
        label2id={t: i for i, t in enumerate(BIO_TAGS)}, **BASE,
    )  # fmt: skip
    hf.AlbertForTokenClassification(hf_config).save_pretrained(directory)
    return directory


def make_small_checkpoint(directory: Path, seed: int) -> Path:
    """A small random-init AlbertModel with an 8000-piece vocabulary of WNUT-17 train (the
    setup of benchmarks/learning.py, which learns WNUT-17 in a few epochs on a CPU)."""
    import torch
    import transformers as hf

    import spacy_albert

    texts = [" ".join(words) for words, _ in ner_sentences("train", 10**6)]
    spacy_albert.train_sentencepiece(texts, directory, vocab_size=8000, hard_vocab_limit=False)
    tokenizer = hf.AlbertTokenizerFast(vocab_file=str(directory / "spiece.model"))
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    hf.AlbertModel(hf.AlbertConfig(vocab_size=len(tokenizer), **SMALL)).save_pretrained(directory)
    return directory


# ---- encoder instrumentation -----------------------------------------------------------------
class EncoderMeter:
    """Time spent in an encoder module's forward and the matmul FLOPs it computed."""

    def __init__(self, config: Any, sync: Callable[[], None]) -> None:
        h, i, e = config.hidden_size, config.intermediate_size, config.embedding_size
        self.per_position = config.num_hidden_layers * 2 * (4 * h * h + 2 * h * i) + 2 * e * h
        self.per_pair = config.num_hidden_layers * 4 * h
        self.sync = sync
        self.seconds = 0.0
        self.flops = 0.0
        self.useful_flops = 0.0

    def add(self, seconds: float, positions: int, pairs: int, real_positions: int, real_pairs: int) -> None:
        self.seconds += seconds
        self.flops += positions * self.per_position + pairs * self.per_pair
        self.useful_flops += real_positions * self.per_position + real_pairs * self.per_pair

    def reset(self) -> None:
        self.seconds = self.flops = self.useful_flops = 0.0

    def figures(self) -> dict:
        if not self.seconds:
            return {}
        return {"encoder_seconds": self.seconds, "encoder_gflops": self.flops / self.seconds / 1e9,
                "encoder_useful_gflops": self.useful_flops / self.seconds / 1e9}  # fmt: skip


def meter_windowed_encoder(encoder_module: Any, meter: EncoderMeter) -> None:
    """Wrap our WindowedEncoder.forward (one instance) to feed `meter`."""
    forward = encoder_module.forward

    def timed(batch):
        meter.sync()
        start = time.perf_counter()
        out = forward(batch)
        meter.sync()
        real = [int(w) + 2 for c in batch.chunks for w in _window_lengths(c)]
        meter.add(time.perf_counter() - start, batch.positions(), batch.attention_pairs(), sum(real),
                  sum(r * r for r in real))  # fmt: skip
        return out

    encoder_module.forward = timed


def _window_lengths(chunk: Any) -> list[int]:
    import numpy as np

    rows = chunk.cls_rows
    if chunk.packed:
        return list(np.diff(np.append(rows, chunk.input_ids.size)) - 2)
    return list(chunk.attention_mask.sum(axis=1) - 2)


def meter_hf_albert(model: Any, meter: EncoderMeter) -> None:
    """Forward hooks on a transformers AlbertModel: padded [batch, seq] inputs."""

    def pre(module, args, kwargs):
        meter.sync()
        module._bench_start = time.perf_counter()

    def post(module, args, kwargs, output):
        meter.sync()
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        batch, seq = ids.shape[:2]
        lengths = mask.sum(-1).tolist() if mask is not None else [seq] * batch
        meter.add(time.perf_counter() - module._bench_start, batch * seq, batch * seq * seq, int(sum(lengths)),
                  int(sum(n * n for n in lengths)))  # fmt: skip

    model.register_forward_pre_hook(pre, with_kwargs=True)
    model.register_forward_hook(post, with_kwargs=True)


# ---- children: one variant each -------------------------------------------------------------
def _setup(args: argparse.Namespace) -> tuple[Any, Callable[[], None]]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sync = (lambda: torch.cuda.synchronize()) if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        import spacy
        from thinc.api import set_gpu_allocator

        set_gpu_allocator("pytorch")
        spacy.require_gpu()
    return torch, sync


def _peak_memory(torch: Any, device: str) -> dict:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def ours_nlp(checkpoint: Path, args: argparse.Namespace, variant: str, dropout: float = 0.0) -> Any:
    import spacy
    from spacy.training import Example

    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **BASE, "checkpoint": str(checkpoint),
               "hidden_dropout_prob": dropout, "precision": args.precision}  # fmt: skip
    if variant.endswith("int8"):
        encoder["quantize"] = "int8"
    if variant.endswith("padded"):
        encoder.update(batching="padded", sort_buffer=1)
    if variant.endswith("unsorted"):
        encoder.update(sort_buffer=1)
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"scheme": "BIO", "model": {
        "@architectures": "spacy-albert.TokenClassifier.v1", "dropout": 0.1,
        "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first", "encoder": encoder}}})  # fmt: skip
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("Alice"), {"entities": [(0, 5, "person")]})])
    return nlp


def spacy_transformers_nlp(checkpoint: Path, args: argparse.Namespace, dropout: float = 0.0) -> Any:
    import spacy
    import spacy_transformers  # noqa: F401  (registers the factory)
    from spacy.training import Example

    nlp = spacy.blank("en")
    # spacy-transformers' default transformer config (strided spans 128/96), with our checkpoint
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(checkpoint),
        "mixed_precision": args.device.startswith("cuda") and args.precision != "float32",
        "tokenizer_config": {"use_fast": True}, "transformer_config": {"hidden_dropout_prob": dropout}}})  # fmt: skip
    nlp.add_pipe("ner", config={"model": {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
        "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None,
        "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                    "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}}})  # fmt: skip
    ner = nlp.get_pipe("ner")
    for label in WNUT_LABELS:
        ner.add_label(label)
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("Alice"), {"entities": [(0, 5, "person")]})])
    return nlp


def curated_nlp(checkpoint: Path, args: argparse.Namespace) -> Any:
    """spacy-curated-transformers with its default strided windows (untested here: the
    package is not in the offline wheels of the machine this was written on)."""
    import spacy
    import spacy_curated_transformers  # noqa: F401
    from spacy.training import Example

    config = json.loads((checkpoint / "config.json").read_text())
    nlp = spacy.blank("en")
    nlp.add_pipe("curated_transformer", config={"model": {
        "@architectures": "spacy-curated-transformers.AlbertTransformer.v1", "vocab_size": config["vocab_size"],
        "embedding_width": config["embedding_size"], "hidden_width": config["hidden_size"],
        "intermediate_width": config["intermediate_size"], "num_attention_heads": config["num_attention_heads"],
        "num_hidden_layers": config["num_hidden_layers"], "num_hidden_groups": config["num_hidden_groups"],
        "hidden_act": config["hidden_act"], "max_position_embeddings": config["max_position_embeddings"],
        "type_vocab_size": config["type_vocab_size"], "padding_idx": config["pad_token_id"],
        "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0,
        "piece_encoder": {"@architectures": "spacy-curated-transformers.SentencepieceEncoder.v1"},
        "with_spans": {"@architectures": "spacy-curated-transformers.WithStridedSpans.v1"}}})  # fmt: skip
    nlp.add_pipe("ner", config={"model": {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
        "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None,
        "tok2vec": {"@architectures": "spacy-curated-transformers.LastTransformerLayerListener.v1",
                    "width": config["hidden_size"], "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}}})  # fmt: skip
    for label in WNUT_LABELS:
        nlp.get_pipe("ner").add_label(label)
    nlp.config["initialize"]["components"]["curated_transformer"] = {
        "encoder_loader": {"@model_loaders": "spacy-curated-transformers.HFTransformerEncoderLoader.v1", "name": str(checkpoint)},
        "piecer_loader": {"@model_loaders": "spacy-curated-transformers.SentencepieceLoader.v1",
                          "path": str(checkpoint / "spiece.model")},
    }  # fmt: skip
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("Alice"), {"entities": [(0, 5, "person")]})])
    return nlp


def _albert_modules(nlp: Any) -> list[Any]:
    import torch

    found = []
    for _, pipe in nlp.pipeline:
        for node in getattr(pipe, "model", None).walk() if hasattr(pipe, "model") else []:
            for shim in node.shims:
                module = getattr(shim, "_model", None)
                if isinstance(module, torch.nn.Module):
                    found.append(module)
    return found


def run_inference(args: argparse.Namespace, texts: list[str], n_words: int) -> dict:
    torch, sync = _setup(args)
    checkpoint = Path(args.workdir) / "checkpoint"
    variant = args.variant
    meter: Optional[EncoderMeter] = None
    if variant.startswith("spacy-albert"):
        from spacy_albert.layers.transformer import get_torch_encoder

        nlp = ours_nlp(checkpoint, args, variant)
        encoder = get_torch_encoder(nlp.get_pipe("albert_ner").model.get_ref("tok2vec").layers[0])
        meter = EncoderMeter(encoder.config, sync)
        meter_windowed_encoder(encoder, meter)
        run = lambda batch: list(nlp.pipe(batch, batch_size=args.batch_size))  # noqa: E731
    elif variant in ("spacy-transformers", "spacy-curated-transformers"):
        if variant == "spacy-curated-transformers":
            try:
                import spacy_curated_transformers  # noqa: F401
            except ImportError:
                return {"variant": variant, "unavailable": "spacy-curated-transformers is not installed"}
            nlp = curated_nlp(checkpoint, args)
        else:
            nlp = spacy_transformers_nlp(checkpoint, args)
        for module in _albert_modules(nlp):
            albert = getattr(module, "transformer", module)
            if hasattr(albert, "config") and getattr(albert.config, "model_type", "") == "albert":
                meter = EncoderMeter(albert.config, sync)
                meter_hf_albert(albert, meter)
                break
        run = lambda batch: list(nlp.pipe(batch, batch_size=args.batch_size))  # noqa: E731
    else:  # transformers alone
        import transformers as hf

        tokenizer = hf.AlbertTokenizerFast.from_pretrained(checkpoint)
        model = hf.AlbertForTokenClassification.from_pretrained(checkpoint).to(args.device).eval()
        meter = EncoderMeter(model.config, sync)
        meter_hf_albert(model.albert, meter)
        autocast = args.device.startswith("cuda") and args.precision != "float32"
        dtype = getattr(torch, args.precision)

        def run(batch: list[str]) -> list:
            if variant == "transformers-sorted":
                order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
                batch = [batch[i] for i in order]
            out = []
            precision = torch.autocast(args.device.split(":")[0], dtype=dtype) if autocast else contextlib.nullcontext()
            with torch.inference_mode(), precision:
                for i in range(0, len(batch), args.batch_size):
                    enc = tokenizer(batch[i : i + args.batch_size], padding=True, truncation=True, max_length=512,
                                    return_tensors="pt").to(args.device)  # fmt: skip
                    logits = model(**enc).logits
                    out.extend(logits.argmax(-1).cpu().numpy())
            return out

    run(texts[: min(len(texts), args.batch_size)])  # warm-up: allocator, lazy quantization, kernels
    times = []
    for _ in range(args.repeats):
        if meter:
            meter.reset()
        sync()
        start = time.perf_counter()
        run(texts)
        sync()
        times.append(time.perf_counter() - start)
    best = min(times)
    result = {"variant": variant, "seconds": best, "words_per_s": n_words / best, "docs_per_s": len(texts) / best}
    if meter:
        result.update(meter.figures())
    result.update(_peak_memory(torch, args.device))
    return result


def run_training(args: argparse.Namespace) -> dict:
    torch, sync = _setup(args)
    from spacy.training import Example
    from thinc.api import Adam

    checkpoint = Path(args.workdir) / "checkpoint"
    if args.variant == "train-spacy-albert":
        nlp = ours_nlp(checkpoint, args, "spacy-albert", dropout=0.1)
    else:
        nlp = spacy_transformers_nlp(checkpoint, args, dropout=0.1)
    sentences = ner_sentences("train", args.batch_size * (args.train_steps + 1))
    examples = []
    for words, tags in sentences:
        doc = nlp.make_doc(" ".join(words))
        ents = [(e.start_char, e.end_char, e.label_) for e in tagged_doc(nlp.vocab, words, tags).ents]
        examples.append(Example.from_dict(doc, {"entities": ents}))
    optimizer = Adam(2e-5)
    batches = [examples[i : i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
    nlp.update(batches[0], sgd=optimizer, drop=0.1)  # warm-up
    words = sum(len(eg.predicted) for batch in batches[1:] for eg in batch)
    sync()
    start = time.perf_counter()
    for batch in batches[1:]:
        nlp.update(batch, sgd=optimizer, drop=0.1)
    sync()
    seconds = time.perf_counter() - start
    result = {"variant": args.variant, "seconds": seconds, "words_per_s": words / seconds,
              "steps": len(batches) - 1, "words": words}  # fmt: skip
    result.update(_peak_memory(torch, args.device))
    return result


def run_int8_accuracy(args: argparse.Namespace) -> dict:
    """WNUT-17 dev F1 of a trained albert_ner pipeline, float32 and after int8 quantization."""
    torch, _ = _setup(args)
    import spacy
    from thinc.api import Adam

    from spacy_albert.layers.quantize import quantize_pipeline

    info: dict[str, Any] = {"variant": "int8-accuracy"}
    if args.ner_model:
        nlp = spacy.load(args.ner_model)
        info["model"] = args.ner_model
    else:
        checkpoint = Path(args.ner_checkpoint) if args.ner_checkpoint else Path(args.workdir) / "small_checkpoint"
        encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **SMALL, "checkpoint": str(checkpoint),
                   "hidden_dropout_prob": 0.0}  # fmt: skip
        if args.ner_checkpoint:
            config = json.loads((checkpoint / "config.json").read_text())
            encoder.update({k: config[k] for k in SMALL if k in config})
        nlp = spacy.blank("en")
        nlp.add_pipe("albert_ner", config={"scheme": "BIO", "model": {
            "@architectures": "spacy-albert.TokenClassifier.v1", "dropout": 0.1,
            "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first", "encoder": encoder}}})  # fmt: skip
        train = ner_examples(nlp, ner_sentences("train", 10**6))
        nlp.initialize(lambda: train)
        optimizer = Adam(5e-4, L2=0.0, grad_clip=0.0, use_averages=False)  # as benchmarks/learning.py
        batches = [train[i : i + 16] for i in range(0, len(train), 16)]
        start = time.perf_counter()
        for step in range(args.train_ner_steps):  # epochs in order
            nlp.update(batches[step % len(batches)], sgd=optimizer, drop=0.0)
        info.update(model=f"small ALBERT ({SMALL['num_hidden_layers']} layers, H={SMALL['hidden_size']}) from "
                    f"{'the given checkpoint' if args.ner_checkpoint else 'random init'}, {args.train_ner_steps} steps "
                    f"({args.train_ner_steps / len(batches):.1f} epochs) of 16 WNUT-17 train sentences",
                    train_seconds=time.perf_counter() - start)  # fmt: skip
    name = next(n for n, p in nlp.pipeline if type(p).__name__ == "AlbertNER")
    dev = ner_examples(nlp, ner_sentences("dev", args.dev_limit))

    def score() -> tuple[float, float]:
        start = time.perf_counter()
        scores = nlp.evaluate(dev)
        return scores["ents_f"] * 100, time.perf_counter() - start

    info["f_float32"], info["seconds_float32"] = score()
    quantize_pipeline(nlp, [name])
    info["f_int8"], info["seconds_int8"] = score()
    info["f_delta"] = info["f_int8"] - info["f_float32"]
    info["dev_sentences"] = len(dev)
    return info


def child(args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    if args.variant in INFERENCE:
        data = json.loads((work / "texts.json").read_text())
        return run_inference(args, data["texts"], data["words"])
    if args.variant in TRAINING:
        return run_training(args)
    return run_int8_accuracy(args)


# ---- parent ----------------------------------------------------------------------------------
def _ratio(results: dict, a: str, b: str, key: str = "words_per_s") -> Optional[float]:
    ra, rb = results.get(a, {}), results.get(b, {})
    if key in ra and key in rb and rb[key]:
        return ra[key] / rb[key]
    return None


def report(results: dict, peak: float, args: argparse.Namespace, meta: dict) -> dict:
    print(f"\nALBERT-base-sized random weights, {meta['docs']} docs ({meta['words']} words, {meta['source']}), "
          f"batch {args.batch_size}, {args.threads} threads, {args.device} {args.precision}")  # fmt: skip
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s\n")
    print(f"{'variant':<28}{'words/s':>9}{'GFLOP/s':>9}{'% peak':>8}{'useful %':>9}{'peak RSS MB':>12}")
    for name, r in results.items():
        if "unavailable" in r or "error" in r:
            print(f"{name:<28}  {r.get('unavailable') or 'failed: ' + r['error']}")
            continue
        if name == "int8-accuracy":
            continue
        gf = r.get("encoder_gflops")
        cells = [f"{r['words_per_s']:>9.0f}",
                 f"{gf:>9.1f}" if gf else f"{'':>9}",
                 f"{100 * gf / peak:>7.0f}%" if gf else f"{'':>8}",
                 f"{100 * r['encoder_useful_gflops'] / peak:>8.0f}%" if gf else f"{'':>9}",
                 f"{r['peak_rss_mb']:>12.0f}"]  # fmt: skip
        print(f"{name:<28}" + "".join(cells))
    acc = results.get("int8-accuracy", {})
    if "f_float32" in acc:
        print(f"\nint8 accuracy ({acc['model']}; WNUT-17 dev, {acc['dev_sentences']} sentences): "
              f"F1 float32 {acc['f_float32']:.2f}, int8 {acc['f_int8']:.2f}, delta {acc['f_delta']:+.2f} points")  # fmt: skip
    ratios: dict[str, Optional[float]] = {
        "spacy-albert / spacy-transformers (pipe words/s)": _ratio(results, "spacy-albert", "spacy-transformers"),
        "spacy-albert-int8 / spacy-transformers (pipe words/s)": _ratio(results, "spacy-albert-int8", "spacy-transformers"),
        "spacy-albert / transformers (input order)": _ratio(results, "spacy-albert", "transformers"),
        "spacy-albert / transformers-sorted": _ratio(results, "spacy-albert", "transformers-sorted"),
        "spacy-albert / spacy-curated-transformers": _ratio(results, "spacy-albert", "spacy-curated-transformers"),
        "spacy-albert-unsorted / spacy-transformers (plain batches)": _ratio(results, "spacy-albert-unsorted", "spacy-transformers"),
        "spacy-albert / spacy-albert-padded (this work's batching)": _ratio(results, "spacy-albert", "spacy-albert-padded"),
        "spacy-albert-int8 / spacy-albert": _ratio(results, "spacy-albert-int8", "spacy-albert"),
        "train: spacy-albert / spacy-transformers (update words/s)": _ratio(results, "train-spacy-albert", "train-spacy-transformers"),
        "peak RSS: spacy-albert / spacy-transformers": _ratio(results, "spacy-albert", "spacy-transformers", "peak_rss_mb"),
        "peak RSS: spacy-albert-int8 / spacy-transformers": _ratio(results, "spacy-albert-int8", "spacy-transformers", "peak_rss_mb"),
    }  # fmt: skip
    ours = results.get("spacy-albert", {})
    if ours.get("encoder_gflops"):
        ratios["spacy-albert encoder GFLOP/s / matmul peak"] = ours["encoder_gflops"] / peak
        ratios["spacy-albert encoder useful GFLOP/s / matmul peak"] = ours["encoder_useful_gflops"] / peak
    targets = {
        "spacy-albert / spacy-transformers (pipe words/s)": (">=", 1.3),
        "spacy-albert-int8 / spacy-transformers (pipe words/s)": (">=", 2.0),
        "train: spacy-albert / spacy-transformers (update words/s)": (">=", 1.2),
        "peak RSS: spacy-albert / spacy-transformers": ("<=", 1.0),
        "spacy-albert encoder GFLOP/s / matmul peak": (">=", 0.85),
    }
    if args.device.startswith("cuda"):
        targets = {"spacy-albert / spacy-transformers (pipe words/s)": (">=", 2.0)}
    print("\nratios")
    for name, value in ratios.items():
        if value is None:
            continue
        target = targets.get(name)
        mark = ""
        if target:
            ok = value >= target[1] if target[0] == ">=" else value <= target[1]
            mark = f"   target {target[0]} {target[1]}: {'met' if ok else 'NOT met'}"
        print(f"  {name:<62}{value:>7.2f}{mark}")
    if "f_delta" in acc:
        ok = abs(acc["f_delta"]) <= 0.5
        print(f"  {'int8 F1 delta (points)':<62}{acc['f_delta']:>+7.2f}   target |delta| <= 0.5: {'met' if ok else 'NOT met'}")
    return {k: v for k, v in ratios.items() if v is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few docs, one repeat, few training steps")
    parser.add_argument("--docs", type=int, help="documents to annotate (default 200; 24 with --quick)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the docs (best is kept)")
    parser.add_argument("--train-steps", type=int, default=4, help="timed nlp.update batches (after one warm-up)")
    parser.add_argument("--train-ner-steps", type=int, default=850,
                        help="steps (16 sentences each; 850 = 4 epochs) to train the small NER for the int8 accuracy check")
    parser.add_argument("--ner-model", help="a trained pipeline with albert_ner, for the int8 accuracy check")
    parser.add_argument("--ner-checkpoint", help="a pretrained small ALBERT checkpoint to fine-tune for the int8 check")
    parser.add_argument("--dev-limit", type=int, default=1009, help="WNUT-17 dev sentences scored")
    parser.add_argument("--vocab-size", type=int, default=30000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.docs, args.repeats, args.train_steps = args.docs or 24, 1, 1
        args.train_ner_steps, args.dev_limit, args.vocab_size = min(args.train_ner_steps, 30), min(args.dev_limit, 100), 8000
    args.docs = args.docs or 200
    if args.variant:  # child process
        try:
            print(json.dumps(child(args)))
        except Exception as err:  # report, do not hide: the parent prints it
            print(json.dumps({"variant": args.variant, "error": f"{type(err).__name__}: {err}"}))
            raise
        return
    if args.device.startswith("cuda") and "spacy-albert-int8" in args.variants:
        args.variants.remove("spacy-albert-int8")  # int8 dynamic quantization is for CPUs

    import spacy

    peak_before = matmul_peak_gflops(args.threads, "float32", args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        texts, source = benchmark_texts(args.docs, args.seed)
        words = sum(len(doc) for doc in spacy.blank("en").tokenizer.pipe(texts))
        (work / "texts.json").write_text(json.dumps({"texts": texts, "words": words}))
        started = time.perf_counter()
        make_checkpoint(work / "checkpoint", args.vocab_size, args.seed)
        if "int8-accuracy" in args.variants and not args.ner_model and not args.ner_checkpoint:
            make_small_checkpoint(work / "small_checkpoint", args.seed)
        print(f"checkpoints ready in {time.perf_counter() - started:.0f} s; {len(texts)} docs, {words} words ({source})")
        results: dict[str, dict] = {}
        for variant in args.variants:
            cmd = [sys.executable, __file__, "--variant", variant, "--workdir", tmp] + [
                f"--{k.replace('_', '-')}={getattr(args, k)}"
                for k in ("batch_size", "threads", "device", "precision", "repeats", "train_steps", "train_ner_steps",
                          "dev_limit", "seed")  # fmt: skip
            ] + [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("ner_model", "ner_checkpoint") if getattr(args, k)]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"variant": variant, "error": proc.stderr.strip()[-500:]}
            if proc.returncode and "error" not in result:
                result["error"] = proc.stderr.strip()[-500:]
            results[variant] = result
            print(f"  {variant}: {time.perf_counter() - started:.0f} s"
                  + (f" ({result.get('error') or result.get('unavailable')})" if "error" in result or "unavailable" in result else ""))  # fmt: skip
    # the machine's float32 matmul rate: the better of a measurement before and after the variants
    peak = max(peak_before, matmul_peak_gflops(args.threads, "float32", args.device))
    meta = {"docs": len(texts), "words": words, "source": source}
    ratios = report(results, peak, args, meta)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(), "cpus": os.cpu_count(),
              "args": {k: v for k, v in vars(args).items() if k not in ("variant", "workdir")}, **meta,
              "matmul_peak_gflops": peak, "results": list(results.values()), "ratios": ratios}  # fmt: skip
    append_record(RESULTS, record)


if __name__ == "__main__":
    main()
