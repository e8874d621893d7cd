"""Sentence-order-prediction instances: ``[CLS] A [SEP] B [SEP]`` from consecutive segments.

Following the reference ``create_instances_from_document``: sentences of a document are
gathered until they fill a target length (``max_seq_length - 3``, or with probability
``short_seq_prob`` a random shorter one), the chunk is cut at a random sentence boundary into
segments A and B, and half of the pairs are swapped (label 1 = swapped, 0 = in order, the
``sentence_order_label`` convention). A chunk of one sentence is cut at a word boundary in its
middle; a too-long pair is trimmed from the longer side, at a random end.

Instances are built once, deterministically from a seed; masking is applied per step (see
`masking.py`), so each epoch sees fresh masks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, List, Sequence

import numpy as np

from .corpus import Document


@dataclass(frozen=True)
class Instance:
    input_ids: np.ndarray  # int32, with [CLS]/[SEP]
    n_first: int  # pieces of [CLS] A [SEP]: token type 0; the rest is type 1
    sentence_order_label: int


def _truncate_pair(a: List[int], b: List[int], max_pieces: int, rng: random.Random) -> None:
    while len(a) + len(b) > max_pieces:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _split_one(pieces: List[int], word_starts: np.ndarray, rng: random.Random) -> tuple[List[int], List[int]]:
    """Cut a one-sentence chunk at a word boundary near its middle."""
    starts = [i for i in range(1, len(pieces)) if word_starts[pieces[i]]] or list(range(1, len(pieces)))
    middle = len(pieces) / 2
    best = min(abs(s - middle) for s in starts)
    cut = rng.choice([s for s in starts if abs(s - middle) <= best + 2])
    return pieces[:cut], pieces[cut:]


def document_instances(
    sentences: Sequence[List[int]],
    *,
    max_seq_length: int,
    short_seq_prob: float,
    cls_id: int,
    sep_id: int,
    word_starts: np.ndarray,
    rng: random.Random,
) -> List[Instance]:
    """The SOP instances of one tokenized document."""
    max_pieces = max_seq_length - 3
    # Sentences longer than a whole instance are cut into instance-sized parts first.
    parts = [s[i : i + max_pieces] for s in sentences if s for i in range(0, len(s), max_pieces)]
    instances: List[Instance] = []
    target = rng.randint(2, max_pieces) if rng.random() < short_seq_prob else max_pieces
    chunk: List[List[int]] = []
    length = 0
    for i, part in enumerate(parts):
        chunk.append(part)
        length += len(part)
        if i + 1 < len(parts) and length < target:
            continue
        if len(chunk) >= 2:
            a_end = rng.randint(1, len(chunk) - 1)
            a = [p for s in chunk[:a_end] for p in s]
            b = [p for s in chunk[a_end:] for p in s]
        elif len(chunk[0]) >= 2:
            a, b = _split_one(chunk[0], word_starts, rng)
        else:
            a = b = []
        if a and b:
            label = int(rng.random() < 0.5)
            if label:
                a, b = b, a
            _truncate_pair(a, b, max_pieces, rng)
            ids = np.array([cls_id, *a, sep_id, *b, sep_id], dtype=np.int32)
            instances.append(Instance(ids, len(a) + 2, label))
        chunk, length = [], 0
        target = rng.randint(2, max_pieces) if rng.random() < short_seq_prob else max_pieces
    return instances


def build_instances(
    documents: Iterable[Document],
    tokenizer: object,
    *,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    seed: int = 0,
    batch_documents: int = 256,
) -> List[Instance]:
    """SOP instances of every document (sentences tokenized in batches with the fast tokenizer)."""
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length must be at least 5, got {max_seq_length}.")
    rng = random.Random(seed)
    word_starts = piece_starts_word(tokenizer)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    instances: List[Instance] = []
    pending: List[Document] = []

    def flush() -> None:
        flat = [s for doc in pending for s in doc]
        encoded = tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"] if flat else []
        offset = 0
        for doc in pending:
            ids = encoded[offset : offset + len(doc)]
            offset += len(doc)
            instances.extend(
                document_instances(
                    ids,
                    max_seq_length=max_seq_length,
                    short_seq_prob=short_seq_prob,
                    cls_id=cls_id,
                    sep_id=sep_id,
                    word_starts=word_starts,
                    rng=rng,
                )
            )
        pending.clear()

    for document in documents:
        pending.append(document)
        if len(pending) >= batch_documents:
            flush()
    flush()
    return instances


def piece_starts_word(tokenizer: object) -> np.ndarray:
    """Boolean lookup: does piece id i start a word (``▁`` prefix)?"""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([p.startswith("▁") for p in pieces], dtype=bool)


def special_ids(tokenizer: object) -> np.ndarray:
    """Boolean lookup of the pieces never masked: <pad>, [CLS], [SEP], [MASK] and the like."""
    special = np.zeros(len(tokenizer), dtype=bool)
    special[[i for i in tokenizer.all_special_ids if 0 <= i < len(special)]] = True
    return special
