"""ALBERT tokenizers (SentencePiece "slow" and `tokenizers` "fast") and SentencePiece training."""

from __future__ import annotations

from .base import AlbertTokenizerBase, BatchEncoding, SpecialToken
from .tokenization_albert import AlbertTokenizer
from .tokenization_albert_fast import AlbertTokenizerFast
from .training import train_sentencepiece

__all__ = [
    "AlbertTokenizer",
    "AlbertTokenizerBase",
    "AlbertTokenizerFast",
    "BatchEncoding",
    "SpecialToken",
    "train_sentencepiece",
]
