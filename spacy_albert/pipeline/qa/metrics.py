"""Gold answers and scoring of `albert_qa`: the official SQuAD v2.0 exact match and F1, and the
registered scorer ``spacy-albert.qa_scorer.v1``."""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Callable, Dict, Iterable, List, Tuple

from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .extensions import ANSWERS_EXT, get_questions

def gold_answers(doc: Doc, spans_key: str = "answers") -> Dict[str, List[Tuple[str, int, int]]]:
    """Each question of a reference doc with its gold answers ``(text, start, end)``; an
    unanswerable question (no or only empty answers) maps to an empty list."""
    golds: Dict[str, List[Tuple[str, int, int]]] = {q: [] for q in get_questions(doc)}
    entries = doc._.get(ANSWERS_EXT)
    if entries is not None:
        for entry in entries:
            question = entry.get("question")
            golds.setdefault(question, [])
            answer = entry.get("answer") or ""
            if answer and not entry.get("is_impossible"):
                golds[question].append((answer, int(entry["start"]), int(entry["end"])))
    elif spans_key in doc.spans:
        for span in doc.spans[spans_key]:
            golds.setdefault(span.label_, []).append((span.text, span.start_char, span.end_char))
    return golds


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text, flags=re.UNICODE)

    exclude = set(string.punctuation)
    s = "".join(ch for ch in s.lower() if ch not in exclude)
    return " ".join(remove_articles(s).split())


def exact_score(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def score_qa(examples: Iterable[Example], *, spans_key: str = "answers", **kwargs: Any) -> Dict[str, Any]:
    """SQuAD v2.0 exact match and F1 (0-1) of the best predicted answer of every gold question
    (an unanswerable question's gold answer is ""; a question without prediction answers "")."""
    exact, f1 = [], []
    for eg in examples:
        best: Dict[str, str] = {}
        for entry in eg.predicted._.get(ANSWERS_EXT) or []:
            best.setdefault(entry["question"], entry["answer"])
        for question, answers in gold_answers(eg.reference, spans_key).items():
            texts = [text for text, _, _ in answers if normalize_answer(text)] or [""]
            pred = best.get(question, "")
            exact.append(max(exact_score(g, pred) for g in texts))
            f1.append(max(f1_score(g, pred) for g in texts))
    if not exact:
        return {"qa_exact": None, "qa_f1": None}
    return {"qa_exact": sum(exact) / len(exact), "qa_f1": sum(f1) / len(f1)}


@registry.scorers("spacy-albert.qa_scorer.v1")
def make_qa_scorer() -> Callable[..., Dict[str, Any]]:
    return score_qa
