"""thinc layers: the ALBERT encoder over Docs or built sequences, token pooling, listeners
and heads."""

from . import removed  # noqa: F401  (registers the removed architectures' clear errors)
from .data import AlbertDocData, PieceSequences
from .heads import sequence_classifier, token_classifier
from .listener import AlbertListener, albert_doc_listener, albert_listener, albert_tok2vec
from .pooling import pool_pieces
from .sequence_heads import masked_language_model, multiple_choice, question_answering
from .transformer import albert_state, build_albert_transformer, get_torch_encoder, load_checkpoint

__all__ = [
    "AlbertDocData",
    "AlbertListener",
    "PieceSequences",
    "albert_doc_listener",
    "albert_listener",
    "albert_state",
    "albert_tok2vec",
    "build_albert_transformer",
    "get_torch_encoder",
    "load_checkpoint",
    "masked_language_model",
    "multiple_choice",
    "pool_pieces",
    "question_answering",
    "sequence_classifier",
    "token_classifier",
]
