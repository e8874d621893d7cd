"""Command line: ``spacy-albert <command>``, ``python -m spacy_albert <command>`` and ``spacy albert <command>``.

Commands: ``train-vocab``, ``pretrain``, ``evaluate-pretraining``, ``convert``, ``export``,
``quantize``, ``configure``, ``train`` (``spacy train``, data-parallel under ``torchrun``),
``migrate`` (spacy-transformers pipelines) and ``run`` (inference from stdin). Each lives in
its own module and registers itself on `app`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ._app import NAME, app

for _module in ("train_vocab", "pretrain", "convert", "export", "quantize", "configure", "train", "migrate", "run"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "NAME", "main"]


def main() -> None:
    """Entry point of the ``spacy-albert`` console script and of ``python -m spacy_albert``
    (run as ``spacy_albert/__main__.py``): each usage line shows the name it was run by."""
    as_module = Path(sys.argv[0]).name == "__main__.py" if sys.argv else False
    app(prog_name="python -m spacy_albert" if as_module else "spacy-albert")
