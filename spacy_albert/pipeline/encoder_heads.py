"""What `albert_ner` and `albert_textcat` share: finding their encoder (their own, or the
shared `albert` component they listen to), loading a checkpoint's head weights, and exporting
encoder + head as a Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import numpy as np
import torch
from spacy.language import Language
from spacy.training import Example, validate_examples
from thinc.api import Model, Optimizer, set_dropout_rate

from ..errors import AlbertError, ShapeMismatchError
from ..hub import resolve_model_dir
from ..layers.listener import AlbertListener
from ..layers.state import AlbertState
from ..layers.transformer import albert_state, get_torch_encoder, load_checkpoint
from ..models.checkpoint import read_checkpoint_weights
from ..models.configuration import AlbertConfig
from ..models.modeling_albert import AlbertPreTrainedModel
from ..training.distributed import global_count
from .guards import check_arrays, check_gradients, check_loss, next_step


class HeadUpdateMixin:
    """`update` for every spacy-albert component (the spaCy tagger pattern): the model maps
    inputs to scores, `get_loss(examples, scores)` gives the loss and its gradient, thinc
    backprop runs into the encoder and `finish_update` steps the optimizer. `training_inputs`
    says what the model reads: the predicted docs by default; components that build their
    own inputs (question + context, prompt + choice, masked text) override it."""

    def training_inputs(self, examples: list[Example]) -> Optional[tuple[Any, list[Example]]]:
        """(model inputs, the examples `get_loss` scores against), or None to skip the batch."""
        return [eg.predicted for eg in examples], examples

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One training step: `drop` sets the dropout of the head's thinc layers (the encoder's
        own is its configured hidden/attention dropout). A non-finite loss or gradient of the
        scores (checked before the backward pass) or of the model's weights (checked after it,
        whether or not `sgd` is given) raises `NonFiniteError` naming the component and its
        update step, with the gradients cleared and no optimizer step taken (see `guards`)."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.update")
        step = next_step(self)
        batch = self.training_inputs(examples)
        if batch is None:
            global_count(0)  # in step with the ranks whose get_loss counts their share (data-parallel)
            return losses
        inputs, scored = batch
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update(inputs)
        loss, d_scores = self.get_loss(scored, scores)
        check_loss(self.name, step, loss, self.model)
        check_arrays(self.name, step, "gradient of the scores", d_scores, self.model)
        backprop(d_scores)
        check_gradients(self.name, step, self.model)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses


def find_encoder(model: Model, nlp: Optional[Language] = None, component: str = "") -> Model:
    """The `AlbertTransformer` node a component's model runs: its own, or (through its
    listener) the one of the shared `albert` component in `nlp`."""
    for node in model.walk():
        if node.name == "albert_transformer":
            return node
    listener = next((n for n in model.walk() if isinstance(n, AlbertListener)), None)
    if listener is None:
        raise AlbertError(f"{component!r} has no ALBERT encoder and no ALBERT listener in its model.")
    if nlp is not None:
        for name, pipe in nlp.pipeline:
            if listener in getattr(pipe, "listeners", []):
                return pipe.model
    raise AlbertError(
        f"{component!r} listens to a shared albert component: pass the pipeline (nlp=...) so that "
        "its encoder can be found."
    )


def read_head(checkpoint: str | Path) -> tuple[AlbertConfig, dict[str, torch.Tensor]]:
    """The config and all tensors of a checkpoint (to take a fine-tuned head from)."""
    directory = resolve_model_dir(checkpoint)
    return AlbertConfig.from_pretrained(directory), read_checkpoint_weights(directory)


def set_linear(layer: Model, weight: torch.Tensor, bias: torch.Tensor, name: str) -> None:
    """Copy a torch Linear's weight [nO, nI] and bias into a thinc Linear."""
    if layer.has_dim("nO") and layer.get_dim("nO") and layer.get_dim("nO") != weight.shape[0]:
        raise ShapeMismatchError(f"{name}: the checkpoint has {weight.shape[0]} outputs, the component {layer.get_dim('nO')}.")
    ops = layer.ops
    layer.set_dim("nO", int(weight.shape[0]), force=True)
    layer.set_dim("nI", int(weight.shape[1]), force=True)
    layer.set_param("W", ops.asarray2f(weight.detach().float().numpy()))
    layer.set_param("b", ops.asarray1f(bias.detach().float().numpy()))


def linear_tensors(layer: Model) -> tuple[torch.Tensor, torch.Tensor]:
    to_torch = lambda a: torch.from_numpy(np.asarray(layer.ops.to_numpy(a), dtype="float32"))  # noqa: E731
    return to_torch(layer.get_param("W")), to_torch(layer.get_param("b"))


def load_encoder(model: Model, checkpoint: Optional[str]) -> Optional[str]:
    """Load `checkpoint` (or the encoder's own configured one) into a component's own encoder.

    Returns the checkpoint used, or None."""
    encoder = next((n for n in model.walk() if n.name == "albert_transformer"), None)
    checkpoint = checkpoint or (encoder.attrs["settings"]["checkpoint"] if encoder is not None else None)
    if encoder is not None and checkpoint:
        load_checkpoint(encoder, checkpoint)
    return checkpoint


def export_checkpoint(
    encoder: Model,
    head_class: type[AlbertPreTrainedModel],
    head_state: dict[str, torch.Tensor],
    directory: str | Path,
    **config_fields: Any,
) -> Path:
    """Write encoder + head as a Hugging Face checkpoint of `head_class` (with tokenizer)."""
    if get_torch_encoder(encoder).quantized:
        raise AlbertError(
            "This ALBERT encoder is int8-quantized and cannot be exported as a Hugging Face checkpoint: "
            "export the float pipeline it was quantized from."
        )
    state: AlbertState = albert_state(encoder)
    config = AlbertConfig.from_dict(state.config.to_dict(), **config_fields)
    head = head_class(config)
    module = get_torch_encoder(encoder)
    weights = {f"albert.{k}": v for k, v in module.albert.state_dict().items()}
    if module.predictions is not None and hasattr(head, "predictions"):  # the masked-LM head lives in the encoder
        weights.update({f"predictions.{k}": v for k, v in module.predictions.state_dict().items()})
    weights.update(head_state)
    head.load_checkpoint_state(weights)
    directory = Path(directory)
    head.save_pretrained(directory)
    state.save_tokenizer(directory)
    return directory
