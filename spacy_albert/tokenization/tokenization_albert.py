"""The "slow" ALBERT tokenizer, backed by the `sentencepiece` library, at parity with
transformers' `AlbertTokenizer`."""

from __future__ import annotations

import logging
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .base import (
    SPIECE_UNDERLINE,
    VOCAB_FILE,
    AlbertTokenizerBase,
    BatchEncoding,
    EncodeOptions,
)

logger = logging.getLogger(__name__)


def preprocess_text(
    text: str, *, remove_space: bool = True, keep_accents: bool = False, do_lower_case: bool = True
) -> str:
    """ALBERT's text normalization before SentencePiece: collapse whitespace, fold ``` `` ```
    and ``''`` into ``"``, strip accents (NFKD minus combining marks), lower-case."""
    if remove_space:
        text = " ".join(text.strip().split())
    text = text.replace("``", '"').replace("''", '"')
    if not keep_accents:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    if do_lower_case:
        text = text.lower()
    return text


def _lower_charwise(text: str) -> str:
    """Lower-case each character on its own, as the reference's regex substitution does (this
    differs from `str.lower` only for the context-dependent final sigma)."""
    return "".join(map(str.lower, text)) if "Σ" in text else text.lower()


def load_sentencepiece(vocab_file: str | os.PathLike, sp_model_kwargs: dict[str, Any] | None = None):
    """A `SentencePieceProcessor` for `vocab_file`; CheckpointError if it is missing or corrupt."""
    import sentencepiece as spm

    path = Path(vocab_file)
    if not path.is_file():
        raise CheckpointError(f"SentencePiece model file {str(path)!r} does not exist.")
    processor = spm.SentencePieceProcessor(**(sp_model_kwargs or {}))
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"SentencePiece model file {str(path)!r} is corrupted or unreadable: {err}") from err
    return processor


class AlbertTokenizer(AlbertTokenizerBase):
    """ALBERT tokenizer backed by SentencePiece (the reference's `AlbertTokenizer`).

    Special tokens written in the input text (``"[MASK]"``, ...) become single tokens;
    ``[MASK]`` also swallows the whitespace before it, as in the reference.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}

    def __init__(
        self,
        vocab_file: str | os.PathLike,
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
        **kwargs: Any,
    ) -> None:
        self.vocab_file = str(vocab_file)
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.sp_model = load_sentencepiece(self.vocab_file, self.sp_model_kwargs)
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
        self._setup_added_tokens()
        self._finish_init()

    def _setup_added_tokens(self) -> None:
        """Give special tokens missing from the SentencePiece vocabulary ids after it (as the
        reference does) and build the pattern that finds them in raw text."""
        vocab = self.sp_model
        self._added_encoder: dict[str, int] = {}
        next_id = len(vocab)
        for content in self._all_special_tokens:
            piece_id = vocab.PieceToId(content)
            if vocab.IdToPiece(piece_id) != content:
                self._added_encoder[content] = next_id
                next_id += 1
        self._added_decoder = {index: content for content, index in self._added_encoder.items()}
        alternatives = sorted((t for t in self._flags if t), key=len, reverse=True)
        self._special_pattern = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")

    # ---- pickling (the SentencePieceProcessor is rebuilt from its serialized model) --------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sp_model"] = None
        state["_sp_model_proto"] = self.sp_model.serialized_model_proto()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import sentencepiece as spm

        proto = state.pop("_sp_model_proto")
        self.__dict__.update(state)
        self.sp_model = spm.SentencePieceProcessor(**self.sp_model_kwargs)
        self.sp_model.LoadFromSerializedProto(proto)

    # ---- vocabulary ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Size of the SentencePiece vocabulary (without added tokens)."""
        return len(self.sp_model)

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.IdToPiece(i): i for i in range(self.vocab_size)}
        vocab.update(self._added_encoder)
        return vocab

    def __len__(self) -> int:
        return self.vocab_size + len(self._added_encoder)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token: str) -> int:
        index = self._added_encoder.get(token)
        return self.sp_model.PieceToId(token) if index is None else index

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = self._all_special_id_set if skip_special_tokens else frozenset()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    def _id_to_token(self, index: int) -> str:
        token = self._added_decoder.get(index)
        return self.sp_model.IdToPiece(index) if token is None else token

    # ---- tokenization ----------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Split text into SentencePiece pieces, keeping special tokens whole."""
        return self._tokenize_with_specials(text)

    def _split_special(self, text: str) -> list[str]:
        return [part for part in self._special_pattern.split(text) if part]

    def _tokenize_with_specials(self, text: str) -> list[str]:
        if self.do_lower_case:  # special tokens keep their case; the rest is lower-cased
            parts = self._special_pattern.split(text)
            parts[::2] = [_lower_charwise(part) for part in parts[::2]]
            text = "".join(parts)
        segments = self._split_special(text)
        for i, segment in enumerate(segments):
            flags = self._flags.get(segment)
            if flags is None:
                continue
            left = segments[i - 1] if i > 0 else None
            right = segments[i + 1] if i < len(segments) - 1 else None
            if flags.rstrip and right:
                segments[i + 1] = right.lstrip()
            if flags.lstrip and left:
                segments[i - 1] = left.rstrip()
            if flags.single_word and left and left[-1] != " ":
                segments[i - 1] += segment
                segments[i] = ""
            elif flags.single_word and right and right[0] != " ":
                segments[i + 1] = segment + segments[i + 1]
                segments[i] = ""
        tokens: list[str] = []
        for segment in segments:
            if not segment:
                continue
            if segment in self._flags:
                tokens.append(segment)
            else:
                tokens.extend(self._tokenize(segment))
        return tokens

    def preprocess_text(self, text: str) -> str:
        return preprocess_text(
            text, remove_space=self.remove_space, keep_accents=self.keep_accents, do_lower_case=self.do_lower_case
        )

    def _tokenize(self, text: str) -> list[str]:
        """SentencePiece pieces of plain text, with numbers before a comma split off the comma
        (``"9,9"`` -> ``["▁9", ",", "9"]``) as in the original ALBERT/BERT tokenization."""
        pieces = self.sp_model.encode(self.preprocess_text(text), out_type=str)
        result: list[str] = []
        for piece in pieces:
            if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                sub = self.sp_model.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
                if piece[0] != SPIECE_UNDERLINE and sub[0][0] == SPIECE_UNDERLINE:
                    sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:]] + sub[1:]
                result.extend(sub)
                result.append(piece[-1])
            else:
                result.append(piece)
        return result

    def _text_to_ids(self, text: str) -> list[int]:
        return self.convert_tokens_to_ids(self._tokenize_with_specials(text))

    # ---- encoding --------------------------------------------------------------------------

    def _encode_plus(self, text: str, text_pair: str | None, options: EncodeOptions) -> BatchEncoding:
        self._reject_offsets(options)
        pair_ids = None if text_pair is None else self._text_to_ids(text_pair)
        encoded = self._prepare_for_model(self._text_to_ids(text), pair_ids, options, pad=True)
        return BatchEncoding(encoded, tensor_type=options.return_tensors, prepend_batch_axis=True)

    def _batch_encode_plus(self, batch: list[str | tuple[str, str]], options: EncodeOptions) -> BatchEncoding:
        self._reject_offsets(options)
        rows = []
        for item in batch:
            text, pair = (item, None) if isinstance(item, str) else item
            pair_ids = None if pair is None else self._text_to_ids(pair)
            rows.append(self._prepare_for_model(self._text_to_ids(text), pair_ids, options, pad=False))
        padded = self._pad_batch(rows, options)
        return BatchEncoding(padded, tensor_type=options.return_tensors)

    @staticmethod
    def _reject_offsets(options: EncodeOptions) -> None:
        if options.return_offsets_mapping:
            raise NotImplementedError(
                "return_offsets_mapping is not available with the SentencePiece-based AlbertTokenizer; "
                "use AlbertTokenizerFast instead."
            )

    def _prepare_for_model(
        self, ids: list[int], pair_ids: list[int] | None, options: EncodeOptions, pad: bool = True
    ) -> dict[str, Any]:
        """Truncate, add special tokens, and build the masks of one example (padded if `pad`)."""
        if options.return_token_type_ids and not options.add_special_tokens:
            raise ValueError(
                "Asking to return token_type_ids while setting add_special_tokens to False results in an "
                "undefined behavior. Please set add_special_tokens to True or return_token_type_ids to None."
            )
        n_special = self.num_special_tokens_to_add(pair_ids is not None) if options.add_special_tokens else 0
        total = len(ids) + (len(pair_ids) if pair_ids is not None else 0) + n_special
        if options.truncation != "do_not_truncate" and options.max_length and total > options.max_length:
            ids, pair_ids = self._truncate_sequences(ids, pair_ids, total - options.max_length, options.truncation)
        if options.add_special_tokens:
            sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
            token_type_ids = self.create_token_type_ids_from_sequences(ids, pair_ids)
        else:
            sequence = ids + pair_ids if pair_ids is not None else ids
            token_type_ids = [0] * len(sequence)
        encoded: dict[str, Any] = {"input_ids": sequence}
        if options.want_token_type_ids:
            encoded["token_type_ids"] = token_type_ids
        if options.return_special_tokens_mask:
            encoded["special_tokens_mask"] = (
                self.get_special_tokens_mask(ids, pair_ids) if options.add_special_tokens else [0] * len(sequence)
            )
        self._warn_if_too_long(sequence, options)
        if pad and (options.padding != "do_not_pad" or options.want_attention_mask):
            if sequence:
                self._pad(encoded, options.max_length, options.padding, options)
            elif options.want_attention_mask:  # the reference leaves empty inputs unpadded
                encoded["attention_mask"] = []
        if options.return_length:
            encoded["length"] = len(encoded["input_ids"])
        return encoded

    def _truncate_sequences(
        self, ids: list[int], pair_ids: list[int] | None, num_tokens_to_remove: int, strategy: str = "longest_first"
    ) -> tuple[list[int], list[int] | None]:
        """Remove tokens from the right following `strategy` (the reference's slow semantics:
        when the chosen sequence is too short, an error is logged and nothing is removed)."""
        n = num_tokens_to_remove
        if n <= 0:
            return ids, pair_ids
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            if len(ids) > n:
                return ids[:-n], pair_ids
            logger.error(
                "We need to remove %d tokens to truncate the input but the first sequence has a length %d.",
                n,
                len(ids),
            )
        elif strategy == "longest_first":
            first_remove = min(abs(len(pair_ids) - len(ids)), n)
            second_remove = n - first_remove
            if len(ids) > len(pair_ids):
                ids_cut, pair_cut = first_remove + second_remove // 2, second_remove - second_remove // 2
            else:
                ids_cut, pair_cut = second_remove // 2, first_remove + second_remove - second_remove // 2
            ids = ids[:-ids_cut] if ids_cut > 0 else ids
            pair_ids = pair_ids[:-pair_cut] if pair_cut > 0 else pair_ids
        elif strategy == "only_second" and pair_ids is not None:
            if len(pair_ids) > n:
                return ids, pair_ids[:-n]
            logger.error(
                "We need to remove %d tokens to truncate the input but the second sequence has a length %d.",
                n,
                len(pair_ids),
            )
        return ids, pair_ids

    def _pad(self, encoded: dict[str, Any], max_length: int | None, padding: str, options: EncodeOptions) -> None:
        """Pad one example in place on the right (and add its attention mask)."""
        ids = encoded["input_ids"]
        if padding == "longest":
            max_length = len(ids)
        multiple = options.pad_to_multiple_of
        if max_length is not None and multiple is not None and max_length % multiple:
            max_length = (max_length // multiple + 1) * multiple
        if options.want_attention_mask and "attention_mask" not in encoded:
            encoded["attention_mask"] = [1] * len(ids)
        if padding == "do_not_pad" or len(ids) == max_length:
            return
        difference = max_length - len(ids)
        if options.want_attention_mask:
            encoded["attention_mask"] = encoded["attention_mask"] + [0] * difference
        if "token_type_ids" in encoded:
            encoded["token_type_ids"] = encoded["token_type_ids"] + [self.pad_token_type_id] * difference
        if "special_tokens_mask" in encoded:
            encoded["special_tokens_mask"] = encoded["special_tokens_mask"] + [1] * difference
        encoded["input_ids"] = ids + [self.pad_token_id] * difference

    def _pad_batch(self, rows: list[dict[str, Any]], options: EncodeOptions) -> dict[str, list[Any]]:
        padding, max_length = options.padding, options.max_length
        if padding == "longest":
            padding, max_length = "max_length", max(len(row["input_ids"]) for row in rows)
        for row in rows:
            self._pad(row, max_length, padding, options)
        return {key: [row[key] for row in rows] for key in rows[0]}

    # ---- decoding --------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join pieces into text; special tokens are kept verbatim (not decoded by SentencePiece)."""
        specials = self._flags
        out, pending, prev_is_special = "", [], False
        for token in tokens:
            if token in specials:
                if not prev_is_special:
                    out += " "
                out += self.sp_model.decode(pending) + token
                prev_is_special, pending = True, []
            else:
                pending.append(token)
                prev_is_special = False
        out += self.sp_model.decode(pending)
        return out.strip()

    def _decode(self, token_ids: list[int], skip_special_tokens: bool) -> str:
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        if skip_special_tokens:
            tokens = [token for token in tokens if token not in self._flags]
        return self.convert_tokens_to_string(tokens)

    # ---- saving ----------------------------------------------------------------------------

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Copy the SentencePiece model into `save_directory`; returns its path."""
        if not os.path.isdir(save_directory):
            raise CheckpointError(f"Vocabulary path ({save_directory!r}) should be a directory.")
        out = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILE)
        if os.path.isfile(self.vocab_file):
            if os.path.abspath(self.vocab_file) != os.path.abspath(out):
                shutil.copyfile(self.vocab_file, out)
        else:
            with open(out, "wb") as handle:
                handle.write(self.sp_model.serialized_model_proto())
        return (out,)
