"""The activation functions a reference ALBERT config may name in `hidden_act`.

Each is an `nn.Module` (as in the reference) so that a learnable one (`prelu`) keeps its
parameter name in the state dict.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


class _Fn(nn.Module):
    """A parameter-free activation wrapping a function."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # gelu_new / gelu_fast / gelu_accurate are this formula; torch computes it in one fused kernel.
    return F.gelu(x, approximate="tanh")


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _laplace(x: torch.Tensor, mu: float = 0.707107, sigma: float = 0.282095) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf((x - mu).div(sigma * math.sqrt(2.0))))


def _gelu_10(x: torch.Tensor) -> torch.Tensor:
    return torch.clip(F.gelu(x), -10, 10)


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _relu2(x: torch.Tensor) -> torch.Tensor:
    return torch.square(F.relu(x))


def _fn(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], nn.Module]:
    return partial(_Fn, fn)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": _fn(F.gelu),
    "gelu_10": _fn(_gelu_10),
    "gelu_fast": _fn(_gelu_tanh),
    "gelu_new": _fn(_gelu_tanh),
    "gelu_python": _fn(_gelu_python),
    "gelu_pytorch_tanh": _fn(_gelu_tanh),
    "gelu_accurate": _fn(_gelu_tanh),
    "laplace": _fn(_laplace),
    "leaky_relu": nn.LeakyReLU,
    "linear": nn.Identity,
    "mish": _fn(F.mish),
    "quick_gelu": _fn(_quick_gelu),
    "relu": nn.ReLU,
    "relu2": _fn(_relu2),
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,
}


def get_activation(name: str | Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    """The activation module for a config's `hidden_act` (a name or a callable)."""
    if callable(name) and not isinstance(name, str):
        return name if isinstance(name, nn.Module) else _Fn(name)
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.") from None
