"""Report on a pretrained checkpoint: held-out metrics next to the untrained baseline, and
masks filled through spaCy's `albert_fill_mask` component (which also checks that the
checkpoint loads in a spaCy pipeline).

The fill-mask probe masks pronouns (he/she/his/her/him) in held-out text, with the sentence
before as context, and counts how often the top prediction is the original word: pronoun
agreement is one of the things the sample corpus teaches.

    python scripts/report.py CHECKPOINT DEV_TEXT METRICS BASELINE_METRICS [--output report.json]
        [--baseline-checkpoint DIR] [--max-probes 200] [--show 8]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PRONOUNS = {"he", "she", "his", "her", "him"}
METRICS = ("mlm_accuracy", "mlm_loss", "sop_accuracy", "sop_loss")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def probes(path: Path, limit: int) -> List[Tuple[str, str]]:
    """(text with one [MASK], the masked word): a pronoun inside a sentence, with the sentence before it."""
    found: List[Tuple[str, str]] = []
    for paragraph in path.read_text(encoding="utf-8").splitlines():
        sentences = [s for s in SENTENCE_END.split(paragraph.strip()) if s]
        for previous, sentence in zip(sentences, sentences[1:]):
            words = sentence.split(" ")
            for i, word in enumerate(words[1:], 1):
                if word in PRONOUNS:
                    masked = " ".join(words[:i] + ["[MASK]"] + words[i + 1 :])
                    found.append((f"{previous} {masked}", word))
                    break
            if len(found) >= limit:
                return found
    return found


def fill_mask_pipeline(checkpoint: Path):
    import spacy

    nlp = spacy.blank("en")
    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", "checkpoint": str(checkpoint)}
    model = {"@architectures": "spacy-albert.MaskedLanguageModel.v1", "encoder": encoder}
    nlp.add_pipe("albert_fill_mask", config={"model": model, "top_k": 3})
    nlp.initialize()
    return nlp


def probe(checkpoint: Path, examples: List[Tuple[str, str]]) -> Tuple[float, List[Dict]]:
    fill_mask = fill_mask_pipeline(checkpoint).get_pipe("albert_fill_mask")
    shown, correct = [], 0
    for text, gold in examples:
        candidates = fill_mask.fill(text, top_k=3)
        top = [c["token_str"].strip() for c in candidates]
        correct += bool(top) and top[0] == gold
        shown.append({"text": text, "gold": gold, "top3": top})
    return (correct / len(examples) if examples else 0.0), shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dev_text", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("baseline_metrics", type=Path)
    parser.add_argument("--baseline-checkpoint", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--max-probes", type=int, default=200)
    parser.add_argument("--show", type=int, default=8)
    args = parser.parse_args()

    trained = json.loads(args.metrics.read_text(encoding="utf-8"))
    untrained = json.loads(args.baseline_metrics.read_text(encoding="utf-8"))
    print(f"{'held-out':<14}{'untrained':>12}{'pretrained':>12}")
    for key in METRICS:
        if key in trained and key in untrained:
            print(f"{key:<14}{untrained[key]:>12.4f}{trained[key]:>12.4f}")

    report: Dict = {"pretrained": trained, "untrained": untrained}
    examples = probes(args.dev_text, args.max_probes) if args.dev_text.is_file() else []
    if examples:
        accuracy, shown = probe(args.checkpoint, examples)
        report["pronoun_probe"] = {"n": len(examples), "accuracy": accuracy, "examples": shown[: args.show]}
        baseline: Optional[float] = None
        if args.baseline_checkpoint is not None:
            baseline, _ = probe(args.baseline_checkpoint, examples)
            report["pronoun_probe"]["untrained_accuracy"] = baseline
        print(f"\nPronoun probe ({len(examples)} masked pronouns): top-1 accuracy {accuracy:.3f}"
              + (f" (untrained {baseline:.3f})" if baseline is not None else ""))  # fmt: skip
        for item in shown[: args.show]:
            print(f"  {item['text']}\n    gold {item['gold']!r}, predicted {item['top3']}")
    else:
        fill_mask_pipeline(args.checkpoint)  # still check that spaCy loads the checkpoint
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
