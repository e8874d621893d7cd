"""The Doc and Span extensions of `albert_qa`: ``doc._.questions``, ``doc._.qa_answers`` and the
``span._.qa_*`` getters (registered on import)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from spacy.tokens import Doc, Span

QUESTIONS_EXT = "questions"
ANSWERS_EXT = "qa_answers"
_SPAN_FIELDS = {
    "qa_question": ("question", lambda span: span.label_),
    "qa_answer": ("answer", lambda span: span.text),
    "qa_start": ("start", lambda span: span.start_char),
    "qa_end": ("end", lambda span: span.end_char),
    "qa_score": ("score", lambda span: None),
    "qa_rank": ("rank", lambda span: None),
}

Answer = Dict[str, Any]


def _answer_of_span(span: Span) -> Optional[Answer]:
    """The entry of ``doc._.qa_answers`` a span stands for (its ``id_`` is the index)."""
    answers = span.doc._.get(ANSWERS_EXT)
    key = span.id_
    if not answers or not key.isdigit() or int(key) >= len(answers):
        return None
    answer = answers[int(key)]
    return answer if isinstance(answer, dict) and answer.get("question") == span.label_ else None


def _span_getter(field: str, fallback: Callable[[Span], Any]) -> Callable[[Span], Any]:
    def getter(span: Span) -> Any:
        answer = _answer_of_span(span)
        return fallback(span) if answer is None else answer.get(field)

    return getter


def register_extensions() -> None:
    """Register ``doc._.questions``, ``doc._.qa_answers`` and the ``span._.qa_*`` getters."""
    for name in (QUESTIONS_EXT, ANSWERS_EXT):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    for name, (field, fallback) in _SPAN_FIELDS.items():
        if not Span.has_extension(name):
            Span.set_extension(name, getter=_span_getter(field, fallback))


register_extensions()


def get_questions(doc: Doc) -> List[str]:
    """The doc's questions (``doc._.questions``) as a list; blank questions are left out."""
    questions = doc._.get(QUESTIONS_EXT)
    if questions is None:
        return []
    if isinstance(questions, str):
        questions = [questions]
    return [q for q in questions if isinstance(q, str) and q.strip()]

