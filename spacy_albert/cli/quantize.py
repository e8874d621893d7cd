"""``quantize``: int8 dynamic quantization of a saved pipeline's ALBERT encoders, for CPU inference."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._app import app


@app.command("quantize")
def quantize_cli(
    pipeline_dir: Path = typer.Argument(..., help="A saved spaCy pipeline with ALBERT components.", exists=True, file_okay=False),
    output_dir: Path = typer.Argument(..., help="Where to write the quantized pipeline."),
    components: Optional[List[str]] = typer.Option(
        None, "--component", "-c", help="Quantize only this component (repeatable; default: all with an ALBERT encoder)."
    ),
) -> None:
    """Apply dynamic int8 quantization to the linear layers of the pipeline's ALBERT encoders
    (weights int8 per output channel, activations quantized on the fly) and save the pipeline
    with `quantize = "int8"` in its config. The result runs on CPU, loads with `spacy.load`,
    and cannot be trained further: fine-tune the float pipeline and quantize again."""
    import spacy

    from ..errors import AlbertError
    from ..layers.quantize import quantize_pipeline

    nlp = spacy.load(pipeline_dir)
    try:
        names = quantize_pipeline(nlp, components or None)
    except AlbertError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1)
    output_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_dir)
    typer.echo(f"Quantized {', '.join(names)} to int8; wrote {output_dir}")
