"""Raw text for vocabularies and pretraining: documents made of sentences.

Inputs are text files, ``.spacy`` files (DocBin) or directories of them:

- text (``.txt`` or any other suffix): blank lines separate documents; each non-blank line
  is split into sentences at ``. ! ?`` followed by a space and a capital letter, digit or
  opening quote (one-sentence-per-line files, as ALBERT's own data, stay as they are);
- ``.spacy``: each Doc is a document; its sentences are ``doc.sents`` when the Doc has
  sentence boundaries, otherwise its text is split as above.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Union

PathLike = Union[str, Path]
Document = List[str]

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")


def split_sentences(text: str) -> List[str]:
    """Sentences of one line or paragraph (a light rule-based splitter; no model needed)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def expand_paths(paths: Iterable[PathLike]) -> List[Path]:
    """Files named by `paths`, directories expanded to their files (sorted, hidden ones skipped)."""
    found: List[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"Input {str(path)!r} does not exist.")
    if not found:
        raise ValueError(f"No input files found in {[str(p) for p in paths]}.")
    return found


def _text_documents(path: Path) -> Iterator[Document]:
    document: Document = []
    with path.open(encoding="utf-8", errors="replace", newline=None) as handle:
        for line in handle:
            if line.strip():
                document.extend(split_sentences(line.strip()))
            elif document:
                yield document
                document = []
    if document:
        yield document


def _spacy_documents(path: Path) -> Iterator[Document]:
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("xx").vocab
    for doc in DocBin().from_disk(path).get_docs(vocab):
        if doc.has_annotation("SENT_START"):
            sentences = [s.text.strip() for s in doc.sents]
        else:
            sentences = split_sentences(" ".join(doc.text.split()))
        sentences = [s for s in sentences if s]
        if sentences:
            yield sentences


def read_documents(paths: Sequence[PathLike] | PathLike) -> Iterator[Document]:
    """Documents (lists of sentences) from text files, ``.spacy`` files or directories."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in expand_paths(paths):
        yield from (_spacy_documents(path) if path.suffix == ".spacy" else _text_documents(path))


def read_lines(paths: Sequence[PathLike] | PathLike) -> Iterator[str]:
    """Every sentence of every document, one string each (for vocabulary training)."""
    for document in read_documents(paths):
        yield from document
