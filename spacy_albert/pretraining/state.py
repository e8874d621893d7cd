"""The pretraining trainer state, stored without pickle.

A checkpoint's trainer state is two files: ``trainer_state.safetensors`` with every tensor
(optimizer moments, torch/CUDA RNG states, ...) and ``trainer_state.json`` with everything
else (step, scheduler, grad scaler, python/numpy RNG states, settings) plus the SHA-256 of the
tensors file. Both are written atomically, the JSON last, so a checkpoint whose JSON exists
is complete. Loading reads data only: JSON, and safetensors checked against the hash.

Nested values are encoded into JSON with one-key marker objects: ``{"__tensor__": name}``
(a tensor in the safetensors file), ``{"__tuple__": [...]}``, ``{"__ndarray__": {"dtype",
"shape", "data"}}``, ``{"__float__": "inf"}`` and ``{"__items__": [[key, value], ...]}`` (a
dict whose keys are not all strings, or that holds a marker key), so every value round-trips
exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..errors import CheckpointError
from ..util_io import atomic_write_bytes, atomic_write_text

STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
LEGACY_STATE = "trainer_state.pt"  # pickle written by earlier versions: never loaded
FORMAT = "spacy-albert-trainer-state"
VERSION = 1

_MARKERS = ("__tensor__", "__tuple__", "__ndarray__", "__items__", "__float__")
# numpy arrays in the state (the legacy RNG's key) are plain numbers.
_NDARRAY_DTYPES = frozenset({"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
                             "float32", "float64", "bool"})  # fmt: skip


class TrainerStateError(CheckpointError):
    """A checkpoint's trainer state is missing, incomplete, corrupted, or in the old pickle format."""


# ---------------------------------------------------------------------------------------
# Encoding nested values as JSON + named tensors
# ---------------------------------------------------------------------------------------
def encode(value: Any, tensors: Dict[str, torch.Tensor], where: str = "state") -> Any:
    """`value` as JSON data; its tensors go into `tensors`, named by their place in `value`."""
    if isinstance(value, torch.Tensor):
        name, n = where, 1
        while name in tensors:  # keys 1 and "1" of one dict share a path
            name, n = f"{where}#{n}", n + 1
        tensors[name] = value.detach().to("cpu").contiguous()
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _NDARRAY_DTYPES:
            raise TypeError(f"Cannot store a numpy array of dtype {value.dtype} at {where} in the trainer state.")
        return {"__ndarray__": {"dtype": value.dtype.name, "shape": list(value.shape), "data": value.ravel().tolist()}}
    if isinstance(value, np.generic):
        return encode(value.item(), tensors, where)
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k in _MARKERS for k in value):
            return {k: encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {"__items__": [[encode(k, tensors, f"{where}.key{i}"), encode(v, tensors, f"{where}.{k}")]
                              for i, (k, v) in enumerate(value.items())]}  # fmt: skip
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    raise TypeError(f"Cannot store a {type(value).__name__} at {where} in the trainer state (not plain data).")


def decode(data: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    """The inverse of `encode`; a marker naming a tensor that is not there raises KeyError."""
    if isinstance(data, list):
        return [decode(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        (key, inner), = data.items()
        if key == "__tensor__":
            if not isinstance(inner, str) or inner not in tensors:
                raise KeyError(f"tensor {inner!r} is not in {STATE_TENSORS}")
            return tensors[inner]
        if key == "__tuple__":
            return tuple(decode(v, tensors) for v in _expect(inner, list, key))
        if key == "__items__":
            return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in _expect(inner, list, key)}
        if key == "__float__":
            if inner not in ("inf", "-inf", "nan"):
                raise ValueError(f"bad __float__ value {inner!r}")
            return float(inner)
        if key == "__ndarray__":
            inner = _expect(inner, dict, key)
            if inner.get("dtype") not in _NDARRAY_DTYPES:
                raise ValueError(f"numpy dtype {inner.get('dtype')!r} is not allowed")
            return np.asarray(inner["data"], dtype=inner["dtype"]).reshape(inner["shape"])
    return {k: decode(v, tensors) for k, v in data.items()}


def _expect(value: Any, kind: type, marker: str) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"{marker} holds a {type(value).__name__}, expected a {kind.__name__}")
    return value


def _hashable(key: Any) -> Any:
    if isinstance(key, (str, int, float, bool, tuple)) or key is None:
        return key
    raise ValueError(f"dictionary key {key!r} is not plain data")


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def save_trainer_state(directory: str | Path, state: Dict[str, Any]) -> None:
    """Write `state` as trainer_state.safetensors + trainer_state.json in `directory` (atomically,
    the JSON last: its presence marks the state as complete)."""
    from safetensors.torch import save

    directory = Path(directory)
    tensors: Dict[str, torch.Tensor] = {}
    encoded = encode(state, tensors)
    blob = save(tensors, metadata={"format": FORMAT})
    atomic_write_bytes(directory / STATE_TENSORS, blob)
    digest = hashlib.sha256(blob).hexdigest()
    document = {"format": FORMAT, "version": VERSION, "tensors_sha256": digest, "state": encoded}
    atomic_write_text(directory / STATE_JSON, json.dumps(document, indent=1) + "\n")


def has_trainer_state(directory: str | Path) -> bool:
    """Whether `directory` holds a (new-format or legacy) trainer state."""
    directory = Path(directory)
    return (directory / STATE_JSON).is_file() or (directory / LEGACY_STATE).is_file()


def _fix(directory: Path) -> str:
    return (
        f"Delete {str(directory)!r} and resume from an earlier checkpoint (--resume auto picks the newest "
        f"complete one), or start a new run from its weights with --init {str(directory)!r}."
    )


def load_trainer_state(directory: str | Path) -> Dict[str, Any]:
    """Read the state `save_trainer_state` wrote. Never unpickles: an old `trainer_state.pt`
    alone raises TrainerStateError, as does a missing, truncated or altered file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    directory = Path(directory)
    json_path, tensors_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not json_path.is_file():
        if (directory / LEGACY_STATE).is_file():
            raise TrainerStateError(
                f"{str(directory / LEGACY_STATE)!r} is a trainer state in the old pickle format, which is no "
                "longer loaded: unpickling a checkpoint can run arbitrary code. Start a new run from its "
                f"weights with --init {str(directory)!r} (optimizer state and step count start afresh), or "
                "re-run pretraining with this version to get resumable checkpoints."
            )
        if tensors_path.is_file():
            raise TrainerStateError(
                f"{str(json_path)!r} is missing next to {STATE_TENSORS}: the checkpoint was not saved "
                f"completely. {_fix(directory)}"
            )
        raise TrainerStateError(f"No {STATE_JSON} in {str(directory)!r}: not a pretraining checkpoint.")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrainerStateError(f"{str(json_path)!r} is truncated or corrupted ({err}). {_fix(directory)}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT or "state" not in document:
        raise TrainerStateError(f"{str(json_path)!r} is not a spacy-albert trainer state. {_fix(directory)}")
    if document.get("version") != VERSION:
        raise TrainerStateError(
            f"{str(json_path)!r} has trainer state version {document.get('version')!r}; this version reads "
            f"{VERSION}. Resume with the spacy-albert version that wrote it, or start anew with --init."
        )
    if not tensors_path.is_file():
        raise TrainerStateError(f"{str(tensors_path)!r} is missing. {_fix(directory)}")
    blob = tensors_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != document.get("tensors_sha256"):
        raise TrainerStateError(
            f"{str(tensors_path)!r} is truncated or corrupted (its SHA-256 differs from the one in "
            f"{STATE_JSON}). {_fix(directory)}"
        )
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise TrainerStateError(f"{str(tensors_path)!r} is corrupted ({err}). {_fix(directory)}") from err
    try:
        state = decode(document["state"], tensors)
    except (KeyError, ValueError, TypeError) as err:
        raise TrainerStateError(f"{str(json_path)!r} is corrupted ({err}). {_fix(directory)}") from err
    if not isinstance(state, dict):
        raise TrainerStateError(f"{str(json_path)!r} is corrupted (its state is not an object). {_fix(directory)}")
    return state


# ---------------------------------------------------------------------------------------
# Random number generators
# ---------------------------------------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    """The states of python's `random`, numpy's legacy global RNG, torch CPU and CUDA (if any)."""
    import random

    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the RNG states `rng_state` returned (after a round trip through the files)."""
    import random

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = [
    "STATE_JSON", "STATE_TENSORS", "LEGACY_STATE", "TrainerStateError", "save_trainer_state",
    "load_trainer_state", "has_trainer_state", "rng_state", "set_rng_state", "encode", "decode",
]  # fmt: skip
