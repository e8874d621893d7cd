"""Write the training config: a copy of the repository's config whose ALBERT encoder sizes
are those of the checkpoint.

spaCy builds the encoder from the config's hyperparameters before `initialize` loads the
checkpoint, and listeners read the width from the config, so the sizes must agree with the
checkpoint's `config.json`. This copies them over (vocab_size, embedding_size, hidden_size,
num_hidden_layers, num_attention_heads, ...) for every `spacy-albert.AlbertTransformer.v1`
and `spacy-albert.AlbertTaskModel.v1` block (and a literal listener `width`), and leaves
everything else as it is.
A checkpoint that is not a local directory (a cached hub id) leaves the sizes unchanged.

    python scripts/configure.py BASE_CONFIG OUTPUT_CONFIG [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_config", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    from thinc.api import Config

    text = args.base_config.read_text(encoding="utf-8")
    config = Config().from_str(text, interpolate=False)
    checkpoint_config = Path(args.checkpoint) / "config.json" if args.checkpoint else None
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
        print(f"No local config.json for checkpoint {args.checkpoint!r}: the encoder sizes stay as in {args.base_config}")
    Config().from_str(text, interpolate=False)  # still a valid config
    header = f"# Written by scripts/configure.py from {args.base_config} (encoder sizes of {args.checkpoint}).\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(header + text, encoding="utf-8")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
