"""Train a SentencePiece model laid out like ALBERT's ``spiece.model``.

ALBERT's vocabulary starts with ``<pad>``=0, ``<unk>``=1, ``[CLS]``=2, ``[SEP]``=3, ``[MASK]``=4,
with ``[CLS] [SEP] [MASK]`` as control symbols and no ``<s>``/``</s>`` (bos/eos disabled), a
unigram model and ``nmt_nfkc`` normalization, as in the ALBERT README's ``spm_train`` command.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Iterator

from .spm_model import parse_model_proto
from .tokenization_albert import preprocess_text

ALBERT_CONTROL_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")


def _names_file(item: object) -> bool:
    if isinstance(item, os.PathLike):
        return True
    return isinstance(item, str) and "\n" not in item and len(item) < 4096 and os.path.isfile(item)


def _raw_lines(inputs: Iterable[str] | Iterable[os.PathLike] | str | os.PathLike) -> Iterator[str]:
    if isinstance(inputs, (str, os.PathLike)):
        if not os.path.isfile(inputs):
            raise FileNotFoundError(f"Training text file {str(inputs)!r} does not exist.")
        inputs = [Path(inputs)]
    # A list whose items all name existing files is a list of files; otherwise str items are texts.
    all_files = isinstance(inputs, (list, tuple)) and bool(inputs) and all(map(_names_file, inputs))
    for item in inputs:
        if all_files or isinstance(item, os.PathLike):
            with open(item, encoding="utf-8") as handle:
                yield from handle
        elif isinstance(item, str):
            yield from item.splitlines()
        else:
            raise TypeError(f"Expected texts or file paths, got {type(item).__name__}.")


def train_sentencepiece(
    inputs: Iterable[str] | Iterable[os.PathLike] | str | os.PathLike,
    output_dir: str | os.PathLike,
    vocab_size: int = 8000,
    *,
    do_lower_case: bool = True,
    keep_accents: bool = False,
    model_type: str = "unigram",
    character_coverage: float = 0.9999,
    input_sentence_size: int = 1_000_000,
    seed: int = 0,
    num_threads: int = 1,
    **extra: object,
) -> Path:
    """Train ``output_dir/spiece.model`` (and ``spiece.vocab``) with ALBERT's settings.

    `inputs` is an iterable of texts (each may hold several lines), or text files: a single path
    (str or PathLike), `os.PathLike` items, or a list of strings that all name existing files. Every line
    goes through the same preprocessing as `AlbertTokenizer(do_lower_case=..., keep_accents=...)`
    (whitespace collapsing, quote folding, accent stripping, lower-casing), so the vocabulary is
    learned on what the tokenizer will feed it. Training is deterministic (fixed seed, one thread
    by default). The vocabulary size is a hard limit: when the text is too small for it, a
    ValueError says the largest size that works (pass ``hard_vocab_limit=False`` to accept a
    smaller vocabulary instead). `extra` is passed on to `SentencePieceTrainer.train`
    (e.g. ``user_defined_symbols``). Returns the path of the model file.
    """
    import sentencepiece as spm

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        text
        for text in (
            preprocess_text(line, remove_space=True, keep_accents=keep_accents, do_lower_case=do_lower_case)
            for line in _raw_lines(inputs)
        )
        if text
    ]
    if not lines:
        raise ValueError("train_sentencepiece got no text to train on.")
    options: dict[str, object] = dict(
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        normalization_rule_name="nmt_nfkc",
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        control_symbols=list(ALBERT_CONTROL_SYMBOLS),
        num_threads=num_threads,
        minloglevel=2,
    )
    options.update(extra)
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()  # not model_prefix: the model file would record the output path
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, **options)
    except RuntimeError as err:
        message = str(err)
        if "Vocabulary size" in message:
            raise ValueError(
                f"vocab_size={vocab_size} is too large for this training text ({message.strip()}). "
                "Use a smaller vocab_size, more text, or hard_vocab_limit=False."
            ) from err
        raise
    model_path = out / "spiece.model"
    model_path.write_bytes(model.getvalue())
    pieces = parse_model_proto(model.getvalue()).pieces
    vocab = "".join(f"{p.piece}\t{p.score:g}\n" for p in pieces)  # spm_train's .vocab format
    (out / "spiece.vocab").write_text(vocab, encoding="utf-8")
    return model_path
