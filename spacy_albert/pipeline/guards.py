"""Refusing to train on non-finite numbers.

Every trainable spacy-albert component counts its `update` calls (1, 2, ...) and, in each
one, checks its loss before the backward pass and its gradients before any optimizer step.
A NaN or infinity raises `NonFiniteError`, naming the component, the update step and what
was not finite; the component's gradients are cleared first and no optimizer step is taken,
so the weights stay exactly as they were before that update (and a caller that catches the
error can go on with another batch or a lower learning rate). Raising, rather than skipping
the step with a warning, is deliberate: a loss that has become NaN (typically a too-high
learning rate) does not recover by itself, and skipping every later step would train on
silently while doing nothing.

Gradients of an encoder that runs in float16 with a gradient scaler are left to the scaler:
an overflow there is expected now and then, and the scaler already skips that step and lowers
its scale.

The checks run where the arrays live (GPU or CPU) and read one flag vector back per check:
one read for all gradients of the scores (not one per doc), one for all weight gradients
(thinc's and torch's together, not one per parameter).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy
import torch
from thinc.api import Model, get_array_module, xp2torch

from ..errors import NonFiniteError
from ..layers.shim import albert_shims


def next_step(component: Any) -> int:
    """Count one more `update` call of `component` (1 for its first) and return the count."""
    step = int(getattr(component, "_albert_update_step", 0)) + 1
    component._albert_update_step = step
    return step


def _fail(component: str, step: int, what: str) -> NonFiniteError:
    return NonFiniteError(
        f"{component!r}, update step {step}: {what}. No optimizer step was taken and the gradients "
        "were cleared, so the weights are those from before this step. This usually means the "
        "learning rate is too high (or float16 overflowed): lower it, or check the training data."
    )


def check_loss(component: str, step: int, loss: Any, model: Optional[Model] = None) -> None:
    """Raise when `loss` (a float or a 0-d tensor) is not finite, after clearing the
    gradients of `model` (those of earlier chunks of the same step)."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        if model is not None:
            clear_gradients(model)
        raise _fail(component, step, f"the loss is {value}")


def check_arrays(component: str, step: int, what: str, arrays: Any, model: Optional[Model] = None) -> None:
    """Raise when `arrays` (one array, or a sequence of numpy, cupy or torch arrays; None is
    skipped) holds a NaN or an infinity, after clearing the gradients of `model`."""
    if hasattr(arrays, "shape"):
        arrays = [arrays]
    if not all(finite_flags([a for a in arrays if a is not None])):
        if model is not None:
            clear_gradients(model)
        raise _fail(component, step, f"the {what} is not finite")


def check_gradients(component: str, step: int, model: Model) -> None:
    """Raise when a gradient of `model` (thinc parameters and the torch parameters of its
    shims) is not finite, after clearing all of the model's gradients."""
    bad = _first_nonfinite_gradient(model)
    if bad is not None:
        clear_gradients(model)
        raise _fail(component, step, f"the gradient of {bad} is not finite")


def clear_gradients(model: Model) -> None:
    """Zero the thinc gradients of `model` and drop the torch gradients of its shims."""
    for node in model.walk():
        for name in node.param_names:
            if node.has_grad(name):
                node.get_grad(name).fill(0)
    for shim in albert_shims(model):
        for param in shim.module.parameters():
            param.grad = None


def finite_flags(arrays: Sequence[Any]) -> list[bool]:
    """Whether each array (numpy, cupy or torch) holds only finite numbers: computed where it
    lives, and the flags of all device arrays read back together, in one transfer (numpy
    arrays need none)."""
    flags: dict[int, bool] = {}
    on_device: list[tuple[int, torch.Tensor]] = []
    for i, array in enumerate(arrays):
        if isinstance(array, torch.Tensor):
            on_device.append((i, torch.isfinite(array).all().reshape(1)))
            continue
        xp = get_array_module(array)
        finite = xp.isfinite(array).all()
        if xp is numpy:
            flags[i] = bool(finite)
        else:  # cupy: handed to torch on its device (dlpack, no copy)
            on_device.append((i, xp2torch(finite.astype("uint8").reshape(1)).bool()))
    if on_device:
        first = on_device[0][1].device
        read = torch.cat([flag.to(first) for _, flag in on_device]).tolist()
        flags.update((i, bool(value)) for (i, _), value in zip(on_device, read))
    return [flags[i] for i in range(len(arrays))]


def _first_nonfinite_gradient(model: Model) -> Optional[str]:
    names: list[str] = []
    grads: list[Any] = []
    for node in model.walk():
        for name in node.param_names:
            if node.has_grad(name):
                names.append(f"{node.name!r} parameter {name!r}")
                grads.append(node.get_grad(name))
    for shim in albert_shims(model):
        if shim.loss_scaling:
            continue  # float16: an overflow is the scaler's to handle (it skips that step)
        for name, param in shim.module.named_parameters():
            if param.grad is not None:
                names.append(f"torch parameter {name!r}")
                grads.append(param.grad)
    for name, finite in zip(names, finite_flags(grads)):  # one read for all of them
        if not finite:
            return name
    return None
