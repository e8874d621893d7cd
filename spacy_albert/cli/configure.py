"""``configure``: a copy of a training config whose ALBERT encoder sizes are a checkpoint's.

Training does not need it: at `initialize` the checkpoint's own config decides the encoder's
shapes, and heads and listeners take its width. It writes them into the config for the
record (what was trained): the checkpoint's sizes (vocab_size, embedding_size, hidden_size,
...) go into every `spacy-albert.AlbertTransformer.v1` block (and a literal listener
`width`), and the rest of the file stays as it is.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import typer

from ..models.configuration import ENCODER_DEFAULTS
from ._app import app, fail
from ._io import InputError, read_json_object, read_text_file

ENCODERS = {"spacy-albert.AlbertTransformer.v1"}
LISTENERS = {"spacy-albert.AlbertListener.v1", "spacy-albert.AlbertDocListener.v1"}
# the encoder's shape fields (its dropout probabilities are training settings, not shapes)
SHAPE_FIELDS = tuple(name for name in ENCODER_DEFAULTS if not name.endswith("_prob"))


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


def _config_problem(err: Exception) -> str:
    """What confection/configparser found wrong in a config, on one line, with its line number."""
    text = str(getattr(err, "desc", None) or err).replace("Make sure the sections and values are formatted correctly.", "")
    line = re.search(r"line:?\s+(\d+)", text)
    problem = next((part.strip() for part in text.splitlines() if part.strip()), "")
    problem = re.sub(r"^While reading from '<string>' \[line\s+\d+\]: |: '<string>'$", "", problem)
    if isinstance(err, KeyError) or not problem:
        problem = f"{type(err).__name__}: {err}"
    return f"line {line.group(1)}: {problem}" if line else problem


def read_config(path: Path) -> Tuple[str, Dict[str, Any]]:
    """The text of a training config and its (uninterpolated) sections; `InputError` where the
    file is not a config or has no ALBERT encoder block."""
    from thinc.api import Config

    text = read_text_file(path)
    hint = "pass a spaCy training config such as configs/albert_ner.cfg"
    try:
        config = Config().from_str(text, interpolate=False)
    except (ValueError, KeyError, configparser.Error) as err:
        raise InputError(f"{path} is not a spaCy config ({_config_problem(err)}); {hint}.") from None
    components = config.get("components")
    if not isinstance(components, dict) or not any(blocks(components, ENCODERS)):
        raise InputError(f"{path} has no [components] block with @architectures {' or '.join(sorted(ENCODERS))}; {hint}.")
    return text, config


def checkpoint_sizes(checkpoint: str) -> Tuple[Path, Dict[str, Any]]:
    """The path and settings of a checkpoint's config.json (a local directory, or a hub id in
    the huggingface_hub cache); `InputError` names what is missing."""
    from ..errors import CheckpointError
    from ..hub import resolve_model_dir

    try:
        path = resolve_model_dir(checkpoint, ("config.json",)) / "config.json"
    except CheckpointError as err:
        raise InputError(f"--checkpoint: {err}") from None
    if not path.is_file():
        raise InputError(f"checkpoint {checkpoint!r} has no config.json; pass a Hugging Face ALBERT checkpoint directory.")
    return path, checked_sizes(path, read_json_object(path))


def checked_sizes(path: Path, values: Dict[str, Any]) -> Dict[str, Any]:
    """The shape fields of a config.json, each a positive int (`hidden_act` a known activation
    name): a value such as {"@readers": ...} or "${...}" would run a registered function or an
    interpolation once written into a training config."""
    from ..models.activations import ACTIVATIONS

    sizes = {}
    for field in SHAPE_FIELDS:
        if field not in values:
            continue
        value = values[field]
        valid = value in ACTIVATIONS if field == "hidden_act" else type(value) is int and value > 0
        if not valid:
            expected = f"one of {sorted(ACTIVATIONS)}" if field == "hidden_act" else "a positive whole number"
            raise InputError(f"{path}: {field} must be {expected}, not {json.dumps(value)[:60]}.")
        sizes[field] = value
    return sizes


def adapt_config(text: str, config: Dict[str, Any], sizes: Dict[str, Any], source: Path) -> str:
    """`text` with the encoder sizes (and literal listener widths) of `sizes`, reporting each block."""
    for path, block in blocks(config["components"], ENCODERS, "components"):
        changed = {f: sizes[f] for f in SHAPE_FIELDS if f in block and f in sizes and block[f] != sizes[f]}
        text = set_values(text, path, changed)
        typer.echo(f"[{path}] sizes from {source}: {changed or 'unchanged'}")
    for path, block in blocks(config["components"], LISTENERS, "components"):
        # a literal width must be the encoder's (a ${...} reference follows it by itself)
        if isinstance(block.get("width"), int) and block["width"] != sizes.get("hidden_size", block["width"]):
            text = set_values(text, path, {"width": sizes["hidden_size"]})
            typer.echo(f"[{path}] width = {sizes['hidden_size']}")
    return text


@app.command("configure")
def configure_cli(
    base_config: Path = typer.Argument(..., help="The training config to start from.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Where the adapted config goes."),
    checkpoint: str = typer.Option(
        ..., "--checkpoint", help="A Hugging Face checkpoint directory or hub id (only its config.json is read)."
    ),
) -> None:
    """Write BASE_CONFIG to OUTPUT with the encoder sizes of CHECKPOINT's config.json."""
    from thinc.api import Config

    from ..errors import AlbertError

    try:
        text, config = read_config(base_config)
        source, sizes = checkpoint_sizes(checkpoint)
        text = adapt_config(text, config, sizes, source)
        Config().from_str(text, interpolate=False)  # still a valid config
        output.parent.mkdir(parents=True, exist_ok=True)
        header = f"# Written by spacy_albert configure from {base_config} (encoder sizes of {checkpoint}).\n"
        output.write_text(header + text, encoding="utf-8")
    except (AlbertError, OSError) as err:
        fail("configure", err)
    typer.echo(f"Wrote {output}")
