"""Token-to-piece alignments for `spacy-albert.TransformerModel.v1`, in the layout of
spacy-transformers (`FullTransformerBatch.align`).

The two ways of aligning one span's pieces to its tokens (`ALIGNMENT_MODES`: "albert", equal
to transformers' `word_ids()`, and "spacy-transformers", that package's own, Metaspace offset
trap included) live with the package's alignment in `spacy_albert.tokenization.alignment`.

`batch_alignment` turns per-span alignments into spacy-transformers' batch alignment: for each
token of the batch's docs, in order, the sorted union of its pieces' positions in the padded
[n_spans, length] piece grid ([CLS] at position 0 of each span).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tokenization.alignment import (
    ALIGNMENT_MODES,
    Alignment,
    alignment_from_pairs,
    align_span,
    check_alignment_mode,
    spacy_transformers_alignment,
)


def batch_alignment(
    span_alignments: Sequence[Alignment],
    span_first_tokens: Sequence[int],
    n_tokens: int,
    length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """spacy-transformers' batch alignment (indices, lengths) from each span's alignment.

    Span i covers the batch tokens `span_first_tokens[i]` .. + its number of tokens; its
    piece j sits at position i * `length` + j + 1 of the padded grid (after [CLS]); pieces at
    or beyond `length` (truncated) are dropped. A token covered by several (overlapping)
    spans gets the sorted union of its pieces in each."""
    tokens, positions = [np.zeros(0, dtype="int64")], [np.zeros(0, dtype="int64")]
    for i, (alignment, first) in enumerate(zip(span_alignments, span_first_tokens)):
        lengths = alignment.lengths.astype("int64")
        pos = alignment.indices.astype("int64") + 1
        keep = pos < length
        tok = np.repeat(np.arange(len(lengths), dtype="int64") + first, lengths)
        tokens.append(tok[keep])
        positions.append(pos[keep] + i * length)
    flat = alignment_from_pairs(np.concatenate(tokens), np.concatenate(positions), n_tokens)
    return flat.indices, flat.lengths


__all__ = [
    "ALIGNMENT_MODES",
    "align_span",
    "batch_alignment",
    "check_alignment_mode",
    "spacy_transformers_alignment",
]
