"""``migrate``: a trained spacy-transformers ALBERT pipeline onto spacy-albert's encoder."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, fail


@app.command("migrate")
def migrate_cli(
    in_pipeline: Path = typer.Argument(..., help="A trained spacy-transformers pipeline (its transformer: ALBERT)."),
    out_pipeline: Path = typer.Argument(..., help="Folder for the migrated pipeline (written atomically)."),
    native: bool = typer.Option(False, "--native", help="Use the `albert` component and AlbertListeners: the result needs no spacy-transformers."),
    force: bool = typer.Option(False, "--force", help="Replace OUT_PIPELINE if it exists and is not empty."),
) -> None:
    """Swap the transformer of a spacy-transformers pipeline to spacy-albert's encoder (with
    spacy-transformers' alignment, so every downstream component predicts as before), or with
    --native to the `albert` component and `spacy-albert.AlbertListener.v1` listeners. IN is
    read data-only (no pickle) and never modified."""
    from ..errors import AlbertError
    from ..interop.migrate import migrate

    try:
        notes = migrate(in_pipeline, out_pipeline, native=native, force=force)
    except (AlbertError, OSError) as err:
        fail("migrate", err)
    for note in notes:
        typer.echo(f"migrate: note: {note}", err=True)
    mode = "the albert component with AlbertListeners" if native else "spacy-albert.TransformerModel.v1"
    typer.echo(f"Migrated {in_pipeline} to {out_pipeline} ({mode}, spacy-transformers alignment).")
