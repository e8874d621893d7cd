"""Piece-to-token alignment: hand-checked cases and properties over random Unicode texts."""

from __future__ import annotations

import numpy as np
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc

from spacy_albert import AlbertTokenizerFast
from spacy_albert.tokenization.alignment import align_pieces, trim_whitespace

NLP = spacy.blank("en")


@pytest.fixture(scope="module")
def tokenizer(spm_dir):
    return AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model"))


def align(tokenizer, doc):
    enc = tokenizer(doc.text, return_offsets_mapping=True, add_special_tokens=False)
    offsets = np.asarray(enc["offset_mapping"], dtype="int64").reshape(-1, 2)
    starts = np.array([t.idx for t in doc], dtype="int64")
    ends = starts + np.array([len(t) for t in doc], dtype="int64")
    return enc.tokens(), offsets, align_pieces(doc.text, offsets, starts, ends)


def test_metaspace_offsets_do_not_leak_into_the_next_word(tokenizer):
    doc = NLP("Hello world, again")
    pieces, offsets, alignment = align(tokenizer, doc)
    by_token = {t.text: [pieces[i] for i in alignment.pieces_of(t.i)] for t in doc}
    # The piece of "world" starts with "▁" and its raw span includes the space before it,
    # but "Hello" must not get it.
    assert all("world" not in p for p in by_token["Hello"])
    assert "".join(by_token["world"]).replace("▁", "") == "world"
    assert by_token[","] == [","]


def test_words_own_the_pieces_the_reference_word_ids_give_them(tokenizer, spm_dir):
    # A bare "▁" split off a word (" ," -> "▁" ",") belongs to that word, as in transformers'
    # word_ids(): its NER label goes on the "▁" piece, so `pooling = "first"` must pick it.
    hf = pytest.importorskip("transformers")
    reference = hf.AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model"))
    sentences = [
        ["I", "love", "and", "hate", "today", ",", "I", "swear", "."],
        ["#Huawei", "-", "launched", "its", "phablet", ",", "in", "China", "at", "...", "http://t.co/Ku3j"],
        [",", "starts", "with", "a", "comma", "!", "?", "(", "odd", ")", "naïve", "CAFÉ"],
    ]
    bare = 0
    for words in sentences:
        doc = Doc(NLP.vocab, words=words)
        pieces, _, alignment = align(tokenizer, doc)
        word_ids = reference(words, is_split_into_words=True, add_special_tokens=False).word_ids()
        expected = [[j for j, w in enumerate(word_ids) if w == i] for i in range(len(words))]
        assert [alignment.pieces_of(i).tolist() for i in range(len(words))] == expected, (words, pieces)
        bare += pieces.count("▁")
    assert bare >= 3  # the case this test is about occurs


def test_lowercase_accents_digits_and_whitespace_tokens(tokenizer):
    doc = NLP("Zürich  CAFÉ paid 1,000,000 \t for naïve art")
    pieces, _, alignment = align(tokenizer, doc)
    joined = {t.text: "".join(pieces[i] for i in alignment.pieces_of(t.i)).replace("▁", "") for t in doc}
    assert joined["Zürich"] == "zurich" and joined["CAFÉ"] == "cafe" and joined["naïve"] == "naive"
    assert joined["1,000,000"] == "1,000,000"
    whitespace = [t for t in doc if t.is_space]
    assert whitespace and all(alignment.lengths[t.i] == 0 for t in whitespace)


def test_piece_covering_several_tokens_is_shared(tokenizer):
    # One spaCy token per character: multi-character pieces span several tokens.
    text = "the people"
    doc = Doc(NLP.vocab, words=list(text.replace(" ", "")), spaces=[False, False, True] + [False] * 6)
    pieces, offsets, alignment = align(tokenizer, doc)
    shared = [p for p in range(len(pieces)) if (alignment.indices == p).sum() > 1]
    assert shared, pieces
    for p in shared:
        for t in doc:
            if p in alignment.pieces_of(t.i):
                assert offsets[p][0] <= t.idx + len(t) and t.idx < offsets[p][1]


def test_unknown_pieces_and_dropped_characters_still_align(tokenizer):
    doc = Doc(NLP.vocab, words=["ab", "\u0301", "c", "ᚠᛇᚻ"], spaces=[False, True, True, False])
    pieces, _, alignment = align(tokenizer, doc)
    assert tokenizer.unk_token_id in tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    assert all(alignment.lengths > 0)  # the lone combining accent takes the piece before it


def test_trim_whitespace():
    starts, ends = trim_whitespace("  ab  c ", np.array([0, 1, 4, 7]), np.array([4, 2, 7, 8]))
    assert starts.tolist() == [2, 1, 6, 7] and ends.tolist() == [4, 1, 7, 7]


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=60
)


@st.composite
def random_docs(draw):
    """A text and a random tokenization of it: random cut points, whitespace kept as tokens
    where spaCy would (runs of spaces beyond one become tokens)."""
    text = draw(TEXT)
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(text), 0)), max_size=12))) | {0, len(text)})
    words = [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    return Doc(NLP.vocab, words=words, spaces=[False] * len(words)) if words else Doc(NLP.vocab, words=[])


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=random_docs())
def test_alignment_properties(tokenizer, doc):
    pieces, offsets, alignment = align(tokenizer, doc)
    assert len(alignment.lengths) == len(doc)
    assert alignment.lengths.sum() == len(alignment.indices)
    assert ((alignment.indices >= 0) & (alignment.indices < max(len(pieces), 1))).all()
    starts, ends = trim_whitespace(doc.text, offsets[:, 0], offsets[:, 1])
    for token in doc:
        own = alignment.pieces_of(token.i)
        assert list(own) == sorted(own), "pieces in order"
        # Every piece a token gets overlaps it (after trimming the piece's whitespace; a piece
        # of whitespace only overlaps nothing), except a bare "▁" right before one that does,
        # and the nearest-piece fallback for characters the normalizer dropped.
        def overlaps(p: int) -> bool:
            return starts[p] < ends[p] and starts[p] < token.idx + len(token) and token.idx < ends[p]

        def starts_word(p: int) -> bool:
            return starts[p] >= ends[p] and p + 1 in own and overlaps(p + 1)

        if not all(overlaps(p) or starts_word(p) for p in own):
            assert len(own) == 1 and not any(overlaps(p) for p in range(len(pieces))), (
                [t.text for t in doc], token.i, own.tolist(), offsets.tolist(), pieces)  # fmt: skip
        # A token with some non-whitespace character gets at least one piece.
        if token.text.strip() and len(pieces):
            assert len(own) >= 1, (token.text, pieces)
