"""``train``: `spacy train` in one process, data-parallel under torchrun (see `training.distributed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, fail


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="A spaCy training config.", exists=True, dir_okay=False),
    output_path: Optional[Path] = typer.Option(None, "--output", "--output-path", "-o", help="model-best/ and model-last/ go here."),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file to import (registered functions).", exists=True),
    use_gpu: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU; under torchrun local rank r uses GPU id + r."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads per process (0: torch's default)."),
    dist_timeout: float = typer.Option(1800.0, "--dist-timeout", min=1.0, help="Seconds a rank waits for the others."),
) -> None:
    """Train a spaCy pipeline from a config, as `spacy train` does (same overrides, e.g.
    --paths.train train.spacy, same table, model-best and model-last).

    Data-parallel: `torchrun --nproc_per_node N -m spacy_albert train CONFIG ...`: every rank
    takes its share of each global batch and the gradients are summed before one identical
    optimizer step; rank 0 evaluates, prints and saves."""
    from spacy.cli._util import import_code, parse_config_overrides

    from ..errors import AlbertError
    from ..training import train

    if threads:
        import torch

        torch.set_num_threads(threads)
    import_code(code_path)
    try:
        train(config_path, output_path, use_gpu=use_gpu, overrides=parse_config_overrides(ctx.args),
              timeout_s=dist_timeout)  # fmt: skip
    except AlbertError as err:
        fail("train", err)
