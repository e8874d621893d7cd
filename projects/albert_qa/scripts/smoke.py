"""Load the installed pipeline package by name, as a user would, and answer questions.

    python scripts/smoke.py PACKAGE_NAME [--output smoke.json]

Runs offline; fails when the package cannot be loaded or answers no question at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONTEXT = (
    "Ada Lindqvist was born in Porto in 1931. She studied physics at Uppsala University. "
    "After graduating, she worked as an engineer for 7 years. In 1960, she moved to Ghent, "
    "where she founded Orbit Robotics."
)
QUESTIONS = [
    "Where was Ada Lindqvist born?",
    "When was Ada Lindqvist born?",
    "What did Ada Lindqvist study?",
    "What company did Ada Lindqvist found?",
    "When did Ada Lindqvist die?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    import spacy

    nlp = spacy.load(args.package)
    module = sys.modules.get(args.package)
    print(f"Loaded {args.package} {nlp.meta.get('version')} from {getattr(module, '__file__', '?')}")
    print(f"Pipeline: {nlp.pipe_names}\nContext: {CONTEXT}")
    doc = nlp.make_doc(CONTEXT)
    doc._.questions = QUESTIONS
    doc = nlp(doc)
    answers = [a for a in doc._.qa_answers if a.get("rank", 0) == 0]
    for answer in answers:
        print(f"  Q: {answer['question']}\n  A: {answer['answer']!r} (score {answer['score']:.3f})")
    spans = [[span.text, span.label_] for span in doc.spans.get("answers", [])]
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        summary = {"package": args.package, "version": nlp.meta.get("version"), "pipe_names": nlp.pipe_names,
                   "package_file": getattr(module, "__file__", None), "context": CONTEXT,
                   "answers": answers, "spans": spans}  # fmt: skip
        args.output.write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    if len({a["question"] for a in answers}) != len(QUESTIONS):
        sys.exit("The pipeline did not answer every question.")


if __name__ == "__main__":
    main()
