"""Int8 dynamic quantization of the ALBERT encoder for CPU inference.

`quantize_encoder` replaces every `nn.Linear` of the encoder (the E -> H projection, the
attention projections and the feed-forward layers; the embeddings stay float) by torch's
dynamically quantized linear layer: weights stored in int8 with one scale per output
channel, activations quantized on the fly, int8 matmuls (fbgemm / oneDNN on x86, qnnpack
on ARM) accumulating in int32. ALBERT shares one layer's weights across all passes, so the
model is quantized once and the int8 weights are tiny.

The encoder's weights serialize to safetensors either way: float weights as they are,
quantized layers as their int8 weights, per-channel scales and zero points and float bias,
so a saved quantized pipeline loads back bit for bit without its float weights.
"""

from __future__ import annotations

import json
import struct
import warnings
from typing import Any, Iterable, Optional

import torch
from torch import nn

from ..errors import AlbertError
from ..models.modeling_albert import AlbertAttention
from .encoder import WindowedEncoder, _is_quantized_linear
from .state import deserialize_weights, serialize_weights

QUANTIZE_MODES = (None, "int8")
_FORMAT = "int8-dynamic-per-channel"


def _quantization_api() -> Any:
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as err:  # pragma: no cover - depends on the torch build
        raise AlbertError(
            f"This torch ({torch.__version__}) has no eager-mode dynamic quantization "
            "(torch.ao.quantization.quantize_dynamic), which quantize = \"int8\" needs."
        ) from err
    return quantize_dynamic, per_channel_dynamic_qconfig


def apply_quantize_setting(encoder: WindowedEncoder) -> WindowedEncoder:
    """Quantize `encoder` now if its `quantize` setting is "int8": at load and initialize, so
    that `forward` never changes the module (which would race between threads)."""
    return quantize_encoder(encoder) if encoder.quantize == "int8" else encoder


def quantize_encoder(encoder: WindowedEncoder) -> WindowedEncoder:
    """Quantize the encoder's linear layers to int8 in place (a no-op when already done)."""
    if encoder.quantized:
        return encoder
    device = encoder.albert.embeddings.word_embeddings.weight.device
    if device.type != "cpu":
        raise AlbertError(
            f"quantize = \"int8\" is dynamic int8 quantization for CPU inference, but the encoder is on {device}: "
            "on a GPU use precision = \"bfloat16\" (or \"float16\") instead."
        )
    quantize_dynamic, qconfig = _quantization_api()
    for module in encoder.albert.encoder.modules():
        if isinstance(module, AlbertAttention) and not hasattr(module, "qkv"):
            # query, key and value as one layer: one activation quantization and one int8 matmul
            # instead of three (the packed path uses it; the separate ones stay for the padded path)
            linears = (module.query, module.key, module.value)
            fused = nn.Linear(module.query.in_features, sum(m.out_features for m in linears))
            with torch.no_grad():
                fused.weight.copy_(torch.cat([m.weight for m in linears]))
                fused.bias.copy_(torch.cat([m.bias for m in linears]))
            module.qkv = fused.to(device)
    with warnings.catch_warnings():  # torch flags eager-mode quantization as deprecated
        warnings.simplefilter("ignore")
        quantize_dynamic(encoder.albert.encoder, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    encoder.quantize = "int8"
    return encoder


def _quantized_linears(module: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in module.named_modules() if _is_quantized_linear(m)}


def serialize_encoder(module: WindowedEncoder) -> bytes:
    """The encoder's weights as safetensors bytes (int8 layers as int8 + scales)."""
    linears = _quantized_linears(module)
    if not linears:
        return serialize_weights(module)
    from safetensors.torch import save

    state: dict[str, torch.Tensor] = {}
    for name, linear in linears.items():
        weight, bias = linear._weight_bias()
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales, zero_points = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
            axis = weight.q_per_channel_axis()
        else:
            scales = torch.tensor([weight.q_scale()], dtype=torch.float64)
            zero_points, axis = torch.tensor([weight.q_zero_point()], dtype=torch.int64), -1
        state[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        state[f"{name}.weight_scales"] = scales.to(torch.float64).contiguous()
        state[f"{name}.weight_zero_points"] = zero_points.to(torch.int64).contiguous()
        state[f"{name}.weight_axis"] = torch.tensor([axis], dtype=torch.int64)
        if bias is not None:
            state[f"{name}.bias"] = bias.detach().float().contiguous()
    prefixes = tuple(f"{name}." for name in linears)
    for key, value in module.state_dict().items():
        if isinstance(value, torch.Tensor) and not key.startswith(prefixes):
            state[key] = value.detach().contiguous().cpu()
    return save(state, metadata={"format": "pt", "quantization": _FORMAT})


def _metadata(data: bytes) -> dict[str, str]:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]).get("__metadata__", {}) or {}


def deserialize_encoder(module: WindowedEncoder, data: bytes, device: torch.device) -> WindowedEncoder:
    """Load weights written by `serialize_encoder`: int8 ones into a quantized encoder (the
    module is quantized first if needed), float ones into a float encoder, which is then
    quantized here if its `quantize` setting asks for it (never later, inside `forward`)."""
    if _metadata(data).get("quantization") != _FORMAT:
        if module.quantized:  # float weights for an encoder that was quantized: start from floats
            module = WindowedEncoder(
                module.config, module.precision, quantize=module.quantize, torch_compile=module.torch_compile
            )
        return apply_quantize_setting(deserialize_weights(module, data, device))
    from safetensors.torch import load

    if module.quantize != "int8":
        raise AlbertError(
            "This pipeline's ALBERT encoder was saved int8-quantized, and its float weights are not kept: load it "
            "with quantize = \"int8\" (its saved setting), or load the float pipeline it was quantized from."
        )
    if torch.device(device).type != "cpu":
        raise AlbertError(
            f"This pipeline's ALBERT encoder is int8-quantized, which runs on CPU only, not on {device}."
        )
    quantize_encoder(module.to("cpu"))
    state = load(data)
    linears = _quantized_linears(module)
    for name, linear in linears.items():
        try:
            int8 = state.pop(f"{name}.weight_int8")
            scales = state.pop(f"{name}.weight_scales")
            zero_points = state.pop(f"{name}.weight_zero_points")
            axis = int(state.pop(f"{name}.weight_axis")[0])
        except KeyError as err:
            raise AlbertError(f"Saved int8 weights do not fit the model: {name!r} is missing.") from err
        bias = state.pop(f"{name}.bias", None)
        if tuple(int8.shape) != (linear.out_features, linear.in_features):
            raise AlbertError(f"Saved int8 weights do not fit the model: {name!r} has shape {tuple(int8.shape)}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if axis >= 0:
                weight = torch._make_per_channel_quantized_tensor(int8, scales, zero_points, axis)
            else:
                weight = torch._make_per_tensor_quantized_tensor(int8, float(scales[0]), int(zero_points[0]))
            linear.set_weight_bias(weight, bias)
    # The float rest (embeddings, LayerNorms): quantized layers cannot load_state_dict partially.
    prefixes = tuple(f"{name}." for name in linears)
    targets = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    expected = {k for k, v in module.state_dict().items() if isinstance(v, torch.Tensor) and not k.startswith(prefixes)}
    unexpected = sorted(k for k in state if k not in targets or k.startswith(prefixes))
    missing = sorted(expected - set(state))
    if missing or unexpected:
        raise AlbertError(f"Saved int8 weights do not fit the model: missing {missing}, unexpected {unexpected}.")
    with torch.no_grad():
        for key, value in state.items():
            if tuple(targets[key].shape) != tuple(value.shape):
                raise AlbertError(f"Saved int8 weights do not fit the model: {key!r} has shape {tuple(value.shape)}.")
            targets[key].copy_(value)
    return module


ENCODER_ARCHITECTURE = "spacy-albert.AlbertTransformer.v1"


def _set_in_config(config: Any, key: str, value: Any) -> int:
    """Set `key` in every AlbertTransformer block of a (nested) config; returns how many."""
    found = 0
    if isinstance(config, dict):
        if config.get("@architectures") == ENCODER_ARCHITECTURE:
            config[key] = value
            found += 1
        for child in config.values():
            found += _set_in_config(child, key, value)
    return found


def quantize_pipeline(nlp: Any, components: Optional[Iterable[str]] = None) -> list[str]:
    """Quantize to int8 the ALBERT encoders of `nlp`'s components (all that own one, or the
    ones named), in place: their modules, their `quantize` setting and the pipeline config, so
    that `nlp.to_disk()` writes a pipeline that `spacy.load` brings back quantized. Returns
    the names of the components quantized."""
    from .transformer import get_torch_encoder

    wanted = None if components is None else list(components)
    for name in wanted or []:
        if name not in nlp.component_names:
            raise AlbertError(f"quantize: the pipeline has no component {name!r} (it has {nlp.component_names}).")
    done = []
    for name, pipe in nlp.components:
        if wanted is not None and name not in wanted:
            continue
        model = getattr(pipe, "model", None)
        encoders = [n for n in model.walk() if n.name == "albert_transformer"] if model is not None else []
        if not encoders:
            if wanted is not None:
                raise AlbertError(f"quantize: component {name!r} has no ALBERT encoder of its own.")
            continue
        for node in encoders:
            node.attrs["settings"]["quantize"] = "int8"
            quantize_encoder(get_torch_encoder(node))
        _set_in_config(nlp.get_pipe_config(name), "quantize", "int8")
        done.append(name)
    if not done:
        raise AlbertError("quantize: no component of this pipeline has an ALBERT encoder (spacy-albert.AlbertTransformer.v1).")
    return done
