"""`spacy-albert.AlbertTaskModel.v1`: one of the reference's head classes (question
answering, masked LM, multiple choice, ...) inside thinc, for components whose inputs are
not a single doc's text (question + context pairs, prompt + choice pairs, masked pieces).

The component builds the torch inputs itself and calls `run_task_model`; training computes
the reference loss in torch, calls `loss.backward()`, and `model.finish_update(sgd)` applies
spaCy's optimizer to the torch parameters. Checkpoints load and export in Hugging Face format.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional

import torch
from spacy.util import registry
from thinc.api import Model, PyTorchShim
from thinc.util import get_torch_default_device

from ..hub import resolve_model_dir
from ..models.checkpoint import check_vocab_matches
from ..models.configuration import ARCHITECTURE_FIELDS, AlbertConfig
from ..models.precision import autocast, check_precision
from ..models.modeling_albert import (
    AlbertForMaskedLM,
    AlbertForMultipleChoice,
    AlbertForPreTraining,
    AlbertForQuestionAnswering,
    AlbertForSequenceClassification,
    AlbertForTokenClassification,
    AlbertPreTrainedModel,
)
from ..tokenization.tokenization_albert_fast import AlbertTokenizerFast
from .state import REBUILDERS, AlbertState, Settings, deserialize_weights, dropout_settings, serialize_weights

TASKS: dict[str, type[AlbertPreTrainedModel]] = {
    "question-answering": AlbertForQuestionAnswering,
    "masked-lm": AlbertForMaskedLM,
    "multiple-choice": AlbertForMultipleChoice,
    "sequence-classification": AlbertForSequenceClassification,
    "token-classification": AlbertForTokenClassification,
    "pretraining": AlbertForPreTraining,
}


def get_module(model: Model) -> AlbertPreTrainedModel:
    """The torch head model (e.g. `AlbertForQuestionAnswering`) inside a task model."""
    return model.shims[0]._model


def get_tokenizer(model: Model) -> AlbertTokenizerFast:
    state: AlbertState = model.attrs["albert"]
    state.backend  # raises a clear error when no checkpoint was loaded
    return state.tokenizer


def _set_module(model: Model, module: AlbertPreTrainedModel) -> None:
    model.shims[0]._model = module.to(get_torch_default_device())


def _rebuild(model: Model, config: AlbertConfig) -> None:
    _set_module(model, TASKS[model.attrs["task"]](config))


REBUILDERS["albert_task_model"] = _rebuild


def load_task_checkpoint(model: Model, name_or_path: str | Path, **config_overrides: Any) -> None:
    """Load a Hugging Face checkpoint (any ALBERT head) into the task model: weights the
    head lacks are initialised; `config_overrides` (e.g. `num_labels`, `id2label`) apply, and a
    head of another size is started anew."""
    directory = resolve_model_dir(name_or_path)
    module_class = TASKS[model.attrs["task"]]
    state: AlbertState = model.attrs["albert"]
    # Shapes come from the checkpoint; dropout is a training setting and stays the configured one.
    overrides = {**dropout_settings(state.config), **config_overrides}
    module = module_class.from_pretrained(directory, ignore_mismatched_sizes=True, **overrides)
    tokenizer = AlbertTokenizerFast.from_pretrained(directory)
    check_vocab_matches(tokenizer, module.config)
    _set_module(model, module)
    state.config = module.config
    state.set_tokenizer(tokenizer)


def export_task_model(model: Model, directory: str | Path) -> Path:
    """Write the head model and its tokenizer as a checkpoint that transformers loads."""
    directory = Path(directory)
    get_module(model).save_pretrained(directory)
    get_tokenizer(model)  # a clear error when there is none
    model.attrs["albert"].save_tokenizer(directory)
    return directory


def task_autocast(model: Model, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to the task model's `precision` setting."""
    return autocast(model.attrs["settings"]["precision"], device.type)


def run_task_model(model: Model, inputs: dict[str, Any], *, is_train: bool) -> Any:
    """Run the head model on torch inputs (moved to its device); gradients only in training."""
    module = get_module(model)
    module.train(is_train)
    device = next(module.parameters()).device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    with torch.set_grad_enabled(is_train), task_autocast(model, device):
        return module(**inputs, return_dict=True)


def _forward(model: Model, inputs: dict[str, Any], is_train: bool) -> tuple[Any, Any]:
    return run_task_model(model, inputs, is_train=is_train), lambda d_outputs: inputs


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    checkpoint = model.attrs["settings"]["checkpoint"]
    if checkpoint and model.attrs["albert"].tokenizer is None:
        load_task_checkpoint(model, checkpoint)


@registry.architectures("spacy-albert.AlbertTaskModel.v1")
def build_task_model(
    task: str,
    checkpoint: Optional[str] = None,
    vocab_size: int = 30000,
    embedding_size: int = 128,
    hidden_size: int = 768,
    num_hidden_layers: int = 12,
    num_hidden_groups: int = 1,
    num_attention_heads: int = 12,
    intermediate_size: int = 3072,
    inner_group_num: int = 1,
    hidden_act: str = "gelu_new",
    hidden_dropout_prob: float = 0.0,
    attention_probs_dropout_prob: float = 0.0,
    max_position_embeddings: int = 512,
    type_vocab_size: int = 2,
    num_labels: int = 2,
    precision: str = "float32",
) -> Model:
    """A reference head class (`task` is one of TASKS) with its own encoder.

    The hyperparameters build the shapes without touching files; `checkpoint` (a local
    Hugging Face directory or cached hub id) is loaded at `nlp.initialize()` and then decides
    the shapes. Serialization stores config, weights (safetensors) and tokenizer.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}; choose one of {sorted(TASKS)}.")
    check_precision(precision)
    config = AlbertConfig(**{k: v for k, v in locals().items() if k in ARCHITECTURE_FIELDS})
    shim = PyTorchShim(
        TASKS[task](config), serialize_model=serialize_weights, deserialize_model=deserialize_weights
    )
    return Model(
        "albert_task_model",
        _forward,
        init=_init,
        shims=[shim],
        attrs={
            "albert": AlbertState(config),
            "task": task,
            "settings": Settings(checkpoint=checkpoint, precision=precision),
        },
    )
