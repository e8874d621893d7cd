"""What the ALBERT layers of `modeling_albert` reuse within one forward pass, and the attention
of the packed (padding-free) layout.

`ForwardState` is created once per forward pass and handed to every layer: ALBERT runs the
same layer weights in several passes, so what can be built once per pass is built once (the
query/key/value weights concatenated for one matmul) and, in inference, the widest
per-layer outputs go into reused buffers (`InferenceBuffers`).

Packed layout: the windows of a batch are concatenated into one sequence of positions, so
the embeddings and every linear layer run on real positions only, and attention runs per
bucket of windows (`bucket_attention`). The buckets are those of
`spacy_albert.layers.windows` (`Chunk.tensors()["buckets"]`): a list of (gather, mask,
scatter) where `gather` is (first_row, n_windows, width) for a bucket of windows of one
width (a contiguous run of packed rows: a view, no copy; mask and scatter are None) or an
int tensor [n_windows, width] of the packed rows that fill a padded batch, `mask` the
[n_windows, 1, 1, width] bool key mask and `scatter` the rows of the flattened padded batch
that are real.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor
Bucket = tuple[Any, Optional[Tensor], Optional[Tensor]]

# Activations with an in-place torch form: gelu's `approximate` argument.
INPLACE_ACTIVATIONS = {"gelu_new": "tanh", "gelu_fast": "tanh", "gelu_accurate": "tanh", "gelu_pytorch_tanh": "tanh",
                       "gelu": "none"}  # fmt: skip


class InferenceBuffers:
    """Reusable output buffers for inference (no autograd).

    CPU tensors of tens of MB are fresh `mmap`s each time (page faults and zeroing cost about
    a tenth of the matmul they hold), so the widest per-layer outputs (query/key/value,
    gathered buckets, the feed-forward's intermediate) are written into buffers that live
    through one forward pass and are reused by every layer, and the activation runs in place
    where torch has an in-place form of it. Only intermediates live in buffers: every layer's
    output is a fresh tensor."""

    def __init__(self, hidden_act: Any = None) -> None:
        self.buffers: dict[str, Tensor] = {}
        self.inplace_activation = INPLACE_ACTIVATIONS.get(hidden_act) if isinstance(hidden_act, str) else None

    def get(self, name: str, rows: int, like: Tensor, cols: Optional[int] = None) -> Tensor:
        """A [rows, cols] buffer of `like`'s dtype and device (cols: like's last size)."""
        cols = like.shape[-1] if cols is None else cols
        buffer = self.buffers.get(name)
        if (buffer is None or buffer.shape[0] < rows or buffer.shape[1] != cols or buffer.dtype != like.dtype
                or buffer.device != like.device):  # fmt: skip
            buffer = like.new_empty((rows, cols))
            self.buffers[name] = buffer
        return buffer[:rows]


def use_inference_buffers(requested: Optional[bool], like: Tensor, compiled: bool = False) -> bool:
    """Whether a forward pass runs the inference fast path (reused buffers, in-place
    activation, fused bias-matmuls into buffers). None: the automatic choice, on when autograd
    is off and autocast is not active (and the blocks are not compiled). True forces it (an
    error with autograd on, as in-place writes into buffers cannot be differentiated, and
    under autocast, which does not cast matmuls that write into a given output); False turns
    it off."""
    autocast = torch.is_autocast_enabled(like.device.type)
    if requested is None:
        return not torch.is_grad_enabled() and not autocast and not compiled
    if requested and torch.is_grad_enabled():
        raise ValueError("inference_buffers=True needs autograd off (torch.no_grad() or torch.inference_mode()).")
    if requested and autocast:
        raise ValueError("inference_buffers=True does not run under autocast: use None or False there.")
    return bool(requested)


class ForwardState:
    """What one forward pass reuses across layers: each attention module's q/k/v weights
    concatenated once (ALBERT reuses one layer's weights in every pass), the inference buffers
    (None: the autograd-safe path), and whether the post-attention blocks run compiled."""

    def __init__(self, buffers: Optional[InferenceBuffers] = None, compile: bool = False) -> None:
        self.buffers = buffers
        self.compile = compile and buffers is None
        self.qkv_weights: dict[int, Optional[tuple[Tensor, Tensor]]] = {}

    @classmethod
    def create(
        cls, like: Tensor, hidden_act: Any, inference_buffers: Optional[bool] = None, compile: bool = False
    ) -> "ForwardState":
        """The state of a forward pass over activations like `like`: inference buffers as
        `use_inference_buffers` decides; `compile` runs the post-attention blocks through
        torch.compile (on the autograd-safe path only; the buffered path runs eagerly)."""
        buffers = InferenceBuffers(hidden_act) if use_inference_buffers(inference_buffers, like, compile) else None
        return cls(buffers, compile)

    def fused_qkv(self, attention: nn.Module) -> Optional[tuple[Tensor, Tensor]]:
        """`attention`'s query, key and value weights and biases, concatenated (once per pass);
        None when they are not plain biased linear layers (e.g. int8 ones)."""
        key = id(attention)
        if key not in self.qkv_weights:
            self.qkv_weights[key] = concatenated_qkv(attention)
        return self.qkv_weights[key]

    def post_attention(self, layer: nn.Module, hidden_states: Tensor, context: Tensor) -> Tensor:
        """`layer.post_attention`: with this pass's buffers, or compiled, or as it is."""
        if self.buffers is not None:
            return layer.post_attention(hidden_states, context, self.buffers)
        if self.compile:
            return compiled_post_attention()(layer, hidden_states, context)
        return layer.post_attention(hidden_states, context)


def concatenated_qkv(attention: nn.Module) -> Optional[tuple[Tensor, Tensor]]:
    linears = (attention.query, attention.key, attention.value)
    if all(type(m) is nn.Linear and m.bias is not None for m in linears):
        return torch.cat([m.weight for m in linears]), torch.cat([m.bias for m in linears])
    return None


def _post_attention(layer: nn.Module, hidden_states: Tensor, context: Tensor) -> Tensor:
    return layer.post_attention(hidden_states, context)


_COMPILED: dict[str, Callable] = {}


def compiled_post_attention() -> Callable:
    """The post-attention block (attention output + feed-forward) through torch.compile,
    compiled on first use (one function for every model: it takes the layer as argument)."""
    if "post" not in _COMPILED:
        _COMPILED["post"] = torch.compile(_post_attention, dynamic=True)
    return _COMPILED["post"]


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None, dropout: float = 0.0) -> Tensor:
    """`F.scaled_dot_product_attention` over [batch, heads, seq, head_size] query, key and
    value, which may be views of a fused projection. With an explicit mask they are made
    contiguous first: some torch/CUDA versions give wrong results for strided q/k/v together
    with an `attn_mask`. Unmasked calls take the views as they are (no copies)."""
    if mask is not None:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def bucket_attention(
    qkv: Tensor,
    buckets: Sequence[Bucket],
    heads: int,
    head_size: int,
    dropout: float = 0.0,
    buffers: Optional[InferenceBuffers] = None,
) -> Tensor:
    """Attention over packed windows: `qkv` [n_positions, 3 * heads * head_size] (query, key,
    value of every packed position) in, the context [n_positions, heads * head_size] out, in
    packed order. Each bucket runs one `scaled_dot_product_attention` over its windows."""
    all_heads = heads * head_size
    single = len(buckets) == 1
    # With buffers, each bucket's real rows go straight to their packed rows in a reused
    # buffer; without, the buckets' rows are concatenated.
    out = buffers.get("context", qkv.shape[0], qkv, all_heads) if buffers is not None and not single else None
    parts: list[Tensor] = []
    row = 0
    for gather, mask, scatter in buckets:
        if isinstance(gather, torch.Tensor):
            n, width = gather.shape
            index = gather.view(-1)
            if buffers is not None:
                g = torch.index_select(qkv, 0, index, out=buffers.get("gather", index.shape[0], qkv))
            else:
                g = qkv.index_select(0, index)
        else:  # a bucket without padding is a contiguous run of packed rows: a view, no copy
            first, n, width = gather
            g = qkv.narrow(0, first, n * width)
        q, k, v = g.view(n, width, 3, heads, head_size).permute(2, 0, 3, 1, 4).unbind(0)
        attended = sdpa(q, k, v, mask, dropout)
        # a view when SDPA took the strided views (it writes [n, width, heads, d]); a copy after a masked call
        flat = attended.transpose(1, 2).reshape(n * width, all_heads)
        n_real = n * width if scatter is None else scatter.shape[0]
        if out is None:
            parts.append(flat if scatter is None else flat.index_select(0, scatter))
        elif scatter is None:
            out[row : row + n_real].copy_(flat)
        else:
            torch.index_select(flat, 0, scatter, out=out[row : row + n_real])
        row += n_real
    if row != qkv.shape[0]:
        raise ValueError(f"The attention buckets cover {row} packed positions, the input has {qkv.shape[0]}.")
    return out if out is not None else parts[0] if single else torch.cat(parts)
