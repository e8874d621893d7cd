"""The QA corpus reader ``spacy-albert.QACorpus.v1``: `.spacy` files of QA docs whose Examples'
predicted docs carry the reference's questions."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Union

from spacy.language import Language
from spacy.training import Corpus, Example
from spacy.util import registry

from .extensions import QUESTIONS_EXT, get_questions

class QACorpus:
    """`spacy.Corpus` over `.spacy` files of QA docs, whose Examples' predicted docs carry the
    reference's questions (spaCy's own corpus gives them bare text, so evaluation during
    `spacy train` would have no questions to answer)."""

    def __init__(self, path: Optional[Union[str, Path]], *, limit: int = 0, shuffle: bool = False) -> None:
        if path is None:
            raise ValueError("QACorpus needs a path to a .spacy file or a directory of them.")
        self.path = path
        self.corpus = Corpus(path, limit=limit, shuffle=shuffle)

    def __call__(self, nlp: Language) -> Iterator[Example]:
        asked = False
        for eg in self.corpus(nlp):
            questions = get_questions(eg.reference)
            eg.predicted._.set(QUESTIONS_EXT, questions)
            asked = asked or bool(questions)
            yield eg
        if not asked:  # nothing to train or evaluate on: not QA data
            raise ValueError(
                f"QACorpus: no doc in {self.path} has questions (doc._.questions); "
                "convert SQuAD JSON with `spacy-albert convert INPUT OUTPUT -f squad`."
            )


@registry.readers("spacy-albert.QACorpus.v1")
def create_qa_corpus(path: Optional[Path], limit: int = 0, shuffle: bool = False) -> QACorpus:
    """Examples from `.spacy` files (docs with `_.questions` and `_.qa_answers`)."""
    return QACorpus(path, limit=limit, shuffle=shuffle)
