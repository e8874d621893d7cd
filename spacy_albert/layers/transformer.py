"""`spacy-albert.AlbertTransformer.v1`: spaCy Docs in, piece-level ALBERT states out.

The text of each doc is tokenized once by the fast tokenizer; pieces are aligned to spaCy
tokens by character offsets, cut into windows (strided, or along sentences) and encoded
by the native `AlbertModel` inside thinc's PyTorch wrapper. The model is built from the
hyperparameters in the config, without touching files; `initialize` (or the component's
`initialize(checkpoint=...)`) loads a checkpoint, whose config then decides the shapes, and
serialization stores config, weights (safetensors) and vocabulary, so a saved pipeline
never needs the original checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.util import get_torch_default_device

from ..errors import AlbertError
from ..hub import resolve_model_dir
from ..models.checkpoint import check_vocab_matches, read_checkpoint_weights
from ..models.configuration import ARCHITECTURE_FIELDS, AlbertConfig
from ..models.precision import check_precision
from ..tokenization.alignment import align_pieces
from ..tokenization.tokenization_albert_fast import AlbertTokenizerFast
from .data import AlbertDocData
from .encoder import WindowedEncoder
from .windows import ATTENTION_PADDING_TOLERANCE, BATCHING_MODES, WindowBatch, make_windows
from .quantize import QUANTIZE_MODES, apply_quantize_setting, deserialize_encoder, serialize_encoder
from .state import REBUILDERS, AlbertState, Settings, dropout_settings

SPAN_MODES = ("strided", "sentences")


def _encoder_node(model: Model) -> Model:
    return model.layers[0]


def settings_of(model: Model) -> Settings:
    """The AlbertTransformer's settings (precision, quantize, window, ...: see its builder)."""
    return model.attrs["settings"]


def _new_encoder(model: Model, config: AlbertConfig) -> WindowedEncoder:
    """A float encoder with this model's precision, quantization and compile settings
    (quantization is applied on first use, or when int8 weights are loaded)."""
    settings = settings_of(model)
    return WindowedEncoder(
        config, settings["precision"], quantize=settings["quantize"], torch_compile=settings["torch_compile"]
    )


def _rebuild(model: Model, config: AlbertConfig) -> None:
    _set_encoder(model, _new_encoder(model, config))


REBUILDERS["albert_transformer"] = _rebuild


def _set_encoder(model: Model, encoder: WindowedEncoder) -> None:
    """Swap the torch module inside the PyTorch wrapper (e.g. for a checkpoint's shapes)."""
    shim = _encoder_node(model).shims[0]
    shim._model = encoder.to(get_torch_default_device())
    model.set_dim("nO", encoder.config.hidden_size, force=True)


def get_torch_encoder(model: Model) -> WindowedEncoder:
    """The `WindowedEncoder` (holding the `AlbertModel`) inside an AlbertTransformer model."""
    return _encoder_node(model).shims[0]._model


def load_checkpoint(model: Model, name_or_path: str | Path) -> None:
    """Load config, weights and vocabulary of a Hugging Face ALBERT checkpoint into `model`."""
    state: AlbertState = model.attrs["albert"]
    directory = resolve_model_dir(name_or_path)
    # Shapes come from the checkpoint; dropout is a training setting and stays the configured one.
    # Every size comes from the checkpoint (the config's sizes only build a model from scratch);
    # the layers reading the encoder's output take its width at initialize.
    config = AlbertConfig.from_pretrained(directory, **dropout_settings(state.config))
    encoder = _new_encoder(model, config)
    encoder.albert.load_checkpoint_state(read_checkpoint_weights(directory), source=directory)
    tokenizer = AlbertTokenizerFast.from_pretrained(directory)
    check_vocab_matches(tokenizer, config)
    _set_encoder(model, encoder.eval())
    apply_quantize_setting(get_torch_encoder(model))  # on its device: int8 is CPU-only
    state.config = config
    state.set_tokenizer(tokenizer)


def _convert_inputs(model: Model, batch: WindowBatch, is_train: bool) -> tuple[ArgsKwargs, Callable]:
    # The encoder turns the chunks' arrays into tensors on its own device, chunk by chunk.
    return ArgsKwargs(args=(batch,), kwargs={}), lambda d_inputs: batch


def _convert_outputs(model: Model, inputs_outputs: tuple, is_train: bool) -> tuple[Any, Callable]:
    _, (hidden, cls) = inputs_outputs

    def backprop(d_output: tuple[Any, Any]) -> ArgsKwargs:
        d_hidden, d_cls = d_output
        return ArgsKwargs(args=((hidden, cls),), kwargs={"grad_tensors": (xp2torch(d_hidden), xp2torch(d_cls))})

    return (torch2xp(hidden), torch2xp(cls)), backprop


def _doc_spans(doc: Doc, alignment: Any, n_pieces: int, mode: str) -> list[tuple[int, int]]:
    """Piece ranges to window over: the whole doc, or one range per sentence."""
    if mode == "strided" or n_pieces == 0 or not doc.has_annotation("SENT_START"):
        return [(0, n_pieces)] if n_pieces else []
    token_first = np.full(len(doc), n_pieces, dtype="int64")
    offsets = np.cumsum(alignment.lengths) - alignment.lengths
    has = alignment.lengths > 0
    token_first[has] = alignment.indices[offsets[has]]
    bounds = sorted({0} | {int(token_first[sent.start:].min()) for sent in doc.sents if sent.start > 0})
    bounds = [b for b in bounds if b < n_pieces] + [n_pieces]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def forward(model: Model, docs: List[Doc], is_train: bool) -> tuple[List[AlbertDocData], Callable]:
    settings = settings_of(model)
    if is_train and (settings["quantize"] or get_torch_encoder(model).quantized):
        raise AlbertError(
            "This ALBERT encoder is int8-quantized, which is for inference only: train the float model "
            "(quantize = null) and quantize the trained pipeline afterwards (python -m spacy_albert quantize)."
        )
    state: AlbertState = model.attrs["albert"]
    config = state.config
    encodings = state.backend.encode_batch([doc.text for doc in docs], add_special_tokens=False)
    piece_ids, alignments, spans = [], [], []
    for doc, enc in zip(docs, encodings):
        ids = np.asarray(enc.ids, dtype="int64")
        offsets = np.asarray(enc.offsets, dtype="int64").reshape(-1, 2)
        token_spans = doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2)
        starts = token_spans[:, 0]
        alignment = align_pieces(doc.text, offsets, starts, starts + token_spans[:, 1])
        piece_ids.append(ids)
        alignments.append(alignment)
        spans.append(_doc_spans(doc, alignment, len(ids), settings["spans"]))
    window = min(settings["window"], config.max_position_embeddings - 2)
    tokenizer = state.tokenizer
    batch = make_windows(
        piece_ids,
        spans,
        window=window,
        stride=min(settings["stride"], window),
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        pad_id=tokenizer.pad_token_id,
        max_batch_pieces=settings["max_batch_pieces"],
        n_layers=settings["output_layers"],
        batching=settings["batching"],
        linear_cost=2 * config.hidden_size + config.intermediate_size,
        padding_tolerance=0.0 if get_torch_default_device().type == "cpu" else ATTENTION_PADDING_TOLERANCE,
    )
    if not docs:
        return [], lambda d_outputs: []
    xp = model.ops.xp
    (hidden, cls), backprop_encoder = _encoder_node(model)(batch, is_train)
    bounds = np.cumsum([0] + batch.doc_lengths)
    outputs = [
        AlbertDocData(ids, hidden[:, bounds[i] : bounds[i + 1]], alignment, cls[:, i])
        for i, (ids, alignment) in enumerate(zip(piece_ids, alignments))
    ]

    def backprop(d_outputs: List[AlbertDocData]) -> List[Doc]:
        d_hidden = xp.concatenate([d.hidden for d in d_outputs], axis=1)
        d_cls = xp.stack([xp.zeros_like(cls[:, 0]) if d.cls is None else d.cls for d in d_outputs], axis=1)
        backprop_encoder((d_hidden, d_cls))
        return []

    return outputs, backprop


def init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    checkpoint = settings_of(model)["checkpoint"]
    if checkpoint and model.attrs["albert"].tokenizer is None:
        load_checkpoint(model, checkpoint)
    if not model.has_dim("nO"):  # built from scratch: the config's size
        model.set_dim("nO", model.attrs["albert"].config.hidden_size)
    apply_quantize_setting(get_torch_encoder(model))


@registry.architectures("spacy-albert.AlbertTransformer.v1")
def build_albert_transformer(
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
    checkpoint: Optional[str] = None,
    window: int = 510,
    stride: int = 384,
    spans: str = "strided",
    output_layers: int = 1,
    precision: str = "float32",
    max_batch_pieces: int = 8192,
    batching: str = "packed",
    sort_buffer: int = 16,
    quantize: Optional[str] = None,
    torch_compile: bool = False,
) -> Model[List[Doc], List[AlbertDocData]]:
    """ALBERT over spaCy Docs: returns each doc's piece states and piece-to-token alignment.

    The hyperparameters build the model's shapes from scratch; a `checkpoint` (local directory
    or cached hub id), loaded at `nlp.initialize()`, replaces all of them with its own config
    (the checkpoint wins: any ALBERT size works by naming it, and the listeners and heads
    reading the output take its width). `window` and
    `stride` are in pieces (windows are capped at max_position_embeddings - 2); `spans`
    "sentences" windows along `doc.sents`. `output_layers` > 1 keeps that many last layers
    for listeners that mix them.

    Speed settings (none changes the model's outputs beyond float rounding, except `precision`
    and `quantize`): `precision` is "float32", "bfloat16" or "float16" (autocast; float16
    with gradient scaling, for GPUs). `batching` "packed" runs the linear layers on real
    positions only (padding-free) and attention in length buckets; "padded" pads each chunk
    to its longest window. `max_batch_pieces` bounds a chunk's positions. `sort_buffer`: the
    component's `pipe` (`nlp.pipe`) encodes this many batches at a time sorted by length and
    restores their order (1: no sorting across batches). `quantize` "int8" applies dynamic
    int8 quantization to the encoder's linear layers for CPU inference (training it is an
    error). `torch_compile` compiles the position-wise blocks with `torch.compile`.

    Every setting but the hyperparameters is taken from the config also when a saved
    pipeline is loaded (`spacy.load(path, config={...})` overrides take effect); only int8
    weights cannot be turned back into float ones (`quantize = null` on an int8 pipeline is
    an error).
    """
    if spans not in SPAN_MODES:
        raise ValueError(f"spans={spans!r}; choose one of {SPAN_MODES}.")
    check_precision(precision)
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching={batching!r}; choose one of {BATCHING_MODES}.")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}; choose one of {QUANTIZE_MODES}.")
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive.")
    if max_batch_pieces < 1 or sort_buffer < 1:
        raise ValueError(f"max_batch_pieces ({max_batch_pieces}) and sort_buffer ({sort_buffer}) must be positive.")
    if not 1 <= output_layers <= num_hidden_layers + 1:
        raise ValueError(f"output_layers={output_layers} must lie in [1, num_hidden_layers + 1].")
    config = AlbertConfig(**{k: v for k, v in locals().items() if k in ARCHITECTURE_FIELDS})
    encoder = PyTorchWrapper_v2(
        WindowedEncoder(config, precision, quantize=quantize, torch_compile=torch_compile),
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        grad_scaler=PyTorchGradScaler(enabled=precision == "float16"),
    )
    shim = encoder.shims[0]
    encoder.shims[0] = PyTorchShim(
        shim._model,
        grad_scaler=shim._grad_scaler,
        serialize_model=serialize_encoder,
        deserialize_model=deserialize_encoder,
    )
    return Model(
        "albert_transformer",
        forward,
        init=init,
        layers=[encoder],
        dims={"nO": None},  # the width, once a checkpoint (or initialize) decided it
        attrs={
            "settings": Settings(
                precision=precision,
                quantize=quantize,
                torch_compile=torch_compile,
                checkpoint=checkpoint,
                window=window,
                stride=stride,
                spans=spans,
                output_layers=output_layers,
                max_batch_pieces=max_batch_pieces,
                batching=batching,
                sort_buffer=sort_buffer,
            ),
            "albert": AlbertState(config),
        },
    )
