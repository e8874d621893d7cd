"""Load the installed pipeline package by name, as a user would, and print its entities.

    python scripts/smoke.py PACKAGE_NAME [--text TEXT ...] [--output smoke.json]

Runs offline; fails when the package cannot be loaded (and, with --strict, when it finds no
entity in any of the texts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TEXTS = [
    "Alice Smith works for Google in Paris .",
    "yesterday Bob met Maria at the NASA office",
    "Acme Corp opened a new store in New York !",
    "just landed in Tokyo , so tired lol",
    "my phone died again ...",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package")
    parser.add_argument("--text", action="append", default=None, help="Text to annotate (repeatable).")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--strict", action="store_true", help="Exit with an error when no text gets an entity.")
    args = parser.parse_args()

    import spacy

    nlp = spacy.load(args.package)
    module = sys.modules.get(args.package)
    print(f"Loaded {args.package} {nlp.meta.get('version')} from {getattr(module, '__file__', '?')}")
    print(f"Pipeline: {nlp.pipe_names}")
    results = []
    for doc in nlp.pipe(args.text or TEXTS):
        ents = [[ent.text, ent.label_, ent.start_char, ent.end_char] for ent in doc.ents]
        results.append({"text": doc.text, "ents": ents})
        print(f"  {doc.text}\n    -> {[(text, label) for text, label, _, _ in ents]}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        summary = {"package": args.package, "version": nlp.meta.get("version"), "pipe_names": nlp.pipe_names,
                   "package_file": getattr(module, "__file__", None), "docs": results}  # fmt: skip
        args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not any(result["ents"] for result in results):
        message = "The pipeline found no entities in any of the texts."
        if args.strict:
            sys.exit(message)
        print(f"Warning: {message}")


if __name__ == "__main__":
    main()
