"""Reading input files with errors that name the file, the line and the fix.

Shared by every reader of user data (``convert``'s formats, SQuAD JSON, ``configure``);
kept free of heavy imports like `_app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Union

from ..errors import AlbertError


class InputError(AlbertError, ValueError):
    """An input file that cannot be used as it is; the message names the file, where in it and the fix."""


def _not_utf8(path: Path, line: int, byte: int) -> InputError:
    return InputError(
        f"{path}, line {line}: byte 0x{byte:02x} is not UTF-8; re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
    )


def _open_error(path: Path, err: OSError) -> InputError:
    if isinstance(err, IsADirectoryError):
        return InputError(f"{path} is a directory; pass a file.")
    if isinstance(err, FileNotFoundError):
        return InputError(f"{path} does not exist.")
    return InputError(f"cannot read {path}: {err.strerror or err}.")


def read_text_file(path: Union[str, Path]) -> str:
    """The text of a UTF-8 file (a leading BOM dropped, line ends kept as they are).

    Raises `InputError` naming the file for a missing path, a directory or an unreadable
    file, and the file and line of the first byte that is not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _open_error(path, err) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data.count(b"\n", 0, err.start) + 1, data[err.start]) from None


def parse_json(text: str, source: object) -> Any:
    """`text` parsed as JSON; `InputError` names `source` (the file) and the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}, line {err.lineno}, column {err.colno}: not JSON ({err.msg}).") from None


def read_json_object(path: Union[str, Path]) -> Dict[str, Any]:
    """The JSON object in a UTF-8 file (`InputError` for anything else, naming the file)."""
    data = parse_json(read_text_file(path), path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, not {json.dumps(data)[:40]}.")
    return data


def check_utf8(paths: Iterable[Path]) -> None:
    """Raise `InputError` naming the file and line of the first byte that is not UTF-8 in
    `paths`, read a line at a time (for corpora too large to hold in memory)."""
    for path in paths:
        try:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, 1):
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise _not_utf8(path, number, raw[err.start]) from None
        except OSError as err:
            raise _open_error(path, err) from None


def check_text_inputs(paths: Iterable[Union[str, Path]]) -> None:
    """Check the text files among `paths` (files or directories; `.spacy` files aside) for
    bytes that are not UTF-8, which `spacy_albert.pretraining.corpus` would replace silently."""
    from ..pretraining.corpus import expand_paths

    check_utf8(path for path in expand_paths(list(paths)) if path.suffix != ".spacy")


def check_output_dir(path: Path, name: str) -> None:
    """Raise `InputError` where the output directory `path` (the argument `name`) is a file."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {path} is a file; pass a directory (created where missing).")
