"""The "fast" ALBERT tokenizer, backed by the `tokenizers` library, at parity with
transformers' `AlbertTokenizerFast`. Built from ``tokenizer.json``, or from ``spiece.model``
the way transformers' `AlbertConverter` does it (without needing protobuf)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from ..errors import CheckpointError
from .base import (
    SPIECE_UNDERLINE,
    TOKENIZER_FILE,
    VOCAB_FILE,
    AlbertTokenizerBase,
    BatchEncoding,
    EncodeOptions,
    SpecialToken,
)
from .spm_model import CONTROL, UNIGRAM, USER_DEFINED, SentencePieceModel, load_model_proto


def _is_number_comma(piece: str) -> bool:
    return len(piece) >= 2 and piece[-1] == "," and piece[-2].isdigit()


def register_special_tokens(tokenizer: Any, tokens: Sequence[SpecialToken]) -> None:
    """Add the special tokens a backend lacks, and apply non-default flags (``[MASK]``'s lstrip)
    to those it has, as transformers does when it initialises a fast tokenizer."""
    from tokenizers import AddedToken

    added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    new = [
        AddedToken(
            token.content,
            single_word=token.single_word,
            lstrip=token.lstrip,
            rstrip=token.rstrip,
            normalized=token.normalized,
            special=True,
        )
        for token in tokens
        if token.content not in added or not token.has_default_flags
    ]
    if new:
        tokenizer.add_tokens(new)


def build_backend_from_spm(
    model: SentencePieceModel,
    special_tokens: Sequence[SpecialToken],
    *,
    do_lower_case: bool = True,
    keep_accents: bool = False,
    cls_token: str = "[CLS]",
    sep_token: str = "[SEP]",
) -> Any:
    """A `tokenizers.Tokenizer` equivalent to what transformers' AlbertConverter and fast
    tokenizer initialisation build.

    Unigram model over the pieces (pieces ending in ``<digit>,`` get their score lowered by 100,
    so numbers split off their commas as in the slow tokenizer); control and user-defined pieces,
    then `special_tokens`, as added tokens; the ALBERT normalizer sequence around SentencePiece's
    precompiled charsmap; Metaspace pre-tokenizer/decoder; ``[CLS] A [SEP] (B [SEP])``
    post-processing.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    if model.trainer_spec.model_type != UNIGRAM:
        raise ValueError("Only unigram SentencePiece models can be converted to an ALBERT fast tokenizer.")
    vocab = [(p.piece, p.score - 100 if _is_number_comma(p.piece) else p.score) for p in model.pieces]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=model.trainer_spec.unk_id, byte_fallback=False))
    tokenizer.add_tokens(
        [
            AddedToken(p.piece, normalized=False, special=p.type == CONTROL)
            for p in model.pieces
            if p.type in (CONTROL, USER_DEFINED)
        ]
    )
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    charsmap = model.normalizer_spec.precompiled_charsmap
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    register_special_tokens(tokenizer, special_tokens)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in (cls_token, sep_token)],
    )
    return tokenizer


class AlbertTokenizerFast(AlbertTokenizerBase):
    """ALBERT tokenizer backed by HuggingFace `tokenizers` (the reference's `AlbertTokenizerFast`).

    The backend comes from `tokenizer_file` when given (its normalizer then fixes lower-casing
    and accent handling, whatever `do_lower_case`/`keep_accents` say, as in the reference), else
    (or with ``from_slow=True``) it is converted from `vocab_file`. `sp_model_kwargs` is accepted
    for signature compatibility and ignored. Offsets (``return_offsets_mapping=True``) are
    character spans in the original text.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE, "tokenizer_file": TOKENIZER_FILE}
    is_fast = True

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        remove_space: bool = True,
        keep_accents: bool = False,
        bos_token: Any = "[CLS]",
        eos_token: Any = "[SEP]",
        unk_token: Any = "<unk>",
        sep_token: Any = "[SEP]",
        pad_token: Any = "<pad>",
        cls_token: Any = "[CLS]",
        mask_token: Any = "[MASK]",
        sp_model_kwargs: dict[str, Any] | None = None,
        from_slow: bool = False,
        **kwargs: Any,
    ) -> None:
        self.vocab_file = None if vocab_file is None else str(vocab_file)
        self._init_common(
            do_lower_case=do_lower_case,
            remove_space=remove_space,
            keep_accents=keep_accents,
            special_tokens=dict(
                bos_token=bos_token,
                eos_token=eos_token,
                unk_token=unk_token,
                sep_token=sep_token,
                pad_token=pad_token,
                cls_token=cls_token,
                mask_token=mask_token,
            ),
            **kwargs,
        )
        self._tokenizer = self._load_backend(None if from_slow else tokenizer_file)
        register_special_tokens(self._tokenizer, list(self._flags.values()))
        self._backend_state: tuple[Any, Any] | None = None
        self._finish_init()

    def _load_backend(self, tokenizer_file: str | os.PathLike | None):
        from tokenizers import Tokenizer

        if tokenizer_file is not None:
            path = Path(tokenizer_file)
            if not path.is_file():
                raise CheckpointError(f"Tokenizer file {str(path)!r} does not exist.")
            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception as err:  # tokenizers raises a bare Exception on bad JSON
                raise CheckpointError(f"Tokenizer file {str(path)!r} is corrupted or unreadable: {err}") from err
            tokenizer.no_truncation()
            tokenizer.no_padding()
            return tokenizer
        if self.vocab_file is None:
            raise CheckpointError("AlbertTokenizerFast needs a vocab_file (spiece.model) or a tokenizer_file.")
        path = Path(self.vocab_file)
        if not path.is_file():
            raise CheckpointError(f"SentencePiece model file {str(path)!r} does not exist.")
        try:
            model = load_model_proto(path)
            return build_backend_from_spm(
                model,
                list(self._flags.values()),
                do_lower_case=self.do_lower_case,
                keep_accents=self.keep_accents,
                cls_token=self.cls_token,
                sep_token=self.sep_token,
            )
        except Exception as err:  # our reader raises ValueError, tokenizers a bare Exception
            raise CheckpointError(f"SentencePiece model file {str(path)!r} is corrupted or unreadable: {err}") from err

    @property
    def backend_tokenizer(self):
        """The underlying `tokenizers.Tokenizer`."""
        return self._tokenizer

    # ---- vocabulary ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token: str) -> int:
        index = self._tokenizer.token_to_id(token)
        return self._tokenizer.token_to_id(self.unk_token) if index is None else index

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = self._all_special_id_set if skip_special_tokens else frozenset()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The token strings of a text (or pair)."""
        self._configure_backend(EncodeOptions())
        return self._tokenizer.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    # ---- encoding --------------------------------------------------------------------------

    def _configure_backend(self, options: EncodeOptions) -> None:
        """Set the backend's truncation and padding for this call (only when they change)."""
        truncation = None
        if options.truncation != "do_not_truncate":
            truncation = dict(
                max_length=options.max_length, stride=0, strategy=options.truncation, direction=self.truncation_side
            )
        padding = None
        if options.padding != "do_not_pad":
            padding = dict(
                length=options.max_length if options.padding == "max_length" else None,
                direction=self.padding_side,
                pad_id=self.pad_token_id,
                pad_type_id=self.pad_token_type_id,
                pad_token=self.pad_token,
                pad_to_multiple_of=options.pad_to_multiple_of,
            )
        state = (truncation, padding)
        if state == self._backend_state:
            return
        if truncation is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(**truncation)
        if padding is None:
            self._tokenizer.no_padding()
        else:
            self._tokenizer.enable_padding(**padding)
        self._backend_state = state

    def _encode_batch(self, batch: list[str | tuple[str, str]], options: EncodeOptions) -> tuple[dict, list]:
        self._configure_backend(options)
        encodings = self._tokenizer.encode_batch(batch, add_special_tokens=options.add_special_tokens)
        data: dict[str, list[Any]] = {"input_ids": [e.ids for e in encodings]}
        if options.want_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if options.want_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if options.return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if options.return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if options.return_length:
            data["length"] = [len(e.ids) for e in encodings]
        for ids in data["input_ids"]:
            self._warn_if_too_long(ids, options)
        return data, encodings

    def _batch_encode_plus(self, batch: list[str | tuple[str, str]], options: EncodeOptions) -> BatchEncoding:
        data, encodings = self._encode_batch(batch, options)
        return BatchEncoding(data, encodings, tensor_type=options.return_tensors)

    def _encode_plus(self, text: str, text_pair: str | None, options: EncodeOptions) -> BatchEncoding:
        # As in the reference, an empty text_pair counts as no pair.
        data, encodings = self._encode_batch([(text, text_pair)] if text_pair else [text], options)
        if options.return_tensors is None:  # drop the batch axis (a "length" list stays a list)
            data = {key: value[0] if value and isinstance(value[0], list) else value for key, value in data.items()}
        return BatchEncoding(data, encodings, tensor_type=options.return_tensors)

    # ---- decoding --------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._tokenizer.decoder.decode(tokens)

    def _decode(self, token_ids: list[int], skip_special_tokens: bool) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    # ---- saving and loading ----------------------------------------------------------------

    @property
    def can_save_slow_tokenizer(self) -> bool:
        return self.vocab_file is not None and os.path.isfile(self.vocab_file)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Copy spiece.model into `save_directory`; returns its path."""
        if not self.can_save_slow_tokenizer:
            raise ValueError(
                "This fast tokenizer has no spiece.model (it was loaded from tokenizer.json alone), so it "
                "cannot save the vocabulary of a slow tokenizer."
            )
        if not os.path.isdir(save_directory):
            raise CheckpointError(f"Vocabulary path ({save_directory!r}) should be a directory.")
        out = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILE)
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            shutil.copyfile(self.vocab_file, out)
        return (out,)

    def _save_vocab_files(self, save_directory: str, filename_prefix: str | None) -> tuple[str, ...]:
        # Loaded from tokenizer.json alone: only the fast files can be written.
        return self.save_vocabulary(save_directory, filename_prefix) if self.can_save_slow_tokenizer else ()

    def _save_backend(self, directory: Path, prefix: str) -> tuple[str, ...]:
        self._configure_backend(EncodeOptions())  # save without a previous call's truncation/padding
        path = directory / f"{prefix}{TOKENIZER_FILE}"
        self._tokenizer.save(str(path))
        return (str(path),)

    @classmethod
    def _files_in(cls, directory: Path) -> dict[str, Any]:
        files: dict[str, Any] = {}
        if (directory / VOCAB_FILE).is_file():
            files["vocab_file"] = str(directory / VOCAB_FILE)
        if (directory / TOKENIZER_FILE).is_file():
            files["tokenizer_file"] = str(directory / TOKENIZER_FILE)
        if not files:
            raise CheckpointError(
                f"Neither {VOCAB_FILE} nor {TOKENIZER_FILE} found in {str(directory)!r}; "
                "this is not an ALBERT tokenizer directory."
            )
        return files


__all__ = ["AlbertTokenizerFast", "build_backend_from_spm", "register_special_tokens"]
