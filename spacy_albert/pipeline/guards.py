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
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from thinc.api import Model, get_array_module

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
    for array in arrays:
        if array is not None and not _all_finite(array):
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


def _all_finite(array: Any) -> bool:
    if isinstance(array, torch.Tensor):
        return bool(torch.isfinite(array).all())
    return bool(get_array_module(array).isfinite(array).all())


def _first_nonfinite_gradient(model: Model) -> Optional[str]:
    for node in model.walk():
        for name in node.param_names:
            if node.has_grad(name) and not _all_finite(node.get_grad(name)):
                return f"{node.name!r} parameter {name!r}"
    for shim in albert_shims(model):
        if shim.loss_scaling:
            continue  # float16: an overflow is the scaler's to handle (it skips that step)
        named = [(n, p.grad) for n, p in shim.module.named_parameters() if p.grad is not None]
        if not named:
            continue
        finite = torch.stack([torch.isfinite(g).all() for _, g in named])
        if not bool(finite.all()):  # one device sync for the whole module
            return f"torch parameter {named[int((~finite).nonzero()[0])][0]!r}"
    return None
