"""Run ALBERT over documents of any length: pieces are cut into windows that fit the model
(each with [CLS] ... [SEP]), and the states of pieces seen by several windows are averaged.
No piece is dropped.

Two ways to batch the windows (`batching` on the architecture):

* "packed" (default): padding-free. The windows of a chunk are concatenated into one
  sequence of positions, so the embeddings and every linear layer (projections, attention
  output, feed-forward: ~97% of ALBERT-base's FLOPs at 128 pieces) run on real positions
  only. Attention runs per bucket of windows: on CPUs one bucket per window length, each a
  contiguous run of packed rows viewed as [n_windows, length] (no padding, no copies); on
  GPUs buckets of similar lengths, gathered and padded within the bucket only as far as it
  pays (see `attention_buckets`). A bucket whose windows all have one length runs without a
  mask, which lets GPUs pick the flash kernel.
* "padded": windows sorted by length and padded to the longest of their chunk, then run
  through `AlbertModel` as one [n_windows, length] batch (the reference path, and the one
  used for relative position embeddings).

Both give the reference's states (up to float rounding).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AlbertError
from ..models.configuration import AlbertConfig
from ..models.modeling_albert import AlbertLayer, AlbertModel
from ..models.precision import autocast

BATCHING_MODES = ("packed", "padded")
# On GPUs a window joins the current attention bucket (and is padded to its width) while the
# extra attention work is at most this fraction of the window's own linear-layer work; CPUs
# use 0 (buckets of one length: no padding, no copies).
ATTENTION_PADDING_TOLERANCE = 0.05


def _after_fork_in_child() -> None:
    """Forked workers (e.g. `nlp.pipe(n_process=2)`) inherit torch's OpenMP pool, whose first
    use after a fork can deadlock: each worker runs single-threaded, and the tokenizers
    library's own parallelism (which it disables after a fork anyway) stays quiet."""
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


os.register_at_fork(after_in_child=_after_fork_in_child)


def window_starts(n_pieces: int, window: int, stride: int) -> list[int]:
    """Start positions of windows of `window` pieces every `stride` pieces; the last window
    ends at the last piece, so every piece is covered."""
    if n_pieces <= window:
        return [0] if n_pieces else []
    starts = list(range(0, n_pieces - window, stride))
    starts.append(n_pieces - window)
    return starts


def span_windows(spans: Sequence[tuple[int, int]], window: int, stride: int) -> list[tuple[int, int]]:
    """Windows (start, end) over each span of pieces, strided where a span is too long."""
    return [
        (span_start + start, span_start + min(start + window, span_end - span_start))
        for span_start, span_end in spans
        for start in window_starts(span_end - span_start, window, stride)
    ]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + length) for each pair (vectorised)."""
    lengths = np.asarray(lengths, dtype="int64")
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype="int64")
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype="int64") - offsets, lengths) + np.arange(total, dtype="int64")


def attention_buckets(
    widths: Sequence[int], linear_cost: float, tolerance: float = ATTENTION_PADDING_TOLERANCE
) -> list[int]:
    """Split windows of descending `widths` (positions, [CLS]/[SEP] included) into runs that
    share one padded attention batch; returns each run's length.

    A window of width L joins a run of width W (its first, widest window) while the attention
    work that padding adds, (W^2 - L^2) position pairs, costs at most `tolerance` of the
    window's linear-layer work (`linear_cost` pair-equivalents per position: 2H + I for ALBERT,
    as attention does 4H FLOPs per pair and the linear layers 8H^2 + 4HI per position).
    """
    runs: list[int] = []
    width = 0
    for length in widths:
        if runs and (length == width or width * width - length * length <= tolerance * linear_cost * length):
            runs[-1] += 1
        else:
            runs.append(1)
            width = length
    return runs


@dataclass
class Chunk:
    """One encoder call's worth of windows.

    Packed: `input_ids`/`position_ids` are [n_positions] (windows concatenated) and `buckets`
    holds, per attention bucket, (`gather` [n_windows, width]: the packed rows that fill the
    padded batch; `key_mask` [n_windows, width] bool; `scatter` [n_real]: the rows of the
    flattened padded batch that are real). A bucket whose windows all have one width needs
    no padding: its `gather` is (first row, n_windows, width) and mask and scatter are None.
    Padded: `input_ids`/`attention_mask` are [n_windows, width].

    Either way, states come out as [n_layers, n_rows, width] over flat rows (packed positions,
    or window * width + position), where `source` are the rows of the windows' pieces (which
    belong at rows `target` of the concatenated pieces of all docs) and `cls_rows` the rows of
    the windows' [CLS] (a window of doc `window_doc[i]`).
    """

    input_ids: np.ndarray
    source: np.ndarray
    target: np.ndarray
    cls_rows: np.ndarray
    window_doc: np.ndarray
    position_ids: Optional[np.ndarray] = None
    attention_mask: Optional[np.ndarray] = None
    buckets: list[tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]] = field(default_factory=list)

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    def positions(self) -> int:
        """Positions the linear layers run over (real ones when packed, padded ones otherwise)."""
        return int(self.input_ids.size)

    def attention_pairs(self) -> int:
        """Query-key pairs attention computes (padding included)."""
        if self.packed:
            shapes = [g.shape if isinstance(g, np.ndarray) else g[1:] for g, _, _ in self.buckets]
            return int(sum(n * width * width for n, width in shapes))
        n, width = self.input_ids.shape
        return int(n * width * width)

    def tensors(self, device: torch.device) -> dict[str, Any]:
        def t(array: Optional[np.ndarray]) -> Optional[torch.Tensor]:
            return None if array is None else torch.as_tensor(array, device=device)

        buckets = [(t(gather) if isinstance(gather, np.ndarray) else gather,
                    None if mask is None else t(mask)[:, None, None, :], t(scatter))
                   for gather, mask, scatter in self.buckets]  # fmt: skip
        return {
            "input_ids": t(self.input_ids),
            "position_ids": t(self.position_ids),
            "attention_mask": t(self.attention_mask),
            "buckets": buckets,
            "source": t(self.source),
            "target": t(self.target),
            "cls_rows": t(self.cls_rows),
            "window_doc": t(self.window_doc),
        }


@dataclass
class WindowBatch:
    """Length-sorted chunks of windows, ready for the encoder.

    `counts` is how many windows saw each piece of the concatenated docs; `doc_windows`
    counts each doc's windows (every doc has at least one: an empty doc is encoded as
    "[CLS] [SEP]"), and `doc_lengths` its pieces.
    """

    chunks: list[Chunk]
    counts: np.ndarray
    doc_windows: np.ndarray
    doc_lengths: list[int]
    n_layers: int = 1

    @property
    def overlapping(self) -> bool:
        """Whether some piece is seen by several windows (its states are then averaged)."""
        return bool(self.counts.size) and float(self.counts.max()) > 1

    def positions(self) -> int:
        return sum(chunk.positions() for chunk in self.chunks)

    def attention_pairs(self) -> int:
        return sum(chunk.attention_pairs() for chunk in self.chunks)


def make_windows(
    piece_ids: Sequence[np.ndarray],
    doc_spans: Sequence[Sequence[tuple[int, int]]],
    *,
    window: int,
    stride: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_batch_pieces: int,
    n_layers: int = 1,
    batching: str = "packed",
    linear_cost: float = 4608.0,
    padding_tolerance: float = ATTENTION_PADDING_TOLERANCE,
) -> WindowBatch:
    """Cut each doc's pieces into windows over its spans, sort them by length and group them
    into chunks of at most `max_batch_pieces` positions (real ones when packed, padded ones
    otherwise). Packed chunks run attention in buckets (see `attention_buckets`): with
    `padding_tolerance` 0 every bucket holds windows of one length, so no padding and no
    gathering is needed at all (the best on CPUs, where a bucket costs one more small
    attention call but copying rows costs memory bandwidth); above 0 (GPUs, where many small
    calls cost more than copies) windows share a bucket while the attention work padding
    adds is within that fraction of their linear work, weighed by `linear_cost` (2H + I)."""
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching={batching!r}; choose one of {BATCHING_MODES}.")
    starts_l: list[int] = []
    ends_l: list[int] = []
    docs_l: list[int] = []
    offset = 0
    all_ids = np.concatenate(piece_ids).astype("int64") if len(piece_ids) else np.zeros(0, dtype="int64")
    doc_windows = np.zeros(len(piece_ids), dtype="float32")
    for doc, (ids, spans) in enumerate(zip(piece_ids, doc_spans)):
        windows = span_windows(spans, window, stride) or [(0, 0)]
        for start, end in windows:
            starts_l.append(offset + start)
            ends_l.append(offset + end)
            docs_l.append(doc)
        doc_windows[doc] = len(windows)
        offset += len(ids)
    starts, ends, docs = (np.asarray(a, dtype="int64") for a in (starts_l, ends_l, docs_l))
    lengths = ends - starts
    order = np.argsort(-lengths, kind="stable")  # longest first
    starts, ends, docs, lengths = starts[order], ends[order], docs[order], lengths[order]
    counts = np.bincount(_ranges(starts, lengths), minlength=offset).astype("float32")
    batch = WindowBatch([], counts, doc_windows, [len(ids) for ids in piece_ids], n_layers)
    widths = lengths + 2
    i = 0
    while i < len(widths):
        if batching == "packed":
            # as many windows as fit in the budget of real positions (at least one)
            n = max(1, int(np.searchsorted(np.cumsum(widths[i:]), max_batch_pieces, side="right")))
        else:
            n = max(1, max_batch_pieces // int(widths[i]))
        sl = slice(i, i + n)
        if batching == "packed":
            chunk = _packed_chunk(all_ids, starts[sl], lengths[sl], docs[sl], cls_id, sep_id, linear_cost, padding_tolerance)
        else:
            chunk = _padded_chunk(all_ids, starts[sl], lengths[sl], docs[sl], cls_id, sep_id, pad_id)
        batch.chunks.append(chunk)
        i += n
    return batch


def _packed_chunk(
    all_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, docs: np.ndarray,
    cls_id: int, sep_id: int, linear_cost: float, padding_tolerance: float,
) -> Chunk:  # fmt: skip
    widths = lengths + 2
    total = int(widths.sum())
    first = np.cumsum(widths) - widths  # packed row of each window's [CLS]
    position_ids = np.arange(total, dtype="int64") - np.repeat(first, widths)
    source = _ranges(first + 1, lengths)
    input_ids = np.empty(total, dtype="int64")
    input_ids[first] = cls_id
    input_ids[first + widths - 1] = sep_id
    input_ids[source] = all_ids[_ranges(starts, lengths)]
    buckets = []
    w0 = 0
    for run in attention_buckets(widths.tolist(), linear_cost, padding_tolerance):
        w = widths[w0 : w0 + run]
        width = int(w[0])
        if (w == width).all():
            buckets.append(((int(first[w0]), run, width), None, None))
        else:
            grid = np.arange(width, dtype="int64")[None, :]
            mask = grid < w[:, None]
            # padded slots read the window's [CLS] row: finite values that the mask hides
            gather = np.where(mask, first[w0 : w0 + run, None] + grid, first[w0 : w0 + run, None])
            buckets.append((gather, mask, np.flatnonzero(mask.ravel())))
        w0 += run
    return Chunk(input_ids, source, _ranges(starts, lengths), first, docs, position_ids=position_ids, buckets=buckets)


def _padded_chunk(
    all_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, docs: np.ndarray, cls_id: int, sep_id: int, pad_id: int
) -> Chunk:
    n, width = len(lengths), int(lengths[0]) + 2
    grid = np.arange(width, dtype="int64")[None, :]
    mask = (grid < (lengths + 2)[:, None]).astype("int64")
    input_ids = np.full((n, width), pad_id, dtype="int64")
    input_ids[:, 0] = cls_id
    input_ids[np.arange(n), lengths + 1] = sep_id
    rows = np.arange(n, dtype="int64") * width
    source = _ranges(rows + 1, lengths)
    input_ids.reshape(-1)[source] = all_ids[_ranges(starts, lengths)]
    return Chunk(input_ids, source, _ranges(starts, lengths), rows, docs, attention_mask=mask)


class WindowedEncoder(nn.Module):
    """`AlbertModel` (without pooler) over window chunks, scattered back to pieces.

    `precision` picks autocast: "float32" (none), "bfloat16" (CPU or GPU) or "float16" (GPU,
    used with a gradient scaler). Outputs are always float32. `quantize` ("int8" or None)
    records whether the linear layers are dynamically quantized for CPU inference (done when
    the weights load: see `spacy_albert.layers.quantize`). `torch_compile` compiles the position-wise blocks
    (attention output and feed-forward) with `torch.compile` on first use.
    """

    def __init__(
        self,
        config: AlbertConfig,
        precision: str = "float32",
        *,
        quantize: Optional[str] = None,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.precision = precision
        self.quantize = quantize
        self.torch_compile = torch_compile
        self._compiled: dict[str, Callable] = {}

    @property
    def config(self) -> AlbertConfig:
        return self.albert.config

    @property
    def quantized(self) -> bool:
        """Whether the linear layers have been replaced by int8 dynamically quantized ones."""
        return _is_quantized_linear(self.albert.encoder.embedding_hidden_mapping_in)

    def forward(self, batch: WindowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [n_layers, n_pieces, width] of all pieces of the batch, and each
        doc's [CLS] states [n_layers, n_docs, width] (averaged over its windows)."""
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
                    states = self._packed_states(t["input_ids"], t["position_ids"], t["buckets"], n_layers)
                else:
                    if chunk.packed:  # relative position embeddings: the model's own padded path
                        t = _unpack(chunk).tensors(device)
                    states = self._padded_states(t["input_ids"], t["attention_mask"], n_layers)
                out.index_add_(1, t["target"], states[:, t["source"]].float())
                cls.index_add_(1, t["window_doc"], states[:, t["cls_rows"]].float())
        if batch.overlapping:
            out = out / counts.clamp(min=1).view(1, -1, 1)
        return out, cls / doc_windows.view(1, -1, 1)

    def _padded_states(self, ids: torch.Tensor, mask: torch.Tensor, n_layers: int) -> torch.Tensor:
        result = self.albert(ids, attention_mask=mask, output_hidden_states=n_layers > 1)
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
        buckets: list[tuple[Any, Optional[torch.Tensor], Optional[torch.Tensor]]],
        n_layers: int,
    ) -> torch.Tensor:
        """The last `n_layers` hidden states [n_layers, n_positions, width] of packed windows;
        the same computation as `AlbertModel`, on real positions only."""
        albert, config = self.albert, self.config
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= config.vocab_size):
            albert._check_inputs(ids[None], None, None, 1)  # raises the model's clear error
        emb = albert.embeddings
        x = emb.word_embeddings(ids) + emb.token_type_embeddings.weight[0]
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


def _unpack(chunk: Chunk) -> Chunk:
    """The padded chunk holding the same windows as a packed one."""
    first = chunk.cls_rows
    widths = np.diff(np.append(first, chunk.input_ids.size))
    n, width = len(widths), int(widths.max()) if len(widths) else 2
    grid = np.arange(width, dtype="int64")[None, :]
    mask = grid < widths[:, None]
    input_ids = np.zeros((n, width), dtype="int64")
    input_ids[mask] = chunk.input_ids
    rows = np.arange(n, dtype="int64") * width
    source = _ranges(rows + 1, widths - 2)
    return Chunk(input_ids, source, chunk.target, rows, chunk.window_doc, attention_mask=mask.astype("int64"))
