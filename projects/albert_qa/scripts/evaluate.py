"""Evaluate a QA pipeline on SQuAD-style `.spacy` data: SQuAD exact match and F1.

`spacy evaluate` reads the data with spaCy's own corpus reader, whose predicted docs are bare
text without their questions, so it has nothing to answer; this reads it with
`spacy-albert.QACorpus.v1`, which keeps `doc._.questions`, and scores with the pipeline's
scorer (`qa_exact`, `qa_f1`, both between 0 and 1).

    python scripts/evaluate.py MODEL DATA.spacy [--output metrics.json] [--gpu-id -1] [--show 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--show", type=int, default=5, help="Print the answers of this many questions.")
    args = parser.parse_args()

    import spacy
    from spacy.util import registry

    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.load(args.model)
    corpus = registry.readers.get("spacy-albert.QACorpus.v1")(args.data)
    examples = list(corpus(nlp))
    start = time.perf_counter()
    scores = nlp.evaluate(examples)
    seconds = time.perf_counter() - start
    n_questions = sum(len(eg.predicted._.questions or []) for eg in examples)
    scores = {key: value for key, value in scores.items() if key.startswith("qa_")}
    scores.update(n_docs=len(examples), n_questions=n_questions, seconds=round(seconds, 3))
    print(json.dumps(scores, indent=2))

    shown = 0
    for doc in nlp.pipe([eg.predicted for eg in examples[:3]]):
        for answer in doc._.qa_answers or []:
            if shown < args.show and answer.get("rank", 0) == 0:
                print(f"  Q: {answer['question']}\n  A: {answer['answer']!r} (score {answer.get('score', 0):.3f})")
                shown += 1
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
        print(f"Saved results to {args.output}")


if __name__ == "__main__":
    main()
