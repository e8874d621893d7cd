"""State that the ALBERT thinc model keeps beside its torch module: the encoder config and
the tokenizer (`AlbertState`, in `model.attrs["albert"]`, shared with the encoder's
`AlbertShim`, which saves and restores it together with the weights).

Settings that do not change the weights (precision, quantization, windows, batching, ...)
live in `model.attrs["settings"]` (`Settings`): they always come from the config the model
was built from, so overrides at `spacy.load(..., config=...)` take effect."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import srsly
import torch
from thinc.api import Model
from thinc.model import deserialize_attr, serialize_attr

from ..errors import AlbertError, CorruptedFileError
from ..models.configuration import AlbertConfig
from ..tokenization.tokenization_albert_fast import AlbertTokenizerFast

# The files of a saved fast tokenizer; a saved model naming any other file is refused.
TOKENIZER_FILES = frozenset(
    {"spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
)


class Settings(dict):
    """A model's settings that are not weights. Saved with the model for the record, but
    never restored from it: the config the model is built from decides them (so a setting
    overridden at `spacy.load` takes effect)."""


@serialize_attr.register(Settings)
def _serialize_settings(_: Settings, value: Settings, name: str, model: Model) -> bytes:
    return srsly.msgpack_dumps(dict(value))


@deserialize_attr.register(Settings)
def _deserialize_settings(current: Settings, value: bytes, name: str, model: Model) -> Settings:
    return current


def check_tokenizer_files(files: Any, owner: str = "") -> dict[str, bytes]:
    """The tokenizer files of a saved model, refused unless each is a known file name with
    bytes (a name such as "../x" or "/tmp/x" would write outside the folder)."""
    where = f"{owner!r}: " if owner else ""
    if not isinstance(files, dict):
        raise CorruptedFileError(f"{where}the saved ALBERT tokenizer is not a mapping of file names to bytes.")
    for filename, data in files.items():
        if filename not in TOKENIZER_FILES or not isinstance(data, bytes):
            raise CorruptedFileError(
                f"{where}the saved ALBERT model names a tokenizer file {str(filename)[:80]!r}, which is not one of "
                f"{sorted(TOKENIZER_FILES)}: the file is corrupted or was not written by spacy-albert; "
                "do not load it, re-save the pipeline from a trusted copy."
            )
    return files


class AlbertState:
    """The encoder's config and tokenizer, kept in the thinc model's attrs and serialized
    with it (restoring the config rebuilds the torch module before its weights load).

    The tokenizer's files (`spiece.model`, `tokenizer.json`, configs) are kept as bytes, so a
    saved pipeline can export a complete Hugging Face checkpoint without the original files.
    """

    def __init__(
        self, config: AlbertConfig, tokenizer_files: Optional[dict[str, bytes]] = None, owner: str = ""
    ) -> None:
        self.config = config
        self.owner = owner  # the component whose encoder this is (for error messages); not saved
        self.tokenizer: Optional[AlbertTokenizerFast] = None
        self.tokenizer_files: dict[str, bytes] = {}
        self._backend: Any = None
        self._legacy: Optional[tuple[dict, Any]] = None
        if tokenizer_files:
            self.set_tokenizer_files(tokenizer_files)

    def set_tokenizer(self, tokenizer: AlbertTokenizerFast) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            self.tokenizer_files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        self.tokenizer, self._backend = tokenizer, None

    def set_tokenizer_files(self, files: dict[str, bytes]) -> None:
        check_tokenizer_files(files, self.owner)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_tokenizer(tmp, files)
            try:
                self.tokenizer = AlbertTokenizerFast.from_pretrained(tmp)
            except Exception as err:
                where = f"{self.owner!r}: " if self.owner else ""
                raise CorruptedFileError(
                    f"{where}the saved ALBERT tokenizer ({', '.join(sorted(files))}) is corrupted and cannot be read "
                    f"({type(err).__name__}: {str(err).replace(tmp + os.sep, '')[:200]}); restore the pipeline from a good copy."
                ) from err
        self.tokenizer_files, self._backend = dict(files), None

    def save_tokenizer(self, directory: str | Path, files: Optional[dict[str, bytes]] = None) -> None:
        """Write the tokenizer's files (what transformers' tokenizers load) to `directory`."""
        files = check_tokenizer_files(self.tokenizer_files if files is None else files, self.owner)
        Path(directory).mkdir(parents=True, exist_ok=True)
        for filename, data in files.items():
            (Path(directory) / filename).write_bytes(data)

    def pop_legacy(self) -> Optional[tuple[dict, Any]]:
        """(config dict, tokenizer files) read from a model saved by spacy-albert 0.x, whose
        attrs held them (now the encoder's shim saves them with the weights)."""
        legacy, self._legacy = self._legacy, None
        return legacy

    @property
    def backend(self) -> Any:
        """A copy of the fast tokenizer's backend without truncation or padding."""
        if self._backend is None:
            if self.tokenizer is None:
                owner = self.owner or "albert"
                raise AlbertError(
                    f"The ALBERT encoder of {owner!r} has no vocabulary yet: run nlp.initialize() with a checkpoint "
                    f"([initialize.components.{owner}] checkpoint = \"path/to/albert\", or the encoder's own "
                    "`checkpoint` setting) or load a saved pipeline."
                )
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            backend.no_truncation()
            backend.no_padding()
            self._backend = backend
        return self._backend


@serialize_attr.register(AlbertState)
def _serialize_state(_: AlbertState, value: AlbertState, name: str, model: Model) -> bytes:
    # config and tokenizer are saved by the encoder's shim, together with the weights
    return srsly.msgpack_dumps({"saved_with": "shim"})


@deserialize_attr.register(AlbertState)
def _deserialize_state(current: AlbertState, value: bytes, name: str, model: Model) -> AlbertState:
    """The encoder shim's own state object (the shim restores it from its bytes, read after
    the attrs); a 0.x model's config and tokenizer, which its attrs held, are handed to it."""
    shims = model.layers[0].shims if model.layers else []
    state = getattr(shims[0], "state", current) if shims else current
    msg = srsly.msgpack_loads(value)
    if isinstance(msg, dict) and "config" in msg:
        state._legacy = (msg.get("config"), msg.get("tokenizer"))
    return state


def dropout_settings(config: AlbertConfig) -> dict[str, Any]:
    """The dropout probabilities of a config (training settings, not shapes)."""
    names = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob")
    return {name: getattr(config, name) for name in names}


def serialize_weights(module: torch.nn.Module) -> bytes:
    """The module's weights as safetensors bytes, tied weights (the MLM decoder) stored once."""
    from safetensors.torch import save

    tied = set(getattr(module, "_tied_weights_keys", ()))
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items() if k not in tied}
    return save(state, metadata={"format": "pt"})


def deserialize_weights(module: torch.nn.Module, data: bytes, device: torch.device) -> torch.nn.Module:
    from safetensors.torch import load

    result = module.load_state_dict(load(data), strict=False)
    missing = set(result.missing_keys) - set(getattr(module, "_tied_weights_keys", ()))
    if missing or result.unexpected_keys:
        raise AlbertError(f"Saved weights do not fit the model: missing {sorted(missing)}, "
                          f"unexpected {sorted(result.unexpected_keys)}.")  # fmt: skip
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    return module.to(device)
