"""Architectures of earlier versions that are gone, registered so that a config or a saved
pipeline naming them fails with the way forward instead of "unknown function"."""

from __future__ import annotations

from typing import Any

from spacy.util import registry

from ..errors import AlbertError

REMOVED_TASK_MODEL = "spacy-albert.AlbertTaskModel.v1"
_HEADS = {
    "question-answering": "spacy-albert.QuestionAnswering.v1",
    "masked-lm": "spacy-albert.MaskedLanguageModel.v1",
    "multiple-choice": "spacy-albert.MultipleChoice.v1",
}


@registry.architectures(REMOVED_TASK_MODEL)
def removed_task_model(task: str = "", **_: Any) -> Any:
    head = _HEADS.get(task, ", ".join(sorted(set(_HEADS.values()))))
    raise AlbertError(
        f"{REMOVED_TASK_MODEL} (task {task!r}) was removed in spacy-albert 0.2: albert_qa, albert_fill_mask and "
        f"albert_multiple_choice now run {head} over spacy-albert.AlbertTransformer.v1. A pipeline saved with "
        f"{REMOVED_TASK_MODEL} cannot be loaded by this version. Way forward: with spacy-albert 0.1, export the "
        "component as a Hugging Face checkpoint (python -m spacy_albert export <pipeline> <dir> --component <name>), "
        "then, with this version, build the component from the current config (configs/albert_qa.cfg, "
        "albert_fill_mask.cfg or albert_multiple_choice.cfg) and initialize it from that checkpoint "
        "([initialize.components.<name>] checkpoint = \"<dir>\"); its head weights load from the checkpoint."
    )
