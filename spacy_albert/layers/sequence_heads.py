"""Heads for the components that build their own inputs (`PieceSequences`: question +
context, prompt + choice, masked text), each over an `spacy-albert.AlbertTransformer.v1`
encoder of its own. Laid out like the reference heads, so weights move both ways between
them and Hugging Face checkpoints:

* `spacy-albert.QuestionAnswering.v1`: start and end logits [n_positions, 2] for every
  position of every sequence (`AlbertForQuestionAnswering`'s `qa_outputs`).
* `spacy-albert.MultipleChoice.v1`: one logit per sequence [n_sequences, 1] from its [CLS]
  state: pooler (dense + tanh), dropout, classifier (`AlbertForMultipleChoice`'s
  `albert.pooler` and `classifier`).
* `spacy-albert.MaskedLanguageModel.v1`: vocabulary logits [n_rows, vocab] at the input's
  `rows` (`AlbertForMaskedLM`'s `predictions`, which lives in the encoder's torch module,
  its decoder being the word embedding matrix).

They are thinc models like any other: `predict`, `begin_update` with backprop into the
encoder, a `Dropout` layer that spaCy's `drop` sets, and their widths taken from the
encoder at initialize (the checkpoint's hidden_size).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from spacy.util import registry
from thinc.api import Dropout, Linear, Model
from thinc.types import Floats2d

from .data import PieceSequences
from .heads import tanh_layer
from .transformer import add_mlm_head, encode_sequences, mlm_logits


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    """Initialise the encoder (loading its configured checkpoint), then give the head layers
    the encoder's width and initialise them."""
    encoder = model.get_ref("encoder")
    encoder.initialize()
    width = encoder.get_dim("nO")
    for name in model.attrs["square"]:  # width -> width (the pooler)
        layer = model.get_ref(name)
        if not layer.has_param("W"):
            layer.set_dim("nO", width, force=True)
    for name in model.attrs["reads_width"]:
        layer = model.get_ref(name)
        if not layer.has_param("W"):
            layer.set_dim("nI", width, force=True)
    for layer in model.layers[1:]:
        layer.initialize()


def _head_model(name: str, forward: Callable, layers: list[Model], refs: dict[str, Model], **attrs: Any) -> Model:
    model = Model(name, forward, init=_init, layers=layers, attrs={"square": (), "reads_width": (), **attrs})
    for ref, layer in refs.items():
        model.set_ref(ref, layer)
    return model


@registry.architectures("spacy-albert.QuestionAnswering.v1")
def question_answering(encoder: Model, dropout: float = 0.0) -> Model[PieceSequences, Floats2d]:
    """Start and end logits of every position (dropout, then the reference's `qa_outputs`)."""
    drop, qa_outputs = Dropout(dropout), Linear(nO=2)
    return _head_model(
        "albert_qa_head", _qa_forward, [encoder, drop, qa_outputs],
        {"encoder": encoder, "dropout": drop, "qa_outputs": qa_outputs}, reads_width=("qa_outputs",),
    )  # fmt: skip


def _qa_forward(model: Model, X: PieceSequences, is_train: bool) -> tuple[Floats2d, Callable]:
    encoder, drop, qa_outputs = model.layers
    (hidden, cls), backprop_encoder = encode_sequences(encoder, X, is_train)
    dropped, backprop_drop = drop(hidden, is_train)
    logits, backprop_linear = qa_outputs(dropped, is_train)

    def backprop(d_logits: Floats2d) -> PieceSequences:
        backprop_encoder((backprop_drop(backprop_linear(d_logits)), model.ops.alloc2f(*cls.shape)))
        return X

    return logits, backprop


@registry.architectures("spacy-albert.MultipleChoice.v1")
def multiple_choice(encoder: Model, dropout: float = 0.1) -> Model[PieceSequences, Floats2d]:
    """One logit per sequence: [CLS] state, pooler (dense + tanh), dropout, classifier."""
    pooler, tanh, drop, classifier = Linear(), tanh_layer(), Dropout(dropout), Linear(nO=1)
    return _head_model(
        "albert_choice_head", _choice_forward, [encoder, pooler, tanh, drop, classifier],
        {"encoder": encoder, "pooler": pooler, "dropout": drop, "classifier": classifier},
        square=("pooler",), reads_width=("pooler", "classifier"),
    )  # fmt: skip


def _choice_forward(model: Model, X: PieceSequences, is_train: bool) -> tuple[Floats2d, Callable]:
    encoder, *head = model.layers
    (hidden, cls), backprop_encoder = encode_sequences(encoder, X, is_train)
    Y, backprops = cls, []
    for layer in head:
        Y, layer_backprop = layer(Y, is_train)
        backprops.append(layer_backprop)

    def backprop(dY: Floats2d) -> PieceSequences:
        for layer_backprop in reversed(backprops):
            dY = layer_backprop(dY)
        backprop_encoder((model.ops.alloc2f(*hidden.shape), dY))
        return X

    return Y, backprop


@registry.architectures("spacy-albert.MaskedLanguageModel.v1")
def masked_language_model(encoder: Model, dropout: float = 0.0) -> Model[PieceSequences, Floats2d]:
    """Vocabulary logits at the input's `rows`: dropout, then the reference's MLM head (added
    to the encoder, tied to its word embeddings)."""
    add_mlm_head(encoder)
    drop = Dropout(dropout)
    return _head_model("albert_mlm_head", _mlm_forward, [encoder, drop], {"encoder": encoder, "dropout": drop})


def _mlm_forward(model: Model, X: PieceSequences, is_train: bool) -> tuple[Floats2d, Callable]:
    encoder, drop = model.layers
    ops = model.ops
    if X.rows is None:
        raise ValueError("spacy-albert.MaskedLanguageModel.v1 needs the rows to predict (PieceSequences.rows).")
    rows = ops.asarray1i(X.rows)
    (hidden, cls), backprop_encoder = encode_sequences(encoder, X, is_train)
    picked, backprop_drop = drop(hidden[rows], is_train)
    logits, backprop_head = mlm_logits(encoder, ops.as_contig(picked), is_train)

    def backprop(d_logits: Floats2d) -> PieceSequences:
        d_hidden = ops.alloc2f(*hidden.shape)
        d_hidden[rows] = backprop_drop(backprop_head(ops.as_contig(d_logits)))  # rows are distinct
        backprop_encoder((d_hidden, ops.alloc2f(*cls.shape)))
        return X

    return logits, backprop


def head_layer(model: Model, name: str) -> Optional[Model]:
    """A named layer of a head model (e.g. "qa_outputs", "pooler", "classifier")."""
    return model.get_ref(name) if model.has_ref(name) else None
