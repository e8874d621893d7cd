"""Windows over pieces, batched for the ALBERT encoder.

`make_windows` cuts documents' pieces into windows that fit the model (each with [CLS] ...
[SEP]); `make_sequence_batch` takes sequences that already carry their special pieces and
token types (question + context, prompt + choice, masked text). Either way the windows are
sorted by length and grouped into `Chunk`s, in one of two layouts (`batching`):

* "packed" (default): padding-free. The windows of a chunk are concatenated into one
  sequence of positions, so the embeddings and every linear layer run on real positions
  only; attention runs per bucket of windows (see `attention_buckets`). A bucket whose
  windows all have one length is a contiguous run of packed rows (no padding, no copies).
* "padded": windows padded to the longest of their chunk, run through `AlbertModel` as one
  [n_windows, length] batch (the reference path, and the one for relative positions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

BATCHING_MODES = ("packed", "padded")
# A window joins the current attention bucket (and is padded to its width) while the extra
# attention work is at most this fraction of the window's own linear-layer work. 0 gives
# buckets of one length (no padding, no copies: the best on CPUs); GPUs prefer fewer, larger
# attention calls. The encoder's `attention_padding` setting chooses (see AlbertTransformer.v1).
ATTENTION_PADDING_TOLERANCE = 0.05


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
    Padded: `input_ids`/`attention_mask` are [n_windows, width]. `token_type_ids` (same
    shape as `input_ids`) is None for windows of one segment (all type 0).

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
    token_type_ids: Optional[np.ndarray] = None

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

    def arrays(self) -> list[Optional[np.ndarray]]:
        """The chunk's host arrays, in the order `from_tensors` reads them back."""
        arrays = [getattr(self, name) for name in _CHUNK_ARRAYS]
        for gather, mask, scatter in self.buckets:
            arrays += [gather if isinstance(gather, np.ndarray) else None, mask, scatter]
        return arrays

    def from_tensors(self, tensors: Iterator[Optional[torch.Tensor]]) -> dict[str, Any]:
        """The chunk's tensors by name (buckets' masks as [n_windows, 1, 1, width]), taken
        from `tensors`: its `arrays()` on a device, in their order."""
        out: dict[str, Any] = {name: next(tensors) for name in _CHUNK_ARRAYS}
        buckets = []
        for gather, _, _ in self.buckets:
            g, mask, scatter = next(tensors), next(tensors), next(tensors)
            buckets.append((gather if g is None else g, None if mask is None else mask[:, None, None, :], scatter))
        out["buckets"] = buckets
        return out

    def tensors(self, device: torch.device) -> dict[str, Any]:
        """The chunk's arrays on `device` (see `upload`)."""
        return self.from_tensors(iter(upload(self.arrays(), device)))


_CHUNK_ARRAYS = ("input_ids", "position_ids", "attention_mask", "token_type_ids", "source", "target", "cls_rows",
                 "window_doc")  # fmt: skip


def upload(arrays: Sequence[Optional[np.ndarray]], device: torch.device) -> list[Optional[torch.Tensor]]:
    """Host arrays (integer, bool or float; None stays None) on `device`, in one transfer per
    kind (one int64 buffer, one float32 buffer, then views): a copy from the host waits for
    the device's queue to drain, so a batch is uploaded at once, not array by array per chunk.
    Bool arrays come back bool, integer ones int64, float ones float32."""
    kinds = {"i": ("int64", torch.long), "f": ("float32", torch.float32)}
    kind_of = [None if a is None else "f" if a.dtype.kind == "f" else "i" for a in arrays]
    buffers = {}
    for kind, (dtype, _) in kinds.items():
        parts = [a.reshape(-1).astype(dtype, copy=False) for a, k in zip(arrays, kind_of) if k == kind]
        if parts:
            buffers[kind] = torch.from_numpy(np.concatenate(parts)).to(device)
    offsets = dict.fromkeys(kinds, 0)
    out: list[Optional[torch.Tensor]] = []
    for array, kind in zip(arrays, kind_of):
        if kind is None:
            out.append(None)
            continue
        start, offsets[kind] = offsets[kind], offsets[kind] + array.size
        view = buffers[kind][start : offsets[kind]].view(array.shape)
        out.append(view.bool() if array.dtype == bool else view)
    return out


def batch_tensors(
    chunks: Sequence[Chunk], extra: Sequence[np.ndarray], device: torch.device
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """Every chunk's tensors (as `Chunk.tensors`) and the `extra` arrays on `device`, in one
    upload for the whole batch."""
    arrays = list(extra) + [a for chunk in chunks for a in chunk.arrays()]
    tensors = iter(upload(arrays, device))
    extra_tensors = [next(tensors) for _ in extra]
    return [chunk.from_tensors(tensors) for chunk in chunks], extra_tensors


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


def _packed_layout(
    widths: np.ndarray, linear_cost: float, padding_tolerance: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]]]:
    """For windows of `widths` (positions, specials included) packed one after the other:
    each window's first row, the position ids and the attention buckets."""
    total = int(widths.sum())
    first = np.cumsum(widths) - widths  # packed row of each window's [CLS]
    position_ids = np.arange(total, dtype="int64") - np.repeat(first, widths)
    buckets: list[tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]] = []
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
    return first, position_ids, buckets


def _packed_chunk(
    all_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, docs: np.ndarray,
    cls_id: int, sep_id: int, linear_cost: float, padding_tolerance: float,
) -> Chunk:  # fmt: skip
    widths = lengths + 2
    first, position_ids, buckets = _packed_layout(widths, linear_cost, padding_tolerance)
    source = _ranges(first + 1, lengths)
    input_ids = np.empty(int(widths.sum()), dtype="int64")
    input_ids[first] = cls_id
    input_ids[first + widths - 1] = sep_id
    input_ids[source] = all_ids[_ranges(starts, lengths)]
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


def unpack_chunk(chunk: Chunk) -> Chunk:
    """The padded chunk holding the same windows as a packed one."""
    first = chunk.cls_rows
    widths = np.diff(np.append(first, chunk.input_ids.size))
    n, width = len(widths), int(widths.max()) if len(widths) else 2
    grid = np.arange(width, dtype="int64")[None, :]
    mask = grid < widths[:, None]
    input_ids = np.zeros((n, width), dtype="int64")
    input_ids[mask] = chunk.input_ids
    token_type_ids = None
    if chunk.token_type_ids is not None:
        token_type_ids = np.zeros((n, width), dtype="int64")
        token_type_ids[mask] = chunk.token_type_ids
    window = np.searchsorted(first, chunk.source, side="right") - 1  # the window of each packed row
    source = window * width + (chunk.source - first[window])
    rows = np.arange(n, dtype="int64") * width
    return Chunk(input_ids, source, chunk.target, rows, chunk.window_doc, attention_mask=mask.astype("int64"),
                 token_type_ids=token_type_ids)  # fmt: skip


def make_sequence_batch(
    sequences: Sequence[Sequence[int]],
    type_ids: Optional[Sequence[Sequence[int]]] = None,
    *,
    max_batch_pieces: int,
    pad_id: int = 0,
    batching: str = "packed",
    linear_cost: float = 4608.0,
    padding_tolerance: float = 0.0,
) -> WindowBatch:
    """Sequences that already hold their special pieces ([CLS] question [SEP] context [SEP],
    [CLS] prompt [SEP] choice [SEP], ...), one window each, with their token types (None:
    all 0), sorted by length and chunked as `make_windows` does. The encoder returns the
    states of every position in input order (sequence i at rows offset_i .. offset_i + len_i,
    its [CLS] included) and, as `cls`, each sequence's first position."""
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching={batching!r}; choose one of {BATCHING_MODES}.")
    arrays = [np.asarray(s, dtype="int64").reshape(-1) for s in sequences]
    if any(a.size == 0 for a in arrays):
        raise ValueError("make_sequence_batch: every sequence needs at least one piece (its [CLS]).")
    types = None if type_ids is None else [np.asarray(t, dtype="int64").reshape(-1) for t in type_ids]
    if types is not None and [t.size for t in types] != [a.size for a in arrays]:
        raise ValueError("make_sequence_batch: each sequence needs one token type per piece.")
    lengths = np.asarray([a.size for a in arrays], dtype="int64")
    offsets = np.cumsum(lengths) - lengths
    batch = WindowBatch([], np.ones(int(lengths.sum()), dtype="float32"), np.ones(len(arrays), dtype="float32"),
                        lengths.tolist())  # fmt: skip
    order = np.argsort(-lengths, kind="stable")
    i = 0
    while i < len(order):
        if batching == "packed":
            n = max(1, int(np.searchsorted(np.cumsum(lengths[order[i:]]), max_batch_pieces, side="right")))
        else:
            n = max(1, max_batch_pieces // int(lengths[order[i]]))
        members = order[i : i + n]
        widths = lengths[members]
        target = _ranges(offsets[members], widths)
        ids = np.concatenate([arrays[m] for m in members])
        chunk_types = None if types is None else np.concatenate([types[m] for m in members])
        if batching == "packed":
            first, position_ids, buckets = _packed_layout(widths, linear_cost, padding_tolerance)
            chunk = Chunk(ids, np.arange(ids.size, dtype="int64"), target, first, members.astype("int64"),
                          position_ids=position_ids, buckets=buckets, token_type_ids=chunk_types)  # fmt: skip
        else:
            width = int(widths.max())
            mask = np.arange(width)[None, :] < widths[:, None]
            padded = np.full((len(members), width), pad_id, dtype="int64")
            padded[mask] = ids
            padded_types = None
            if chunk_types is not None:
                padded_types = np.zeros((len(members), width), dtype="int64")
                padded_types[mask] = chunk_types
            rows = np.arange(len(members), dtype="int64") * width
            chunk = Chunk(padded, _ranges(rows, widths), target, rows, members.astype("int64"),
                          attention_mask=mask.astype("int64"), token_type_ids=padded_types)  # fmt: skip
        batch.chunks.append(chunk)
        i += n
    return batch
