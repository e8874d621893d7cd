"""The typer application every `spacy_albert.cli` command registers on.

Kept free of heavy imports: spaCy imports it through its ``spacy_cli`` entry point group on
every ``spacy`` invocation, so torch and friends are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Union

import typer

NAME = "albert"
HELP = "spacy-albert: train vocabularies, pretrain ALBERT, convert data, export components."

app = typer.Typer(name=NAME, help=HELP, no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """spacy-albert: train vocabularies, pretrain ALBERT, convert data, export components."""


def fail(command: str, message: object) -> NoReturn:
    """Print `command: message` (one line) to stderr and exit with status 1."""
    typer.echo(f"{command}: {message}", err=True)
    raise typer.Exit(1)


def load_pipeline(command: str, pipeline: Union[str, Path]) -> Any:
    """`spacy.load(pipeline)`, or a one-line `command: ...` error naming it and why."""
    import spacy

    try:
        return spacy.load(pipeline)
    except (OSError, ValueError) as err:
        reason = "no such directory or package" if not Path(pipeline).exists() else str(err).strip().splitlines()[0]
        fail(command, f"cannot load the pipeline {str(pipeline)!r}: {reason}")
