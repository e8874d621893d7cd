"""Command line: ``python -m spacy_albert <command>`` and ``spacy albert <command>``.

Commands: ``train-vocab``, ``pretrain``, ``evaluate-pretraining``, ``convert``, ``export``,
``quantize``, ``configure``. Each lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import importlib

from ._app import NAME, app

for _module in ("train_vocab", "pretrain", "convert", "export", "quantize", "configure"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "NAME", "main"]


def main() -> None:
    """Entry point of ``python -m spacy_albert``."""
    app(prog_name="python -m spacy_albert")
