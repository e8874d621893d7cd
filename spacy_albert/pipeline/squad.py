"""SQuAD (v1.1 and v2.0) JSON to spaCy Docs in the conventions of the `albert_qa` component.

One Doc per paragraph: its text is the paragraph's ``context``; ``doc._.questions`` lists the
paragraph's questions; ``doc._.qa_answers`` holds one dict per gold answer::

    {"question": str, "answer": str, "start": int, "end": int, "id": str}

(``start``/``end`` are character offsets into the context). A question without answers
(v2.0 ``is_impossible``) is kept as one entry with ``"answer": ""``, ``start = end = 0``,
``"is_impossible": True`` and its ``"plausible_answers"`` (``[{"answer", "start", "end"}]``).
``doc.spans[spans_key]`` has a span per non-empty answer (``label_`` = question, ``id_`` =
index in ``doc._.qa_answers``). Save with ``DocBin(store_user_data=True)``, as
`convert_squad` does, to keep the questions and answers.

An answer whose ``answer_start`` does not point at its text is moved to the nearest
occurrence of the text in the context, or dropped (with a warning) when there is none.

Command line: ``python -m spacy_albert.pipeline.squad train-v2.0.json train.spacy [--lang en]``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .qa import ANSWERS_EXT, QUESTIONS_EXT, answer_spans, register_extensions

SquadData = Dict[str, Any]


def load_squad(path_or_data: Union[str, Path, SquadData]) -> SquadData:
    """The parsed SQuAD JSON from a dict, a JSON string or a path."""
    if isinstance(path_or_data, dict):
        return path_or_data
    if isinstance(path_or_data, str) and path_or_data.lstrip().startswith("{"):
        return json.loads(path_or_data)
    with Path(path_or_data).open(encoding="utf-8") as f:
        return json.load(f)


def _locate(context: str, text: str, start: int) -> Optional[Tuple[int, int]]:
    """Character offsets of `text` in `context` at `start`, else at its nearest occurrence."""
    if not text:
        return None
    if context[start : start + len(text)] == text:
        return start, start + len(text)
    found, i = [], context.find(text)
    while i != -1:
        found.append(i)
        i = context.find(text, i + 1)
    if not found:
        return None
    best = min(found, key=lambda j: abs(j - start))
    return best, best + len(text)


def _answers(context: str, raw: List[Dict[str, Any]], qid: str) -> List[Dict[str, Any]]:
    answers = []
    for answer in raw:
        text, start = answer.get("text", ""), int(answer.get("answer_start", 0))
        offsets = _locate(context, text, start)
        if offsets is None:
            warnings.warn(f"SQuAD question {qid!r}: answer {text!r} is not in its context; left out.")
            continue
        answers.append({"answer": text, "start": offsets[0], "end": offsets[1]})
    return answers


def paragraph_to_doc(nlp: Language, paragraph: Dict[str, Any], spans_key: str = "answers") -> Doc:
    """A Doc for one SQuAD paragraph (``{"context": ..., "qas": [...]}``)."""
    register_extensions()
    context = paragraph["context"]
    doc = nlp.make_doc(context)
    questions: List[str] = []
    entries: List[Dict[str, Any]] = []
    for qa in paragraph.get("qas", []):
        question, qid = qa["question"], str(qa.get("id", ""))
        questions.append(question)
        answers = [] if qa.get("is_impossible") else _answers(context, qa.get("answers", []), qid)
        if answers:
            entries.extend({"question": question, **answer, "id": qid} for answer in answers)
        else:
            plausible = _answers(context, qa.get("plausible_answers", []), qid)
            entries.append({"question": question, "answer": "", "start": 0, "end": 0, "id": qid,
                            "is_impossible": True, "plausible_answers": plausible})  # fmt: skip
    doc._.set(QUESTIONS_EXT, questions)
    doc._.set(ANSWERS_EXT, entries)
    doc.spans[spans_key] = answer_spans(doc, entries)
    return doc


def squad_to_docs(
    path_or_data: Union[str, Path, SquadData], nlp: Optional[Language] = None, *, spans_key: str = "answers"
) -> List[Doc]:
    """One Doc per paragraph of a SQuAD v1.1 or v2.0 file (a path, JSON string or parsed dict);
    `nlp` (default: a blank English pipeline) tokenizes the contexts."""
    data = load_squad(path_or_data)
    nlp = nlp if nlp is not None else spacy.blank("en")
    return [
        paragraph_to_doc(nlp, paragraph, spans_key)
        for article in data.get("data", [])
        for paragraph in article.get("paragraphs", [])
    ]


def convert_squad(
    input_path: Union[str, Path], output_path: Union[str, Path], lang: str = "en", *, spans_key: str = "answers"
) -> int:
    """Write a SQuAD JSON file as a `.spacy` DocBin (with user data); returns the number of docs."""
    docs = squad_to_docs(input_path, spacy.blank(lang), spans_key=spans_key)
    doc_bin = DocBin(store_user_data=True, docs=docs)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    doc_bin.to_disk(output_path)
    return len(docs)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Convert SQuAD JSON to a .spacy file for albert_qa.")
    parser.add_argument("input_path")
    parser.add_argument("output_path")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--spans-key", default="answers")
    args = parser.parse_args(argv)
    n = convert_squad(args.input_path, args.output_path, args.lang, spans_key=args.spans_key)
    print(f"Wrote {n} docs to {args.output_path}")


if __name__ == "__main__":
    main()
