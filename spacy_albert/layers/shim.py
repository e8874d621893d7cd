"""`AlbertShim`: thinc's PyTorch shim for the ALBERT encoder, through thinc's documented
`Shim` hooks (`begin_update`, `predict`, `finish_update`, `to_bytes`, `from_bytes`).

* Serialization keeps config, tokenizer and weights together in one message: loading
  rebuilds the torch module from the saved config (with the `build` function the
  architecture gave the shim) before the weights load, so the shapes always come from the
  saved model and nothing depends on the order in which thinc restores attrs and shims.
* Prediction never switches the module between train and eval mode (the module rests in
  eval mode; only `begin_update` runs it in train mode), so threads predicting at once do
  not race on a shared flag.
* float16 training scales the gradients flowing into the encoder (thinc's layers around it
  run in float32) and unscales the parameters' gradients once, in `finish_update`, just
  before the optimizer step: so gradients accumulated over several backward passes
  (`accumulate_gradient > 1`, or a head calling the encoder twice) are unscaled exactly once.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import srsly
import torch
from thinc.api import ArgsKwargs, Optimizer, PyTorchGradScaler, PyTorchShim, torch2xp, xp2torch
from thinc.util import convert_recursive, get_torch_default_device

from ..errors import CorruptedFileError
from ..models.configuration import AlbertConfig
from .encoder import WindowedEncoder
from .quantize import deserialize_encoder, serialize_encoder
from .state import AlbertState, check_tokenizer_files

FORMAT = "spacy-albert-encoder-2"


class LossScaler(PyTorchGradScaler):
    """thinc's gradient scaler, on any device (the scaling itself is device-agnostic)."""

    def _scale_tensor(self, tensor: torch.Tensor, scale_per_device: dict, inplace: bool) -> torch.Tensor:
        scale = scale_per_device.setdefault(tensor.device, self._scale.to(tensor.device))
        return tensor.mul_(scale) if inplace else tensor * scale

    @property
    def enabled(self) -> bool:
        return bool(self._enabled)

    @property
    def current_scale(self) -> float:
        """The scale, read on the host (a device sync: not for the training loop)."""
        return float(self._scale) if self._enabled else 1.0

    def inverse_scale(self) -> torch.Tensor:
        """1 / scale, as a tensor on the scale's device (no host round trip)."""
        return self._scale.double().reciprocal().float()


class AlbertShim(PyTorchShim):
    """The shim of `spacy-albert.AlbertTransformer.v1`'s torch encoder.

    `state` is the same `AlbertState` the thinc model holds (config + tokenizer); `build`
    makes a float encoder for a config (the architecture's precision, quantization, heads)."""

    def __init__(
        self,
        module: WindowedEncoder,
        state: AlbertState,
        build: Callable[[AlbertConfig], WindowedEncoder],
        *,
        loss_scaling: bool = False,
        scaler_config: Optional[dict] = None,
    ) -> None:
        scaler = LossScaler(**{"enabled": loss_scaling, **(scaler_config or {})})
        super().__init__(module.eval(), grad_scaler=scaler)
        self.state = state
        self.build = build

    # -- the module --------------------------------------------------------------------------
    @property
    def module(self) -> WindowedEncoder:
        return self._model

    def set_module(self, module: WindowedEncoder) -> None:
        """Put `module` (e.g. one built for a checkpoint's shapes) in place of the current one."""
        self._model = module.to(get_torch_default_device()).eval()

    @property
    def scaler(self) -> LossScaler:
        return self._grad_scaler

    @property
    def loss_scaling(self) -> bool:
        return self.scaler.enabled

    # -- forward and backward ------------------------------------------------------------------
    def predict(self, inputs: ArgsKwargs) -> Any:
        with torch.no_grad():
            return self._model(*inputs.args, **inputs.kwargs)

    def begin_update(self, inputs: ArgsKwargs) -> tuple[Any, Callable]:
        with _train_mode(self._model):
            output = self._model(*inputs.args, **inputs.kwargs)

        def backprop(grads: ArgsKwargs) -> Any:
            scaler = self.scaler
            if scaler.enabled:
                grads.kwargs["grad_tensors"] = scaler.scale(list(grads.kwargs["grad_tensors"]), inplace=True)
            torch.autograd.backward(*grads.args, **grads.kwargs)
            # Gradients for the inputs (hidden states fed to a head) leave unscaled: the
            # parameters' ones stay scaled until finish_update. The scale stays on the device.
            inv = scaler.inverse_scale() if scaler.enabled else None

            def unscaled(x: Any) -> Any:
                return None if x.grad is None else x.grad if inv is None else x.grad * inv.to(x.grad.device)

            return convert_recursive(lambda x: hasattr(x, "grad"), unscaled, inputs)

        return output, backprop

    def finish_update(self, optimizer: Optimizer) -> None:
        params = [(name, p) for name, p in self._model.named_parameters() if p.grad is not None]
        found_inf = self.scaler.unscale([p.grad for _, p in params]) if params else False
        for name, param in params:
            if not found_inf:  # an overflow skips the step; the scaler lowers its scale
                data, grad = optimizer((self.id, name), torch2xp(param.data), torch2xp(param.grad))
                param.data = xp2torch(data, requires_grad=True, device=param.device)
            param.grad.zero_()
        self.scaler.update()

    # -- serialization ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        state = self.state
        return srsly.msgpack_dumps(
            {
                "format": FORMAT,
                "config": state.config.to_dict(),
                "tokenizer": state.tokenizer_files,
                "weights": serialize_encoder(self._model),
            }
        )

    def from_bytes(self, bytes_data: bytes) -> "AlbertShim":
        msg = srsly.msgpack_loads(bytes_data)
        owner = self.state.owner
        where = f"{owner!r}: " if owner else ""
        if not isinstance(msg, dict):
            raise CorruptedFileError(f"{where}the saved ALBERT encoder is not a message of config, tokenizer and weights.")
        if msg.get("format") == FORMAT:
            config_dict, tokenizer_files, weights = msg.get("config"), msg.get("tokenizer"), msg.get("weights")
        else:  # saved by spacy-albert 0.x: config and tokenizer came with the model's attrs
            legacy = self.state.pop_legacy()
            config_dict, tokenizer_files = legacy if legacy else (None, None)
            weights = msg.get("state")
        if not isinstance(config_dict, dict) or tokenizer_files is None or not isinstance(weights, bytes):
            raise CorruptedFileError(f"{where}the saved ALBERT encoder is incomplete (no config, tokenizer or weights).")
        config = AlbertConfig.from_dict(config_dict)
        check_tokenizer_files(tokenizer_files, owner)
        device = get_torch_default_device()
        module = deserialize_encoder(self.build(config), weights, device)
        self.set_module(module)
        self.state.config = config
        self.state.set_tokenizer_files(tokenizer_files)
        self._grad_scaler.to_(device)
        return self


@contextlib.contextmanager
def _train_mode(module: torch.nn.Module) -> Iterator[None]:
    module.train()
    try:
        yield
    finally:
        module.eval()


def albert_shims(model: Any) -> Iterator[AlbertShim]:
    """The AlbertShims in a thinc model (e.g. to check or clear their gradients)."""
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, AlbertShim):
                yield shim


__all__ = ["AlbertShim", "LossScaler", "albert_shims"]
