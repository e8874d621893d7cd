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

from ..cli._io import InputError, parse_json, read_text_file
from .qa import ANSWERS_EXT, QUESTIONS_EXT, answer_spans, register_extensions

SquadData = Dict[str, Any]
_REQUIRED = object()
_KINDS = {str: "a string", int: "a whole number", bool: "true or false", list: "a list"}


class SquadError(InputError):
    """SQuAD data without a field it needs, or with a field of the wrong type; the message
    names the file, the question id (or the position) and the field."""


def _is_json_text(path_or_data: Union[str, Path, SquadData]) -> bool:
    return isinstance(path_or_data, str) and path_or_data.lstrip().startswith("{")


def _source(path_or_data: Union[str, Path, SquadData]) -> str:
    """How error messages name the data: its path, else "SQuAD data"."""
    return "SQuAD data" if isinstance(path_or_data, dict) or _is_json_text(path_or_data) else str(path_or_data)


def load_squad(path_or_data: Union[str, Path, SquadData]) -> SquadData:
    """The parsed SQuAD JSON from a dict, a JSON string or a path (a UTF-8 file); `InputError`
    names the file and position of JSON that does not parse."""
    if isinstance(path_or_data, dict):
        return path_or_data
    text = path_or_data if _is_json_text(path_or_data) else read_text_file(path_or_data)
    return parse_json(text, _source(path_or_data))


def _get(record: Any, key: str, kind: Union[type, Tuple[type, ...]], where: str, default: Any = _REQUIRED) -> Any:
    """`record[key]`, checked to be a `kind`; `default` where it is absent or null (an error
    where there is no default)."""
    if not isinstance(record, dict):
        raise SquadError(f"{where}: expected a JSON object, not {json.dumps(record)[:40]}.")
    value = record.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if value is None:
        missing = f"no {key!r} field" if key not in record else f"{key!r} is null"
        raise SquadError(f"{where}: {missing}, but SQuAD v1.1/v2.0 data needs one.")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(_KINDS[k] for k in kinds)
        raise SquadError(f"{where}: {key!r} must be {expected}, not {json.dumps(value)[:40]}.")
    return value


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


def _answers(context: str, qa: Dict[str, Any], field: str, where: str) -> List[Dict[str, Any]]:
    """The answers of `qa[field]` ("answers" or "plausible_answers") located in `context`."""
    answers = []
    for i, answer in enumerate(_get(qa, field, list, where, [])):
        at = f"{where}, {field}[{i}]"
        text, start = _get(answer, "text", str, at), _get(answer, "answer_start", int, at)
        offsets = _locate(context, text, start)
        if offsets is None:
            warnings.warn(f"{at}: answer {text!r} is not in its context; left out.")
            continue
        answers.append({"answer": text, "start": offsets[0], "end": offsets[1]})
    return answers


def paragraph_to_doc(
    nlp: Language,
    paragraph: Dict[str, Any],
    spans_key: str = "answers",
    *,
    source: str = "SQuAD data",
    position: str = "paragraph",
) -> Doc:
    """A Doc for one SQuAD paragraph (``{"context": ..., "qas": [...]}``); `source` (the file)
    and `position` name it in the `SquadError` raised for a missing or mistyped field."""
    register_extensions()
    where = f"{source}, {position}"
    context = _get(paragraph, "context", str, where)
    doc = nlp.make_doc(context)
    questions: List[str] = []
    entries: List[Dict[str, Any]] = []
    for i, qa in enumerate(_get(paragraph, "qas", list, where, [])):
        qid = str(_get(qa, "id", (str, int), f"{where}.qas[{i}]", ""))
        at = f"{source}, question {qid!r}" if qid else f"{where}.qas[{i}]"
        question = _get(qa, "question", str, at)
        questions.append(question)
        answers = [] if _get(qa, "is_impossible", bool, at, False) else _answers(context, qa, "answers", at)
        if answers:
            entries.extend({"question": question, **answer, "id": qid} for answer in answers)
        else:
            plausible = _answers(context, qa, "plausible_answers", at)
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
    data, source = load_squad(path_or_data), _source(path_or_data)
    nlp = nlp if nlp is not None else spacy.blank("en")
    return [
        paragraph_to_doc(nlp, paragraph, spans_key, source=source, position=f"data[{i}].paragraphs[{j}]")
        for i, article in enumerate(_get(data, "data", list, source))
        for j, paragraph in enumerate(_get(article, "paragraphs", list, f"{source}, data[{i}]"))
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
    try:
        n = convert_squad(args.input_path, args.output_path, args.lang, spans_key=args.spans_key)
    except (InputError, OSError) as err:
        parser.exit(1, f"{parser.prog}: {err}\n")
    print(f"Wrote {n} docs to {args.output_path}")


if __name__ == "__main__":
    main()
