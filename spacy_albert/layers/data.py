"""What the ALBERT encoder layer hands to listeners and stores on each Doc."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import srsly
from thinc.api import get_array_module

from ..tokenization.alignment import Alignment


@dataclass
class AlbertDocData:
    """ALBERT's output for one doc.

    `hidden` is [n_layers, n_pieces, hidden_size]: the last `n_layers` hidden states of every
    piece (overlapping windows averaged), `cls` [n_layers, hidden_size] the [CLS] states
    (averaged over the doc's windows), `piece_ids` the SentencePiece ids, and `alignment`
    maps each spaCy token to the pieces overlapping it. Gradients travel back in the same
    class (a `cls` of None is a zero gradient).
    """

    piece_ids: np.ndarray
    hidden: Any  # numpy or cupy array [n_layers, n_pieces, width]
    alignment: Alignment
    cls: Any = None  # [n_layers, width]

    @property
    def width(self) -> int:
        return int(self.hidden.shape[-1])

    @property
    def n_pieces(self) -> int:
        return int(self.hidden.shape[1])

    def with_arrays(self, hidden: Any, cls: Any = None) -> "AlbertDocData":
        """The same doc's data (or gradient) with other arrays."""
        return AlbertDocData(self.piece_ids, hidden, self.alignment, cls)

    def to_numpy(self) -> "AlbertDocData":
        def host(array: Any) -> Any:
            if array is None:
                return None
            array = array if get_array_module(array) is np else array.get()
            return np.asarray(array, dtype="float32")

        return self.with_arrays(host(self.hidden), host(self.cls))

    def to_dict(self) -> dict[str, Any]:
        data = self.to_numpy()
        return {
            "piece_ids": data.piece_ids,
            "hidden": data.hidden,
            "cls": data.cls,
            "lengths": data.alignment.lengths,
            "indices": data.alignment.indices,
        }

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> "AlbertDocData":
        alignment = Alignment(msg["lengths"], msg["indices"])
        return cls(msg["piece_ids"], msg["hidden"], alignment, msg.get("cls"))


@srsly.msgpack_encoders("albert_doc_data")
def _serialize(obj: Any, chain: Any = None) -> Any:
    if isinstance(obj, AlbertDocData):
        return {"__albert_doc_data__": obj.to_dict()}
    return obj if chain is None else chain(obj)


@srsly.msgpack_decoders("albert_doc_data")
def _deserialize(obj: Any, chain: Any = None) -> Any:
    if isinstance(obj, dict) and "__albert_doc_data__" in obj:
        return AlbertDocData.from_dict(obj["__albert_doc_data__"])
    return obj if chain is None else chain(obj)


@dataclass
class PieceSequences:
    """Inputs that components build themselves (question + context, prompt + choice, masked
    text): piece id sequences that already hold their special pieces, one encoder window
    each, with their token types (None: all 0). `rows` are the flat positions (a sequence's
    offset in the concatenation plus the position in it) that a masked-LM head predicts."""

    ids: list[np.ndarray]
    type_ids: Optional[list[np.ndarray]] = None
    rows: Optional[np.ndarray] = None

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(ids) for ids in self.ids], dtype="int64")

    @property
    def offsets(self) -> np.ndarray:
        """Each sequence's first row in the concatenated positions."""
        lengths = self.lengths
        return np.cumsum(lengths) - lengths
