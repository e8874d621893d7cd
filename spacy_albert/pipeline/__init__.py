"""spaCy pipeline components (registered through the spacy_factories entry points). The
component classes are imported on first use, so that loading one factory imports only its
own module."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AlbertComponent": "spacy_albert.pipeline.albert",
    "make_albert": "spacy_albert.pipeline.albert",
    "AlbertFillMask": "spacy_albert.pipeline.fill_mask",
    "AlbertMultipleChoice": "spacy_albert.pipeline.multiple_choice",
    "AlbertNER": "spacy_albert.pipeline.ner",
    "AlbertQuestionAnswering": "spacy_albert.pipeline.qa",
    "AlbertTextCategorizer": "spacy_albert.pipeline.textcat",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spacy_albert.pipeline' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
