"""`WindowedEncoder`: ALBERT over the window chunks of `layers.windows`, with the states
scattered back to pieces (the states of pieces seen by several windows are averaged; no piece
is dropped). Packed chunks run the padding-free path, padded ones `AlbertModel` itself; both
give the reference's states (up to float rounding).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AlbertError
from ..models.configuration import AlbertConfig
from ..models.modeling_albert import AlbertLayer, AlbertMLMHead, AlbertModel
from ..models.precision import autocast
from .windows import Chunk, WindowBatch, unpack_chunk


def _after_fork_in_child() -> None:
    """Forked workers (e.g. `nlp.pipe(n_process=2)`) inherit torch's OpenMP pool, whose first
    use after a fork can deadlock: each worker runs single-threaded, and the tokenizers
    library's own parallelism (which it disables after a fork anyway) stays quiet."""
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


os.register_at_fork(after_in_child=_after_fork_in_child)


class WindowedEncoder(nn.Module):
    """`AlbertModel` (without pooler) over window chunks, scattered back to pieces.

    `precision` picks autocast: "float32" (none), "bfloat16" (CPU or GPU) or "float16" (GPU,
    used with a gradient scaler). Outputs are always float32. `quantize` ("int8" or None)
    records whether the linear layers are dynamically quantized for CPU inference (done when
    the weights load: see `spacy_albert.layers.quantize`). `torch_compile` compiles the position-wise blocks
    (attention output and feed-forward) with `torch.compile` on first use.

    `mlm_head` adds the reference's masked-LM head (`predictions`, its decoder tied to the word
    embeddings, so it lives in the same module): called with a tensor of hidden states
    [n, width] instead of a batch, the encoder returns their vocabulary logits [n, vocab].
    """

    # the MLM decoder is the word embedding matrix (and `predictions.bias`): stored once
    _tied_weights_keys = ("predictions.decoder.weight", "predictions.decoder.bias")

    def __init__(
        self,
        config: AlbertConfig,
        precision: str = "float32",
        *,
        quantize: Optional[str] = None,
        torch_compile: bool = False,
        mlm_head: bool = False,
    ) -> None:
        super().__init__()
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions: Optional[AlbertMLMHead] = None
        if mlm_head:
            self.predictions = AlbertMLMHead(config)
            self.predictions.apply(self.albert._init_weights)
            self.predictions.bias.data.zero_()
            self.tie_weights()
        self.precision = precision
        self.quantize = quantize
        self.torch_compile = torch_compile
        self._compiled: dict[str, Callable] = {}

    def tie_weights(self) -> None:
        """Tie the MLM decoder to the word embeddings, as the reference does."""
        if self.predictions is not None:
            self.predictions.decoder.weight = self.albert.embeddings.word_embeddings.weight
            self.predictions.decoder.bias = self.predictions.bias

    @property
    def config(self) -> AlbertConfig:
        return self.albert.config

    @property
    def quantized(self) -> bool:
        """Whether the linear layers have been replaced by int8 dynamically quantized ones."""
        return _is_quantized_linear(self.albert.encoder.embedding_hidden_mapping_in)

    def forward(self, batch: WindowBatch | torch.Tensor) -> Any:
        """Hidden states [n_layers, n_pieces, width] of all pieces of the batch, and each
        doc's [CLS] states [n_layers, n_docs, width] (averaged over its windows). Given hidden
        states [n, width] instead, the MLM head's logits [n, vocab] (float32)."""
        if isinstance(batch, torch.Tensor):
            return self.mlm_logits(batch)
        if self.quantize == "int8" and not self.quantized:
            raise AlbertError(
                "This ALBERT encoder has quantize = \"int8\" but float weights: it is quantized when its weights "
                "load (nlp.initialize(), spacy.load), so initialise or load the pipeline before using it."
            )
        width = self.config.hidden_size
        n_layers = batch.n_layers
        device = self.albert.embeddings.word_embeddings.weight.device
        counts = torch.as_tensor(batch.counts, device=device)
        doc_windows = torch.as_tensor(batch.doc_windows, device=device)
        out = counts.new_zeros((n_layers, counts.shape[0], width))
        cls = counts.new_zeros((n_layers, doc_windows.shape[0], width))
        packed = self.config.position_embedding_type == "absolute"
        with autocast(self.precision, device.type):
            for chunk in batch.chunks:
                t = chunk.tensors(device)
                if chunk.packed and packed:
                    states = self._packed_states(t["input_ids"], t["position_ids"], t["token_type_ids"], t["buckets"], n_layers)
                else:
                    if chunk.packed:  # relative position embeddings: the model's own padded path
                        t = unpack_chunk(chunk).tensors(device)
                    states = self._padded_states(t["input_ids"], t["attention_mask"], t["token_type_ids"], n_layers)
                out.index_add_(1, t["target"], states[:, t["source"]].float())
                cls.index_add_(1, t["window_doc"], states[:, t["cls_rows"]].float())
        if batch.overlapping:
            out = out / counts.clamp(min=1).view(1, -1, 1)
        return out, cls / doc_windows.view(1, -1, 1)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The masked-LM head's vocabulary logits [n, vocab] for hidden states [n, width]."""
        if self.predictions is None:
            raise AlbertError("This ALBERT encoder has no masked-LM head (it was built with mlm_head = false).")
        device = self.albert.embeddings.word_embeddings.weight.device
        with autocast(self.precision, device.type):
            return self.predictions(hidden.to(device)).float()

    def _padded_states(
        self, ids: torch.Tensor, mask: torch.Tensor, types: Optional[torch.Tensor], n_layers: int
    ) -> torch.Tensor:
        result = self.albert(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=n_layers > 1)
        if n_layers > 1:
            states = torch.stack(result.hidden_states[-n_layers:])
        else:
            states = result.last_hidden_state.unsqueeze(0)
        return states.reshape(n_layers, -1, states.shape[-1])

    # ---- packed (padding-free) path -------------------------------------------------------
    def _packed_states(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        types: Optional[torch.Tensor],
        buckets: list[tuple[Any, Optional[torch.Tensor], Optional[torch.Tensor]]],
        n_layers: int,
    ) -> torch.Tensor:
        """The last `n_layers` hidden states [n_layers, n_positions, width] of packed windows;
        the same computation as `AlbertModel`, on real positions only."""
        albert, config = self.albert, self.config
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= config.vocab_size):
            albert._check_inputs(ids[None], None, None, 1)  # raises the model's clear error
        if types is not None and types.numel() and (int(types.min()) < 0 or int(types.max()) >= config.type_vocab_size):
            albert._check_inputs(None, types[None], None, 1)
        emb = albert.embeddings
        if types is None:
            x = emb.word_embeddings(ids) + emb.token_type_embeddings.weight[0]
        else:
            x = emb.word_embeddings(ids) + emb.token_type_embeddings(types)
        x = x + emb.position_embeddings(positions)
        x = emb.dropout(emb.LayerNorm(x))
        x = albert.encoder.embedding_hidden_mapping_in(x)
        kept: deque[torch.Tensor] = deque([x], maxlen=n_layers)
        total, n_groups = config.num_hidden_layers, config.num_hidden_groups
        fused: dict[Any, Any] = {}
        autocast = self.precision != "float32" and torch.is_autocast_enabled(x.device.type)
        compiled = self.torch_compile and not self.quantized
        if not torch.is_grad_enabled() and not autocast and not compiled:
            fused["workspace"] = _Workspace(_INPLACE_ACTIVATIONS.get(config.hidden_act))
        for i in range(total):
            group = albert.encoder.albert_layer_groups[int(i / (total / n_groups))]
            for layer in group.albert_layers:
                x = self._packed_layer(layer, x, buckets, fused)
            kept.append(x)
        return torch.stack(list(kept)) if n_layers > 1 else x.unsqueeze(0)

    def _packed_layer(self, layer: AlbertLayer, x: torch.Tensor, buckets: list, fused: dict) -> torch.Tensor:
        att = layer.attention
        heads, head_size = att.num_attention_heads, att.attention_head_size
        workspace = fused.get("workspace")
        qkv = _qkv(att, x, fused, workspace)  # [n_positions, 3 * heads * head_size]
        dropout = att.attention_dropout.p if self.training else 0.0
        all_heads = heads * head_size
        single = len(buckets) == 1
        # Without autograd each bucket's real rows go straight to their packed rows in a reused
        # buffer; with it, the buckets' rows are concatenated.
        out = workspace.get("context", x.shape[0], x, all_heads) if workspace is not None and not single else None
        parts: list[torch.Tensor] = []
        row = 0
        for gather, mask, scatter in buckets:
            if isinstance(gather, torch.Tensor):
                n, width = gather.shape
                index = gather.view(-1)
                if workspace is not None:
                    g = torch.index_select(qkv, 0, index, out=workspace.get("gather", index.shape[0], qkv))
                else:
                    g = qkv.index_select(0, index)
            else:  # a bucket without padding is a contiguous run of packed rows: a view, no copy
                first, n, width = gather
                g = qkv.narrow(0, first, n * width)
            q, k, v = g.view(n, width, 3, heads, head_size).permute(2, 0, 3, 1, 4).unbind(0)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            flat = attended.transpose(1, 2).reshape(n * width, all_heads)  # a view: SDPA writes [n, width, heads, d]
            n_real = n * width if scatter is None else scatter.shape[0]
            if out is None:
                parts.append(flat if scatter is None else flat.index_select(0, scatter))
            elif scatter is None:
                out[row : row + n_real].copy_(flat)
            else:
                torch.index_select(flat, 0, scatter, out=out[row : row + n_real])
            row += n_real
        context = out if out is not None else parts[0] if single else torch.cat(parts)
        if workspace is not None:
            return _post_attention_inference(layer, x, context, workspace)
        return self._blocks("post", _post_attention)(layer, x, context)

    def _blocks(self, name: str, fn: Callable) -> Callable:
        """`fn`, compiled with torch.compile when asked (once per encoder; int8 layers run eagerly)."""
        if not self.torch_compile or self.quantized:
            return fn
        if name not in self._compiled:
            self._compiled[name] = torch.compile(fn, dynamic=True)
        return self._compiled[name]


class _Workspace:
    """Reusable output buffers for float32 inference on CPU.

    CPU tensors of tens of MB are fresh `mmap`s each time (page faults and zeroing cost about
    a tenth of the matmul they hold), so the widest per-layer outputs (query/key/value,
    gathered buckets, the feed-forward's intermediate) are written into buffers that live
    through one forward pass and are reused by every layer and chunk."""

    def __init__(self, inplace_activation: Optional[str] = None) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.inplace_activation = inplace_activation  # gelu's `approximate`, when it has an in-place form

    def get(self, name: str, rows: int, like: torch.Tensor, cols: Optional[int] = None) -> torch.Tensor:
        cols = like.shape[-1] if cols is None else cols
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape[0] < rows or buffer.shape[1] != cols or buffer.dtype != like.dtype:
            buffer = like.new_empty((rows, cols))
            self.buffers[name] = buffer
        return buffer[:rows]


def _post_attention(layer: AlbertLayer, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Attention output projection + residual LayerNorm, then the feed-forward block."""
    att = layer.attention
    attention_output = att.LayerNorm(x + att.output_dropout(att.dense(context)))
    if layer.chunk_size_feed_forward:
        parts = attention_output.split(layer.chunk_size_feed_forward, dim=0)
        ffn_output = torch.cat([layer.feed_forward(part) for part in parts], dim=0)
    else:
        ffn_output = layer.feed_forward(attention_output)
    return layer.full_layer_layer_norm(ffn_output + attention_output)


_INPLACE_ACTIVATIONS = {"gelu_new": "tanh", "gelu_fast": "tanh", "gelu_accurate": "tanh", "gelu_pytorch_tanh": "tanh",
                        "gelu": "none"}  # fmt: skip


def _post_attention_inference(layer: AlbertLayer, x: torch.Tensor, context: torch.Tensor, workspace: _Workspace) -> torch.Tensor:
    """`_post_attention` without autograd: the feed-forward intermediate goes into a reused
    buffer and the activation runs in place (the same arithmetic as the module calls)."""
    att = layer.attention
    attention_output = att.LayerNorm(att.dense(context).add_(x))  # residual added in place
    ffn = layer.ffn
    if type(ffn) is nn.Linear and ffn.bias is not None:
        hidden = workspace.get("ffn", attention_output.shape[0], attention_output, ffn.out_features)
        torch.addmm(ffn.bias, attention_output, ffn.weight.t(), out=hidden)
    else:
        hidden = ffn(attention_output)
    if workspace.inplace_activation is not None:
        torch.ops.aten.gelu_(hidden, approximate=workspace.inplace_activation)
    else:
        hidden = layer.activation(hidden)
    return layer.full_layer_layer_norm(layer.ffn_output(hidden).add_(attention_output))


def _is_quantized_linear(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear" and type(module).__module__.startswith("torch.ao.nn.quantized")


def _qkv(att: nn.Module, x: torch.Tensor, fused: dict, workspace: Optional[_Workspace] = None) -> torch.Tensor:
    """Query, key and value projections in one matmul; the concatenated weights are built
    once per forward pass (ALBERT reuses one layer's weights in every pass)."""
    if hasattr(att, "qkv"):  # the fused int8 layer of a quantized encoder
        return att.qkv(x)
    key = id(att)
    if key not in fused:
        linears = (att.query, att.key, att.value)
        if all(type(m) is nn.Linear and m.bias is not None for m in linears):
            fused[key] = (torch.cat([m.weight for m in linears]), torch.cat([m.bias for m in linears]))
        else:
            fused[key] = None
    weights = fused[key]
    if weights is None:  # e.g. quantized linears
        return torch.cat([att.query(x), att.key(x), att.value(x)], dim=-1)
    if workspace is not None:
        weight, bias = weights
        return torch.addmm(bias, x, weight.t(), out=workspace.get("qkv", x.shape[0], x, weight.shape[0]))
    return F.linear(x, *weights)
