"""Exceptions raised by spacy-albert, each naming what is wrong and where."""

from __future__ import annotations


class AlbertError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(AlbertError, OSError):
    """A checkpoint directory, file or hub id cannot be used (missing, unreadable, corrupted)."""


class ShapeMismatchError(AlbertError, ValueError):
    """Weights or vocabularies whose shapes disagree with the configuration."""


class CorruptedFileError(AlbertError, ValueError):
    """A saved component's file that cannot be read: empty, truncated, corrupted or hostile."""


class NonFiniteError(AlbertError, FloatingPointError):
    """A component's loss or gradient became NaN or infinite during `update`."""
