"""The tasks of ``run``: what an input line is, which component answers it, and its output in
the fields of the reference's pipelines (transformers' ``fill-mask``, ``question-answering``,
``token-classification``, ``text-classification``).

A task reads one input line into a Doc for the pipeline (`LineError` for a line it cannot
use) and writes the annotated Doc as a JSON-ready value. The predictions themselves are the
components' own (``doc._.mask_fills``, ``doc._.qa_answers``, ``doc.ents``, ``doc.cats``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import AlbertError

QA_FIELDS = ("score", "start", "end", "answer")


class LineError(ValueError):
    """An input line the task cannot use; the message says why."""


@dataclass(frozen=True)
class Task:
    """One `run --task`: the Doc attribute its components write (`assigns`, as in their factory
    meta), the factory and Hugging Face head class of a pipeline built from a checkpoint, the
    weights such a checkpoint must hold (`head`: a prefix; None when the component itself
    rejects a checkpoint without its head), the JSON fields of a line, the output of an
    annotated Doc (given --top-k) and whether --top-k applies."""

    name: str
    assigns: str
    factory: str
    head_class: str
    head: Optional[str]
    fields: Tuple[str, ...]
    output: Callable[[Any, Optional[int]], Any]
    takes_top_k: bool = True


def _fill_mask_output(doc: Any, top_k: Optional[int]) -> Any:
    fills = doc._.mask_fills
    return fills[0] if len(fills) == 1 else fills  # the reference's shape, as `AlbertFillMask.fill`


def _qa_output(doc: Any, top_k: Optional[int]) -> Any:
    answers = [{field: answer[field] for field in QA_FIELDS} for answer in doc._.qa_answers]
    return answers[0] if len(answers) == 1 else answers  # as `AlbertQuestionAnswering.qa`


def _ner_output(doc: Any, top_k: Optional[int]) -> List[Dict[str, Any]]:
    return [{"label": ent.label_, "start": ent.start_char, "end": ent.end_char, "text": ent.text} for ent in doc.ents]


def _textcat_output(doc: Any, top_k: Optional[int]) -> List[Dict[str, Any]]:
    ranked = sorted(doc.cats.items(), key=lambda item: -item[1])
    return [{"label": label, "score": float(score)} for label, score in ranked[:top_k]]


TASKS: Dict[str, Task] = {
    task.name: task
    for task in (
        Task("fill-mask", "doc._.mask_fills", "albert_fill_mask", "AlbertForMaskedLM", "predictions.", ("text",),
             _fill_mask_output),
        Task("question-answering", "doc._.qa_answers", "albert_qa", "AlbertForQuestionAnswering", "qa_outputs.",
             ("question", "context"), _qa_output),  # fmt: skip
        Task("ner", "doc.ents", "albert_ner", "AlbertForTokenClassification", None, ("text",), _ner_output, False),
        Task("textcat", "doc.cats", "albert_textcat", "AlbertForSequenceClassification", None, ("text",), _textcat_output),
    )
}


def read_record(line: str, fields: Tuple[str, ...]) -> Dict[str, str]:
    """The fields of one input line: a JSON object (a line starting with ``{``) holding them
    as non-blank strings, or, where the task reads only ``text``, the line itself."""
    if line.lstrip().startswith("{"):
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            reason = f"not JSON ({err.msg}, column {err.colno}); a line starting with '{{' is read as a JSON object"
            raise LineError(reason) from None
        if not isinstance(data, dict):
            raise LineError("not a JSON object")
        record = {}
        for field in fields:
            value = data.get(field)
            if value is None:
                raise LineError(f"the JSON object has no {field!r} field (it needs {', '.join(map(repr, fields))})")
            if not isinstance(value, str):
                raise LineError(f"{field!r} is a {type(value).__name__}, not a string")
            if not value.strip():
                raise LineError(f"{field!r} is blank")
            record[field] = value
        return record
    if fields != ("text",):
        raise LineError(f"expected a JSON object with {' and '.join(map(repr, fields))}")
    if not line.strip():
        raise LineError("blank line (no text)")
    return {"text": line}


def make_doc(task: Task, nlp: Any, pipe: Any, line: str) -> Any:
    """The Doc for one input line (`LineError` if the line does not fit the task)."""
    record = read_record(line, task.fields)
    if task.name == "question-answering":
        doc = nlp.make_doc(record["context"])
        doc._.questions = [record["question"]]
        return doc
    if task.name == "fill-mask":
        mask = pipe.tokenizer.mask_token
        if mask not in record["text"]:
            raise LineError(f"no {mask} in the text: fill-mask needs at least one")
    return nlp.make_doc(record["text"])


def answer_batch(
    task: Task, nlp: Any, pipe: Any, batch: List[Tuple[int, Any]], disable: List[str], top_k: Optional[int]
) -> List[Tuple[int, Any]]:
    """(line number, output) for each (line number, line) of `batch`, the lines run through
    `nlp.pipe` together (`disable`: components not needed); the output is a `LineError` for
    a line that cannot be used (a `LineError` in `batch` stays one)."""
    entries: List[Any] = []
    for _, line in batch:
        try:
            entries.append(line if isinstance(line, LineError) else make_doc(task, nlp, pipe, line))
        except LineError as err:
            entries.append(err)
    docs = iter(annotate(nlp, [e for e in entries if not isinstance(e, LineError)], disable))
    results = []
    for (number, _), entry in zip(batch, entries):
        result = entry if isinstance(entry, LineError) else next(docs)
        results.append((number, result if isinstance(result, LineError) else task.output(result, top_k)))
    return results


def annotate(nlp: Any, docs: List[Any], disable: List[str]) -> List[Any]:
    """The docs through the pipeline as one batch; where that raises, doc by doc, with a
    `LineError` (the error's first line) in place of each doc that fails on its own."""
    try:
        return list(nlp.pipe(docs, batch_size=max(len(docs), 1), disable=disable))
    except (AlbertError, ValueError) as err:
        if len(docs) == 1:
            return [LineError(str(err).strip().splitlines()[0])]
    return [annotate(nlp, [doc], disable)[0] for doc in docs]


def set_top_k(task: Task, pipe: Any, top_k: int) -> None:
    """Make the component give `top_k` candidates per mask / answers per question."""
    if task.name == "fill-mask":
        pipe.cfg["top_k"] = top_k
    elif task.name == "question-answering":
        pipe.settings = dataclasses.replace(pipe.settings, top_k=top_k)


def find_components(nlp: Any, task: Task, component: Optional[str] = None) -> List[str]:
    """The active components of `nlp` that write the task's output (the one named
    `component`, if given); `AlbertError` saying what the pipeline has otherwise. Fill-mask
    and question-answering need exactly one."""
    found = [name for name in nlp.pipe_names if task.assigns in nlp.get_pipe_meta(name).assigns]
    where = f"the pipeline's components: {', '.join(nlp.pipe_names) or 'none'}"
    if component is not None:
        if component not in found:
            what = "is not in the pipeline" if component not in nlp.component_names else f"does not write {task.assigns}"
            raise AlbertError(f"--component {component!r} {what}; {where}.")
        return [component]
    if not found:
        raise AlbertError(f"the pipeline has no component for --task {task.name} (one that writes {task.assigns}); {where}.")
    if len(found) > 1 and task.name in ("fill-mask", "question-answering"):
        raise AlbertError(f"several components write {task.assigns} ({', '.join(found)}): pick one with --component.")
    return found


def model_kind(model: str) -> str:
    """"pipeline" for a spaCy pipeline (a directory with ``config.cfg``, or an installed
    package), "checkpoint" for a Hugging Face checkpoint (a directory with ``config.json``, or
    a hub id); `AlbertError` for a directory or file that is neither."""
    import spacy

    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.cfg").exists():
            return "pipeline"
        if (path / "config.json").exists():
            return "checkpoint"
        raise AlbertError(
            "a directory that is neither a spaCy pipeline (no config.cfg) nor a Hugging Face checkpoint (no config.json)."
        )
    if path.exists():
        raise AlbertError("a file; pass a pipeline or checkpoint directory.")
    return "pipeline" if spacy.util.is_package(model) else "checkpoint"


def pipeline_from_checkpoint(task: Task, checkpoint: str, lang: str) -> Any:
    """A blank `lang` pipeline with the task's component, initialised from a Hugging Face
    ALBERT checkpoint that holds the task's head (`AlbertError`/`CheckpointError` naming it
    otherwise)."""
    import spacy

    from ..hub import resolve_model_dir
    from ..pipeline.encoder_heads import read_head

    directory = resolve_model_dir(checkpoint)
    config, weights = read_head(directory)
    need = f"`run --task {task.name}` from a checkpoint needs a fine-tuned {task.head_class}"
    if task.head is not None and not any(key.startswith(task.head) for key in weights):
        raise AlbertError(f"the checkpoint has no {task.head}* weights: {need}, or a trained spaCy pipeline.")
    settings: Dict[str, Any] = {}
    if task.name == "textcat":  # the reference's function_to_apply: sigmoid for multi-label or one label
        settings["exclusive_classes"] = config.problem_type != "multi_label_classification" and config.num_labels > 1
    try:
        nlp = spacy.blank(lang)
    except ImportError:
        raise AlbertError(f"--lang {lang!r} is not a language spaCy has (e.g. en, de, xx).") from None
    nlp.add_pipe(task.factory, config=settings)
    nlp.config["initialize"]["components"][task.factory] = {"checkpoint": str(directory)}
    try:
        nlp.initialize()
    except AlbertError as err:
        need = f"{need[0].upper()}{need[1:]} with its labels in id2label"
        raise AlbertError(f"{err} {need}, or a trained spaCy pipeline.") from None
    return nlp
