"""spaCy CLI plugin: loaded through the ``spacy_cli`` entry point group, it adds the
``spacy albert <command>`` subcommands to spaCy's own typer app."""

from __future__ import annotations

from spacy.cli._util import app as spacy_app

from . import NAME, app

if not any(group.name == NAME for group in spacy_app.registered_groups):
    spacy_app.add_typer(app, name=NAME)
