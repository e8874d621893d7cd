"""Readers of ../shared/data files shared by the benchmark scripts. Importing this module
loads only the standard library (spaCy is imported when a Doc is built), so it adds nothing
to a measured process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(path: Path, record: dict) -> None:
    """Append `record` as one JSON line to a results file (benchmarks/results/*.jsonl)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, words, tags = [], [], []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.strip():  # whitespace-only lines end sentences too (WNUT-17 train quirk)
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        word, tag = line.split("\t")[:2]
        words.append(word)
        tags.append(tag.strip())
    if words:
        sentences.append((words, tags))
    return sentences


def tagged_doc(vocab: Any, words: list[str], tags: list[str]) -> Any:
    """A Doc of `words` (one space between them) with the BIO `tags` as its entities."""
    from spacy.tokens import Doc
    from spacy.training import biluo_tags_to_spans, iob_to_biluo

    doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(tags))
    return doc


def ner_examples(nlp: Any, sentences: list[tuple[list[str], list[str]]]) -> list[Any]:
    """Examples of an untagged Doc and its `tagged_doc` for each (words, tags) sentence."""
    from spacy.tokens import Doc
    from spacy.training import Example

    return [Example(Doc(nlp.vocab, words=words, spaces=[True] * (len(words) - 1) + [False]),
                    tagged_doc(nlp.vocab, words, tags)) for words, tags in sentences]  # fmt: skip
