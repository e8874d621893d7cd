"""Token vectors from ALBERT for any spaCy component.

* `spacy-albert.AlbertListener.v1` listens to a shared `albert` component: during training
  it receives that component's batch output (and passes gradients back to it); at prediction
  it reads what the component stored in `doc._.albert_data`.
* `spacy-albert.AlbertTok2Vec.v1` owns its encoder: chain(AlbertTransformer, pooling). It is
  also what `nlp.replace_listeners` turns a listener into.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy
from spacy.attrs import ORTH
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from ..errors import AlbertError
from ..tokenization.alignment import Alignment
from .data import AlbertDocData
from .pooling import pool_pieces
from .transformer import albert_state

DOC_EXTENSION = "albert_data"


class AlbertListener(Model):
    """A node that stands in for the shared `albert` component inside a downstream model."""

    name = "albert_listener"

    def __init__(self, upstream_name: str, width: Optional[int], pooling: Model, grad_factor: float) -> None:
        Model.__init__(
            self,
            name=self.name,
            forward=_listener_forward,
            init=_listener_init,
            dims={"nO": width},
            layers=[pooling],
            attrs={"grad_factor": grad_factor},
        )
        self.upstream_name = upstream_name
        self._batch_id: Optional[int] = None
        self._outputs: Optional[List[AlbertDocData]] = None
        self._backprop: Optional[Callable] = None
        self._init_docs: dict[int, str] = {}
        # Set by the upstream component: False when it does not store its outputs on docs.
        self.upstream_stores_outputs: Optional[bool] = None

    @classmethod
    def get_batch_id(cls, inputs: List[Doc]) -> int:
        """A cheap id for a batch of docs, to check listeners see what the encoder saw."""
        return sum(int(doc.to_array(ORTH).sum(dtype="uint64")) for doc in inputs)

    def receive(self, batch_id: int, outputs: List[AlbertDocData], backprop: Callable) -> None:
        self._batch_id, self._outputs, self._backprop = batch_id, outputs, backprop
        self._init_docs = {}

    def verify_inputs(self, inputs: List[Doc]) -> bool:
        if self._batch_id is None and self._outputs is None:
            raise AlbertError(
                f"The ALBERT listener got no output from its upstream component {self.upstream_name!r}: "
                "during training the albert component must come before its listeners in the pipeline."
            )
        if self._batch_id != self.get_batch_id(inputs):
            raise AlbertError("The ALBERT listener received a different batch than the one it was asked to process.")
        return True


def _listener_init(model: AlbertListener, X: Any = None, Y: Any = None) -> None:
    if not model.has_dim("nO"):
        raise AlbertError(
            f"The ALBERT listener has no width yet: its upstream albert component ({model.upstream_name!r}) must "
            "come before the listening component in the pipeline, so that it is initialised first."
        )
    model.layers[0].set_dim("nO", model.get_dim("nO"), force=True)
    model.layers[0].initialize()
    # Layers after the listener are initialised on its output for a doc sample the albert
    # component has not annotated: predictions on those very docs give zero vectors.
    model._init_docs = {id(doc): doc.text for doc in X or []}


def _n_layers(model: AlbertListener) -> int:
    """How many of the encoder's last layers the listener's pooling mixes."""
    return int(model.layers[0].attrs.get("layers", 1))


def _stored_outputs(model: AlbertListener, docs: List[Doc]) -> List[AlbertDocData]:
    outputs = []
    for doc in docs:
        data = doc._.get(DOC_EXTENSION)
        if data is None and model._init_docs.get(id(doc)) == doc.text:
            data = _zero_data(len(doc), model.get_dim("nO"), _n_layers(model))
        if data is None:
            if len(doc):
                raise _no_output_error(model, doc)
            data = _zero_data(0, model.get_dim("nO"), _n_layers(model))
        outputs.append(data)
    return outputs


def _no_output_error(model: AlbertListener, doc: Doc) -> AlbertError:
    upstream = model.upstream_name if model.upstream_name != "*" else "albert"
    if model.upstream_stores_outputs is False:
        return AlbertError(
            f"Doc {doc.text[:40]!r} has no ALBERT output because the {upstream!r} component has "
            f"store_outputs = false, and its listeners read the stored output at prediction: set "
            f"[components.{upstream}] store_outputs = true."
        )
    return AlbertError(
        f"Doc {doc.text[:40]!r} has no ALBERT output: the {upstream!r} albert component must run before its "
        "listeners (or use spacy-albert.AlbertTok2Vec.v1)."
    )


def check_alignment(model: AlbertListener, docs: List[Doc], outputs: List[AlbertDocData]) -> None:
    """Each doc's ALBERT output must cover its tokens: a doc retokenized after the encoder ran
    (e.g. `doc.retokenize()` merging "New York City") would get shifted features."""
    for doc, data in zip(docs, outputs):
        if len(data.alignment.lengths) != len(doc):
            raise AlbertError(
                f"Doc {doc.text[:40]!r} has {len(doc)} tokens, but the ALBERT output stored on it was computed for "
                f"{len(data.alignment.lengths)}: the doc was retokenized (merged or split) after the "
                f"{model.upstream_name if model.upstream_name != '*' else 'albert'!r} component ran. Retokenize "
                "before that component (put merge/split components earlier in the pipeline) or run it again."
            )


def _zero_data(n_tokens: int, width: int, n_layers: int = 1) -> AlbertDocData:
    """Zero states of `n_layers` layers: one zero piece shared by `n_tokens` tokens."""
    n_pieces = 1 if n_tokens else 0
    alignment = Alignment(numpy.full(n_tokens, 1, dtype="int32"), numpy.zeros(n_tokens, dtype="int32"))
    hidden = numpy.zeros((n_layers, n_pieces, width), "float32")
    return AlbertDocData(numpy.zeros(n_pieces, "int64"), hidden, alignment, numpy.zeros((n_layers, width), "float32"))


def _listener_forward(model: AlbertListener, docs: List[Doc], is_train: bool) -> tuple[List[Floats2d], Callable]:
    if is_train:
        model.verify_inputs(docs)
        outputs, backprop_upstream = model._outputs, model._backprop
    else:
        outputs, backprop_upstream = _stored_outputs(model, docs), None
    check_alignment(model, docs, outputs)
    width = model.get_dim("nO")
    for data in outputs:
        if data.n_pieces and data.width != width:
            raise AlbertError(
                f"The listener's width is {width} but the ALBERT encoder gives {data.width}: "
                "set the listener's width to the encoder's hidden_size."
            )
    tokvecs, backprop_pool = model.layers[0](outputs, is_train)
    grad_factor = model.attrs["grad_factor"]

    def backprop(d_tokvecs: List[Floats2d]) -> List[Doc]:
        d_outputs = backprop_pool(d_tokvecs)
        if grad_factor != 1.0:
            d_outputs = scale_gradients(d_outputs, grad_factor)
        if backprop_upstream is not None:  # also with grad_factor 0: the last listener runs the encoder's backward
            backprop_upstream(d_outputs)
        return []

    return tokvecs, backprop


@registry.architectures("spacy-albert.AlbertListener.v1")
def albert_listener(
    width: Optional[int] = None, pooling: str = "mean", layers: int = 1, upstream: str = "*", grad_factor: float = 1.0
) -> Model[List[Doc], List[Floats2d]]:
    """Token vectors from a shared `albert` component (`upstream` names it; "*" is any).
    `width` is the encoder's hidden_size, taken from the encoder at initialize when null
    (a width given must agree with the checkpoint's)."""
    return AlbertListener(upstream, width, pool_pieces(pooling, layers), grad_factor)


def _identity() -> Model[List[AlbertDocData], List[AlbertDocData]]:
    return Model("albert_identity", lambda model, X, is_train: (X, lambda dY: dY), dims={"nO": None})


@registry.architectures("spacy-albert.AlbertDocListener.v1")
def albert_doc_listener(
    width: Optional[int] = None, upstream: str = "*", grad_factor: float = 1.0
) -> Model[List[Doc], List[AlbertDocData]]:
    """The shared `albert` component's raw output (piece and [CLS] states) for heads that
    need more than token vectors, such as sequence classification."""
    return AlbertListener(upstream, width, _identity(), grad_factor)


def scale_gradients(d_outputs: List[AlbertDocData], factor: float) -> List[AlbertDocData]:
    return [d.with_arrays(d.hidden * factor, None if d.cls is None else d.cls * factor) for d in d_outputs]


def _scale_gradient(factor: float) -> Model:
    def forward(model: Model, X: Any, is_train: bool) -> tuple[Any, Callable]:
        return X, lambda dX: scale_gradients(dX, factor)

    return Model("albert_grad_factor", forward, attrs={"factor": factor})


@registry.architectures("spacy-albert.AlbertTok2Vec.v1")
def albert_tok2vec(
    encoder: Model, pooling: str = "mean", layers: int = 1, grad_factor: float = 1.0
) -> Model[List[Doc], List[Floats2d]]:
    """A component's own ALBERT encoder followed by token pooling."""
    return tok2vec_chain(encoder, pool_pieces(pooling, layers), grad_factor)


def tok2vec_chain(encoder: Model, pool: Model, grad_factor: float = 1.0) -> Model[List[Doc], List[Floats2d]]:
    """chain(encoder, [gradient scaling,] pooling). Its width (nO) is the encoder's once a
    checkpoint has decided it: set here for a loaded encoder, else at initialize."""
    layers = [encoder, pool] if grad_factor == 1.0 else [encoder, _scale_gradient(grad_factor), pool]
    model = chain(*layers)
    if albert_state(encoder).tokenizer is not None:  # a loaded encoder (e.g. replace_listeners)
        width = encoder.get_dim("nO")
        pool.set_dim("nO", width, force=True)
        model.set_dim("nO", width, force=True)
    return model
