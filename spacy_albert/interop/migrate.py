"""Migration of a trained spacy-transformers pipeline whose transformer is ALBERT.

`migrate(IN, OUT)` writes the same pipeline with each `transformer` component's architecture
swapped to `spacy-albert.TransformerModel.v1` (alignment "spacy-transformers", so the
downstream components see the token vectors they were trained on); with `native=True` the
`albert` component and `spacy-albert.AlbertListener.v1` listeners replace spacy-transformers
altogether, so the result loads and packages without it. Everything else (vocab, tokenizer,
every downstream component's cfg and weights) is copied unchanged.

Reading is data-only: the transformer's saved model is a msgpack message whose weights
spacy-transformers wrote with `torch.save`; they are read with `torch.load(weights_only=True)`,
and the transformer components are never loaded by spaCy (which would unpickle them; `--native`
loads IN's other components with `spacy.load(IN, exclude=...)` to rewrite their listeners).
OUT is written into a temporary folder beside it and renamed into place; IN is never modified.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import srsly
import torch
from thinc.api import Config, Model

from ..errors import AlbertError, CorruptedFileError
from ..layers.state import TOKENIZER_FILES
from ..layers.transformer import load_checkpoint
from .transformer_model import encoder_of
from ..util_io import atomic_write_bytes, atomic_write_text, fsync_path

TRF_MODELS = ("spacy-transformers.TransformerModel.v1", "spacy-transformers.TransformerModel.v2",
              "spacy-transformers.TransformerModel.v3")  # fmt: skip
TRF_LISTENER = "spacy-transformers.TransformerListener.v1"
POOLING = {"reduce_mean.v1": "mean", "reduce_first.v1": "first", "reduce_last.v1": "last", "reduce_max.v1": "max"}


class MigrationError(AlbertError, ValueError):
    """A pipeline that cannot be migrated (the message says why and what to do)."""


# -- reading the spacy-transformers pipeline (data only) -------------------------------------
def transformer_components(config: Config) -> list[str]:
    """Names of the `transformer` components with a spacy-transformers TransformerModel."""
    names = []
    for name, block in config.get("components", {}).items():
        if block.get("factory") == "transformer":
            arch = block.get("model", {}).get("@architectures")
            if arch not in TRF_MODELS:
                raise MigrationError(
                    f"component {name!r}: its model is {arch!r}, not one of {TRF_MODELS}; only spacy-transformers' "
                    "TransformerModel is migrated."
                )
            names.append(name)
    return names


def read_hf_parts(model_file: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, bytes]]:
    """(HF config dict, state dict, tokenizer files) from a spacy-transformers `transformer`
    component's saved model (thinc msgpack holding the HFShim's msgpack), read data-only."""
    where = str(model_file)
    try:
        msg = srsly.msgpack_loads(model_file.read_bytes())
    except (OSError, ValueError) as err:
        raise CorruptedFileError(f"{where}: not a saved thinc model ({type(err).__name__}: {err}).") from err
    shim_msg = None
    for node_shims in msg.get("shims", []) if isinstance(msg, dict) else []:
        for shim_bytes in node_shims:
            candidate = srsly.msgpack_loads(shim_bytes) if isinstance(shim_bytes, bytes) else None
            if isinstance(candidate, dict) and "state" in candidate and "config" in candidate:
                shim_msg = candidate
    if shim_msg is None or not shim_msg.get("config") or not isinstance(shim_msg.get("state"), bytes):
        raise CorruptedFileError(
            f"{where}: no transformer weights in it (a spacy-transformers transformer saved before training or "
            "initialisation has none): migrate a trained pipeline."
        )
    config = shim_msg["config"]
    if not isinstance(config, dict) or config.get("model_type") != "albert":
        model_type = config.get("model_type") if isinstance(config, dict) else None
        raise MigrationError(
            f"{where}: the transformer is {model_type!r}, not ALBERT (model_type 'albert'); spacy-albert migrates "
            "ALBERT pipelines only."
        )
    try:
        state = torch.load(io.BytesIO(shim_msg["state"]), weights_only=True, map_location="cpu")
    except Exception as err:  # weights_only refuses anything that is not plain tensors
        raise CorruptedFileError(f"{where}: the transformer weights cannot be read as plain tensors ({err}).") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptedFileError(f"{where}: the transformer weights are not a mapping of names to tensors.")
    tokenizer = shim_msg.get("tokenizer") or {}
    files = {k: v for k, v in tokenizer.items() if k in TOKENIZER_FILES and isinstance(v, bytes)}
    if "spiece.model" not in files and "tokenizer.json" not in files:
        raise CorruptedFileError(f"{where}: the transformer's tokenizer files (spiece.model / tokenizer.json) are missing.")
    return config, dict(state), files


def write_checkpoint(directory: Path, config: dict, state: dict[str, torch.Tensor], files: dict[str, bytes]) -> Path:
    """A Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer files)."""
    from ..models.checkpoint import write_weights

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf8")
    write_weights(state, directory)
    for name, data in files.items():  # names checked against TOKENIZER_FILES
        (directory / name).write_bytes(data)
    return directory


# -- config edits --------------------------------------------------------------------------
def _walk_blocks(block: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    if isinstance(block, dict):
        yield path, block
        for key, value in block.items():
            yield from _walk_blocks(value, path + (key,))


def native_encoder_block(trf_model: dict, hf_config: dict) -> tuple[dict, Optional[str]]:
    """The `AlbertTransformer.v1` block for a spacy-transformers TransformerModel block, and a
    note where its span getter can only be approximated by the native windows."""
    from ..models.configuration import ENCODER_DEFAULTS

    getter = trf_model.get("get_spans", {}).get("@span_getters", "")
    max_positions = int(hf_config.get("max_position_embeddings", 512))
    window = max_positions - 2
    spans, note = "strided", None
    if getter.startswith("spacy-transformers.strided_spans"):
        note = (f"get_spans {getter} (window {trf_model['get_spans'].get('window')} tokens) becomes one window of up to "
                f"{window} pieces per doc: identical for docs of at most that many tokens, close beyond.")  # fmt: skip
    elif getter.startswith("spacy-transformers.sent_spans"):
        spans = "sentences"
        note = f"get_spans {getter} becomes spans = \"sentences\": the windows follow doc.sents, close but not identical."
    elif not getter.startswith("spacy-transformers.doc_spans"):
        raise MigrationError(f"get_spans {getter!r} has no native equivalent; migrate without --native.")
    block = {"@architectures": "spacy-albert.AlbertTransformer.v1"}
    block.update({k: hf_config[k] for k in ENCODER_DEFAULTS if k in hf_config})
    block.update(checkpoint=None, window=window, stride=window, spans=spans, alignment="spacy-transformers",
                 precision="float16" if trf_model.get("mixed_precision") else "float32")  # fmt: skip
    return block, note


def native_listener_block(listener: dict, width: int) -> dict:
    pooling = listener.get("pooling", {}).get("@layers", "")
    if pooling not in POOLING:
        raise MigrationError(f"TransformerListener pooling {pooling!r} has no native equivalent ({sorted(POOLING)}).")
    return {"@architectures": "spacy-albert.AlbertListener.v1", "width": width, "pooling": POOLING[pooling],
            "layers": 1, "upstream": listener.get("upstream", "*"), "grad_factor": listener.get("grad_factor", 1.0)}  # fmt: skip


def _set_path(block: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        block = block[key]
    block[path[-1]] = value


def migrated_config(config: Config, hf_configs: dict[str, dict], native: bool) -> tuple[Config, list[str]]:
    """The config of the migrated pipeline, and notes on anything not reproduced exactly."""
    cfg = config.copy()
    notes = []
    for name, hf_config in hf_configs.items():
        component = cfg["components"][name]
        model = component["model"]
        if not native:
            model["@architectures"] = "spacy-albert.TransformerModel.v1"
            model["alignment"] = "spacy-transformers"
            continue
        block, note = native_encoder_block(model, hf_config)
        if note:
            notes.append(f"{name}: {note}")
        cfg["components"][name] = {"factory": "albert", "store_outputs": True, "model": block}
    if native:
        width = next(iter(hf_configs.values()))["hidden_size"]
        for cname, component in cfg["components"].items():
            for path, block in list(_walk_blocks(component)):
                arch = block.get("@architectures", "")
                if arch == TRF_LISTENER:
                    _set_path(component, path, native_listener_block(block, width))
                elif arch.startswith("spacy-transformers."):
                    raise MigrationError(f"component {cname!r} uses {arch!r}, which has no native equivalent.")
    return cfg, notes


# -- writing ---------------------------------------------------------------------------------
def _check_paths(source: Path, target: Path, force: bool) -> None:
    if not (source / "config.cfg").is_file():
        raise MigrationError(f"{str(source)!r} is not a saved spaCy pipeline (no config.cfg in it).")
    src, dst = source.resolve(), target.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise MigrationError(f"OUT {str(target)!r} must lie outside IN {str(source)!r} (and IN outside OUT).")
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise MigrationError(f"OUT {str(target)!r} exists and is not empty: choose another folder or pass --force.")


def _replace_dir(partial: Path, target: Path) -> None:
    """Move the finished `partial` folder to `target` (replacing it), atomically per rename."""
    replaced = None
    if target.exists():
        replaced = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.replace(target, replaced)
    os.replace(partial, target)
    fsync_path(target.parent)
    if replaced is not None:
        shutil.rmtree(replaced) if replaced.is_dir() else replaced.unlink()


def _requirements(meta: dict, native: bool) -> dict:
    from importlib.metadata import version

    meta = dict(meta)
    reqs = [r for r in meta.get("requirements", []) if not (native and r.startswith("spacy-transformers"))]
    if not any(r.startswith("spacy-albert") for r in reqs):
        reqs.append(f"spacy-albert>={version('spacy-albert')}")
    meta["requirements"] = reqs
    return meta


def _build_encoder(block: dict, checkpoint: Path) -> Model:
    """The `spacy-albert.TransformerModel.v1` of a config block, with the checkpoint's weights."""
    import spacy_transformers  # noqa: F401  (registers the span getters)
    from spacy.util import registry

    model = registry.resolve(Config({"model": block}))["model"]
    load_checkpoint(encoder_of(model), checkpoint)
    model.initialize()
    return model


def _native_component(lang: str, name: str, block: dict, checkpoint: Path) -> Any:
    """The native `albert` component of a config block, with the checkpoint's weights."""
    import spacy

    component = spacy.blank(lang).add_pipe("albert", name=name, config={"model": block, "store_outputs": True})
    load_checkpoint(component.model, checkpoint)
    component.model.initialize()
    return component


def _native_listeners(source: Path, new_cfg: Config, names: list[str], partial: Path) -> None:
    """Rewrite the saved models of components with TransformerListeners: each listener
    sub-model becomes the native listener, the component's own weights are kept."""
    import spacy
    from spacy.util import registry
    from spacy_transformers.layers.listener import TransformerListener

    from ..layers.listener import AlbertListener

    old_nlp = spacy.load(source, exclude=names)  # the transformers (pickled weights) are never loaded
    for cname, component in old_nlp.components:
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            continue
        olds = [n for n in model.walk()
                if n.has_ref("listener") and isinstance(n.get_ref("listener"), TransformerListener)]  # fmt: skip
        if not olds:
            continue
        blocks = [b for _, b in _walk_blocks(new_cfg["components"][cname])
                  if b.get("@architectures") == "spacy-albert.AlbertListener.v1"]  # fmt: skip
        if len(blocks) != len(olds):
            raise MigrationError(f"component {cname!r}: {len(olds)} listeners in its model, {len(blocks)} in its config.")
        for old, block in zip(olds, blocks):
            new = registry.resolve(Config({"model": block}))["model"]
            if not isinstance(new, AlbertListener):
                raise MigrationError(f"component {cname!r}: {block['@architectures']} did not build an AlbertListener.")
            new.layers[0].set_dim("nO", block["width"], force=True)
            if old is model:
                raise MigrationError(f"component {cname!r}: its whole model is a listener, which is not supported.")
            model.replace_node(old, new)
        atomic_write_bytes(partial / cname / "model", model.to_bytes())


def migrate(source: str | Path, target: str | Path, *, native: bool = False, force: bool = False) -> list[str]:
    """Migrate the spacy-transformers pipeline at `source` to `target` (see the module doc).
    Returns notes on anything not reproduced exactly (none for the default mode)."""
    source, target = Path(source), Path(target)
    _check_paths(source, target, force)
    config = Config().from_disk(source / "config.cfg", interpolate=False)
    names = transformer_components(config)
    if not names:
        raise MigrationError(f"{str(source)!r} has no spacy-transformers `transformer` component to migrate.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            parts = {name: read_hf_parts(source / name / "model") for name in names}
            new_cfg, notes = migrated_config(config, {n: p[0] for n, p in parts.items()}, native)
            # the transformers' saved models (their largest files) are rewritten below: not copied
            rewritten = {source / name / "model" for name in names} | ({source / n for n in names} if native else set())
            shutil.copytree(source, partial, dirs_exist_ok=True,
                            ignore=lambda d, entries: [e for e in entries if Path(d) / e in rewritten])  # fmt: skip
            for name, (hf_config, state, files) in parts.items():
                checkpoint = write_checkpoint(Path(tmp) / name, hf_config, state, files)
                block = new_cfg["components"][name]["model"]
                if native:
                    component = _native_component(config["nlp"]["lang"], name, block, checkpoint)
                    component.to_disk(partial / name, exclude=["vocab"])
                else:
                    atomic_write_bytes(partial / name / "model", _build_encoder(block, checkpoint).to_bytes())
            if native:
                _native_listeners(source, new_cfg, names, partial)
            atomic_write_text(partial / "config.cfg", new_cfg.to_str())
            if (partial / "meta.json").is_file():
                meta = _requirements(srsly.read_json(partial / "meta.json"), native)
                atomic_write_text(partial / "meta.json", srsly.json_dumps(meta, indent=2))
        _replace_dir(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return notes


__all__ = ["MigrationError", "migrate", "migrated_config", "read_hf_parts"]
