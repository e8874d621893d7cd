"""``quantize``: int8 dynamic quantization of a saved pipeline's ALBERT encoders, for CPU inference."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._app import app, fail, load_pipeline
from ._io import check_output_dir


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
    from ..errors import AlbertError
    from ..layers.quantize import quantize_pipeline

    nlp = load_pipeline("quantize", pipeline_dir)
    try:
        check_output_dir(output_dir, "OUTPUT_DIR")
        names = quantize_pipeline(nlp, components or None)
        output_dir.mkdir(parents=True, exist_ok=True)
        nlp.to_disk(output_dir)
    except (AlbertError, OSError) as err:
        fail("quantize", err)
    typer.echo(f"Quantized {', '.join(names)} to int8; wrote {output_dir}")
