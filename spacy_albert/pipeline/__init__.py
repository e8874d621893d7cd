"""spaCy pipeline components (registered through the spacy_factories entry points)."""

from .albert import AlbertComponent, make_albert
from .fill_mask import AlbertFillMask
from .multiple_choice import AlbertMultipleChoice
from .ner import AlbertNER
from .qa import AlbertQuestionAnswering
from .textcat import AlbertTextCategorizer

__all__ = [
    "AlbertComponent",
    "AlbertFillMask",
    "AlbertMultipleChoice",
    "AlbertNER",
    "AlbertQuestionAnswering",
    "AlbertTextCategorizer",
    "make_albert",
]
