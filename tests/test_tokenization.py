"""Parity of spacy_albert's tokenizers with transformers' AlbertTokenizer / AlbertTokenizerFast,
plus saving/loading, errors, the protobuf-free model reader and SentencePiece training."""

from __future__ import annotations

import json
import logging
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
from transformers import AlbertTokenizer as RefSlow  # noqa: E402
from transformers import AlbertTokenizerFast as RefFast  # noqa: E402

from spacy_albert.errors import CheckpointError  # noqa: E402
from spacy_albert.tokenization import (  # noqa: E402
    AlbertTokenizer,
    AlbertTokenizerFast,
    BatchEncoding,
    train_sentencepiece,
)
from spacy_albert.tokenization.spm_model import load_model_proto, parse_model_proto  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
pytestmark = pytest.mark.filterwarnings("ignore")

# --------------------------------------------------------------------------------------------
# Test inputs
# --------------------------------------------------------------------------------------------

FRAGMENTS = [
    "hello", "World", "the", "QUICK", "brown", "people", "government", "running", "unbelievable",
    "café", "naïve", "résumé", "Zürich", "Ångström", "jalapeño", "coöperate", "e\u0301", "n\u0303o",
    "東京", "北京大学", "日本語", "한국어", "Привет", "ΟΔΟΣ", "Σ", "ς", "İstanbul", "ß", "ﬁne", "Ｆｕｌｌ",
    "½", "①", "™", "😀", "👍🏽", "🎉", "👨\u200d👩\u200d👧", "❤️",
    "1,000", "1,000,000", "10,000", "9,9", "3,", "12,", "2024,", "0,5", "3.14", "$1,234.56", "1999", "42",
    "``", "''", "`", "'", '"', "``quoted''", "it's", "don't", "U.S.A.", "e-mail", "(x)", "[y]", "...", "!?",
    ",", ".", "[MASK]", "[CLS]", "[SEP]", "<unk>", "<pad>", "[mask]", "<UNK>", "[MASK][MASK]", "x[MASK]y",
    "[Mask]", " ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\ufeff", "\x00",
]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", "", " \n "]
HANDCRAFTED = [
    "", " ", "   ", "\t", "\n", " \t\n ", "\u3000", "a", "A", ".", ",",
    "Hello, world!", "  leading and trailing  ", "multiple   spaces   inside", "tabs\tand\nnewlines\r\nhere",
    "The price is $1,000,000.", "1,000", "9,9", "In 1999, 2000, and 2001, things changed.", "12,345,678 people",
    "``Quoted'' text", "`single` ''double''", "``''", "don't can't won't", "Ünïcödé àccénts façade",
    "東京は日本の首都です。", "中文测试", "😀😀 emoji 👍🏽 test 🎉", "ΟΔΟΣ ΟΔΟΣ οδος", "İstanbul İ", "Straße ß",
    "ﬁ ligature ﬂ", "ＦＵＬＬ ｗｉｄｔｈ", "x² ½ ①", "[MASK]", " [MASK] ", "a [MASK] b", "a[MASK]b", "[MASK][MASK]",
    "The [MASK] sat on the [MASK].", "[CLS] text [SEP] more [SEP]", "<unk> and <pad>", "<UNK> [mask] [Mask]",
    "  [MASK]   ", "\n[MASK]\n", "word\t[MASK]\tword", "[MASK]1,000", "[SEP]", "<pad><pad>",
    "e\u0301te\u0301", "\u200bzero\u200bwidth", "nbsp\u00a0space", "\ufeffbom", "control\x00char\x7f",
    "a" * 200, "word " * 150, "1,2,3,4,5,6,7,8,9", "3,14,15,92", "0,000,000,001", "about 12,345 people and 7, 8, 2019,",
]


def make_strings(n_random: int = 300, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    strings = list(HANDCRAFTED)
    for _ in range(n_random):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts += [rng.choice(FRAGMENTS), rng.choice(SEPARATORS)]
        strings.append("".join(parts))
    return strings


STRINGS = make_strings()
PAIRS = list(zip(STRINGS[::2], STRINGS[1::2]))

# name -> (which model, tokenizer settings)
SETTINGS = {
    "default": ("uncased", {}),
    "no_lower": ("uncased", {"do_lower_case": False}),
    "keep_accents": ("uncased", {"keep_accents": True}),
    "keep_space": ("uncased", {"remove_space": False}),
    "cased_model": ("cased", {"do_lower_case": False, "keep_accents": True}),
}


@dataclass
class Quad:
    ours_slow: AlbertTokenizer
    ref_slow: Any
    ours_fast: AlbertTokenizerFast
    ref_fast: Any

    def slow(self) -> tuple[AlbertTokenizer, Any]:
        return self.ours_slow, self.ref_slow

    def fast(self) -> tuple[AlbertTokenizerFast, Any]:
        return self.ours_fast, self.ref_fast

    def both(self) -> list[tuple[Any, Any]]:
        return [self.slow(), self.fast()]


@pytest.fixture(scope="module")
def quads(spm_dir: Path, spm_dir_cased: Path):
    cache: dict[str, Quad] = {}

    def get(name: str) -> Quad:
        if name not in cache:
            which, kwargs = SETTINGS[name]
            path = str((spm_dir if which == "uncased" else spm_dir_cased) / "spiece.model")
            cache[name] = Quad(
                AlbertTokenizer(path, **kwargs),
                RefSlow(path, model_max_length=512, **kwargs),
                AlbertTokenizerFast(path, **kwargs),
                RefFast(path, from_slow=True, model_max_length=512, **kwargs),
            )
        return cache[name]

    return get


@pytest.fixture(scope="module")
def quad(quads) -> Quad:
    return quads("default")


def plain(value: Any) -> Any:
    """Tensors/tuples -> nested lists, for comparing outputs."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return plain(value.tolist())  # ragged numpy batches are object arrays of arrays
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def outcome(function, *args, **kwargs) -> Any:
    """The result, or the type and message of the exception raised."""
    try:
        return plain(dict(function(*args, **kwargs)))
    except Exception as err:  # noqa: BLE001 - compared against the reference's behaviour
        return ("raised", type(err).__name__, str(err))


def raised(result: Any) -> bool:
    return isinstance(result, tuple) and result[0] == "raised"


def assert_same_encoding(ours: Any, ref: Any, context: Any) -> None:
    assert list(ours.keys()) == list(ref.keys()), context
    assert plain(dict(ours)) == plain(dict(ref)), context


# --------------------------------------------------------------------------------------------
# Parity: tokens, ids, masks
# --------------------------------------------------------------------------------------------


def test_input_set_is_large_and_varied():
    assert len(STRINGS) >= 300
    joined = "".join(STRINGS)
    for needle in ("[MASK]", "1,000", "``", "''", "\t", "\n", "東", "😀", "é", "  "):
        assert needle in joined
    assert "" in STRINGS and " \t\n " in STRINGS


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_slow_parity_single(quads, setting):
    ours, ref = quads(setting).slow()
    for text in STRINGS:
        assert ours.tokenize(text) == ref.tokenize(text), repr(text)
        kwargs = dict(return_special_tokens_mask=True, return_length=True)
        assert_same_encoding(ours(text, **kwargs), ref(text, **kwargs), repr(text))
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_fast_parity_single(quads, setting):
    ours, ref = quads(setting).fast()
    for text in STRINGS:
        assert ours.tokenize(text) == ref.tokenize(text), repr(text)
        kwargs = dict(return_special_tokens_mask=True, return_offsets_mapping=True, return_length=True)
        assert_same_encoding(ours(text, **kwargs), ref(text, **kwargs), repr(text))
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("setting", ["default", "no_lower", "cased_model"])
def test_pair_parity(quads, setting):
    for ours, ref in quads(setting).both():
        extra = {"return_offsets_mapping": True} if ours.is_fast else {}
        for text, pair in PAIRS:
            kwargs = dict(return_special_tokens_mask=True, **extra)
            assert_same_encoding(ours(text, pair, **kwargs), ref(text, pair, **kwargs), (text, pair))
        if ours.is_fast:
            assert ours.tokenize("a b", pair="c d", add_special_tokens=True) == ref.tokenize(
                "a b", pair="c d", add_special_tokens=True
            )


def test_without_special_tokens_and_flags(quad):
    for ours, ref in quad.both():
        for text, pair in PAIRS[:40]:
            for kwargs in (
                dict(add_special_tokens=False, return_special_tokens_mask=True),
                dict(return_token_type_ids=False, return_attention_mask=False),
                dict(add_special_tokens=False, return_length=True),
            ):
                assert outcome(ours, text, pair, **kwargs) == outcome(ref, text, pair, **kwargs), (text, kwargs)
    ours, ref = quad.slow()
    with pytest.raises(ValueError, match="token_type_ids"):
        ours("x", add_special_tokens=False, return_token_type_ids=True)
    assert outcome(ours, "x", add_special_tokens=False, return_token_type_ids=True)[:2] == outcome(
        ref, "x", add_special_tokens=False, return_token_type_ids=True
    )[:2]


def test_mask_token_in_text(quad):
    for ours, ref in quad.both():
        for text in ["The [MASK] sat.", "x[MASK]y", "  [MASK]  [MASK] ", "[MASK]", "[mask] [MASK]"]:
            ids = ours(text)["input_ids"]
            assert ids == ref(text)["input_ids"]
            assert ours.mask_token_id in ids
    ours, ref = quad.slow()
    tokens = ours.tokenize("a   [MASK] b")
    assert tokens == ref.tokenize("a   [MASK] b") and tokens.count("[MASK]") == 1


def test_number_comma_rule(quad):
    """Pieces ending in ``<digit>,`` exist in the test vocabulary and are split as the reference does."""
    ours, ref = quad.slow()
    vocab = ours.get_vocab()
    assert any(len(p) > 1 and p[-1] == "," and p[-2].isdigit() for p in vocab)
    for text in ["in 1999, 2000, 12, and 7,", "1,000,000 and 10,000", "a1, b2, 3,4,", "12,345 people"]:
        tokens = ours.tokenize(text)
        assert tokens == ref.tokenize(text)
        assert not any(len(t) > 1 and t[-1] == "," and t[-2].isdigit() for t in tokens)
        for fast in quad.fast():
            assert fast(text)["input_ids"] == quad.ref_fast(text)["input_ids"]


# --------------------------------------------------------------------------------------------
# Truncation and padding
# --------------------------------------------------------------------------------------------

TRUNCATIONS = [True, "longest_first", "only_first", "only_second", False, "do_not_truncate"]


@pytest.mark.parametrize("kind", ["slow", "fast"])
def test_truncation_parity(quad, kind):
    ours, ref = getattr(quad, kind)()
    singles = [s for s in STRINGS if s.strip()][:12]
    pairs = [(a, b) for a, b in PAIRS if a.strip() and b.strip()][:12]
    for truncation in TRUNCATIONS:
        for max_length in (1, 2, 3, 4, 6, 10, 32):
            for add_special_tokens in (True, False):
                kwargs = dict(truncation=truncation, max_length=max_length, add_special_tokens=add_special_tokens)
                for text in singles:
                    assert outcome(ours, text, **kwargs) == outcome(ref, text, **kwargs), (text, kwargs)
                for text, pair in pairs:
                    assert outcome(ours, text, pair, **kwargs) == outcome(ref, text, pair, **kwargs), (pair, kwargs)
    # max_length alone switches on longest_first truncation; truncation alone uses model_max_length.
    long_text = "word " * 600
    for kwargs in (dict(max_length=7), dict(truncation=True), dict(padding="max_length")):
        assert outcome(ours, long_text, **kwargs) == outcome(ref, long_text, **kwargs)
    assert len(ours(long_text, truncation=True)["input_ids"]) == 512


@pytest.mark.parametrize("kind", ["slow", "fast"])
def test_batch_padding_parity(quad, kind):
    ours, ref = getattr(quad, kind)()
    batch = STRINGS[40:48]
    pair_batch = ([a for a, _ in PAIRS[20:26]], [b for _, b in PAIRS[20:26]])
    for padding in (True, "longest", "max_length", False, "do_not_pad"):
        for max_length in (None, 24):
            for truncation in (None, True):
                for multiple in (None, 8):
                    for tensors in (None, "pt", "np"):
                        kwargs = dict(
                            padding=padding,
                            max_length=max_length,
                            truncation=truncation,
                            pad_to_multiple_of=multiple,
                            return_tensors=tensors,
                            return_special_tokens_mask=True,
                            return_length=True,
                        )
                        context = (padding, max_length, truncation, multiple, tensors)
                        for args in ((batch,), pair_batch):
                            got, want = outcome(ours, *args, **kwargs), outcome(ref, *args, **kwargs)
                            if raised(want):  # the reference's exception type (messages differ in wording)
                                assert raised(got) and got[1] == want[1], (context, got, want)
                            else:
                                assert got == want, context


@pytest.mark.parametrize("kind", ["slow", "fast"])
def test_single_padding_and_tensors(quad, kind):
    ours, ref = getattr(quad, kind)()
    for text in ["", "short", "A longer sentence with 1,000 words."]:
        for kwargs in (
            dict(padding="max_length", max_length=16, return_length=True),
            dict(padding=True, pad_to_multiple_of=8, return_special_tokens_mask=True),
            dict(padding="max_length", max_length=16, return_tensors="pt", return_length=True),
            dict(return_tensors="np"),
            dict(add_special_tokens=False, padding="max_length", max_length=5),
        ):
            got, want = ours(text, **kwargs), ref(text, **kwargs)
            assert plain(dict(got)) == plain(dict(want)), (text, kwargs)
            for key in got:
                assert type(got[key]) is type(want[key]), key
                if isinstance(got[key], (torch.Tensor, np.ndarray)):
                    assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape


def test_batch_encode_plus_and_encode_plus(quad):
    for ours, ref in quad.both():
        items = [STRINGS[60], (STRINGS[61], STRINGS[62]), STRINGS[63]]
        got = ours.batch_encode_plus(items, padding=True)
        assert plain(dict(got)) == plain(dict(ref.batch_encode_plus(items, padding=True)))
        assert plain(dict(ours.encode_plus("a b", "c"))) == plain(dict(ref.encode_plus("a b", "c")))
        assert ours.encode("x 1,000", "y", return_tensors="pt").tolist() == ref.encode(
            "x 1,000", "y", return_tensors="pt"
        ).tolist()
        assert outcome(ours, "text", "") == outcome(ref, "text", "")  # empty pair: reference quirks
        assert outcome(ours, ["a", "b"], ["", "c"]) == outcome(ref, ["a", "b"], ["", "c"])
        with pytest.raises(TypeError):
            ours(["a", "b"], "c")
        with pytest.raises(ValueError):
            ours(["a", "b"], ["c"])


def test_invalid_arguments(quad):
    for ours in (quad.ours_slow, quad.ours_fast):
        with pytest.raises(ValueError):
            ours("x", padding="sideways")
        with pytest.raises(ValueError):
            ours("x", truncation="middle")
        with pytest.raises(ValueError):
            ours("x", return_tensors="tf")
        with pytest.raises(ValueError, match="pad_to_multiple_of"):
            ours("x", padding=True, truncation=True, max_length=10, pad_to_multiple_of=8)
        with pytest.raises(ValueError):
            ours(["a", "b c d"], return_tensors="pt")
        with pytest.raises(TypeError):
            ours("x", no_such_option=True)


def test_slow_offsets_not_implemented(quad):
    with pytest.raises(NotImplementedError, match="AlbertTokenizerFast"):
        quad.ours_slow("text", return_offsets_mapping=True)
    with pytest.raises(NotImplementedError, match="AlbertTokenizerFast"):
        quad.ours_slow(["text"], return_offsets_mapping=True)


# --------------------------------------------------------------------------------------------
# Offsets and BatchEncoding helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["default", "cased_model"])
def test_fast_offsets_map_back_to_original_text(quads, setting):
    ours, _ = quads(setting).fast()
    normalize = ours.backend_tokenizer.normalizer.normalize_str
    exact = approximate = 0
    for text in STRINGS:
        encoding = ours(text, return_offsets_mapping=True, add_special_tokens=False)
        for (start, end), token, index in zip(encoding["offset_mapping"], encoding.tokens(), encoding["input_ids"]):
            assert 0 <= start <= end <= len(text)
            core = token.replace("▁", " ").strip()
            if index == ours.unk_token_id or not core:  # unknown pieces, a lone "▁"
                continue
            if core in ours.all_special_tokens:  # matched in the raw text
                assert text[start:end].strip() == core
                continue
            if core == normalize(text[start:end]).strip():
                exact += 1
                continue
            # One character can normalize to several pieces ("ﬁ" -> "f" "i"), and normalization can
            # merge two characters ("``" -> '"', "e" + U+0301 -> "é") with the span covering one.
            around = [normalize(text[a:b]) for a in (max(start - 1, 0), start) for b in (end, end + 1)]
            assert any(core in candidate for candidate in around), (text, text[start:end], token)
            approximate += 1
    assert exact > 1000 and approximate < exact / 20


def test_batch_encoding_helpers(quad):
    ours, ref = quad.fast()
    texts, pairs = ["Hello world, 1,000 people.", "東京 [MASK] café"], ["second text", "x"]
    got, want = ours(texts, pairs), ref(texts, pairs)
    for i in range(2):
        assert got.word_ids(i) == want.word_ids(i)
        assert got.sequence_ids(i) == want.sequence_ids(i)
        assert got.tokens(i) == want.tokens(i)
        for char in range(len(texts[i])):
            assert got.char_to_token(i, char) == want.char_to_token(i, char)
    single = ours("Hello world")
    assert single.char_to_token(3) == ref("Hello world").char_to_token(3)
    assert single.input_ids == single["input_ids"] and single.attention_mask == single["attention_mask"]
    with pytest.raises(AttributeError):
        single.no_such_key
    tensors = ours(texts, padding=True, return_tensors="pt").to("cpu")
    assert isinstance(tensors, BatchEncoding) and tensors.input_ids.dtype == torch.int64
    assert isinstance(ours(texts, padding=True, return_tensors="np")["input_ids"], np.ndarray)
    slow = quad.ours_slow(texts)
    assert not slow.is_fast and got.is_fast
    with pytest.raises(ValueError, match="AlbertTokenizerFast"):
        slow.word_ids(0)
    restored = pickle.loads(pickle.dumps(got))
    assert dict(restored) == dict(got) and restored.word_ids(1) == got.word_ids(1)


# --------------------------------------------------------------------------------------------
# Vocabulary, special tokens, decoding
# --------------------------------------------------------------------------------------------


def test_special_tokens_and_vocab(quads):
    for setting in ("default", "cased_model"):
        for ours, ref in quads(setting).both():
            for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
                assert getattr(ours, f"{name}_token") == getattr(ref, f"{name}_token")
                assert getattr(ours, f"{name}_token_id") == getattr(ref, f"{name}_token_id")
            assert ours.all_special_tokens == ref.all_special_tokens
            assert ours.all_special_ids == ref.all_special_ids
            assert ours.vocab_size == ref.vocab_size and len(ours) == len(ref)
            assert ours.get_vocab() == ref.get_vocab()
            assert ours.special_tokens_map == ref.special_tokens_map
            ids = list(range(0, ours.vocab_size, 7))
            tokens = ours.convert_ids_to_tokens(ids)
            assert tokens == ref.convert_ids_to_tokens(ids)
            assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
                ids, skip_special_tokens=True
            )
            assert ours.convert_ids_to_tokens(5) == ref.convert_ids_to_tokens(5)
            assert ours.convert_tokens_to_ids(tokens + ["not-a-piece"]) == ref.convert_tokens_to_ids(
                tokens + ["not-a-piece"]
            )
            assert ours.convert_tokens_to_ids("[MASK]") == ref.convert_tokens_to_ids("[MASK]")


def test_sequence_builders(quad):
    ours, ref = quad.slow()
    for a, b in ([5, 6, 7], [8, 9]), ([], []), ([10], None):
        for tok in (ours, quad.ours_fast):
            assert tok.build_inputs_with_special_tokens(a, b) == ref.build_inputs_with_special_tokens(a, b)
            assert tok.get_special_tokens_mask(a, b) == ref.get_special_tokens_mask(a, b)
            assert tok.create_token_type_ids_from_sequences(a, b) == ref.create_token_type_ids_from_sequences(a, b)
        built = ours.build_inputs_with_special_tokens(a, b)
        assert ours.get_special_tokens_mask(built, already_has_special_tokens=True) == ref.get_special_tokens_mask(
            built, already_has_special_tokens=True
        )
        assert quad.ours_fast.get_special_tokens_mask(
            built, already_has_special_tokens=True
        ) == quad.ref_fast.get_special_tokens_mask(built, already_has_special_tokens=True)
    with pytest.raises(ValueError):
        ours.get_special_tokens_mask([1], [2], already_has_special_tokens=True)
    assert ours.num_special_tokens_to_add() == ref.num_special_tokens_to_add()
    assert ours.num_special_tokens_to_add(pair=True) == ref.num_special_tokens_to_add(pair=True)


@pytest.mark.parametrize("setting", ["default", "no_lower", "cased_model"])
def test_decode_parity(quads, setting):
    rng = random.Random(7)
    for ours, ref in quads(setting).both():
        sequences = [ours(text, pair)["input_ids"] for text, pair in PAIRS[:80]]
        sequences += [[rng.randrange(ours.vocab_size) for _ in range(rng.randint(0, 20))] for _ in range(60)]
        for ids in sequences:
            for skip in (False, True):
                for clean in (None, True, False):
                    assert ours.decode(ids, skip, clean) == ref.decode(
                        ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean
                    ), (ids, skip, clean)
        assert ours.batch_decode(sequences[:20]) == ref.batch_decode(sequences[:20])
        padded = ours(STRINGS[100:106], padding=True, return_tensors="pt")["input_ids"]
        assert ours.batch_decode(padded, skip_special_tokens=True) == ref.batch_decode(
            padded, skip_special_tokens=True
        )
        assert ours.decode(padded[0]) == ref.decode(padded[0])
        assert ours.decode(5) == ref.decode(5)
        tokens = ours.tokenize("Hello [MASK] world, 1,000!")
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)


# --------------------------------------------------------------------------------------------
# Fast backend built without protobuf, and the model reader
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_fast_backend_equals_transformers_conversion(quads, setting):
    ours, ref = quads(setting).fast()
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(ref.backend_tokenizer.to_str())


def _pb2_model(path: Path):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return proto


def test_model_reader_matches_protobuf(spm_dir, spm_dir_cased, tmp_path, corpus_lines):
    user_defined = train_sentencepiece(
        corpus_lines[:400], tmp_path / "ud", vocab_size=500, user_defined_symbols=["(", ")", "-", "€"]
    )
    for path in (spm_dir / "spiece.model", spm_dir_cased / "spiece.model", user_defined):
        ours, proto = load_model_proto(path), _pb2_model(path)
        assert [(p.piece, p.score, p.type) for p in ours.pieces] == [(p.piece, p.score, p.type) for p in proto.pieces]
        for name in ("model_type", "vocab_size", "byte_fallback", "unk_id", "bos_id", "eos_id", "pad_id"):
            assert getattr(ours.trainer_spec, name) == getattr(proto.trainer_spec, name), name
        for name in ("unk_piece", "bos_piece", "eos_piece", "pad_piece"):
            assert getattr(ours.trainer_spec, name) == getattr(proto.trainer_spec, name), name
        normalizer_fields = ("name", "precompiled_charsmap", "add_dummy_prefix", "remove_extra_whitespaces")
        for name in normalizer_fields + ("escape_whitespaces",):
            assert getattr(ours.normalizer_spec, name) == getattr(proto.normalizer_spec, name), name
    assert load_model_proto(spm_dir / "spiece.model").trainer_spec.pad_id == 0
    with pytest.raises(ValueError):
        parse_model_proto(b"\xff\xff\xff")
    with pytest.raises(ValueError):
        parse_model_proto(b"")


def test_fast_from_model_with_user_defined_symbols(tmp_path, corpus_lines):
    path = train_sentencepiece(
        corpus_lines[:400], tmp_path / "ud", vocab_size=500, user_defined_symbols=["(", ")", "-", "€"]
    )
    ours, ref = AlbertTokenizerFast(str(path)), RefFast(str(path), from_slow=True)
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(ref.backend_tokenizer.to_str())
    ours_slow, ref_slow = AlbertTokenizer(str(path)), RefSlow(str(path))
    for text in STRINGS[:120] + ["a (b) - c €5", "x-y (1,000)"]:
        assert ours(text)["input_ids"] == ref(text)["input_ids"]
        assert ours_slow(text)["input_ids"] == ref_slow(text)["input_ids"]


def test_model_without_albert_special_pieces(tmp_path, corpus_lines):
    """Special tokens missing from the SentencePiece vocabulary get ids after it, as in the reference."""
    path = str(
        train_sentencepiece(
            corpus_lines[:300], tmp_path, vocab_size=400, control_symbols=[], pad_id=-1, unk_id=0, bos_id=1, eos_id=2
        )
    )
    ours, ref = AlbertTokenizer(path), RefSlow(path)
    ours_fast, ref_fast = AlbertTokenizerFast(path), RefFast(path, from_slow=True)
    assert ours.all_special_ids == ref.all_special_ids == ours_fast.all_special_ids == [400, 401, 0, 402, 403]
    assert len(ours) == len(ref) == len(ours_fast) == 404 and ours.get_vocab() == ref.get_vocab()
    assert json.loads(ours_fast.backend_tokenizer.to_str()) == json.loads(ref_fast.backend_tokenizer.to_str())
    for text in STRINGS[:150]:
        for tok, reference in ((ours, ref), (ours_fast, ref_fast)):
            encoded = tok(text, "x [MASK]", return_special_tokens_mask=True)
            assert plain(dict(encoded)) == plain(dict(reference(text, "x [MASK]", return_special_tokens_mask=True)))
            for skip in (False, True):
                assert tok.decode(encoded["input_ids"], skip) == reference.decode(
                    encoded["input_ids"], skip_special_tokens=skip
                )


def test_fast_conversion_does_not_need_protobuf(spm_dir, monkeypatch):
    import sys

    for name in list(sys.modules):
        if name == "google.protobuf" or name.startswith("google.protobuf."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    monkeypatch.setitem(sys.modules, "sentencepiece.sentencepiece_model_pb2", None)
    tokenizer = AlbertTokenizerFast(str(spm_dir / "spiece.model"))
    assert tokenizer("Hello world")["input_ids"][0] == tokenizer.cls_token_id


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------

ROUND_TRIP_TEXTS = STRINGS[:60] + [p for pair in PAIRS[:20] for p in pair]


def _ids(tokenizer, texts=ROUND_TRIP_TEXTS):
    return [tokenizer(text)["input_ids"] for text in texts]


@pytest.mark.parametrize("setting", ["default", "no_lower", "cased_model"])
def test_save_pretrained_round_trip(quads, setting, tmp_path):
    quad = quads(setting)
    slow_dir, fast_dir = tmp_path / "slow", tmp_path / "fast"
    files = quad.ours_slow.save_pretrained(slow_dir)
    assert {Path(f).name for f in files} == {"tokenizer_config.json", "special_tokens_map.json", "spiece.model"}
    files = quad.ours_fast.save_pretrained(fast_dir)
    assert "tokenizer.json" in {Path(f).name for f in files}

    expected_slow, expected_fast = _ids(quad.ref_slow), _ids(quad.ref_fast)
    # ours saves -> transformers loads
    ref_slow = RefSlow.from_pretrained(slow_dir)
    assert (ref_slow.do_lower_case, ref_slow.keep_accents, ref_slow.remove_space) == (
        quad.ours_slow.do_lower_case,
        quad.ours_slow.keep_accents,
        quad.ours_slow.remove_space,
    )
    assert ref_slow.model_max_length == 512
    assert ref_slow.added_tokens_decoder == quad.ref_slow.added_tokens_decoder
    assert _ids(ref_slow) == expected_slow
    assert _ids(RefFast.from_pretrained(fast_dir)) == expected_fast
    assert _ids(RefFast.from_pretrained(slow_dir)) == expected_fast  # converted from our spiece.model
    # ours saves -> ours loads
    assert _ids(AlbertTokenizer.from_pretrained(slow_dir)) == expected_slow
    assert _ids(AlbertTokenizerFast.from_pretrained(fast_dir)) == expected_fast
    assert _ids(AlbertTokenizerFast.from_pretrained(slow_dir)) == expected_fast
    # transformers saves -> ours loads
    ref_dir = tmp_path / "ref"
    quad.ref_fast.save_pretrained(ref_dir)
    loaded_slow, loaded_fast = AlbertTokenizer.from_pretrained(ref_dir), AlbertTokenizerFast.from_pretrained(ref_dir)
    assert loaded_slow.do_lower_case == quad.ours_slow.do_lower_case
    assert _ids(loaded_slow) == expected_slow
    assert _ids(loaded_fast) == expected_fast
    # (compared with transformers' reload: tokenizers' JSON round trip moves the last digit of some scores)
    ref_loaded = RefFast.from_pretrained(ref_dir)
    assert json.loads(loaded_fast.backend_tokenizer.to_str()) == json.loads(ref_loaded.backend_tokenizer.to_str())


def test_saved_files_match_transformers(quad, tmp_path):
    quad.ours_slow.save_pretrained(tmp_path / "ours")
    quad.ref_slow.save_pretrained(tmp_path / "ref")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        assert json.loads((tmp_path / "ours" / name).read_text()) == json.loads((tmp_path / "ref" / name).read_text())
    # the fast tokenizer saves a clean backend even after truncating/padding calls
    quad.ours_fast(["a", "b c"], padding=True, truncation=True, max_length=8)
    quad.ours_fast.save_pretrained(tmp_path / "fast")
    saved = json.loads((tmp_path / "fast" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    quad.ref_fast.save_pretrained(tmp_path / "ref_fast")
    assert saved == json.loads((tmp_path / "ref_fast" / "tokenizer.json").read_text())


def test_legacy_config_layout(spm_dir, tmp_path):
    """An old-style directory (no added_tokens_decoder) loads with the same settings as in transformers."""
    (tmp_path / "spiece.model").write_bytes((spm_dir / "spiece.model").read_bytes())
    config = {"do_lower_case": False, "keep_accents": True, "model_max_length": 64, "mask_token": "[MASK]"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    mask = {"content": "[MASK]", "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"mask_token": mask, "unk_token": "<unk>"}))
    texts = STRINGS[:80] + ["a  [MASK] b", "Ünïcödé [MASK]"]
    for ours, ref in (
        (AlbertTokenizer.from_pretrained(tmp_path), RefSlow.from_pretrained(tmp_path)),
        (AlbertTokenizerFast.from_pretrained(tmp_path), RefFast.from_pretrained(tmp_path)),
    ):
        assert (ours.do_lower_case, ours.keep_accents, ours.model_max_length) == (False, True, 64)
        assert ref.model_max_length == 64
        assert _ids(ours, texts) == _ids(ref, texts)
        assert ours.tokenize("a  [MASK] b") == ref.tokenize("a  [MASK] b")


def test_from_pretrained_overrides_and_prefix(spm_dir, tmp_path):
    tokenizer = AlbertTokenizer.from_pretrained(spm_dir, do_lower_case=False, model_max_length=128)
    assert not tokenizer.do_lower_case and tokenizer.model_max_length == 128
    assert tokenizer.tokenize("ABC") == RefSlow(str(spm_dir / "spiece.model"), do_lower_case=False).tokenize("ABC")
    fast = AlbertTokenizerFast.from_pretrained(spm_dir)
    assert fast.model_max_length == 512 and fast.vocab_file == str(spm_dir / "spiece.model")
    files = tokenizer.save_vocabulary(str(tmp_path), filename_prefix="pre")
    assert files == (str(tmp_path / "pre-spiece.model"),)
    assert Path(files[0]).read_bytes() == (spm_dir / "spiece.model").read_bytes()
    only_json = tmp_path / "only_json"
    fast.save_pretrained(only_json)
    (only_json / "spiece.model").unlink()
    from_json = AlbertTokenizerFast.from_pretrained(only_json)
    assert from_json("Hello 1,000")["input_ids"] == fast("Hello 1,000")["input_ids"]
    with pytest.raises(ValueError, match="spiece.model"):
        from_json.save_vocabulary(str(tmp_path))
    assert {Path(f).name for f in from_json.save_pretrained(tmp_path / "again")} == {
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
    }


def test_fast_from_slow_rebuilds_from_spiece_model(quads, tmp_path):
    quad = quads("default")
    quad.ours_fast.save_pretrained(tmp_path)
    # tokenizer.json fixes the normalizer, as in the reference...
    kept = AlbertTokenizerFast.from_pretrained(tmp_path, do_lower_case=False)
    assert _ids(kept) == _ids(RefFast.from_pretrained(tmp_path, do_lower_case=False)) == _ids(quad.ref_fast)
    # ...unless the backend is rebuilt from spiece.model
    rebuilt = AlbertTokenizerFast.from_pretrained(tmp_path, do_lower_case=False, from_slow=True)
    assert _ids(rebuilt) == _ids(RefFast.from_pretrained(tmp_path, do_lower_case=False, from_slow=True))
    assert _ids(rebuilt) == _ids(quads("no_lower").ref_fast)


@pytest.mark.parametrize("cls", [AlbertTokenizer, AlbertTokenizerFast])
def test_from_pretrained_hub_cache_offline(cls, quad, tmp_path, monkeypatch):
    source = tmp_path / "source"
    quad.ours_fast.save_pretrained(source)
    snapshot = tmp_path / "hub" / "models--someone--tiny-albert" / "snapshots" / ("a" * 40)
    snapshot.parent.mkdir(parents=True)
    source.rename(snapshot)
    (tmp_path / "hub" / "models--someone--tiny-albert" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-albert" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = cls.from_pretrained("someone/tiny-albert", cache_dir=tmp_path / "hub")
    reference = quad.ref_fast if tokenizer.is_fast else quad.ref_slow
    assert _ids(tokenizer, STRINGS[:40]) == _ids(reference, STRINGS[:40])
    with pytest.raises(CheckpointError, match="someone/missing"):
        cls.from_pretrained("someone/missing", cache_dir=tmp_path / "hub")


def test_pickle_round_trip(quad, tmp_path):
    for ours in (quad.ours_slow, quad.ours_fast):
        restored = pickle.loads(pickle.dumps(ours))
        assert _ids(restored, STRINGS[:40]) == _ids(ours, STRINGS[:40])
    # the slow tokenizer does not need its vocab_file any more once pickled
    copy_path = tmp_path / "spiece.model"
    copy_path.write_bytes(Path(quad.ours_slow.vocab_file).read_bytes())
    tokenizer = AlbertTokenizer(str(copy_path))
    payload = pickle.dumps(tokenizer)
    copy_path.unlink()
    assert pickle.loads(payload)("Hello")["input_ids"] == tokenizer("Hello")["input_ids"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AlbertTokenizer, AlbertTokenizerFast])
def test_missing_and_corrupted_model_files(cls, tmp_path, spm_dir):
    missing = tmp_path / "nowhere" / "spiece.model"
    with pytest.raises(CheckpointError, match="nowhere"):
        cls(str(missing))
    with pytest.raises(CheckpointError, match=str(tmp_path / "empty")):
        (tmp_path / "empty").mkdir()
        cls.from_pretrained(tmp_path / "empty")
    corrupt_dir = tmp_path / "corrupt"
    corrupt_dir.mkdir()
    for content in (b"this is not a sentencepiece model", (spm_dir / "spiece.model").read_bytes()[:1000], b""):
        (corrupt_dir / "spiece.model").write_bytes(content)
        with pytest.raises(CheckpointError, match="corrupt"):
            cls(str(corrupt_dir / "spiece.model"))
        with pytest.raises(CheckpointError, match=str(corrupt_dir)):
            cls.from_pretrained(corrupt_dir)
    with pytest.raises(CheckpointError):
        cls.from_pretrained("no-such-org/no-such-albert-model", local_files_only=True)


def test_corrupted_tokenizer_json(tmp_path, spm_dir):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        AlbertTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    with pytest.raises(CheckpointError):
        AlbertTokenizerFast()
    (tmp_path / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="tokenizer_config.json"):
        AlbertTokenizer.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------
# SentencePiece training
# --------------------------------------------------------------------------------------------


def test_trained_model_layout(spm_dir):
    from sentencepiece import SentencePieceProcessor

    assert (spm_dir / "spiece.model").is_file() and (spm_dir / "spiece.vocab").is_file()
    processor = SentencePieceProcessor(model_file=str(spm_dir / "spiece.model"))
    assert [processor.IdToPiece(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert processor.pad_id() == 0 and processor.unk_id() == 1
    assert processor.bos_id() == -1 and processor.eos_id() == -1
    assert all(processor.IsControl(i) for i in (0, 2, 3, 4))
    assert len(processor) == 800
    proto = _pb2_model(spm_dir / "spiece.model")
    assert proto.normalizer_spec.name == "nmt_nfkc"
    assert proto.trainer_spec.model_type == 1
    vocab = [processor.IdToPiece(i) for i in range(5, len(processor))]
    assert not any(ch.isupper() for piece in vocab for ch in piece)  # trained on lower-cased text


def test_training_is_deterministic_and_accepts_files(tmp_path, corpus_lines, corpus_file):
    first = train_sentencepiece(corpus_lines[:300], tmp_path / "a", vocab_size=400)
    second = train_sentencepiece(corpus_lines[:300], tmp_path / "b", vocab_size=400)
    assert first == tmp_path / "a" / "spiece.model"
    assert first.read_bytes() == second.read_bytes()
    from_file = train_sentencepiece([str(corpus_file)], tmp_path / "c", vocab_size=400)
    from_path = train_sentencepiece(corpus_file, tmp_path / "d", vocab_size=400)
    from_text = train_sentencepiece(["\n".join(corpus_lines)], tmp_path / "e", vocab_size=400)
    assert from_file.read_bytes() == from_path.read_bytes() == from_text.read_bytes()
    cased = train_sentencepiece(corpus_lines[:300], tmp_path / "f", vocab_size=400, do_lower_case=False)
    assert cased.read_bytes() != first.read_bytes()


def test_training_errors(tmp_path, corpus_lines):
    with pytest.raises(ValueError, match="vocab_size=100000"):
        train_sentencepiece(corpus_lines[:50], tmp_path / "big", vocab_size=100_000)
    small = train_sentencepiece(corpus_lines[:50], tmp_path / "soft", vocab_size=100_000, hard_vocab_limit=False)
    assert small.is_file()
    with pytest.raises(ValueError, match="no text"):
        train_sentencepiece(["", "   "], tmp_path / "empty", vocab_size=100)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_sentencepiece(str(tmp_path / "missing.txt"), tmp_path / "none", vocab_size=100)


# --------------------------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------------------------

_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
        st.sampled_from(FRAGMENTS),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, pair=st.one_of(st.none(), _TEXT))
def test_property_random_unicode_matches_reference(quad, text, pair):
    ours, ref = quad.slow()
    assert ours.tokenize(text) == ref.tokenize(text)
    assert plain(dict(ours(text, pair))) == plain(dict(ref(text, pair)))
    ours, ref = quad.fast()
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    assert plain(dict(ours(text, pair, **kwargs))) == plain(dict(ref(text, pair, **kwargs)))
    ids = ours(text, pair)["input_ids"]
    assert ours.decode(ids) == ref.decode(ids)
    assert quad.ours_slow.decode(ids) == quad.ref_slow.decode(ids)


def test_no_library_logging_on_plain_calls(quad, caplog):
    with caplog.at_level(logging.WARNING, logger="spacy_albert"):
        quad.ours_slow("plain text")
        quad.ours_fast(["plain", "text"], padding=True)
    assert not caplog.records
