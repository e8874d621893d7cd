"""The shared `albert` component: runs the encoder once per batch, stores each doc's
piece states in `doc._.albert_data`, and feeds `spacy-albert.AlbertListener.v1` layers in
downstream components (the counterpart of spacy-transformers' `transformer`)."""

from __future__ import annotations

import warnings
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional

from spacy.language import Language
from spacy.pipeline import Tok2Vec
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..errors import AlbertError, ShapeMismatchError
from ..layers.data import AlbertDocData
from ..layers.listener import DOC_EXTENSION, AlbertListener, tok2vec_chain
from ..layers.transformer import albert_state, load_checkpoint
from .guards import check_arrays, check_gradients, next_step
from .serialization import PipeSerialization, claim_encoders
from .sorted_pipe import LengthSortedPipe

if not Doc.has_extension(DOC_EXTENSION):
    Doc.set_extension(DOC_EXTENSION, default=None)

DEFAULT_ALBERT_MODEL = """
[model]
@architectures = "spacy-albert.AlbertTransformer.v1"
"""


@Language.factory(
    "albert",
    default_config={"model": Config().from_str(DEFAULT_ALBERT_MODEL)["model"], "store_outputs": True},
    assigns=[f"doc._.{DOC_EXTENSION}"],
    default_score_weights={},
)
def make_albert(nlp: Language, name: str, model: Model, store_outputs: bool) -> "AlbertComponent":
    """Construct the shared ALBERT encoder component."""
    return AlbertComponent(nlp.vocab, model, name=name, store_outputs=store_outputs)


class AlbertComponent(PipeSerialization, LengthSortedPipe, Tok2Vec):
    """A shared ALBERT encoder that listeners downstream can use and fine-tune.

    Weights, vocabulary and shapes come from a Hugging Face checkpoint given at
    `initialize(checkpoint=...)` (in a config: `[initialize.components.albert] checkpoint`).
    """

    def __init__(self, vocab: Vocab, model: Model, name: str = "albert", *, store_outputs: bool = True) -> None:
        super().__init__(vocab, model, name)
        self.store_outputs = store_outputs
        claim_encoders(self.model, name)
        self.model.attrs["replace_listener"] = self._replace_listener
        self.model.attrs["replace_listener_cfg"] = _replace_listener_cfg

    def find_listeners(self, component: object) -> None:
        names = ("*", self.name)
        if isinstance(getattr(component, "model", None), Model):
            for node in component.model.walk():
                if isinstance(node, AlbertListener) and node.upstream_name in names:
                    self.add_listener(node, component.name)
                    node.upstream_stores_outputs = self.store_outputs
                    if not node.has_dim("nO") and albert_state(self.model).tokenizer is not None:
                        node.set_dim("nO", self.model.get_dim("nO"))  # a loaded encoder's width

    @staticmethod
    def _replace_listener(model: Model, listener: AlbertListener, albert: "AlbertComponent") -> Model:
        """A copy of the encoder with the listener's own pooling (learned mix included); a
        listener to the raw output (AlbertDocListener) becomes the encoder copy itself."""
        pool = listener.layers[0]
        if pool.name == "albert_identity":
            return model
        return tok2vec_chain(model, pool.copy(), listener.attrs["grad_factor"])

    def predict(self, docs: Iterable[Doc]) -> List[AlbertDocData]:
        docs = list(docs)
        if not docs:
            return []
        return self.model.predict(docs)

    def set_annotations(self, docs: Iterable[Doc], outputs: List[AlbertDocData]) -> None:
        """Store each doc's output in `doc._.albert_data` as it is, on the model's device
        (numpy on CPU, cupy on GPU): listeners read it there without a round trip through
        the host. Serialization (`AlbertDocData.to_dict`, used by DocBin) converts to numpy."""
        if not self.store_outputs:
            return
        for doc, data in zip(docs, outputs):
            doc._.set(DOC_EXTENSION, data)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Run the encoder and hand its output to every listener; the last listener's
        backward pass triggers the encoder's, with the gradients of all listeners summed.

        That backward pass refuses non-finite numbers (see `guards`): a NaN or infinity in the
        listeners' summed gradient (checked before the encoder's backward pass) or in the
        encoder's weight gradients (checked after it, before any optimizer step, whether or
        not `sgd` is given) raises `NonFiniteError` naming this component and its update
        step, from inside the listening component's update, with the encoder's gradients
        cleared and its weights unchanged."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        step = next_step(self)
        docs = [eg.predicted for eg in examples]
        set_dropout_rate(self.model, drop)
        outputs, backprop_encoder = self.model.begin_update(docs)
        ops = self.model.ops
        d_outputs = [o.with_arrays(ops.alloc(o.hidden.shape), ops.alloc(o.cls.shape)) for o in outputs]

        def accumulate(one_d_outputs: List[AlbertDocData]) -> None:
            for total, d in zip(d_outputs, one_d_outputs):
                total.hidden += d.hidden
                if d.cls is not None:
                    total.cls += d.cls

        def backprop(one_d_outputs: List[AlbertDocData]) -> List[Doc]:
            accumulate(one_d_outputs)
            arrays = [a for d in d_outputs for a in (d.hidden, d.cls)]
            check_arrays(self.name, step, "gradient from its listeners", arrays, self.model)
            backprop_encoder(d_outputs)
            check_gradients(self.name, step, self.model)
            if sgd is not None:
                self.finish_update(sgd)
            return []

        batch_id = AlbertListener.get_batch_id(docs)
        for listener in self.listeners[:-1]:
            listener.receive(batch_id, outputs, accumulate)
        if self.listeners:
            self.listeners[-1].receive(batch_id, outputs, backprop)
        return losses

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint` (a local Hugging Face ALBERT directory or cached hub id), or the
        architecture's own `checkpoint`, then initialise the model on a sample of docs."""
        validate_get_examples(get_examples, "AlbertComponent.initialize")
        if checkpoint is not None:
            load_checkpoint(self.model, checkpoint)
        docs = [eg.reference for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs)
        self._check_listeners()

    def _check_listeners(self) -> None:
        """Listeners must fit the encoder: their width, and the layers they mix."""
        width = self.model.get_dim("nO")
        kept = self.model.attrs["settings"]["output_layers"]
        for component, listeners in self.listener_map.items():
            for listener in listeners:
                if not listener.has_dim("nO"):
                    listener.set_dim("nO", width)  # the checkpoint's hidden_size
                elif listener.get_dim("nO") != width:
                    raise ShapeMismatchError(
                        f"The ALBERT listener in {component!r} has width {listener.get_dim('nO')}, but the {self.name!r} "
                        f"encoder gives vectors of width {width} (its checkpoint's hidden_size): remove the listener's "
                        f"width setting (it is then taken from the encoder) or set it to {width}."
                    )
                mixed = int(listener.layers[0].attrs.get("layers", 1))
                if mixed > kept:
                    raise AlbertError(
                        f"The ALBERT listener in {component!r} mixes layers = {mixed} layers, but the {self.name!r} "
                        f"encoder keeps output_layers = {kept}: set [components.{self.name}.model] output_layers = "
                        f"{mixed} (or more)."
                    )
                if not self.store_outputs:
                    warnings.warn(
                        f"{self.name!r} has store_outputs = false, so its listener in {component!r} will find no "
                        f"output at prediction: set [components.{self.name}] store_outputs = true.",
                        stacklevel=2,
                    )


def _replace_listener_cfg(albert_model_cfg: dict, listener_cfg: dict) -> dict:
    """The config of what a listener becomes: AlbertTok2Vec over a copy of the encoder (or
    the encoder itself, for a listener to the raw output)."""
    if listener_cfg.get("@architectures") == "spacy-albert.AlbertDocListener.v1":
        return albert_model_cfg
    return {
        "@architectures": "spacy-albert.AlbertTok2Vec.v1",
        "encoder": albert_model_cfg,
        "pooling": listener_cfg.get("pooling", "mean"),
        "layers": listener_cfg.get("layers", 1),
        "grad_factor": listener_cfg.get("grad_factor", 1.0),
    }
