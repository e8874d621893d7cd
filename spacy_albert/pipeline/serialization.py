"""Saving and loading of spacy-albert's components.

* Saves are atomic: every file is serialised to bytes first and then written through a
  temporary file in the same folder (flushed, fsynced, `os.replace`d), so a save that fails
  or is interrupted (`spacy train` overwriting `model-best`, Ctrl-C) leaves the previous
  pipeline loadable and unchanged.
* Loading errors name the component, the file and the way forward (`CorruptedFileError`)
  instead of surfacing msgpack's, safetensors' or the tokenizer's own messages.
* Settings that are not learned come from the config the component was built from, also
  when a saved pipeline is loaded (`spacy.load(path, config={...})` overrides take effect):
  cfg keys named in `config_cfg_keys`, and the encoders' `Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import srsly
from thinc.api import Model

from ..errors import AlbertError, CorruptedFileError
from ..layers.transformer import albert_state
from ..util_io import atomic_write_bytes

ENCODER_NODES = ("albert_transformer",)


def claim_encoders(model: Model, component: str) -> None:
    """Record `component` as the owner of the ALBERT encoders in `model` (for messages)."""
    for node in model.walk():
        if node.name in ENCODER_NODES:
            albert_state(node).owner = component


def _damaged(component: str, where: str, err: Exception) -> CorruptedFileError:
    detail = f"{type(err).__name__}: {str(err)[:300]}"
    return CorruptedFileError(
        f"{component!r}: {where} cannot be loaded ({detail}). The file is corrupted or incomplete (for example "
        "an interrupted copy or download), or it was saved from a different model config: restore the pipeline "
        "from a good copy, or train and save it again."
    )


def load_part(component: str, where: str, load: Callable[[], Any]) -> Any:
    """Run `load`, turning any failure into an error naming the component and the file;
    an error of this package keeps its own message, prefixed with the component and file."""
    try:
        return load()
    except AlbertError as err:
        message = str(err)
        if where in message:
            raise
        message = message.removeprefix(f"{component!r}: ")
        raise type(err)(f"{component!r} ({where}): {message}") from err
    except Exception as err:
        raise _damaged(component, where, err) from err


def _read_file(component: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorruptedFileError(
            f"{component!r}: cannot read {str(path)!r} ({err.strerror or err}): the saved pipeline is incomplete; "
            "restore it from a good copy, or train and save it again."
        ) from err
    if not data:
        raise CorruptedFileError(
            f"{component!r}: {str(path)!r} is empty (a save that was interrupted?): restore the pipeline from a "
            "good copy, or train and save it again."
        )
    return data


class PipeSerialization:
    """`to_disk` / `from_disk` / `to_bytes` / `from_bytes` for TrainablePipe components
    (put it first among the bases). `config_cfg_keys`: the `cfg` entries that are settings
    (decided by the config, also at load) rather than learned state (labels, tags)."""

    config_cfg_keys: tuple[str, ...] = ()
    name: str
    model: Model
    vocab: Any
    cfg: Any

    def _config_cfg(self) -> dict[str, Any]:
        cfg = getattr(self, "cfg", None) or {}
        return {key: cfg[key] for key in self.config_cfg_keys if key in cfg}

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write `cfg` and `model` (and `vocab` unless excluded), each file atomically."""
        self._validate_serialization_attrs()  # type: ignore[attr-defined]
        path, exclude = Path(path), set(exclude)
        files: dict[str, bytes] = {}
        if "cfg" not in exclude and getattr(self, "cfg", None) is not None:
            files["cfg"] = (srsly.json_dumps(self.cfg, indent=2) + "\n").encode("utf8")
        if "model" not in exclude:
            files["model"] = self.model.to_bytes()  # everything serialised before a byte is written
        path.mkdir(parents=True, exist_ok=True)
        if "vocab" not in exclude:
            self.vocab.to_disk(path / "vocab", exclude=exclude)
        for name, data in files.items():
            atomic_write_bytes(path / name, data)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = tuple()) -> Any:
        self._validate_serialization_attrs()  # type: ignore[attr-defined]
        path, exclude = Path(path), set(exclude)
        settings = self._config_cfg()
        if "cfg" not in exclude and getattr(self, "cfg", None) is not None and (path / "cfg").exists():
            data = _read_file(self.name, path / "cfg")
            self.cfg.update(load_part(self.name, str(path / "cfg"), lambda: srsly.json_loads(data)))
        if "vocab" not in exclude:
            self.vocab.from_disk(path / "vocab", exclude=exclude)
        if "model" not in exclude:
            data = _read_file(self.name, path / "model")
            load_part(self.name, str(path / "model"), lambda: self.model.from_bytes(data))
        self.cfg.update(settings)
        return self

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> Any:
        settings = self._config_cfg()
        load_part(self.name, "its serialized bytes", lambda: super(PipeSerialization, self).from_bytes(bytes_data, exclude=exclude))  # type: ignore[misc]
        self.cfg.update(settings)
        return self
