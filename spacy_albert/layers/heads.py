"""Classification heads over ALBERT features, laid out like the reference heads so that
weights move both ways between them and Hugging Face checkpoints:

* `spacy-albert.TokenClassifier.v1`: dropout + linear over token vectors (with pooling
  "first" this is `AlbertForTokenClassification`'s `classifier` on each word's first piece);
* `spacy-albert.SequenceClassifier.v1`: the pooler (dense + tanh) over the [CLS] state, dropout
  and a linear layer (`AlbertForSequenceClassification`'s `albert.pooler` and `classifier`).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain, with_array
from thinc.types import Floats2d

from .data import AlbertDocData


@registry.architectures("spacy-albert.TokenClassifier.v1")
def token_classifier(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None, dropout: float = 0.1
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token logits: `tok2vec` (an ALBERT listener or AlbertTok2Vec), dropout, linear.
    The linear layer takes the encoder's width at initialize (the checkpoint's hidden_size)."""
    classifier = Linear(nO=nO)
    model = chain(tok2vec, with_array(chain(Dropout(dropout), classifier)))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("classifier", classifier)
    return model


def _cls_states() -> Model[List[AlbertDocData], Floats2d]:
    """The last layer's [CLS] state of each doc, stacked; gradients go back to `cls`."""

    def forward(model: Model, docs_data: List[AlbertDocData], is_train: bool) -> tuple[Floats2d, Callable]:
        xp = model.ops.xp
        X = xp.stack([model.ops.asarray(d.cls[-1], dtype="float32") for d in docs_data])

        def backprop(dX: Floats2d) -> List[AlbertDocData]:
            grads = []
            for d, dx in zip(docs_data, dX):
                d_cls = xp.zeros(d.cls.shape, dtype="float32")
                d_cls[-1] = dx
                grads.append(d.with_arrays(xp.zeros(d.hidden.shape, dtype="float32"), d_cls))
            return grads

        return X, backprop

    return Model("albert_cls", forward, dims={"nO": None})


@registry.architectures("spacy-albert.SequenceClassifier.v1")
def sequence_classifier(
    tok2vec: Model[List[Doc], List[AlbertDocData]], nO: Optional[int] = None, dropout: float = 0.1
) -> Model[List[Doc], Floats2d]:
    """Per-doc logits: [CLS] state, pooler (dense + tanh), dropout, linear.

    `tok2vec` is an `AlbertTransformer` (own encoder) or an `AlbertDocListener` (shared); the
    name is the one `nlp.replace_listeners` expects. The widths are the encoder's, set by
    `set_sequence_width` before initialize (once the checkpoint decided them)."""
    pooler = Linear()
    classifier = Linear(nO=nO)
    model = chain(tok2vec, _cls_states(), pooler, tanh_layer(), Dropout(dropout), classifier)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("pooler", pooler)
    model.set_ref("classifier", classifier)
    return model


def set_sequence_width(model: Model, width: int) -> None:
    """Give a `SequenceClassifier`'s layers the encoder's width (before they have weights)."""
    cls = next(node for node in model.walk() if node.name == "albert_cls")
    pooler, classifier = model.get_ref("pooler"), model.get_ref("classifier")
    if pooler.has_param("W"):
        return
    cls.set_dim("nO", width, force=True)
    pooler.set_dim("nI", width, force=True)
    pooler.set_dim("nO", width, force=True)
    classifier.set_dim("nI", width, force=True)


def tanh_layer() -> Model[Floats2d, Floats2d]:
    def forward(model: Model, X: Floats2d, is_train: bool) -> tuple[Floats2d, Callable]:
        Y = model.ops.xp.tanh(X)
        return Y, lambda dY: dY * (1 - Y * Y)

    return Model("tanh", forward)


def linear_params(layer: Model) -> tuple[Any, Any]:
    """(W [nO, nI], b [nO]) of a thinc Linear, the layout of a torch Linear's weight and bias."""
    return layer.get_param("W"), layer.get_param("b")
