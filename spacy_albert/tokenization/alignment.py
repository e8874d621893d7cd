"""Align SentencePiece pieces to spaCy tokens by character offsets over the whole text.

The fast tokenizer's offsets point into the original text, but a Metaspace piece such as
"▁word" carries the space before the word in its span. Each piece span is first trimmed of
whitespace, so a piece maps only to the tokens its characters overlap (never to the next
word). A bare "▁" piece (the word start SentencePiece split off, as in "▁" "," for " ,") goes
with the word it starts, the first token of the next piece, as the reference's `word_ids()`
have it. Everything is vectorised with numpy.

`alignment = "spacy-transformers"` (`ALIGNMENT_MODES`, `align_span`) instead reproduces
spacy-transformers' own `get_alignment_via_offset_mapping` exactly, for pipelines trained
with it: it maps every character of a token *and the character after it* to the token, so
with untrimmed Metaspace offsets each word also gets the next word's first piece ("This is so
much fun" aligns as [2, 2, 2, 2, 1]: the Metaspace offset trap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Alignment:
    """Token-to-piece alignment of one doc: token i owns
    `indices[offsets[i] : offsets[i] + lengths[i]]` (piece positions, in piece order)."""

    lengths: np.ndarray  # int32 [n_tokens]
    indices: np.ndarray  # int32 [sum(lengths)]

    def pieces_of(self, token_index: int) -> np.ndarray:
        start = int(self.lengths[:token_index].sum())
        return self.indices[start : start + int(self.lengths[token_index])]


_ASCII_SPACE = np.array([chr(c).isspace() for c in range(128)], dtype=bool)


def _whitespace_mask(text: str) -> np.ndarray:
    if not text:
        return np.zeros(0, dtype=bool)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    ascii_ws = np.where(codes < 128, _ASCII_SPACE[np.minimum(codes, 127)], False)
    if (codes >= 128).any():  # rare non-ASCII whitespace (NBSP, ideographic space, ...)
        wide = np.flatnonzero(codes >= 128)
        ascii_ws[wide] = [chr(c).isspace() for c in codes[wide]]
    return ascii_ws


def trim_whitespace(text: str, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each [start, end) span to its first and last non-whitespace character.

    A span of only whitespace becomes empty (start == end)."""
    ws = _whitespace_mask(text)
    n = len(ws)
    non_ws = np.flatnonzero(~ws)
    if len(starts) == 0 or len(non_ws) == 0:
        return starts, starts.copy()
    # First non-whitespace position >= start; last one < end.
    first = np.searchsorted(non_ws, starts, side="left")
    new_starts = np.where(first < len(non_ws), non_ws[np.minimum(first, len(non_ws) - 1)], n)
    last = np.searchsorted(non_ws, ends, side="left") - 1
    new_ends = np.where(last >= 0, non_ws[np.maximum(last, 0)] + 1, 0)
    empty = new_starts >= new_ends
    new_starts = np.where(empty, starts, new_starts)
    new_ends = np.where(empty, starts, new_ends)
    return new_starts.astype("int64"), new_ends.astype("int64")


def _orphan_tokens(
    text: str, token_starts: np.ndarray, token_ends: np.ndarray, token_ids: np.ndarray, n_tokens: int
) -> np.ndarray:
    """Tokens with some non-whitespace character but no overlapping piece."""
    has_piece = np.zeros(n_tokens, dtype=bool)
    has_piece[token_ids] = True
    if has_piece.all():
        return np.zeros(0, dtype="int64")
    non_ws = np.concatenate([[0], np.cumsum(~_whitespace_mask(text))])
    has_text = non_ws[token_ends] > non_ws[token_starts]
    return np.flatnonzero(~has_piece & has_text)


def align_pieces(
    text: str,
    piece_offsets: np.ndarray,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
) -> Alignment:
    """Map spaCy tokens (character spans, sorted, non-overlapping) to the pieces overlapping them.

    `piece_offsets` is an int array [n_pieces, 2] of character spans into `text` (special
    tokens excluded). A piece covering several tokens is listed under each of them; a token
    with no overlapping piece (whitespace, or characters the normalizer dropped) gets none.
    """
    n_tokens = len(token_starts)
    offsets = np.asarray(piece_offsets, dtype="int64").reshape(-1, 2)
    starts, ends = trim_whitespace(text, offsets[:, 0], offsets[:, 1])
    token_starts = np.asarray(token_starts, dtype="int64")
    token_ends = np.asarray(token_ends, dtype="int64")
    # Piece p overlaps tokens t with token_ends[t] > starts[p] and token_starts[t] < ends[p].
    first = np.searchsorted(token_ends, starts, side="right")
    stop = np.searchsorted(token_starts, ends, side="left")
    counts = np.where(ends > starts, np.maximum(stop - first, 0), 0)
    piece_ids = np.repeat(np.arange(len(offsets)), counts)
    # Token ids: first[p], first[p] + 1, ... for each piece.
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    token_ids = np.repeat(first, counts) + within
    # A bare "▁" piece (empty after trimming) followed by a piece with text starts that word.
    bare = np.flatnonzero((ends[:-1] <= starts[:-1]) & (counts[1:] > 0))
    piece_ids = np.concatenate([piece_ids, bare])
    token_ids = np.concatenate([token_ids, first[bare + 1]])
    orphans = _orphan_tokens(text, token_starts, token_ends, token_ids, n_tokens)
    if len(orphans) and len(offsets):
        # Characters the normalizer dropped (e.g. a lone combining accent): such a token
        # takes the nearest piece before it (or the first piece), so no token is left out.
        nearest = np.searchsorted(offsets[:, 0], token_starts[orphans], side="right") - 1
        piece_ids = np.concatenate([piece_ids, np.clip(nearest, 0, len(offsets) - 1)])
        token_ids = np.concatenate([token_ids, orphans])
    order = np.lexsort((piece_ids, token_ids))
    lengths = np.bincount(token_ids, minlength=n_tokens).astype("int32")
    return Alignment(lengths=lengths, indices=piece_ids[order].astype("int32"))


ALIGNMENT_MODES = ("albert", "spacy-transformers")


def check_alignment_mode(mode: str, setting: str = "alignment") -> str:
    if mode not in ALIGNMENT_MODES:
        raise ValueError(f"{setting}={mode!r}; choose one of {ALIGNMENT_MODES}.")
    return mode


def alignment_from_pairs(token_ids: np.ndarray, piece_ids: np.ndarray, n_tokens: int) -> Alignment:
    """Unique (token, piece) pairs, sorted, as an `Alignment`."""
    n_pieces = int(piece_ids.max()) + 1 if len(piece_ids) else 1
    keys = np.unique(token_ids.astype("int64") * n_pieces + piece_ids.astype("int64"))
    lengths = np.bincount(keys // n_pieces, minlength=n_tokens).astype("int32")
    return Alignment(lengths=lengths, indices=(keys % n_pieces).astype("int32"))


def spacy_transformers_alignment(
    text_length: int, piece_offsets: np.ndarray, token_starts: np.ndarray, token_ends: np.ndarray
) -> Alignment:
    """spacy-transformers' alignment of one span (`get_span2wp_from_offset_mapping`):
    character c belongs to the last token t with start_t <= c <= end_t (a token's span plus
    the one character after it), and piece p to the tokens of the characters in its offsets.
    Offsets, starts and ends are relative to the span's text (of `text_length` characters)."""
    token_starts = np.asarray(token_starts, dtype="int64")
    token_ends = np.asarray(token_ends, dtype="int64")
    n_tokens = len(token_starts)
    size = text_length + 1
    chars = np.arange(size, dtype="int64")
    owner = np.searchsorted(token_starts, chars, side="right") - 1
    if n_tokens:
        owner = np.where((owner >= 0) & (chars <= token_ends[np.maximum(owner, 0)]), owner, -1)
    offsets = np.asarray(piece_offsets, dtype="int64").reshape(-1, 2)
    starts = np.clip(offsets[:, 0], 0, size)
    lengths = np.maximum(np.clip(offsets[:, 1], 0, size) - starts, 0)
    total = int(lengths.sum())
    piece = np.repeat(np.arange(len(offsets), dtype="int64"), lengths)
    char = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total, dtype="int64")
    token = owner[char] if total else np.zeros(0, dtype="int64")
    keep = token >= 0
    return alignment_from_pairs(token[keep], piece[keep], n_tokens)


def align_span(
    mode: str, text: str, piece_offsets: np.ndarray, token_starts: np.ndarray, token_ends: np.ndarray
) -> Alignment:
    """One span's (or doc's) alignment in `mode`; offsets and token spans index `text`."""
    if mode == "albert":
        return align_pieces(text, piece_offsets, token_starts, token_ends)
    return spacy_transformers_alignment(len(text), piece_offsets, token_starts, token_ends)
