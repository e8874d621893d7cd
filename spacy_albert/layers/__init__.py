"""thinc layers: the ALBERT encoder over Docs, token pooling and listeners."""

from .data import AlbertDocData
from .heads import sequence_classifier, token_classifier
from .listener import AlbertListener, albert_doc_listener, albert_listener, albert_tok2vec
from .pooling import pool_pieces
from .task_model import build_task_model, export_task_model, load_task_checkpoint, run_task_model
from .transformer import build_albert_transformer, get_torch_encoder, load_checkpoint

__all__ = [
    "AlbertDocData",
    "AlbertListener",
    "albert_doc_listener",
    "albert_listener",
    "sequence_classifier",
    "token_classifier",
    "albert_tok2vec",
    "build_albert_transformer",
    "build_task_model",
    "export_task_model",
    "load_task_checkpoint",
    "run_task_model",
    "get_torch_encoder",
    "load_checkpoint",
    "pool_pieces",
]
