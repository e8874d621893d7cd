"""Decoding of `albert_qa` logits into answers: transformers' `decode_spans`,
`select_starts_ends` and `postprocess`, op for op."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .extensions import Answer
from .windows import Encoded, QASettings, Window

def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    p_mask: np.ndarray,
    attention_mask: np.ndarray,
    min_null_score: float = 1000000,
    top_k: int = 1,
    handle_impossible_answer: bool = False,
    max_answer_len: int = 15,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _word_span(context: Encoded, window: Window, word: int) -> Optional[Tuple[int, int]]:
    """`Encoding.word_to_chars(word, sequence_index=1)` on the window's encoding: the pieces
    of `word` within the window (scanning while word ids do not exceed it)."""
    first = last = None
    for i in range(window.start, window.end):
        w = context.words[i]
        if w is not None and w > word:
            break
        if w == word:
            first = i if first is None else first
            last = i
    if first is None:
        return None
    return context.offsets[first][0], context.offsets[last][1]


def _char_indices(context: Encoded, window: Window, s: int, e: int) -> Tuple[int, int]:
    """The reference's `get_indices(enc, s, e, sequence_index=1, align_to_words=True)`: the
    words of pieces `s` and `e` (`token_to_word`, in their own sequence) mapped to characters
    of the context within the window (`word_to_chars`); the pieces' own offsets where that
    fails (special pieces)."""

    def piece(position: int) -> Tuple[Optional[int], Tuple[int, int]]:
        i = position - window.offset
        if 0 <= i < window.end - window.start:
            return context.words[window.start + i], context.offsets[window.start + i]
        i = position - 1
        if 0 <= i < len(window.question.ids):  # a [CLS] inside the question, as the reference allows
            return window.question.words[i], window.question.offsets[i]
        return None, (0, 0)

    (start_word, start_offsets), (end_word, end_offsets) = piece(s), piece(e)
    if start_word is not None and end_word is not None:
        first, last = _word_span(context, window, start_word), _word_span(context, window, end_word)
        if first is not None and last is not None:
            return first[0], last[1]
    return start_offsets[0], end_offsets[1]


def decode_answers(
    text: str,
    context: Encoded,
    windows: Sequence[Window],
    logits: Sequence[Tuple[np.ndarray, np.ndarray]],
    settings: QASettings,
    *,
    cls_id: int,
) -> List[Answer]:
    """The reference pipeline's answers for one question: `{"score", "start", "end", "answer"}`
    dicts, best first, at most `top_k`."""
    min_null_score = 1000000
    answers: List[Answer] = []
    for window, (start_logits, end_logits) in zip(windows, logits):
        ids = np.asarray(window.input_ids)
        p_mask = np.ones((1, len(ids)), dtype=np.int64)
        p_mask[0, window.offset : window.offset + window.end - window.start] = 0
        p_mask[0, ids == cls_id] = 0
        attention_mask = np.ones((1, len(ids)), dtype=np.int64)
        starts, ends, scores, min_null_score = select_starts_ends(
            np.asarray(start_logits, dtype=np.float32)[None],
            np.asarray(end_logits, dtype=np.float32)[None],
            p_mask,
            attention_mask,
            min_null_score,
            settings.top_k,
            settings.handle_impossible_answer,
            settings.max_answer_len,
        )
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = _char_indices(context, window, int(s), int(e))
            target = text[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if same:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if settings.handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    threshold = settings.null_score_threshold
    return sorted(answers, key=lambda a: a["score"] - (threshold if a["answer"] == "" else 0.0), reverse=True)[
        : settings.top_k
    ]

