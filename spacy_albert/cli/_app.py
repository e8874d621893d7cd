"""The typer application every `spacy_albert.cli` command registers on.

Kept free of heavy imports: spaCy imports it through its ``spacy_cli`` entry point group on
every ``spacy`` invocation, so torch and friends are imported inside the commands.
"""

from __future__ import annotations

import typer

NAME = "albert"
HELP = "spacy-albert: train vocabularies, pretrain ALBERT, convert data, export components."

app = typer.Typer(name=NAME, help=HELP, no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """spacy-albert: train vocabularies, pretrain ALBERT, convert data, export components."""
