"""Hugging Face checkpoint I/O: `from_pretrained` / `save_pretrained` for every ALBERT class.

A checkpoint directory holds `config.json` and the weights as `model.safetensors` or
`pytorch_model.bin` (or a sharded index of either). Weights of one head load into another
class: the `albert.` prefix is added or stripped as needed, missing heads are initialised and
reported, and shape mismatches raise an error that names the tensor.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ..errors import CheckpointError, ShapeMismatchError
from ..util_io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from .configuration import AlbertConfig

logger = logging.getLogger("spacy_albert")

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFE_WEIGHTS, SAFE_INDEX, BIN_WEIGHTS, BIN_INDEX)
# Buffers the reference once saved but never needs.
_NON_PERSISTENT = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclass
class LoadingInfo:
    """What `from_pretrained` did with the checkpoint's tensors."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Reading and writing state dicts
# ---------------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"Cannot read weights from {str(path)!r}: corrupted or not safetensors ({err}).") from err


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(f"Cannot read weights from {str(path)!r}: corrupted or not a torch file ({err}).")


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A `pytorch_model.bin` state dict, unpickled with ``weights_only=True``: tensors and plain
    containers only, so a pickle carrying code is refused, never run."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():  # torch's refusal (also for bytes that are no pickle)
            raise CheckpointError(
                f"Refusing to load {str(path)!r}: it is corrupted, or holds pickled objects other than "
                "tensors, which could run code and are never loaded. Only plain tensor state dicts are read "
                "from .bin files; use the checkpoint's model.safetensors instead (or re-save it from a "
                "source you trust)."
            ) from err
        raise _unreadable(path, err) from err
    except Exception as err:  # torch raises many types for a bad pickle or zip
        raise _unreadable(path, err) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict of tensors.")
    return state


def read_weight_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read one weights file (`.safetensors` or a torch pickle) into a CPU state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {str(path)!r} does not exist.")
    return _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)


def find_weights(directory: Path) -> Path:
    """The weights file (or shard index) of a checkpoint directory, safetensors first."""
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise CheckpointError(
        f"No weights in {str(directory)!r}: expected one of {', '.join(WEIGHT_FILES)}; found {present or 'nothing'}."
    )


def shard_file_name(name: Any, index: Path, suffix: str) -> str:
    """Check a shard name read from `index`: a plain `suffix` file name in the index's own
    directory (no folders, `..`, absolute or drive paths), so an index cannot point elsewhere."""
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and ":" not in name
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
        and name.endswith(suffix)
    )
    if not plain:
        raise CheckpointError(
            f"Invalid shard index {str(index)!r}: weight_map names {name!r}, which is not a plain "
            f"'*{suffix}' file name in the checkpoint directory. Shard files must sit next to the index; "
            "this index was edited or comes from an untrusted source."
        )
    return name


def read_checkpoint_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The whole state dict of a checkpoint directory, following a shard index if there is one."""
    path = find_weights(Path(directory))
    if not path.name.endswith(".index.json"):
        return read_weight_file(path)
    try:
        weight_map = json.loads(path.read_text(encoding="utf8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"Invalid shard index {str(path)!r}: {err}") from err
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"Invalid shard index {str(path)!r}: weight_map must map tensor names to file names.")
    suffix = ".safetensors" if path.name == SAFE_INDEX else ".bin"
    shards = {shard_file_name(shard, path, suffix) for shard in weight_map.values()}
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(shards):
        state.update(read_weight_file(path.parent / shard))
    missing = set(weight_map) - set(state)
    if missing:
        raise CheckpointError(f"Shards listed in {str(path)!r} lack tensors: {sorted(missing)[:5]}")
    return state


def write_weights(state: dict[str, torch.Tensor], directory: Path, safe_serialization: bool = True) -> Path:
    """Write a state dict as `model.safetensors` (or `pytorch_model.bin`)."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if safe_serialization:
        from safetensors.torch import save

        path = directory / SAFE_WEIGHTS
        atomic_write_bytes(path, save(state, metadata={"format": "pt"}))
    else:
        path = directory / BIN_WEIGHTS
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------
# Matching checkpoint keys to a model
# ---------------------------------------------------------------------------------------
def _rename_legacy(key: str) -> str:
    """Old TF-converted checkpoints call LayerNorm parameters gamma and beta."""
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def align_keys(
    state: dict[str, torch.Tensor], model_keys: set[str], prefix: str, model_has_prefix: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename checkpoint keys to the model's; returns the renamed dict and unexpected keys."""
    state = {_rename_legacy(k): v for k, v in state.items()}
    with_prefix = prefix + "."
    ckpt_has_prefix = any(k.startswith(with_prefix) for k in state)
    aligned: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        name = key
        if model_has_prefix and not ckpt_has_prefix:
            name = with_prefix + key
        elif not model_has_prefix and ckpt_has_prefix:
            if not key.startswith(with_prefix):
                unexpected.append(key)  # a head this class does not have
                continue
            name = key[len(with_prefix) :]
        if name.endswith(_NON_PERSISTENT):
            continue
        if name in model_keys:
            aligned[name] = tensor
        else:
            unexpected.append(key)
    return aligned, unexpected


def _mismatch_hint(key: str, config: "AlbertConfig", ckpt_shape: tuple[int, ...]) -> str:
    if key.endswith("word_embeddings.weight"):
        return f" (checkpoint vocabulary has {ckpt_shape[0]} rows, config.vocab_size is {config.vocab_size})"
    if key.endswith(("classifier.weight", "classifier.bias", "qa_outputs.weight", "qa_outputs.bias")):
        return f" (the checkpoint's head has {ckpt_shape[0]} outputs; pass ignore_mismatched_sizes=True to start it anew)"
    return ""


def check_vocab_matches(tokenizer: Any, config: "AlbertConfig") -> None:
    """Raise if a tokenizer can produce ids the model's embedding matrix does not have."""
    size = len(tokenizer)
    if size > config.vocab_size:
        raise ShapeMismatchError(
            f"The tokenizer has {size} pieces but config.vocab_size is {config.vocab_size}: "
            "the SentencePiece model does not belong to this checkpoint."
        )
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is not None and config.pad_token_id is not None and pad_id != config.pad_token_id:
        raise ShapeMismatchError(
            f"The tokenizer's pad id is {pad_id} but config.pad_token_id is {config.pad_token_id}."
        )


# ---------------------------------------------------------------------------------------
# The mixin
# ---------------------------------------------------------------------------------------
class PreTrainedMixin:
    """`from_pretrained`, `save_pretrained` and `load_checkpoint_state` for ALBERT models."""

    base_model_prefix: str
    config_class: Any
    _tied_weights_keys: tuple[str, ...]

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: Optional["AlbertConfig"] = None,
        dtype: Union[torch.dtype, str, None] = None,
        device: Union[torch.device, str, None] = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        revision: Optional[str] = None,
        cache_dir: Optional[str | os.PathLike] = None,
        local_files_only: Optional[bool] = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a model from a checkpoint directory or a hub id in the local cache.

        `config_overrides` (e.g. `num_labels=3`, `problem_type=...`) update the checkpoint's
        config. `dtype` is a torch dtype, its name, or "auto" for the checkpoint's dtype.
        """
        from ..hub import resolve_model_dir

        directory = resolve_model_dir(
            name_or_path,
            ["config.json", "*.safetensors", "*.bin", "*.index.json"],
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        if config is None:
            config = cls.config_class.from_json_file(directory / "config.json", **config_overrides)
        elif config_overrides:
            config = cls.config_class.from_dict(config.to_dict(), **config_overrides)
        state = read_checkpoint_weights(directory)
        model = cls(config)
        info = model.load_checkpoint_state(state, ignore_mismatched_sizes=ignore_mismatched_sizes, source=directory)
        target_dtype = _resolve_dtype(dtype, config, state)
        if target_dtype is not None or device is not None:
            model.to(device=device, dtype=target_dtype)
        model.eval()
        return (model, info) if output_loading_info else model

    def load_checkpoint_state(
        self,
        state: dict[str, torch.Tensor],
        *,
        ignore_mismatched_sizes: bool = False,
        source: Union[str, os.PathLike, None] = None,
    ) -> LoadingInfo:
        """Load a (possibly other-head) state dict into this model and report what happened."""
        own = self.state_dict()
        prefix = self.base_model_prefix
        aligned, unexpected = align_keys(state, set(own), prefix, hasattr(self, prefix))
        info = LoadingInfo(unexpected_keys=unexpected)
        where = f" in {str(source)!r}" if source is not None else ""
        for key in list(aligned):
            ckpt_shape, model_shape = tuple(aligned[key].shape), tuple(own[key].shape)
            if ckpt_shape != model_shape:
                info.mismatched_keys.append((key, ckpt_shape, model_shape))
                del aligned[key]
        if info.mismatched_keys and not ignore_mismatched_sizes:
            lines = [
                f"  {key}: checkpoint {list(c)} vs model {list(m)}{_mismatch_hint(key, self.config, c)}"
                for key, c, m in info.mismatched_keys
            ]
            raise ShapeMismatchError(f"Weights{where} do not fit {type(self).__name__}:\n" + "\n".join(lines))
        result = self.load_state_dict(aligned, strict=False)
        self.tie_weights()
        tied = set(self._tied_weights_keys)
        info.missing_keys = [k for k in result.missing_keys if k not in tied]
        if not aligned:
            raise CheckpointError(f"No weights{where} match {type(self).__name__}: is this an ALBERT checkpoint?")
        name = type(self).__name__
        if info.missing_keys:
            logger.warning("%s: newly initialised (not in the checkpoint%s): %s", name, where, info.missing_keys)
        if info.unexpected_keys:
            logger.info("%s: checkpoint tensors not used%s: %s", name, where, info.unexpected_keys)
        if info.mismatched_keys:
            logger.warning("%s: re-initialised for a shape mismatch%s: %s", name, where, info.mismatched_keys)
        return info

    def save_pretrained(self, directory: str | os.PathLike, *, safe_serialization: bool = True) -> Path:
        """Write `config.json` and the weights so that transformers' `from_pretrained` loads them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config_class.from_dict(self.config.to_dict())
        config.architectures = [type(self).__name__]
        config.torch_dtype = str(self.dtype).replace("torch.", "")
        atomic_write_text(directory / "config.json", config.to_json_string())
        state = self.state_dict()
        tied = set(self._tied_weights_keys)
        kept = {t.data_ptr() for k, t in state.items() if k not in tied}
        for key in tied & set(state):  # a tied tensor is stored once, under its other name
            if state[key].data_ptr() in kept:
                del state[key]
        write_weights(state, directory, safe_serialization)
        return directory


def _resolve_dtype(
    dtype: Union[torch.dtype, str, None], config: "AlbertConfig", state: dict[str, torch.Tensor]
) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        name = getattr(config, "torch_dtype", None)
        if name:
            return getattr(torch, str(name).replace("torch.", ""))
        return next((t.dtype for t in state.values() if t.is_floating_point()), None)
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use a torch dtype, its name, or 'auto'.")
    return value
