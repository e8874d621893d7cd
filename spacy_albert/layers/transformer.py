"""`spacy-albert.AlbertTransformer.v1`: spaCy Docs in, piece-level ALBERT states out.

The text of each doc is tokenized once by the fast tokenizer; pieces are aligned to spaCy
tokens by character offsets, cut into windows (strided, or along sentences) and encoded
by the native `AlbertModel` (the `WindowedEncoder` torch module, in an `AlbertShim`).
Components that build their own inputs (question + context, prompt + choice, masked text)
run the same encoder on `PieceSequences` through `encode_sequences` (and the masked-LM head
through `mlm_logits`). The model is built from the hyperparameters in the config, without
touching files; `initialize` (or the component's `initialize(checkpoint=...)`) loads a
checkpoint, whose config then decides the shapes, and serialization stores config, weights
(safetensors) and vocabulary, so a saved pipeline never needs the original checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.util import get_torch_default_device

from ..errors import AlbertError, CheckpointError
from ..hub import resolve_model_dir
from ..models.checkpoint import align_keys, check_vocab_matches, read_checkpoint_weights
from ..models.configuration import ENCODER_DEFAULTS, AlbertConfig
from ..models.precision import check_precision
from ..tokenization.alignment import align_span, check_alignment_mode
from ..tokenization.tokenization_albert_fast import AlbertTokenizerFast
from .data import AlbertDocData, PieceSequences
from .encoder import WindowedEncoder
from .quantize import QUANTIZE_MODES, apply_quantize_setting
from .shim import AlbertShim
from .state import AlbertState, Settings, dropout_settings
from .windows import ATTENTION_PADDING_TOLERANCE, BATCHING_MODES, WindowBatch, make_sequence_batch, make_windows

SPAN_MODES = ("strided", "sentences")
ATTENTION_BUCKETS = ("auto", "exact", "padded")


def _encoder_node(model: Model) -> Model:
    return model.layers[0]


def _shim(model: Model) -> AlbertShim:
    return _encoder_node(model).shims[0]


def settings_of(model: Model) -> Settings:
    """The AlbertTransformer's settings (precision, quantize, window, ...: see its builder)."""
    return model.attrs["settings"]


def albert_state(model: Model) -> AlbertState:
    """The encoder's config and tokenizer (held by its shim, which saves them with the weights)."""
    return _shim(model).state


def get_torch_encoder(model: Model) -> WindowedEncoder:
    """The `WindowedEncoder` (holding the `AlbertModel`) inside an AlbertTransformer model."""
    return _shim(model).module


def _module_builder(settings: Settings) -> Callable[[AlbertConfig], WindowedEncoder]:
    """Builds a float encoder for a config with the architecture's settings (int8 layers are
    quantized when their weights load, never inside `forward`)."""

    def build(config: AlbertConfig) -> WindowedEncoder:
        return WindowedEncoder(
            config, settings["precision"], quantize=settings["quantize"], torch_compile=settings["torch_compile"],
            mlm_head=bool(settings.get("mlm_head")),
        )  # fmt: skip

    return build


def add_mlm_head(model: Model) -> None:
    """Give the encoder the reference's masked-LM head (for `albert_fill_mask`), tied to its
    word embeddings; it is saved, loaded and exported with the encoder."""
    settings = settings_of(model)
    if settings.get("mlm_head"):
        return
    settings["mlm_head"] = True
    shim = _shim(model)
    old = shim.module
    new = shim.build(old.config)
    new.albert.load_state_dict(old.albert.state_dict())
    new.tie_weights()
    shim.set_module(new)


def load_checkpoint(model: Model, name_or_path: str | Path) -> dict[str, torch.Tensor]:
    """Load config, weights and vocabulary of a Hugging Face ALBERT checkpoint (any head
    class) into `model`, whose shapes then are the checkpoint's; the masked-LM head's weights
    load too when the encoder has one. Returns all of the checkpoint's tensors, for the
    component's own head to take its weights from."""
    state: AlbertState = albert_state(model)
    directory = resolve_model_dir(name_or_path)
    # Every size comes from the checkpoint (the config's sizes only build a model from scratch);
    # dropout is a training setting and stays the configured one.
    config = AlbertConfig.from_pretrained(directory, **dropout_settings(state.config))
    shim = _shim(model)
    encoder = shim.build(config)
    weights = read_checkpoint_weights(directory)
    encoder.albert.load_checkpoint_state(weights, source=directory)
    if encoder.predictions is not None:
        _load_mlm_head(encoder, weights, directory)
    tokenizer = AlbertTokenizerFast.from_pretrained(directory)
    check_vocab_matches(tokenizer, config)
    shim.set_module(encoder)
    apply_quantize_setting(shim.module)  # on its device: int8 is CPU-only
    model.set_dim("nO", config.hidden_size, force=True)
    state.config = config
    state.set_tokenizer(tokenizer)
    return weights


def _load_mlm_head(encoder: WindowedEncoder, weights: dict[str, torch.Tensor], source: Path) -> None:
    """The checkpoint's `predictions.*` (a masked-LM or pretraining checkpoint) into the head;
    a checkpoint without them leaves the head newly initialised."""
    head = encoder.predictions
    own = {f"predictions.{k}": v for k, v in head.state_dict().items()}
    aligned, _ = align_keys(weights, set(own), "predictions", True)
    aligned = {k: v for k, v in aligned.items() if k.startswith("predictions.") and k in own}
    for key, tensor in aligned.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{key} in {str(source)!r} has shape {list(tensor.shape)}, the masked-LM head {list(own[key].shape)}."
            )
    head.load_state_dict({k.removeprefix("predictions."): v for k, v in aligned.items()}, strict=False)
    encoder.tie_weights()


def _convert_inputs(model: Model, X: Any, is_train: bool) -> tuple[ArgsKwargs, Callable]:
    if isinstance(X, WindowBatch):  # the encoder turns the chunks into tensors on its device
        return ArgsKwargs(args=(X,), kwargs={}), lambda d_inputs: X
    hidden = xp2torch(X, requires_grad=is_train)  # hidden states for the masked-LM head
    return ArgsKwargs(args=(hidden,), kwargs={}), lambda d_inputs: torch2xp(d_inputs.args[0])


def _convert_outputs(model: Model, inputs_outputs: tuple, is_train: bool) -> tuple[Any, Callable]:
    _, output = inputs_outputs
    if isinstance(output, torch.Tensor):  # masked-LM logits
        return torch2xp(output), lambda d_logits: ArgsKwargs(
            args=(output,), kwargs={"grad_tensors": (xp2torch(d_logits),)}
        )
    hidden, cls = output

    def backprop(d_output: tuple[Any, Any]) -> ArgsKwargs:
        d_hidden, d_cls = d_output
        return ArgsKwargs(args=((hidden, cls),), kwargs={"grad_tensors": (xp2torch(d_hidden), xp2torch(d_cls))})

    return (torch2xp(hidden), torch2xp(cls)), backprop


def _torch_forward(model: Model, X: Any, is_train: bool) -> tuple[Any, Callable]:
    """thinc's PyTorch wrapper pattern: convert, run the shim, convert back."""
    Xtorch, get_dX = _convert_inputs(model, X, is_train)
    Ytorch, torch_backprop = model.shims[0](Xtorch, is_train)
    Y, get_dYtorch = _convert_outputs(model, (X, Ytorch), is_train)
    return Y, lambda dY: get_dX(torch_backprop(get_dYtorch(dY)))


def _check_trainable(model: Model, is_train: bool) -> None:
    if is_train and (settings_of(model)["quantize"] or get_torch_encoder(model).quantized):
        raise AlbertError(
            "This ALBERT encoder is int8-quantized, which is for inference only: train the float model "
            "(quantize = null) and quantize the trained pipeline afterwards (python -m spacy_albert quantize)."
        )


def _padding_tolerance(model: Model) -> float:
    """The attention bucketing (`attention_buckets`): "exact" buckets of one window length
    (no padding, no copies: best on CPUs), "padded" buckets padded within a tolerance (fewer,
    larger attention calls: best on GPUs), "auto" by the device the encoder runs on."""
    mode = settings_of(model)["attention_buckets"]
    if mode == "auto":
        mode = "exact" if get_torch_default_device().type == "cpu" else "padded"
    return 0.0 if mode == "exact" else ATTENTION_PADDING_TOLERANCE


def encode_sequences(model: Model, X: PieceSequences, is_train: bool) -> tuple[tuple[Any, Any], Callable]:
    """The last layer's states of every position of sequences that carry their own special
    pieces (question + context, prompt + choice, masked text): (hidden [n_positions, width] in
    input order, cls [n_sequences, width]), and the backprop taking their gradients."""
    _check_trainable(model, is_train)
    state: AlbertState = albert_state(model)
    settings, config = settings_of(model), state.config
    tokenizer = state.tokenizer
    pad_id = 0 if tokenizer is None or tokenizer.pad_token_id is None else tokenizer.pad_token_id
    batch = make_sequence_batch(
        X.ids, X.type_ids, max_batch_pieces=settings["max_batch_pieces"], pad_id=pad_id, batching=settings["batching"],
        linear_cost=2 * config.hidden_size + config.intermediate_size, padding_tolerance=_padding_tolerance(model),
    )  # fmt: skip
    ops = model.ops
    if not X.ids:
        width = config.hidden_size
        return (ops.alloc2f(0, width), ops.alloc2f(0, width)), lambda d: None
    (hidden, cls), backprop_encoder = _encoder_node(model)(batch, is_train)

    def backprop(d_output: tuple[Any, Any]) -> None:
        d_hidden, d_cls = d_output
        full_hidden, full_cls = ops.alloc(hidden.shape, dtype="float32"), ops.alloc(cls.shape, dtype="float32")
        full_hidden[-1] = d_hidden
        full_cls[-1] = d_cls
        backprop_encoder((full_hidden, full_cls))

    return (hidden[-1], cls[-1]), backprop


def mlm_logits(model: Model, hidden: Any, is_train: bool) -> tuple[Any, Callable]:
    """The encoder's masked-LM head over hidden states [n, width]: logits [n, vocab], and the
    backprop giving the gradient of the hidden states (the tied word embeddings get theirs)."""
    return _encoder_node(model)(hidden, is_train)


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
    _check_trainable(model, is_train)
    state: AlbertState = albert_state(model)
    config = state.config
    encodings = state.backend.encode_batch([doc.text for doc in docs], add_special_tokens=False)
    piece_ids, alignments, spans = [], [], []
    for doc, enc in zip(docs, encodings):
        ids = np.asarray(enc.ids, dtype="int64")
        offsets = np.asarray(enc.offsets, dtype="int64").reshape(-1, 2)
        token_spans = doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2)
        starts = token_spans[:, 0]
        mode = settings.get("alignment", "albert")
        alignment = align_span(mode, doc.text, offsets, starts, starts + token_spans[:, 1])
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
        padding_tolerance=_padding_tolerance(model),
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
    if checkpoint and albert_state(model).tokenizer is None:
        load_checkpoint(model, checkpoint)
    if not model.has_dim("nO"):  # built from scratch: the config's size
        model.set_dim("nO", albert_state(model).config.hidden_size)
    apply_quantize_setting(get_torch_encoder(model))


@registry.architectures("spacy-albert.AlbertTransformer.v1")
def build_albert_transformer(
    vocab_size: int = ENCODER_DEFAULTS["vocab_size"],
    embedding_size: int = ENCODER_DEFAULTS["embedding_size"],
    hidden_size: int = ENCODER_DEFAULTS["hidden_size"],
    num_hidden_layers: int = ENCODER_DEFAULTS["num_hidden_layers"],
    num_hidden_groups: int = ENCODER_DEFAULTS["num_hidden_groups"],
    num_attention_heads: int = ENCODER_DEFAULTS["num_attention_heads"],
    intermediate_size: int = ENCODER_DEFAULTS["intermediate_size"],
    inner_group_num: int = ENCODER_DEFAULTS["inner_group_num"],
    hidden_act: str = ENCODER_DEFAULTS["hidden_act"],
    hidden_dropout_prob: float = ENCODER_DEFAULTS["hidden_dropout_prob"],
    attention_probs_dropout_prob: float = ENCODER_DEFAULTS["attention_probs_dropout_prob"],
    max_position_embeddings: int = ENCODER_DEFAULTS["max_position_embeddings"],
    type_vocab_size: int = ENCODER_DEFAULTS["type_vocab_size"],
    checkpoint: Optional[str] = None,
    window: int = 510,
    stride: int = 384,
    spans: str = "strided",
    output_layers: int = 1,
    precision: str = "float32",
    max_batch_pieces: int = 8192,
    batching: str = "packed",
    attention_buckets: str = "auto",
    sort_buffer: int = 16,
    quantize: Optional[str] = None,
    torch_compile: bool = False,
    alignment: str = "albert",
    grad_scaler_config: Optional[dict] = None,
) -> Model[List[Doc], List[AlbertDocData]]:
    """ALBERT over spaCy Docs: returns each doc's piece states and piece-to-token alignment.

    The hyperparameters (defaults: `ENCODER_DEFAULTS`, an albert-base-v2 shape) build the
    model's shapes from scratch; a `checkpoint` (local directory or cached hub id), loaded
    at `nlp.initialize()`, replaces all of them with its own config (the checkpoint wins: any
    ALBERT size works by naming it, and the listeners and heads reading the output take its
    width). `window` and `stride` are in pieces (windows are capped at
    max_position_embeddings - 2); `spans` "sentences" windows along `doc.sents`.
    `output_layers` > 1 keeps that many last layers for listeners that mix them.

    Speed settings (none changes the model's outputs beyond float rounding, except `precision`
    and `quantize`): `precision` is "float32", "bfloat16" or "float16" (autocast; float16
    with loss scaling, for GPUs). `batching` "packed" runs the linear layers on real
    positions only (padding-free) and attention in length buckets; "padded" pads each chunk
    to its longest window. `attention_buckets` "exact" gives packed attention buckets of one
    window length (no padding: best on CPUs), "padded" pads windows of similar lengths into
    one bucket (fewer calls: best on GPUs), "auto" picks by device. `max_batch_pieces` bounds
    a chunk's positions. `sort_buffer`: the component's `pipe` (`nlp.pipe`) encodes this many
    batches at a time sorted by length and restores their order (1: no sorting across
    batches). `quantize` "int8" applies dynamic int8 quantization to the encoder's linear
    layers for CPU inference (training it is an error). `torch_compile` compiles the
    position-wise blocks with `torch.compile`. `alignment` "albert" aligns pieces to tokens
    as transformers' `word_ids()`; "spacy-transformers" reproduces spacy-transformers' own
    alignment (for pipelines trained with it: see `spacy_albert.tokenization.alignment`).
    `grad_scaler_config` sets float16 loss scaling (thinc's `PyTorchGradScaler` arguments:
    `init_scale`, `growth_factor`, `backoff_factor`, `growth_interval`, `enabled`).

    Every setting but the hyperparameters is taken from the config also when a saved
    pipeline is loaded (`spacy.load(path, config={...})` overrides take effect); only int8
    weights cannot be turned back into float ones (`quantize = null` on an int8 pipeline is
    an error).
    """
    check_alignment_mode(alignment)
    if spans not in SPAN_MODES:
        raise ValueError(f"spans={spans!r}; choose one of {SPAN_MODES}.")
    check_precision(precision)
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching={batching!r}; choose one of {BATCHING_MODES}.")
    if attention_buckets not in ATTENTION_BUCKETS:
        raise ValueError(f"attention_buckets={attention_buckets!r}; choose one of {ATTENTION_BUCKETS}.")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize={quantize!r}; choose one of {QUANTIZE_MODES}.")
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive.")
    if max_batch_pieces < 1 or sort_buffer < 1:
        raise ValueError(f"max_batch_pieces ({max_batch_pieces}) and sort_buffer ({sort_buffer}) must be positive.")
    if not 1 <= output_layers <= num_hidden_layers + 1:
        raise ValueError(f"output_layers={output_layers} must lie in [1, num_hidden_layers + 1].")
    config = AlbertConfig(**{k: v for k, v in locals().items() if k in ENCODER_DEFAULTS})
    settings = Settings(
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
        attention_buckets=attention_buckets,
        sort_buffer=sort_buffer,
        alignment=alignment,
    )
    state = AlbertState(config)
    build = _module_builder(settings)
    shim = AlbertShim(build(config), state, build, loss_scaling=precision == "float16", scaler_config=grad_scaler_config)
    encoder = Model("albert_torch_encoder", _torch_forward, shims=[shim])
    return Model(
        "albert_transformer",
        forward,
        init=init,
        layers=[encoder],
        dims={"nO": None},  # the width, once a checkpoint (or initialize) decided it
        attrs={"settings": settings, "albert": state},
    )
