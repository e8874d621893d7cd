"""The one precision vocabulary of the package (architectures, components, pretraining and
the CLI all take these names) and the one autocast helper."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SHORT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def check_precision(precision: str, setting: str = "precision") -> str:
    """`precision` if it is one of PRECISIONS, else a ValueError naming the setting."""
    if precision in PRECISIONS:
        return precision
    hint = f" (write {_SHORT[precision]!r})" if precision in _SHORT else ""
    raise ValueError(f"{setting}={precision!r}{hint}; choose one of {tuple(PRECISIONS)}.")


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """torch.autocast to `precision` on `device_type` (nothing for float32). float16 needs
    gradient scaling in training, which every trainer of this package applies."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)
