"""``export``: a trained pipeline's ALBERT component (encoder + head) as a Hugging Face checkpoint."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, List, Optional, Tuple

import typer

from ._app import app, fail, load_pipeline
from ._io import check_output_dir


def exportable_components(nlp: Any) -> List[Tuple[str, Any]]:
    """(name, component) of every spacy-albert component of `nlp` (disabled ones included)
    that can write itself as a Hugging Face checkpoint."""
    return [
        (name, pipe)
        for name, pipe in nlp.components
        if type(pipe).__module__.startswith("spacy_albert.") and callable(getattr(pipe, "export", None))
    ]


@app.command("export")
def export_cli(
    pipeline: str = typer.Argument(..., help="A trained pipeline: its directory (or installed package name)."),
    output_dir: Path = typer.Argument(..., help="Directory for the checkpoint (config, weights, tokenizer)."),
    component: Optional[str] = typer.Option(None, "--component", "-c", help="The component to export (default: the only exportable one)."),
) -> None:
    """Write a component's encoder and head (albert_ner, albert_textcat, albert_fill_mask,
    albert_multiple_choice, albert_qa) as a checkpoint that transformers' `Albert*` classes
    and spacy-albert load, with its tokenizer and labels."""
    from ..errors import AlbertError

    nlp = load_pipeline("export", pipeline)
    candidates = exportable_components(nlp)
    names = [name for name, _ in candidates]
    if component is None:
        if len(candidates) != 1:
            found = f"several: {', '.join(names)}" if names else "none"
            fail("export", f"pick a component with --component; exportable components in {pipeline}: {found}.")
        component = names[0]
    if component not in names:
        what = "is not exportable" if component in nlp.component_names else "is not in the pipeline"
        fail("export", f"{component!r} {what}; exportable components: {', '.join(names) or 'none'}.")
    pipe = dict(candidates)[component]
    kwargs = {"nlp": nlp} if "nlp" in inspect.signature(pipe.export).parameters else {}
    try:
        check_output_dir(output_dir, "OUTPUT_DIR")
        directory = Path(pipe.export(output_dir, **kwargs))
    except (AlbertError, ValueError, OSError, KeyError) as err:
        fail("export", f"{component!r} could not be exported: {err}")
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    head = (config.get("architectures") or ["?"])[0]
    labels = config.get("id2label") if head.endswith(("TokenClassification", "SequenceClassification")) else None
    described = f"{head}, {len(labels)} labels" if labels else head
    typer.echo(f"Exported {component!r} ({described}) to {directory}")
