"""``train-vocab``: a SentencePiece unigram vocabulary with ALBERT's special pieces."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from ._app import app, fail
from ._io import check_output_dir, check_text_inputs


@app.command("train-vocab")
def train_vocab_cli(
    inputs: List[Path] = typer.Argument(..., help="Text files, .spacy files or directories of them.", exists=True),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Directory for spiece.model, spiece.vocab and tokenizer files."),
    vocab_size: int = typer.Option(30000, "--vocab-size", "-v", help="Number of pieces, special pieces included."),
    cased: bool = typer.Option(False, "--cased", help="Keep case (default: lower-case, as albert-*-v2)."),
    keep_accents: bool = typer.Option(False, "--keep-accents", help="Keep accents (default: strip them)."),
    model_type: str = typer.Option("unigram", "--model-type", help="unigram (ALBERT's) or bpe."),
    character_coverage: float = typer.Option(0.9999, "--character-coverage"),
    input_sentence_size: int = typer.Option(1_000_000, "--input-sentence-size", help="Sentences sampled for training."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads"),
) -> None:
    """Train `spiece.model` with `<pad>`=0, `<unk>`=1, `[CLS]`, `[SEP]`, `[MASK]` and save the
    ALBERT tokenizer files next to it (loadable by AlbertTokenizer(Fast) here and in transformers)."""
    from ..errors import AlbertError
    from ..pretraining.corpus import read_lines
    from ..tokenization import AlbertTokenizerFast
    from ..tokenization.training import train_sentencepiece

    try:
        check_output_dir(output_dir, "--output")
        check_text_inputs(inputs)
        model_path = train_sentencepiece(
            read_lines(inputs),
            output_dir,
            vocab_size,
            do_lower_case=not cased,
            keep_accents=keep_accents,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            seed=seed,
            num_threads=threads,
        )
        tokenizer = AlbertTokenizerFast(vocab_file=str(model_path), do_lower_case=not cased, keep_accents=keep_accents)
        tokenizer.save_pretrained(output_dir)
    except (ValueError, OSError, AlbertError) as err:
        fail("train-vocab", err)
    typer.echo(f"Wrote {model_path} ({tokenizer.vocab_size} pieces) and tokenizer files to {output_dir}")
