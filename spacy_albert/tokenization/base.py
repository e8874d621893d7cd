"""What the slow and fast ALBERT tokenizers share: `BatchEncoding`, special tokens, argument
handling for `__call__`/`encode*`, decoding, and saving/loading in the reference's format."""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import CheckpointError
from ..hub import resolve_model_dir
from ..util_io import atomic_write_text

logger = logging.getLogger(__name__)

SPIECE_UNDERLINE = "▁"
VOCAB_FILE = "spiece.model"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# The reference's thresholds: a model_max_length above LARGE_INTEGER means "no maximum".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
TENSOR_TYPES = ("pt", "np")

# --------------------------------------------------------------------------------------------
# BatchEncoding
# --------------------------------------------------------------------------------------------


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict (``input_ids``, ``attention_mask``, ...) that also
    allows attribute access, converts to tensors, and (fast tokenizer) maps tokens to words and
    characters through the underlying `tokenizers.Encoding` objects."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encodings: list[Any] | None = None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
    ) -> None:
        super().__init__(data or {})
        self._encodings = encodings
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis=prepend_batch_axis)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {item!r}") from None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": dict(self), "encodings": self._encodings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state["data"])
        self._encodings = state["encodings"]

    def __reduce__(self):  # dict subclasses pickle items separately; keep one code path
        return (self.__class__, (), self.__getstate__())

    @property
    def encodings(self) -> list[Any] | None:
        """The `tokenizers.Encoding` per sequence (fast tokenizer only), else None."""
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    def _encoding(self, batch_index: int) -> Any:
        if self._encodings is None:
            raise ValueError("This method is only available for outputs of AlbertTokenizerFast.")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of sequence `batch_index` (fast tokenizer only)."""
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Word index per token, None for special tokens (fast tokenizer only)."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0/1 per token for the first/second sequence, None for special tokens (fast only)."""
        return self._encoding(batch_index).sequence_ids

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """Index of the token covering a character of the original text (fast only).

        Called as ``char_to_token(char_index)`` for a single sequence, or
        ``char_to_token(batch_index, char_index)``.
        """
        if char_index is None:
            batch_index, char_index = 0, batch_or_char_index
        else:
            batch_index = batch_or_char_index
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def convert_to_tensors(self, tensor_type: str | None, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Convert the values in place to torch tensors ("pt") or numpy arrays ("np")."""
        if tensor_type is None:
            return self
        tensor_type = getattr(tensor_type, "value", tensor_type)
        if tensor_type not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {tensor_type!r}.")
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            try:
                self[key] = _as_tensor(value, tensor_type)
            except (ValueError, TypeError, RuntimeError) as err:
                raise ValueError(
                    f"Unable to create a tensor for {key!r}: the sequences probably have different "
                    "lengths. Use padding=True (and truncation=True) to get equal lengths."
                ) from err
        return self

    def to(self, device: Any, *, non_blocking: bool = False) -> BatchEncoding:
        """Move every torch tensor to `device` (in place); returns self."""
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self


def _as_tensor(value: Any, tensor_type: str) -> Any:
    import numpy as np

    if tensor_type == "pt":
        import torch

        if isinstance(value, torch.Tensor):
            return value
        return torch.tensor(value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        if len({len(row) for row in value}) > 1:  # ragged: an object array, as the reference
            return np.asarray([np.asarray(row) for row in value], dtype=object)
    return np.asarray(value)


def _to_list(values: Any) -> Any:
    """Turn tensors/arrays into (nested) Python lists; leave lists and ints alone."""
    return values.tolist() if hasattr(values, "tolist") else values


# --------------------------------------------------------------------------------------------
# Special tokens and options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecialToken:
    """A special token and how it matches in raw text (the reference's `AddedToken` flags)."""

    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False
    special: bool = True

    @classmethod
    def coerce(cls, value: Any, **defaults: bool) -> SpecialToken:
        """From a str (with `defaults`), a dict, or any object with AddedToken's attributes."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value, **defaults)
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in value.items() if k in known})
        content = getattr(value, "content", None)
        if not isinstance(content, str):
            raise TypeError(f"Expected a special token as str or AddedToken, got {type(value).__name__}.")
        flags = {f.name: bool(getattr(value, f.name, f.default)) for f in fields(cls) if f.name != "content"}
        return cls(content, **{**flags, "special": True})

    @property
    def has_default_flags(self) -> bool:
        return not (self.lstrip or self.rstrip or self.single_word or self.normalized)

    def to_dict(self, with_special: bool = True) -> dict[str, Any]:
        data = {"content": self.content, "lstrip": self.lstrip, "normalized": self.normalized}
        data.update({"rstrip": self.rstrip, "single_word": self.single_word})
        if with_special:
            data["special"] = self.special
        return data


@dataclass(frozen=True)
class EncodeOptions:
    """Resolved arguments of one `__call__`."""

    add_special_tokens: bool = True
    padding: str = "do_not_pad"
    truncation: str = "do_not_truncate"
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str | None = None
    return_token_type_ids: bool | None = None
    return_attention_mask: bool | None = None
    return_special_tokens_mask: bool = False
    return_offsets_mapping: bool = False
    return_length: bool = False
    verbose: bool = True

    @property
    def want_token_type_ids(self) -> bool:
        return True if self.return_token_type_ids is None else self.return_token_type_ids

    @property
    def want_attention_mask(self) -> bool:
        return True if self.return_attention_mask is None else self.return_attention_mask


SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_INIT_CONFIG_KEYS = (
    "do_lower_case",
    "remove_space",
    "keep_accents",
    "model_max_length",
    "clean_up_tokenization_spaces",
    "sp_model_kwargs",
    "from_slow",
) + SPECIAL_TOKEN_ATTRIBUTES


class AlbertTokenizerBase:
    """Shared behaviour of `AlbertTokenizer` and `AlbertTokenizerFast`.

    Subclasses provide the vocabulary (`vocab_size`, `get_vocab`, `__len__`,
    `convert_tokens_to_ids`, `convert_ids_to_tokens`, `tokenize`), `_decode`, `_encode_plus`,
    `_batch_encode_plus`, `save_vocabulary` and `_save_backend`.
    """

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    pad_token_type_id = 0
    is_fast = False

    # ---- construction ----------------------------------------------------------------------

    def _init_common(
        self,
        *,
        do_lower_case: bool,
        remove_space: bool,
        keep_accents: bool,
        special_tokens: dict[str, Any],
        model_max_length: int = 512,
        clean_up_tokenization_spaces: bool = False,
        **unused: Any,
    ) -> None:
        unknown = set(unused) - {"name_or_path", "tokenizer_class", "padding_side", "truncation_side", "from_slow"}
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: {sorted(unknown)}")
        for side in ("padding_side", "truncation_side"):
            if unused.get(side, "right") != "right":
                raise ValueError(f"Only {side}='right' is supported.")
        self.do_lower_case = do_lower_case
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        self.model_max_length = int(model_max_length) if model_max_length is not None else VERY_LARGE_INTEGER
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self._special: dict[str, SpecialToken] = {}
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            value = special_tokens.get(name)
            if value is not None:
                defaults = {"lstrip": True} if name == "mask_token" else {}
                self._special[name] = SpecialToken.coerce(value, **defaults)
        # Content -> flags; the first attribute naming a token wins (bos_token before cls_token).
        self._flags: dict[str, SpecialToken] = {}
        for token in self._special.values():
            self._flags.setdefault(token.content, token)
        self._all_special_tokens = list(self._flags)

    def _finish_init(self) -> None:
        """Cache the ids of the special tokens once the vocabulary is ready."""
        self._special_ids = {name: self.convert_tokens_to_ids(tok.content) for name, tok in self._special.items()}
        self._all_special_ids = self.convert_tokens_to_ids(self._all_special_tokens)
        self._all_special_id_set = frozenset(self._all_special_ids)

    # ---- special tokens --------------------------------------------------------------------

    def _token(self, name: str) -> str | None:
        token = self._special.get(name)
        return None if token is None else token.content

    def _token_id(self, name: str) -> int | None:
        return self._special_ids.get(name)

    bos_token = property(lambda self: self._token("bos_token"))
    eos_token = property(lambda self: self._token("eos_token"))
    unk_token = property(lambda self: self._token("unk_token"))
    sep_token = property(lambda self: self._token("sep_token"))
    pad_token = property(lambda self: self._token("pad_token"))
    cls_token = property(lambda self: self._token("cls_token"))
    mask_token = property(lambda self: self._token("mask_token"))
    bos_token_id = property(lambda self: self._token_id("bos_token"))
    eos_token_id = property(lambda self: self._token_id("eos_token"))
    unk_token_id = property(lambda self: self._token_id("unk_token"))
    sep_token_id = property(lambda self: self._token_id("sep_token"))
    pad_token_id = property(lambda self: self._token_id("pad_token"))
    cls_token_id = property(lambda self: self._token_id("cls_token"))
    mask_token_id = property(lambda self: self._token_id("mask_token"))

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Attribute name -> token string, e.g. ``{"cls_token": "[CLS]", ...}``."""
        return {name: token.content for name, token in self._special.items()}

    @property
    def all_special_tokens(self) -> list[str]:
        """The distinct special token strings, in the reference's order."""
        return list(self._all_special_tokens)

    @property
    def all_special_ids(self) -> list[int]:
        return list(self._all_special_ids)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + token_ids_0 + sep
        return cls + token_ids_0 + sep + token_ids_1 + sep

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 for special tokens, 0 for sequence tokens: of the sequence that
        `build_inputs_with_special_tokens` would build, or of `token_ids_0` as it is."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(
                    "You should not supply a second sequence if the provided sequence of ids is already "
                    "formatted with special tokens for the model."
                )
            return [1 if token in self._all_special_id_set else 0 for token in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``."""
        first = [0] * (len(token_ids_0) + 2)
        return first if token_ids_1 is None else first + [1] * (len(token_ids_1) + 1)

    # ---- encoding --------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Encode one text, a text pair, or a batch of texts/pairs (lists: `text[i]` with
        `text_pair[i]`). The options follow transformers' tokenizers (right side only)."""
        options = dict(
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
            verbose=verbose,
        )
        if isinstance(text, str):
            if text_pair is not None and not isinstance(text_pair, str):
                raise ValueError("text_pair must be a str when text is a str.")
            return self.encode_plus(text, text_pair, **options)
        if not isinstance(text, (list, tuple)):
            raise ValueError("text must be a str (one example) or a list of str (a batch).")
        if isinstance(text_pair, str):
            raise TypeError("When tokenizing batches of text, text_pair must be a list with the same length as text.")
        if text_pair is not None and len(text) != len(text_pair):
            raise ValueError(f"Batch length of text ({len(text)}) does not match text_pair ({len(text_pair)}).")
        batch = list(zip(text, text_pair)) if text_pair is not None else list(text)
        return self.batch_encode_plus(batch, **options)

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The ``input_ids`` of one text or text pair."""
        return self.encode_plus(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def encode_plus(self, text: str, text_pair: str | None = None, **kwargs: Any) -> BatchEncoding:
        """Encode one text or text pair (same options as `__call__`)."""
        if not isinstance(text, str) or not (text_pair is None or isinstance(text_pair, str)):
            raise ValueError("encode_plus expects str inputs; use __call__ or batch_encode_plus for batches.")
        return self._encode_plus(text, text_pair, self._resolve_options(**kwargs))

    def batch_encode_plus(
        self, batch_text_or_text_pairs: Sequence[str | Sequence[str]], **kwargs: Any
    ) -> BatchEncoding:
        """Encode a list of texts or of ``(text, text_pair)`` pairs (same options as `__call__`)."""
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(f"Expected a list of texts or pairs, got {type(batch_text_or_text_pairs).__name__}.")
        if not batch_text_or_text_pairs:
            raise ValueError("Cannot encode an empty batch.")
        batch = [self._check_item(item) for item in batch_text_or_text_pairs]
        return self._batch_encode_plus(batch, self._resolve_options(**kwargs))

    @staticmethod
    def _check_item(item: Any) -> str | tuple[str, str]:
        if isinstance(item, str):
            return item
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item):
            return (item[0], item[1])
        raise ValueError("Batch items must be str or (str, str) pairs; pretokenized input is not supported.")

    def _resolve_options(
        self,
        *,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        verbose: bool = True,
        return_tensors: str | None = None,
        **flags: Any,
    ) -> EncodeOptions:
        padding, truncation, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        return_tensors = getattr(return_tensors, "value", return_tensors)
        if return_tensors is not None and return_tensors not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {return_tensors!r}.")
        return EncodeOptions(
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            verbose=verbose,
            return_tensors=return_tensors,
            **flags,
        )

    def _resolve_strategies(
        self,
        padding: bool | str,
        truncation: bool | str | None,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        verbose: bool = True,
    ) -> tuple[str, str, int | None]:
        """The reference's rules for turning padding/truncation/max_length into strategies."""
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)
        if max_length is not None and padding is False and truncation is None:
            if verbose:
                logger.warning(
                    "Truncation was not explicitly activated but max_length is provided; defaulting to "
                    "'longest_first' truncation. Pass truncation=True to silence this."
                )
            truncation = "longest_first"
        if padding is False or padding is None:
            padding = "do_not_pad"
        elif padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "max_length is ignored when padding=True and there is no truncation strategy. "
                    "To pad to max length, use padding='max_length'.",
                    stacklevel=4,
                )
            padding = "longest"
        elif padding not in PADDING_STRATEGIES:
            raise ValueError(f"padding must be a bool or one of {PADDING_STRATEGIES}, got {padding!r}.")
        if truncation is None or truncation is False:
            truncation = "do_not_truncate"
        elif truncation is True:
            truncation = "longest_first"
        elif truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(f"truncation must be a bool or one of {TRUNCATION_STRATEGIES}, got {truncation!r}.")

        if max_length is None:
            unbounded = self.model_max_length > LARGE_INTEGER
            if padding == "max_length":
                if unbounded:
                    if verbose:
                        logger.warning("Asked to pad to max_length but no maximum length is known; not padding.")
                    padding = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation != "do_not_truncate":
                if unbounded:
                    if verbose:
                        logger.warning("Asked to truncate but no maximum length is known; not truncating.")
                    truncation = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if (
            truncation != "do_not_truncate"
            and padding != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                "Truncation and padding are both activated but truncation length "
                f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding, truncation, max_length

    def _warn_if_too_long(self, ids: list[int], options: EncodeOptions) -> None:
        if options.max_length is None and options.verbose and 0 < self.model_max_length < len(ids):
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length for "
                "this model (%d > %d). Running this sequence through the model will result in indexing errors",
                len(ids),
                self.model_max_length,
            )

    # ---- decoding --------------------------------------------------------------------------

    def decode(
        self,
        token_ids: int | Sequence[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """Turn ids (list, tensor or array) back into text."""
        token_ids = _to_list(token_ids)
        token_ids = [int(token_ids)] if isinstance(token_ids, int) else [int(i) for i in token_ids]
        text = self._decode(token_ids, skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        sequences: Iterable[Sequence[int]] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """`decode` for each sequence of a batch."""
        return [
            self.decode(seq, skip_special_tokens, clean_up_tokenization_spaces) for seq in _to_list(sequences)
        ]

    @staticmethod
    def clean_up_tokenization(out_string: str) -> str:
        """Remove spaces before punctuation and English contractions (the reference's rules)."""
        for before, after in (
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ):
            out_string = out_string.replace(before, after)
        return out_string

    # ---- saving and loading ----------------------------------------------------------------

    def _config_dict(self) -> dict[str, Any]:
        """tokenizer_config.json in the layout transformers writes."""
        decoder = {
            str(self.convert_tokens_to_ids(token.content)): token.to_dict()
            for token in {t.content: t for t in self._special.values()}.values()
        }
        config: dict[str, Any] = {
            "added_tokens_decoder": dict(sorted(decoder.items(), key=lambda item: int(item[0]))),
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "do_lower_case": self.do_lower_case,
            "extra_special_tokens": {},
            "keep_accents": self.keep_accents,
            "model_max_length": self.model_max_length,
            "remove_space": self.remove_space,
            "sp_model_kwargs": dict(getattr(self, "sp_model_kwargs", {}) or {}),
            "tokenizer_class": "AlbertTokenizer",
        }
        config.update(self.special_tokens_map)
        return dict(sorted(config.items()))

    def save_pretrained(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write spiece.model, tokenizer_config.json and special_tokens_map.json (and tokenizer.json
        for the fast tokenizer), loadable by this package and by transformers."""
        directory = Path(save_directory)
        if directory.is_file():
            raise CheckpointError(f"Provided path ({str(directory)!r}) should be a directory, not a file.")
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        config_path = directory / f"{prefix}{CONFIG_FILE}"
        map_path = directory / f"{prefix}{SPECIAL_TOKENS_MAP_FILE}"
        special_map = {
            name: token.content if token.has_default_flags else token.to_dict(with_special=False)
            for name, token in sorted(self._special.items())
        }
        _write_json(config_path, self._config_dict())
        _write_json(map_path, special_map)
        written = (str(config_path), str(map_path)) + self._save_vocab_files(str(directory), filename_prefix)
        return written + self._save_backend(directory, prefix)

    def _save_vocab_files(self, save_directory: str, filename_prefix: str | None) -> tuple[str, ...]:
        return tuple(self.save_vocabulary(save_directory, filename_prefix))

    def _save_backend(self, directory: Path, prefix: str) -> tuple[str, ...]:
        return ()

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        **overrides: Any,
    ):
        """Load from a directory (or a hub id in the huggingface_hub cache) holding spiece.model
        (and/or tokenizer.json for the fast tokenizer) and tokenizer_config.json. Keyword
        arguments override the saved settings."""
        directory = resolve_model_dir(
            name_or_path,
            wanted=(VOCAB_FILE, TOKENIZER_FILE),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        kwargs = _read_saved_settings(directory)
        kwargs.update(cls._files_in(directory))
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def _files_in(cls, directory: Path) -> dict[str, Any]:
        """The constructor's file arguments found in `directory`."""
        vocab = directory / VOCAB_FILE
        if not vocab.is_file():
            raise CheckpointError(f"No {VOCAB_FILE} in {str(directory)!r}; expected {str(vocab)!r}.")
        return {"vocab_file": str(vocab)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
            f"remove_space={self.remove_space}, keep_accents={self.keep_accents}, "
            f"model_max_length={self.model_max_length})"
        )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Could not read {str(path)!r}: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} does not hold a JSON object.")
    return data


def _read_saved_settings(directory: Path) -> dict[str, Any]:
    """Constructor arguments from tokenizer_config.json (and special_tokens_map.json).

    As in transformers: a config with ``added_tokens_decoder`` gives each special token its flags
    (lstrip, ...) from there; an older config without it takes special tokens from
    special_tokens_map.json, which then overrides the config.
    """
    config = _read_json(directory / CONFIG_FILE) if (directory / CONFIG_FILE).is_file() else {}
    kwargs = {key: config[key] for key in _INIT_CONFIG_KEYS if key in config}
    added = config.get("added_tokens_decoder")
    if isinstance(added, dict):
        by_content = {e["content"]: e for e in added.values() if isinstance(e, dict) and "content" in e}
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            value = kwargs.get(name)
            content = value.get("content") if isinstance(value, dict) else value
            if isinstance(content, str) and content in by_content:
                kwargs[name] = by_content[content]
    elif (directory / SPECIAL_TOKENS_MAP_FILE).is_file():
        special_map = _read_json(directory / SPECIAL_TOKENS_MAP_FILE)
        kwargs.update({name: special_map[name] for name in SPECIAL_TOKEN_ATTRIBUTES if name in special_map})
    if kwargs.get("sp_model_kwargs") is None:
        kwargs.pop("sp_model_kwargs", None)
    else:
        kwargs["sp_model_kwargs"] = _checked_sp_model_kwargs(kwargs["sp_model_kwargs"], directory / CONFIG_FILE)
    return kwargs


# SentencePieceProcessor options a saved tokenizer_config.json may set: sampling settings only,
# never `model_file`/`model_proto` (a file name or model taken from the loaded file).
_SAVED_SP_MODEL_KWARGS = frozenset({"enable_sampling", "nbest_size", "alpha"})


def _checked_sp_model_kwargs(value: Any, source: Path) -> dict[str, Any]:
    """The `sp_model_kwargs` of a loaded tokenizer config, limited to sampling settings."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{str(source)!r}: sp_model_kwargs must be a JSON object, got {type(value).__name__}.")
    unknown = sorted(set(value) - _SAVED_SP_MODEL_KWARGS)
    if unknown:
        raise CheckpointError(
            f"{str(source)!r}: sp_model_kwargs sets {unknown}, which a saved tokenizer may not set (only "
            f"{sorted(_SAVED_SP_MODEL_KWARGS)}). Remove them from the file; a file or model named there "
            "is never loaded."
        )
    return dict(value)
