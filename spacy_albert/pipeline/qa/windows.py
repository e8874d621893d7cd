"""Question/context windows of `albert_qa` (the reference's ``truncation="only_second"`` with
``return_overflowing_tokens=True``) and their training target positions. The component hands
the windows to its model as `PieceSequences` (packed, no padding: see `component.qa_inputs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple


@dataclass
class Encoded:
    """Pieces of one text (no special tokens): ids, character offsets and word ids."""

    ids: List[int]
    offsets: List[Tuple[int, int]]
    words: List[Optional[int]]

    @classmethod
    def of(cls, backend: Any, text: str) -> "Encoded":
        enc = backend.encode(text, add_special_tokens=False)
        return cls(list(enc.ids), [tuple(o) for o in enc.offsets], list(enc.word_ids))


@dataclass
class Window:
    """``[CLS] question [SEP] context[start:end] [SEP]``; context pieces begin at ``offset``."""

    input_ids: List[int]
    token_type_ids: List[int]
    offset: int
    start: int
    end: int
    question: Encoded


@dataclass
class QASettings:
    top_k: int = 1
    max_answer_len: int = 15
    max_seq_len: int = 384
    doc_stride: int = 128
    max_question_len: int = 64
    handle_impossible_answer: bool = False
    null_score_threshold: float = 0.0

    def validate(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k parameter should be >= 1 (got {self.top_k})")
        if self.max_answer_len < 1:
            raise ValueError(f"max_answer_len parameter should be >= 1 (got {self.max_answer_len})")
        if self.max_seq_len < 4:
            raise ValueError(f"max_seq_len ({self.max_seq_len}) must leave room for 3 special pieces and context")
        if self.doc_stride < 0 or self.doc_stride > self.max_seq_len:
            raise ValueError(f"`doc_stride` ({self.doc_stride}) is larger than `max_seq_len` ({self.max_seq_len})")
        if self.max_question_len < 1:
            raise ValueError(f"max_question_len ({self.max_question_len}) must be >= 1")


def window_ranges(n_context: int, room: int, stride: int) -> List[Tuple[int, int]]:
    """Context piece ranges as `tokenizers`' `Encoding.truncate` (direction right) makes them:
    windows of `room` pieces, each starting `room - stride` pieces after the previous one,
    until one reaches the end. A stride that leaves no progress (the reference fails there) is
    cut to half the room."""
    if n_context <= room:
        return [(0, n_context)]
    if stride >= room:
        stride = room // 2
    ranges = []
    for start in range(0, n_context, room - stride):
        stop = min(start + room, n_context)
        ranges.append((start, stop))
        if stop == n_context:
            break
    return ranges


def make_qa_windows(
    question: Encoded, context: Encoded, settings: QASettings, *, cls_id: int, sep_id: int, max_positions: int
) -> List[Window]:
    max_seq_len = min(settings.max_seq_len, max_positions)
    n = min(settings.max_question_len, max_seq_len - 4)
    question = Encoded(question.ids[:n], question.offsets[:n], question.words[:n])
    head = [cls_id, *question.ids, sep_id]
    room = max_seq_len - len(head) - 1
    windows = []
    for start, end in window_ranges(len(context.ids), room, settings.doc_stride):
        ids = head + context.ids[start:end] + [sep_id]
        types = [0] * len(head) + [1] * (end - start + 1)
        windows.append(Window(ids, types, len(head), start, end, question))
    return windows


def target_positions(context: Encoded, window: Window, answer: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """Start and end positions of an answer's pieces in a window (transformers' `run_qa.py`):
    the [CLS] piece (0, 0) when there is no answer or it is not wholly inside the window."""
    first, last = window.start, window.end - 1
    offsets = context.offsets
    if answer is None or last < first:
        return 0, 0
    start_char, end_char = answer
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return 0, 0
    i = first
    while i <= last and offsets[i][0] <= start_char:
        i += 1
    j = last
    while j >= first and offsets[j][1] >= end_char:
        j -= 1
    return window.offset + (i - 1 - first), window.offset + (j + 1 - first)

