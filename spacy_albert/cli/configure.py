"""``configure``: a copy of a training config whose ALBERT encoder sizes are a checkpoint's.

spaCy builds the encoder from the config's hyperparameters before `initialize` loads the
checkpoint, and listeners read the width from the config, so the sizes must agree with the
checkpoint's `config.json`. This copies them (vocab_size, embedding_size, hidden_size, ...)
into every `spacy-albert.AlbertTransformer.v1` and `spacy-albert.AlbertTaskModel.v1` block
(and a literal listener `width`) and leaves the rest of the file as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import typer

from ._app import app

ENCODERS = {"spacy-albert.AlbertTransformer.v1", "spacy-albert.AlbertTaskModel.v1"}
LISTENERS = {"spacy-albert.AlbertListener.v1", "spacy-albert.AlbertDocListener.v1"}
SHAPE_FIELDS = (
    "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups", "num_attention_heads",
    "intermediate_size", "inner_group_num", "hidden_act", "max_position_embeddings", "type_vocab_size",
)  # fmt: skip


def blocks(section: Dict[str, Any], names: set, path: str = "") -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(dotted path, block) for every block of one of the architectures `names` in a (nested)
    config section."""
    if section.get("@architectures") in names:
        yield path, section
    for key, value in section.items():
        if isinstance(value, dict):
            yield from blocks(value, names, f"{path}.{key}" if path else key)


def set_values(text: str, section: str, values: Dict[str, Any]) -> str:
    """`text` (a config file) with `field = value` lines of `[section]` replaced; the rest of
    the file (order, comments) stays as it is."""
    lines: List[str] = text.splitlines(keepends=True)
    inside = False
    for i, line in enumerate(lines):
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            inside = header.group(1).strip() == section
            continue
        field = re.match(r"^(\w+)\s*=", line)
        if inside and field and field.group(1) in values:
            lines[i] = f"{field.group(1)} = {json.dumps(values[field.group(1)])}\n"
    return "".join(lines)


@app.command("configure")
def configure_cli(
    base_config: Path = typer.Argument(..., help="The training config to start from.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Where the adapted config goes."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="A local HF checkpoint directory."),
) -> None:
    """Write BASE_CONFIG to OUTPUT with the encoder sizes of CHECKPOINT's config.json (a checkpoint
    that is not a local directory leaves the sizes unchanged)."""
    from thinc.api import Config

    text = base_config.read_text(encoding="utf-8")
    config = Config().from_str(text, interpolate=False)
    checkpoint_config = Path(checkpoint) / "config.json" if checkpoint else None
    if checkpoint_config is not None and checkpoint_config.is_file():
        sizes = json.loads(checkpoint_config.read_text(encoding="utf-8"))
        for path, block in blocks(config["components"], ENCODERS, "components"):
            changed = {f: sizes[f] for f in SHAPE_FIELDS if f in block and f in sizes and block[f] != sizes[f]}
            text = set_values(text, path, changed)
            print(f"[{path}] sizes from {checkpoint_config}: {changed or 'unchanged'}")
        for path, block in blocks(config["components"], LISTENERS, "components"):
            # a literal width must be the encoder's (a ${...} reference follows it by itself)
            if isinstance(block.get("width"), int) and block["width"] != sizes.get("hidden_size", block["width"]):
                text = set_values(text, path, {"width": sizes["hidden_size"]})
                print(f"[{path}] width = {sizes['hidden_size']}")
    else:
        print(f"No local config.json for checkpoint {checkpoint!r}: the encoder sizes stay as in {base_config}")
    Config().from_str(text, interpolate=False)  # still a valid config
    header = f"# Written by spacy_albert configure from {base_config} (encoder sizes of {checkpoint}).\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(header + text, encoding="utf-8")
    print(f"Wrote {output}")


