"""Pretraining benchmark: a small ALBERT pretrained on WikiText-2 (or Gutenberg) on this machine.

1. Prepares the text from ../shared/data (never copied into the repo): WikiText-2's ``.tokens``
   files with ``<unk>`` removed, ``@-@``-style splits re-joined and ``= Title =`` headings used
   as article (document) boundaries; or with ``--corpus gutenberg`` the NLTK Gutenberg books
   (blank-line paragraphs, last 5% of each book held out).
2. Trains the SentencePiece vocabulary (`train-vocab`).
3. Times one training step of ours (`Pretrainer.train_step`: n-gram masking, MLM on the masked
   positions + SOP, LAMB) against transformers' `AlbertForPreTraining` (full MLM head, the same
   batches, same config, AdamW) in the same process and thread count.
4. Pretrains for ``--minutes`` (or ``--max-steps``) and reports held-out MLM accuracy, SOP
   accuracy and pieces/second, appending a JSON line to benchmarks/results/pretraining.jsonl.

    python benchmarks/pretraining.py --minutes 25 --output /tmp/albert-wiki
    python benchmarks/learning.py --checkpoint /tmp/albert-wiki     # then fine-tune it
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data import append_record  # benchmarks/data.py (benchmarks/ is on sys.path when run as a script)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results" / "pretraining.jsonl"
SMALL = dict(embedding_size=128, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)

_HEADING = re.compile(r"^ = [^=].* = $")
_SPLITS = re.compile(r" @([-,.])@ ")


def wikitext_documents(path: Path) -> str:
    """WikiText ``.tokens`` as plain text: one article per blank-line-separated block."""
    articles: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if _HEADING.match(line):
            articles.append([])
            continue
        if not line.strip() or line.lstrip().startswith("="):
            continue  # blank lines and section headings
        text = _SPLITS.sub(r"\1", line.replace("<unk>", " ")).strip()
        text = re.sub(r" ([,.;:!?)'])", r"\1", re.sub(r"\( ", "(", " ".join(text.split())))
        if articles and text:
            articles[-1].append(text)
    return "\n\n".join(" ".join(a) for a in articles if a) + "\n"


def gutenberg_documents(directory: Path) -> tuple[str, str]:
    """(train, dev) text: paragraphs of each book; the last 5% of every book is held out."""
    train, dev = [], []
    for book in sorted(directory.glob("*.txt")):
        text = book.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if len(p.split()) > 3]
        cut = int(len(paragraphs) * 0.95)
        train.append("\n\n".join(paragraphs[:cut]))
        dev.append("\n\n".join(paragraphs[cut:]))
    return "\n\n".join(train) + "\n", "\n\n".join(dev) + "\n"


def prepare_text(corpus: str, workdir: Path) -> tuple[Path, Path]:
    train, dev = workdir / "train.txt", workdir / "dev.txt"
    if corpus == "wikitext-2":
        train.write_text(wikitext_documents(DATA / "wikitext-2" / "wiki.train.tokens"), encoding="utf-8")
        dev.write_text(wikitext_documents(DATA / "wikitext-2" / "wiki.valid.tokens"), encoding="utf-8")
    else:
        train_text, dev_text = gutenberg_documents(DATA / "gutenberg-nltk")
        train.write_text(train_text, encoding="utf-8")
        dev.write_text(dev_text, encoding="utf-8")
    return train, dev


def time_steps(step, n: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - started) / n


def compare_step_time(trainer, n_steps: int) -> dict:
    """Seconds per optimizer step: ours vs transformers' AlbertForPreTraining on the same batches."""
    import transformers

    config = transformers.AlbertConfig(**trainer.model.config.to_dict())
    torch.manual_seed(0)
    reference = transformers.AlbertForPreTraining(config).train()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-4, eps=1e-6)
    batches = [trainer.micro_batches(i)[0] for i in range(n_steps + 1)]
    position = iter(range(10**9))

    def reference_step() -> None:
        batch = batches[next(position) % len(batches)]
        loss = reference(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ours = time_steps(trainer.train_step, n_steps)
    theirs = time_steps(reference_step, n_steps)
    pieces = float(np.mean([int(b["attention_mask"].sum()) for b in batches]))
    return {
        "ours_s_per_step": ours,
        "transformers_s_per_step": theirs,
        "speedup": theirs / ours,
        "pieces_per_step": pieces,
        "ours_pieces_per_s": pieces / ours,
        "transformers_pieces_per_s": pieces / theirs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["wikitext-2", "gutenberg"], default="wikitext-2")
    parser.add_argument("--output", type=Path, default=None, help="where the checkpoint goes (default: a temp dir)")
    parser.add_argument("--minutes", type=float, default=20.0, help="pretraining time budget")
    parser.add_argument("--max-steps", type=int, default=0, help="schedule length (default: what fits in --minutes)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--optimizer", default="lamb")
    parser.add_argument("--timing-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--timing-only", action="store_true", help="only compare the step times")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: this benchmark needs ../shared/data.")
    torch.set_num_threads(args.threads)

    from spacy_albert.cli import app
    from spacy_albert.pretraining.trainer import Pretrainer, PretrainingSettings
    from typer.testing import CliRunner

    output = args.output or Path(tempfile.mkdtemp(prefix="albert-pretrain-"))
    work = output.parent / f"{output.name}-data"
    work.mkdir(parents=True, exist_ok=True)
    train, dev = prepare_text(args.corpus, work)
    vocab = work / "vocab"
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["train-vocab", str(train), "--output", str(vocab), "--vocab-size",
                                      str(args.vocab_size), "--input-sentence-size", "300000", "--threads", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    vocab_seconds = time.perf_counter() - started

    def settings(**overrides) -> PretrainingSettings:
        base = dict(
            train=[str(train)], vocab=str(vocab), output=str(output), dev=[str(dev)], max_dev_instances=600,
            max_steps=args.max_steps, batch_size=args.batch_size, max_seq_length=args.max_seq_length,
            optimizer=args.optimizer, lr=args.lr, warmup_steps=args.warmup_steps, eval_every=args.eval_every,
            save_every=1000, log_every=20, max_minutes=args.minutes * 1.1, threads=args.threads, **SMALL,
        )  # fmt: skip
        base.update(overrides)
        return PretrainingSettings(**base)

    timing_trainer = Pretrainer(settings(output=str(work / "timing"), max_steps=args.timing_steps + 10))
    timing = compare_step_time(timing_trainer, args.timing_steps)
    del timing_trainer
    print(f"step time: ours {timing['ours_s_per_step']:.3f} s, transformers {timing['transformers_s_per_step']:.3f} s"
          f" ({timing['speedup']:.2f}x)", flush=True)  # fmt: skip
    if args.timing_only:
        append_record(RESULTS, {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": SMALL,
                                "batch_size": args.batch_size, "step_time": timing})  # fmt: skip
        return
    # The schedule (warm-up, then linear decay) ends where the time budget is expected to end.
    steps = args.max_steps or max(args.warmup_steps + 1, int(args.minutes * 60 * 0.95 / timing["ours_s_per_step"]))
    started = time.perf_counter()
    trainer = Pretrainer(settings(max_steps=steps))
    data_seconds = time.perf_counter() - started
    summary = trainer.run()
    evals = [json.loads(line) for line in (output / "pretraining_log.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval"]["mlm_accuracy"], r["eval"]["sop_accuracy"]) for r in evals if "eval" in r]
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": platform.processor() or platform.machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "config": SMALL,
        "train_instances": len(trainer.train_instances),
        "dev_instances": len(trainer.dev_instances),
        "vocab_seconds": vocab_seconds,
        "data_seconds": data_seconds,
        "step_time": timing,
        "steps": summary["steps"],
        "pieces_per_second": summary["pieces_per_second"],
        "final_eval": summary["eval"],
        "eval_curve": curve,
        "checkpoint": str(output),
    }
    append_record(RESULTS, record)
    final = summary["eval"]
    print(f"{summary['steps']} steps in {args.minutes} min, {summary['pieces_per_second']:.0f} pieces/s")
    print(f"held-out MLM accuracy {final['mlm_accuracy']:.4f} (loss {final['mlm_loss']:.3f}), "
          f"SOP accuracy {final['sop_accuracy']:.4f}")  # fmt: skip
    print(f"checkpoint: {output}")


if __name__ == "__main__":
    main()
