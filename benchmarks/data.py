"""Readers of ../shared/data files shared by the benchmark scripts (standard library only, so
that importing them adds nothing to a measured process)."""

from __future__ import annotations

from pathlib import Path


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
