"""Tolerance comparisons of the GPU check (benchmarks/gpu_check.py): tensors and arrays, and
the numeric and string leaves of whatever a component's `predict` and its annotations hold."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# fp32 on the device against the CPU; the low precisions against the fp32 CPU states
# (hidden states of LayerNorm'd layers, entries of order 1).
FP32_ATOL = 1e-4
LOW_PRECISION_ATOL = {"bfloat16": 0.15, "float16": 0.02}
# A component's scores on the device against the CPU, fp32: |device - cpu| <= ATOL + RTOL |cpu|.
COMPONENT_ATOL, COMPONENT_RTOL = 1e-4, 1e-4
# A pipeline trained in bf16/fp16 on the device, predicting in that precision, against its
# float32 prediction on the CPU: scores move by the rounding of the low precision.
LOW_PRECISION_COMPONENT_ATOL = 0.15


def to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of a torch tensor, CuPy or numpy array, or number."""
    if hasattr(x, "detach"):  # torch
        return x.detach().float().cpu().numpy().astype("float64")
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        x = x.get()
    return np.asarray(x, dtype="float64")


def max_abs_diff(got: Any, want: Any) -> float:
    """The largest |got - want| (inf if the shapes differ)."""
    a, b = to_numpy(got), to_numpy(want)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max()) if a.size else 0.0


def scaled_diff(got: Any, want: Any) -> float:
    """max |got - want| / max(1, max |want|): a gradient's error relative to its size (sums
    over many positions grow with the batch)."""
    b = to_numpy(want)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 0.0)
    return max_abs_diff(got, want) / scale


def within(got: Any, want: Any, atol: float, rtol: float = 0.0) -> bool:
    """Every |got - want| <= atol + rtol * |want| (and the same shapes)."""
    a, b = to_numpy(got), to_numpy(want)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def leaves(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """The numbers (float64 arrays) and strings inside `obj`, by path: arrays, tensors,
    numbers, strings, dicts, lists, tuples, dataclasses and spacy-albert's own objects
    (anything else, e.g. spaCy's parser states, is left out)."""
    if depth > 8:
        return {}
    if obj is None or isinstance(obj, str):
        return {prefix: obj}
    if isinstance(obj, (bool, int, float, np.number)) or _is_array(obj):
        return {prefix: to_numpy(obj)}
    items: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif dataclasses.is_dataclass(obj):
        items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif type(obj).__module__.startswith("spacy_albert") and hasattr(obj, "__dict__"):
        items = list(vars(obj).items())
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(leaves(value, f"{prefix}.{key}" if prefix else key, depth + 1))
    return out


def compare_leaves(got: dict[str, Any], want: dict[str, Any], atol: float, rtol: float = 0.0) -> dict:
    """Figures of two `leaves` results: the largest numeric difference, and the paths that
    differ, counted by kind (missing on one side, numbers beyond the tolerance, other strings;
    at most 10 shown)."""
    bad, worst = [], 0.0
    counts = {"missing": 0, "numeric_mismatches": 0, "string_mismatches": 0}
    for key in sorted(set(got) | set(want)):
        a, b = got.get(key, KeyError), want.get(key, KeyError)
        if a is KeyError or b is KeyError:
            counts["missing"] += 1
            bad.append(f"{key}: only on {'cpu' if a is KeyError else 'device'}")
        elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            worst = max(worst, max_abs_diff(a, b))
            if not within(a, b, atol, rtol):
                counts["numeric_mismatches"] += 1
                bad.append(f"{key}: max diff {max_abs_diff(a, b):.3g}")
        elif type(a) is not type(b) or a != b:
            counts["string_mismatches"] += 1
            bad.append(f"{key}: {str(a)[:60]!r} != {str(b)[:60]!r}")
    return {"leaves": len(want), "max_abs_diff": worst, "mismatches": len(bad), **counts, "first_mismatches": bad[:10]}
