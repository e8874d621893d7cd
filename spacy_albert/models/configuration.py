"""`AlbertConfig`: the hyperparameters of an ALBERT model, read from and written to a
Hugging Face `config.json` (unknown keys are kept and written back)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .activations import ACTIVATIONS

CONFIG_NAME = "config.json"
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")

# The spaCy architecture's and pretraining's defaults: an albert-base-v2-shaped encoder (a
# product choice; `AlbertConfig` itself keeps the reference's xxlarge defaults, as transformers
# has them). The one table of these fields: the architecture, the pretraining CLI and trainer
# and `configure` take their names and defaults from here.
ENCODER_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30000,
    "embedding_size": 128,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_hidden_groups": 1,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "inner_group_num": 1,
    "hidden_act": "gelu_new",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
# Generic fields every Hugging Face config has, with their defaults.
_GENERIC: dict[str, Any] = {
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "problem_type": None,
    "architectures": None,
    "torch_dtype": None,
    "chunk_size_feed_forward": 0,
    "tie_word_embeddings": True,
}


class AlbertConfig:
    """Configuration of an ALBERT model, with the reference's fields and defaults.

    Extra keyword arguments are kept as attributes and written back to `config.json`, so a
    config round-trips through this class without losing anything.
    """

    model_type = "albert"

    def __init__(
        self,
        vocab_size: int = 30000,
        embedding_size: int = 128,
        hidden_size: int = 4096,
        num_hidden_layers: int = 12,
        num_hidden_groups: int = 1,
        num_attention_heads: int = 64,
        intermediate_size: int = 16384,
        inner_group_num: int = 1,
        hidden_act: str = "gelu_new",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        classifier_dropout_prob: float | None = 0.1,
        position_embedding_type: str = "absolute",
        pad_token_id: int = 0,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_hidden_groups = num_hidden_groups
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.inner_group_num = inner_group_num
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout_prob = classifier_dropout_prob
        self.position_embedding_type = position_embedding_type
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id

        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        if id2label is not None:
            self.id2label = {int(k): v for k, v in id2label.items()}
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        if num_labels is not None and num_labels != len(self.id2label):
            self.num_labels = num_labels
        if label2id is not None:
            self.label2id = {k: int(v) for k, v in label2id.items()}
        for key, default in _GENERIC.items():
            setattr(self, key, kwargs.pop(key, copy.deepcopy(default)))
        self.use_return_dict = kwargs.pop("use_return_dict", None)
        self.model_type = kwargs.pop("model_type", self.model_type)
        # Unknown keys (e.g. transformers_version, task-specific params) are kept verbatim.
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.validate()

    # ---- labels -------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if getattr(self, "id2label", None) is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def id2label(self) -> dict[int, str]:
        return self._id2label

    @id2label.setter
    def id2label(self, mapping: dict[int, str]) -> None:
        self._id2label = {int(k): v for k, v in mapping.items()}
        self.label2id = {v: k for k, v in self._id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @use_return_dict.setter
    def use_return_dict(self, value: bool | None) -> None:
        if value is not None:
            self.return_dict = value

    # ---- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise a ValueError naming the field when a value cannot build a model."""
        if isinstance(self.hidden_act, str) and self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"AlbertConfig.hidden_act={self.hidden_act!r} is not a known activation; "
                f"choose one of {sorted(ACTIVATIONS)}."
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"AlbertConfig.position_embedding_type={self.position_embedding_type!r}; "
                f"choose one of {POSITION_EMBEDDING_TYPES}."
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"AlbertConfig.problem_type={self.problem_type!r}; choose one of {PROBLEM_TYPES}.")
        for name in (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "num_hidden_groups",
            "num_attention_heads",
            "intermediate_size",
            "inner_group_num",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AlbertConfig.{name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"AlbertConfig.hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})."
            )
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(
                f"AlbertConfig.num_hidden_groups ({self.num_hidden_groups}) cannot exceed "
                f"num_hidden_layers ({self.num_hidden_layers})."
            )

    # ---- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON values (label ids as strings, as in `config.json`)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "_id2label":
                out["id2label"] = {str(k): v for k, v in value.items()}
            elif key == "label2id":
                out["label2id"] = dict(value)
            elif not key.startswith("_"):
                out[key] = copy.deepcopy(value)
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "AlbertConfig":
        merged = {**data, **overrides}
        if "num_labels" in overrides and "id2label" not in overrides:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        return cls(**merged)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string(), encoding="utf8")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "AlbertConfig":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"No config file at {str(path)!r}.")
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{str(path)!r} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise CheckpointError(f"{str(path)!r} must hold a JSON object.")
        model_type = data.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise CheckpointError(f"{str(path)!r} describes a {model_type!r} model, not an ALBERT model.")
        try:
            return cls.from_dict(data, **overrides)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"Invalid ALBERT config in {str(path)!r}: {err}") from err

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "AlbertConfig":
        """Read `config.json` from a checkpoint directory or a cached hub id."""
        from ..hub import resolve_model_dir

        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only") if k in kwargs}
        directory = resolve_model_dir(name_or_path, [CONFIG_NAME], **hub_kwargs)
        return cls.from_json_file(directory / CONFIG_NAME, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AlbertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"AlbertConfig {self.to_json_string()}"
