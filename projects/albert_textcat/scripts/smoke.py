"""Load the installed pipeline package by name, as a user would, and print its categories.

    python scripts/smoke.py PACKAGE_NAME [--text TEXT ...] [--output smoke.json]

Runs offline; fails when the package cannot be loaded or gives a doc no categories.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TEXTS = [
    "the film is wonderful and the cast is truly brilliant",
    "a waste of time , the plot is dull and the ending was terrible",
    "the story is not boring at all",
    "the acting was clumsy , but the soundtrack is superb",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package")
    parser.add_argument("--text", action="append", default=None, help="Text to classify (repeatable).")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    import spacy

    nlp = spacy.load(args.package)
    module = sys.modules.get(args.package)
    print(f"Loaded {args.package} {nlp.meta.get('version')} from {getattr(module, '__file__', '?')}")
    print(f"Pipeline: {nlp.pipe_names}")
    results = []
    for doc in nlp.pipe(args.text or TEXTS):
        cats = {label: round(float(score), 4) for label, score in doc.cats.items()}
        results.append({"text": doc.text, "cats": cats})
        best = max(cats, key=cats.get) if cats else None
        print(f"  {doc.text}\n    -> {best} {cats}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        summary = {"package": args.package, "version": nlp.meta.get("version"), "pipe_names": nlp.pipe_names,
                   "package_file": getattr(module, "__file__", None), "docs": results}  # fmt: skip
        args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not all(result["cats"] for result in results):
        sys.exit("The pipeline gave a text no categories.")


if __name__ == "__main__":
    main()
