"""A small reader for serialized SentencePiece `ModelProto` files (``spiece.model``).

Only the fields the tokenizers need are decoded; everything else is skipped. This keeps
`protobuf` out of the run-time dependencies. Field numbers follow sentencepiece_model.proto.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Iterator

# SentencePiece.Type values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType values.
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


@dataclass
class Piece:
    """One vocabulary entry."""

    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class TrainerSpec:
    """The trainer fields that tokenization depends on (with the proto2 defaults)."""

    model_type: int = UNIGRAM
    vocab_size: int = 8000
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"


@dataclass
class NormalizerSpec:
    """The normalizer fields (with the proto2 defaults)."""

    name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


@dataclass
class SentencePieceModel:
    """The decoded parts of a ``ModelProto``."""

    pieces: list[Piece] = field(default_factory=list)
    trainer_spec: TrainerSpec = field(default_factory=TrainerSpec)
    normalizer_spec: NormalizerSpec = field(default_factory=NormalizerSpec)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values are bytes."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("invalid field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _FIXED32:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        elif wire == _FIXED64:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _float(value: int) -> float:
    return struct.unpack("<f", value.to_bytes(4, "little"))[0]


def _text(value: bytes) -> str:
    return value.decode("utf-8")


# Per message: field number -> (attribute, converter, expected wire type).
_PIECE_FIELDS = {1: ("piece", _text, _LEN), 2: ("score", _float, _FIXED32), 3: ("type", int, _VARINT)}
_TRAINER_FIELDS = {
    3: ("model_type", int, _VARINT),
    4: ("vocab_size", _int32, _VARINT),
    35: ("byte_fallback", bool, _VARINT),
    40: ("unk_id", _int32, _VARINT),
    41: ("bos_id", _int32, _VARINT),
    42: ("eos_id", _int32, _VARINT),
    43: ("pad_id", _int32, _VARINT),
    45: ("unk_piece", _text, _LEN),
    46: ("bos_piece", _text, _LEN),
    47: ("eos_piece", _text, _LEN),
    48: ("pad_piece", _text, _LEN),
}
_NORMALIZER_FIELDS = {
    1: ("name", _text, _LEN),
    2: ("precompiled_charsmap", bytes, _LEN),
    3: ("add_dummy_prefix", bool, _VARINT),
    4: ("remove_extra_whitespaces", bool, _VARINT),
    5: ("escape_whitespaces", bool, _VARINT),
}


def _decode_into(obj: object, data: bytes, spec: dict) -> object:
    for number, wire, value in _fields(data):
        if number in spec:
            name, convert, expected = spec[number]
            if wire != expected:
                raise ValueError(f"field {name!r} has wire type {wire}, expected {expected}")
            setattr(obj, name, convert(value))
    return obj


def parse_model_proto(data: bytes) -> SentencePieceModel:
    """Decode a serialized ``ModelProto``. Raises ValueError on malformed input."""
    model = SentencePieceModel()
    try:
        for number, wire, value in _fields(data):
            if wire != _LEN or number not in (1, 2, 3):
                continue
            if number == 1:
                model.pieces.append(_decode_into(Piece(""), value, _PIECE_FIELDS))
            elif number == 2:
                _decode_into(model.trainer_spec, value, _TRAINER_FIELDS)
            else:
                _decode_into(model.normalizer_spec, value, _NORMALIZER_FIELDS)
    except (UnicodeDecodeError, struct.error, OverflowError) as err:
        raise ValueError(f"malformed SentencePiece model: {err}") from err
    if not model.pieces:
        raise ValueError("no vocabulary pieces found")
    return model


def load_model_proto(path: str | os.PathLike) -> SentencePieceModel:
    """Read and decode a ``spiece.model`` file."""
    with open(path, "rb") as handle:
        return parse_model_proto(handle.read())
