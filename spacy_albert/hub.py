"""Resolve a model name or path to a local directory: a directory on disk, or a hub id
looked up in `huggingface_hub`'s local cache (never downloaded while offline)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .errors import CheckpointError


def _offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").lower() in truthy for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# A hub id: "name" or "owner/name", letters, digits, "-", "_" and "." (huggingface_hub's rules).
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")
# A revision: a branch, tag, commit hash or "refs/pr/N"; never a path that leaves the cache.
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}")


def check_hub_id(name: str) -> str:
    """Return `name` if it is a well-formed hub id; CheckpointError otherwise (so a path-like
    or odd string never reaches the cache, whose folder names are built from it)."""
    if not _HUB_ID.fullmatch(name) or ".." in name or "--" in name or name.endswith((".", "-")):
        raise CheckpointError(
            f"{name!r} is not a local directory and not a valid hub id ('name' or 'owner/name' of letters, "
            "digits, '-', '_' and '.'). Pass an existing checkpoint directory or a hub id."
        )
    return name


def check_revision(revision: str) -> str:
    """Return `revision` if it is a plain branch, tag, commit or `refs/pr/N`; CheckpointError otherwise."""
    parts = revision.split("/")
    if not _REVISION.fullmatch(revision) or any(part in ("", ".", "..") for part in parts):
        raise CheckpointError(
            f"Invalid hub revision {revision!r}: use a branch, tag or commit hash (no '..', empty or absolute parts)."
        )
    return revision


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    wanted: Sequence[str] = (),
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """Return a local directory for `name_or_path`.

    A path that exists is used as it is. Anything else is taken as a hub id and looked up in
    the `huggingface_hub` cache; it is downloaded only when neither `local_files_only` nor
    `HF_HUB_OFFLINE` forbids it. `wanted` lists the file patterns to fetch (all if empty).
    """
    path = Path(os.path.expanduser(name_or_path))  # leaves an unknown ~user as it is
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{str(path)!r} is a file; expected a checkpoint directory.")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise CheckpointError(f"Checkpoint directory {name!r} does not exist.")
    check_hub_id(name)
    if revision is not None:
        check_revision(revision)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - depends on the environment
        raise CheckpointError(
            f"{name!r} is not a local directory, and resolving hub ids needs the optional "
            "dependency huggingface_hub (pip install 'spacy-albert[hub]')."
        ) from None
    only_local = _offline() if local_files_only is None else local_files_only
    patterns = list(wanted) + ["*.json"] if wanted else None
    try:
        return Path(
            snapshot_download(
                name,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=only_local,
                allow_patterns=patterns,
            )
        )
    except Exception as err:  # huggingface_hub raises many types here
        where = "offline mode" if only_local else "the hub"
        raise CheckpointError(
            f"Could not resolve {name!r}: it is not a local directory and is not in the "
            f"huggingface_hub cache ({where}: {type(err).__name__}: {err}). Pass a local "
            "checkpoint directory, or download the model while online first."
        ) from err
