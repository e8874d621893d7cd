"""Run ALBERT over documents of any length: pieces are cut into windows that fit the model
(each with [CLS] ... [SEP]), windows of similar length are batched together to cut padding,
and the states of pieces seen by several windows are averaged. No piece is dropped."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..models.configuration import AlbertConfig
from ..models.modeling_albert import AlbertModel


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


@dataclass
class WindowBatch:
    """Length-sorted chunks of windows, ready for the encoder.

    For chunk c: `input_ids[c]`/`attention_mask[c]` are [n_windows, length] and the pieces of
    its windows sit at flat positions `source[c]` and belong at rows `target[c]` of the
    concatenated pieces of all docs. `counts` is how many windows saw each piece; row r of
    chunk c is a window of doc `window_doc[c][r]`, and `doc_windows` counts each doc's windows
    (every doc has at least one: an empty doc is encoded as "[CLS] [SEP]").
    """

    input_ids: list[np.ndarray]
    attention_mask: list[np.ndarray]
    source: list[np.ndarray]
    target: list[np.ndarray]
    window_doc: list[np.ndarray]
    counts: np.ndarray
    doc_windows: np.ndarray
    doc_lengths: list[int]
    n_layers: int = 1


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
) -> WindowBatch:
    """Cut each doc's pieces into windows over its spans and group them by length."""
    items: list[tuple[int, int, int, int]] = []  # (length, start, end, doc), start/end over all docs
    offset = 0
    all_ids = np.concatenate(piece_ids) if piece_ids else np.zeros(0, dtype="int64")
    doc_windows = np.zeros(len(piece_ids), dtype="float32")
    for doc, (ids, spans) in enumerate(zip(piece_ids, doc_spans)):
        windows = span_windows(spans, window, stride) or [(0, 0)]
        for start, end in windows:
            items.append((end - start, offset + start, offset + end, doc))
        doc_windows[doc] = len(windows)
        offset += len(ids)
    counts = np.zeros(offset, dtype="float32")
    items.sort(key=lambda item: item[0], reverse=True)
    lengths = [len(ids) for ids in piece_ids]
    batch = WindowBatch([], [], [], [], [], counts, doc_windows, lengths, n_layers)
    i = 0
    while i < len(items):
        width = items[i][0] + 2
        n = max(1, max_batch_pieces // width)
        chunk = items[i : i + n]
        i += n
        ids = np.full((len(chunk), width), pad_id, dtype="int64")
        mask = np.zeros((len(chunk), width), dtype="int64")
        sources, targets = [], []
        for row, (length, start, end, _) in enumerate(chunk):
            ids[row, 0] = cls_id
            ids[row, 1 : length + 1] = all_ids[start:end]
            ids[row, length + 1] = sep_id
            mask[row, : length + 2] = 1
            sources.append(row * width + 1 + np.arange(length))
            targets.append(np.arange(start, end))
            counts[start:end] += 1
        batch.input_ids.append(ids)
        batch.attention_mask.append(mask)
        batch.source.append(np.concatenate(sources).astype("int64"))
        batch.target.append(np.concatenate(targets).astype("int64"))
        batch.window_doc.append(np.array([item[3] for item in chunk], dtype="int64"))
    return batch


class WindowedEncoder(nn.Module):
    """`AlbertModel` (without pooler) over window chunks, scattered back to pieces.

    `precision` picks autocast: "float32" (none), "bfloat16" (CPU or GPU) or "float16" (GPU,
    used with a gradient scaler). Outputs are always float32.
    """

    def __init__(self, config: AlbertConfig, precision: str = "float32") -> None:
        super().__init__()
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.precision = precision

    @property
    def config(self) -> AlbertConfig:
        return self.albert.config

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "float32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)

    def forward(
        self,
        input_ids: list[torch.Tensor],
        attention_mask: list[torch.Tensor],
        source: list[torch.Tensor],
        target: list[torch.Tensor],
        window_doc: list[torch.Tensor],
        counts: torch.Tensor,
        doc_windows: torch.Tensor,
        n_layers: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [n_layers, n_pieces, width] of all pieces of the batch, and each
        doc's [CLS] states [n_layers, n_docs, width] (averaged over its windows)."""
        width = self.config.hidden_size
        out = counts.new_zeros((n_layers, counts.shape[0], width))
        cls = counts.new_zeros((n_layers, doc_windows.shape[0], width))
        with self._autocast(counts.device):
            for ids, mask, src, tgt, docs in zip(input_ids, attention_mask, source, target, window_doc):
                result = self.albert(ids, attention_mask=mask, output_hidden_states=n_layers > 1)
                if n_layers > 1:
                    states = torch.stack(result.hidden_states[-n_layers:])
                else:
                    states = result.last_hidden_state.unsqueeze(0)
                flat = states.reshape(n_layers, -1, width)[:, src].float()
                out = out.index_add(1, tgt, flat)
                cls = cls.index_add(1, docs, states[:, :, 0].float())
        return out / counts.clamp(min=1).view(1, -1, 1), cls / doc_windows.view(1, -1, 1)
