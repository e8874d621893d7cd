"""`spacy-albert.TransformerModel.v1`: a drop-in for `spacy-transformers.TransformerModel.v3`.

It takes the same settings (`name`, `get_spans`, `tokenizer_config`, `transformer_config`,
`mixed_precision`, `grad_scaler_config`) and returns spacy-transformers' own
`FullTransformerBatch` (split into a `TransformerData` per doc), so the `transformer`
component, `TransformerListener`, `doc._.trf_data`, `replace_listeners` and spaCy's training
loop work unchanged. Underneath runs this package's encoder (an `AlbertTransformer.v1` model:
its fast tokenizer, `AlbertShim` and native `AlbertModel`) and alignment.

As in spacy-transformers, each span from `get_spans` is tokenized on its own and encoded as
one sequence "[CLS] pieces [SEP]" (cut at the model's maximum length), and `last_hidden_state`
is the [n_spans, length, width] grid of their states, padded with zeros. `alignment` picks the
token-to-piece alignment ("albert" or "spacy-transformers": see `interop.alignment`).
"""

from __future__ import annotations

from typing import Any, Callable, List

import numpy as np
import torch
from spacy.tokens import Doc, Span
from spacy.util import registry
from thinc.api import Model, torch2xp, xp2torch

from ..hub import resolve_model_dir
from ..layers.data import PieceSequences
from ..layers.state import Settings, dropout_settings
from ..models.configuration import AlbertConfig
from ..layers.transformer import albert_state, build_albert_transformer, encode_sequences, load_checkpoint
from .alignment import align_span, batch_alignment, check_alignment_mode

# Settings of spacy-transformers' tokenizer / forward pass that leave the outputs unchanged here.
_TOKENIZER_KEYS = {"use_fast"}
_TRANSFORMER_KEYS = {"output_attentions": False, "output_hidden_states": False, "return_dict": True}


def _check_configs(tokenizer_config: dict, transformer_config: dict) -> None:
    for key in tokenizer_config:
        if key not in _TOKENIZER_KEYS:
            raise ValueError(
                f"spacy-albert.TransformerModel.v1: tokenizer_config.{key} is not supported (the tokenizer is the "
                f"checkpoint's own, as saved); remove it from the config. Supported: {sorted(_TOKENIZER_KEYS)}."
            )
    for key, value in transformer_config.items():
        if key not in _TRANSFORMER_KEYS or bool(value) != _TRANSFORMER_KEYS[key]:
            raise ValueError(
                f"spacy-albert.TransformerModel.v1: transformer_config.{key} = {value!r} is not supported (the "
                "outputs are the last hidden states); remove it from the config."
            )


def encoder_of(model: Model) -> Model:
    """The `AlbertTransformer.v1` model inside a TransformerModel.v1 (holding config,
    tokenizer and weights; the same model the native `albert` component runs)."""
    return model.layers[0]


def _replace_listener(model: Model) -> Model:
    from spacy_transformers.layers.split_trf import split_trf_batch
    from thinc.api import chain

    return chain(model, split_trf_batch())


def _replace_listener_cfg(tok2vec_model_cfg: dict, listener_model_cfg: dict) -> dict:
    """The config of a listener replaced by a copy of the transformer (`replace_listeners`)."""
    result = dict(tok2vec_model_cfg)
    if "TransformerListener" in listener_model_cfg.get("@architectures", ""):
        result["@architectures"] = "spacy-albert.Tok2VecTransformer.v1"
        for key in ("pooling", "grad_factor"):
            if key in listener_model_cfg and key not in result:
                result[key] = listener_model_cfg[key]
    return result


def _max_length(model: Model) -> int:
    state = albert_state(encoder_of(model))
    limit = state.config.max_position_embeddings
    return min(limit, int(getattr(state.tokenizer, "model_max_length", limit) or limit))


def _token_positions(nested_spans: List[List[Span]]) -> tuple[dict[int, int], int]:
    """Each doc's first row in spacy-transformers' token order (all tokens of each doc that
    has spans, docs in order of their first span), and the number of tokens."""
    first: dict[int, int] = {}
    n = 0
    for spans in nested_spans:
        for span in spans:
            if id(span.doc) not in first:
                first[id(span.doc)] = n
                n += len(span.doc)
    return first, n


def _span_arrays(span: Span) -> tuple[np.ndarray, np.ndarray]:
    """Token starts and ends of a span, relative to its text."""
    doc = span.doc
    starts = np.fromiter((t.idx for t in span), dtype="int64", count=len(span)) - doc[span.start].idx
    ends = starts + np.fromiter((len(t) for t in span), dtype="int64", count=len(span))
    return starts, ends


def forward(model: Model, docs: List[Doc], is_train: bool) -> tuple[Any, Callable]:
    from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
    from thinc.types import Ragged
    from transformers.modeling_outputs import BaseModelOutput

    encoder = encoder_of(model)
    state = albert_state(encoder)
    tokenizer = state.tokenizer
    mode = model.attrs["settings"]["alignment"]
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for spans in nested_spans for span in spans]
    if not flat_spans:
        return FullTransformerBatch.empty(len(docs)), lambda d_output: docs
    encodings = state.backend.encode_batch([span.text for span in flat_spans], add_special_tokens=False)
    max_length = _max_length(model)
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    sequences = [np.asarray([cls_id, *enc.ids, sep_id], dtype="int64")[:max_length] for enc in encodings]
    lengths = [len(ids) for ids in sequences]
    length = max(lengths)
    n = len(sequences)
    mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
    input_ids = np.full((n, length), pad_id, dtype="int64")
    input_ids[mask] = np.concatenate(sequences)
    first_rows, n_tokens = _token_positions(nested_spans)
    alignments, firsts = [], []
    for span, enc in zip(flat_spans, encodings):
        starts, ends = _span_arrays(span)
        offsets = np.asarray(enc.offsets, dtype="int64").reshape(-1, 2)
        alignments.append(align_span(mode, span.text, offsets, starts, ends))
        firsts.append(first_rows[id(span.doc)] + span.start)
    indices, lengths = batch_alignment(alignments, firsts, n_tokens, length)
    pieces = tokenizer.convert_ids_to_tokens(input_ids.ravel().tolist())
    wordpieces = WordpieceBatch(
        strings=[pieces[i * length : (i + 1) * length] for i in range(n)],
        input_ids=input_ids,
        attention_mask=mask.astype("float32"),
        lengths=lengths,
        token_type_ids=np.zeros((n, length), dtype="int64"),
    )
    (hidden, _), backprop_encoder = encode_sequences(encoder, PieceSequences(ids=sequences), is_train)
    ops = model.ops
    grid = ops.alloc3f(n, length, hidden.shape[-1])
    flat_mask = ops.asarray(mask.reshape(-1))
    grid.reshape(n * length, -1)[flat_mask] = hidden
    output = FullTransformerBatch(
        spans=nested_spans,
        wordpieces=wordpieces,
        model_output=BaseModelOutput(last_hidden_state=xp2torch(grid)),
        align=Ragged(indices, lengths),
    )

    def backprop(d_output: Any) -> List[Doc]:
        d_grid = next(iter(d_output.model_output.values()))  # d last_hidden_state [n, length, width]
        if isinstance(d_grid, torch.Tensor):
            d_grid = torch2xp(d_grid)
        d_hidden = ops.asarray2f(d_grid.reshape(n * length, -1)[flat_mask])
        backprop_encoder((d_hidden, ops.alloc2f(n, hidden.shape[-1])))
        return docs

    return output, backprop


def init(model: Model, X: Any = None, Y: Any = None) -> None:
    encoder = encoder_of(model)
    state = albert_state(encoder)
    if state.tokenizer is None:
        # as spacy-transformers: the checkpoint's own config decides, its dropout included
        directory = resolve_model_dir(model.attrs["name"])
        for key, value in dropout_settings(AlbertConfig.from_pretrained(directory)).items():
            setattr(state.config, key, value)
        load_checkpoint(encoder, directory)
    encoder.initialize()
    model.set_dim("nO", encoder.get_dim("nO"), force=True)


@registry.architectures("spacy-albert.TransformerModel.v1")
def transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    alignment: str = "albert",
) -> Model[List[Doc], Any]:
    """spacy-transformers' `TransformerModel.v3` on this package's ALBERT encoder.

    `name` is a local ALBERT checkpoint directory or a hub id in the local cache, loaded at
    `initialize` (a saved pipeline holds config, vocabulary and weights itself). `get_spans` is
    any of spacy-transformers' span getters. `mixed_precision` runs the encoder in float16
    autocast with loss scaling (GPUs). `alignment`: "albert" (this package's alignment, equal
    to transformers' `word_ids()`) or "spacy-transformers" (theirs, exactly, for pipelines
    trained with it; it also gives each word the next word's first piece).
    """
    check_alignment_mode(alignment)
    _check_configs(tokenizer_config, transformer_config)
    encoder = build_albert_transformer(
        checkpoint=None,
        precision="float16" if mixed_precision else "float32",
        grad_scaler_config=grad_scaler_config if mixed_precision else None,
    )
    return Model(
        "spacy_albert_transformer",
        forward,
        init=init,
        layers=[encoder],
        dims={"nO": None},
        attrs={
            "name": name,
            "get_spans": get_spans,
            "settings": Settings(alignment=alignment),
            "replace_listener": _replace_listener,
            "replace_listener_cfg": _replace_listener_cfg,
        },
    )


@registry.architectures("spacy-albert.Tok2VecTransformer.v1")
def tok2vec_transformer(
    name: str,
    get_spans: Callable,
    pooling: Model,
    grad_factor: float = 1.0,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    alignment: str = "albert",
) -> Model[List[Doc], List[Any]]:
    """spacy-transformers' `Tok2VecTransformer.v3` on `TransformerModel.v1`: what a
    `TransformerListener` becomes when `replace_listeners` gives a component its own copy."""
    from spacy_transformers.layers import trfs2arrays
    from thinc.api import chain

    trf = transformer_model(
        name, get_spans, tokenizer_config, transformer_config, mixed_precision, grad_scaler_config, alignment
    )
    return chain(_replace_listener(trf), trfs2arrays(pooling, grad_factor))


__all__ = ["encoder_of", "tok2vec_transformer", "transformer_model"]
