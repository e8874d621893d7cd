"""spaCy pipeline components (registered through the spacy_factories entry points)."""

from .albert import AlbertComponent, make_albert

__all__ = ["AlbertComponent", "make_albert"]
