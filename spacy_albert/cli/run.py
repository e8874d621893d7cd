"""``run``: inference from the command line, one JSON line out per line in (as transformers'
``transformers run``), streamed batch by batch through ``nlp.pipe``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any, Iterator, List, Optional, Tuple

import typer

from ._app import app, fail, load_pipeline
from ._run_tasks import TASKS, LineError, Task

HELP = (
    "Run a task over text, one JSON line out per input line, in the fields of transformers' pipelines:\n\n"
    "fill-mask: [{score, token, token_str, sequence}, ...] (a list per mask if several)\n"
    "question-answering: {score, start, end, answer} (a list with --top-k > 1)\n"
    "ner: [{label, start, end, text}, ...] (character offsets)\n"
    "textcat: [{label, score}, ...] (best first)\n\n"
    'An input line is the text itself or a JSON object with "text" (question-answering: a JSON object with '
    '"question" and "context"). A line that cannot be used (bad JSON, a missing or blank field, a fill-mask text '
    'without the mask token) is reported on stderr with its line number and gets the output line '
    '{"error": "...", "line": N}, so that output line N answers input line N; the other lines are processed, '
    "and the exit status is 1 if any line failed.\n\n"
    "--model is a trained spaCy pipeline (directory or package) with a component for the task (albert_fill_mask, "
    "albert_qa, albert_ner or spaCy's ner, albert_textcat or spaCy's textcat), or a Hugging Face ALBERT "
    "checkpoint with the task's fine-tuned head (AlbertForMaskedLM, AlbertForQuestionAnswering, "
    "AlbertForTokenClassification, AlbertForSequenceClassification)."
)

MODEL_HELP = "A spaCy pipeline (directory or package) or a Hugging Face ALBERT checkpoint (directory or hub id)."
DEVICE_HELP = "cpu, cuda or cuda:N (a GPU needs CuPy, as spacy.require_gpu does)."
TOP_K_HELP = (
    "fill-mask: candidates per mask; question-answering: answers per question (default: the component's "
    "top_k); textcat: only the K best labels (default: all)."
)


def _task(value: str) -> str:
    if value not in TASKS:
        raise typer.BadParameter(f"{value!r} is not a task; choose one of {', '.join(TASKS)}.")
    return value


def _device(value: str) -> str:
    kind, _, index = value.partition(":")
    if value != "cpu" and (kind != "cuda" or (index and not index.isdigit())):
        raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda or cuda:N.")
    return value


def use_device(device: str) -> None:
    """Put thinc (and so the encoders) on `device` before the pipeline loads: for cuda[:N],
    thinc's `require_gpu(N)` with PyTorch's allocator; a one-line error where that GPU is not
    usable."""
    if device == "cpu":
        return
    import torch
    from thinc.api import require_gpu, set_gpu_allocator

    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available():
        fail("run", f"--device {device}: PyTorch sees no CUDA GPU here (a CPU-only build or no device); use --device cpu.")
    if index >= torch.cuda.device_count():
        fail("run", f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0 ...).")
    try:
        require_gpu(index)
    except ValueError as err:
        fail("run", f"--device {device}: {err} (install spacy-albert[cuda12] or [cuda11]); or use --device cpu.")
    set_gpu_allocator("pytorch")


def load_model(task: Task, model: str, lang: str) -> Any:
    """The pipeline `model` names, or one built from the checkpoint it names."""
    from ..errors import AlbertError, CheckpointError
    from ._run_tasks import model_kind, pipeline_from_checkpoint

    try:
        if model_kind(model) == "pipeline":
            return load_pipeline("run", model)
        return pipeline_from_checkpoint(task, model, lang)
    except CheckpointError as err:
        missing = not Path(model).expanduser().exists()
        fail("run", f"--model {model}: {'no such directory or spaCy pipeline package; as a hub id: ' if missing else ''}{err}")
    except AlbertError as err:
        fail("run", f"--model {model}: {err}")


def read_lines(handle: IO[bytes]) -> Iterator[Tuple[int, Any]]:
    """(line number, text or `LineError`) for each line of a binary stream, read as it comes."""
    for number, raw in enumerate(handle, 1):
        raw = raw.rstrip(b"\r\n")
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield number, LineError(f"byte 0x{raw[err.start]:02x} is not UTF-8; re-encode the input as UTF-8")


@app.command("run", help=HELP)
def run_cli(
    task_name: str = typer.Option(..., "--task", "-t", callback=_task, help=f"One of {', '.join(TASKS)}."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    input_path: Optional[Path] = typer.Option(None, "--input", "-i", help="A UTF-8 text or JSON lines file (default or -: stdin)."),
    device: str = typer.Option("cpu", "--device", "-d", callback=_device, help=DEVICE_HELP),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Lines per batch, written out after each."),
    top_k: Optional[int] = typer.Option(None, "--top-k", "-k", min=1, help=TOP_K_HELP),
    component: Optional[str] = typer.Option(None, "--component", "-c", help="The component to run (default: the task's)."),
    lang: str = typer.Option("en", "--lang", "-l", help="Tokenizer language of a pipeline built from a checkpoint."),
) -> None:
    from spacy.util import minibatch

    from ..errors import AlbertError
    from ._run_tasks import answer_batch, find_components, set_top_k

    task = TASKS[task_name]
    if top_k is not None and not task.takes_top_k:
        fail("run", f"--top-k does not apply to --task {task.name}.")
    if input_path is not None and str(input_path) == "-":
        input_path = None
    if input_path is not None and not input_path.is_file():
        fail("run", f"--input {input_path}: {'is a directory' if input_path.is_dir() else 'no such file'}.")
    use_device(device)
    nlp = load_model(task, model, lang)
    try:
        names = find_components(nlp, task, component)
    except AlbertError as err:
        fail("run", f"--model {model}: {err}")
    pipe = nlp.get_pipe(names[-1])
    if top_k is not None:
        set_top_k(task, pipe, top_k)
    after = nlp.pipe_names[nlp.pipe_names.index(names[-1]) + 1 :]  # not needed for the task's output

    stdin = sys.stdin.buffer
    interactive = input_path is None and stdin.isatty()  # answer each line as it is typed
    handle = input_path.open("rb") if input_path is not None else stdin
    progress = _progress(input_path)
    failed: List[int] = []
    try:
        for batch in minibatch(read_lines(handle), 1 if interactive else batch_size):  # streams: one batch read at a time
            out = []
            for number, result in answer_batch(task, nlp, pipe, batch, after, top_k):
                if isinstance(result, LineError):
                    failed.append(number)
                    _report(progress, f"run: line {number}: {result}")
                    out.append(json.dumps({"error": str(result), "line": number}, ensure_ascii=False))
                else:
                    out.append(json.dumps(result, ensure_ascii=False, default=_number))
            sys.stdout.write("".join(f"{line}\n" for line in out))
            sys.stdout.flush()
            if progress is not None:
                progress.update(len(batch))
    finally:
        if progress is not None:
            progress.close()
        if input_path is not None:
            handle.close()
    if failed:
        shown = ", ".join(map(str, failed[:10])) + (", ..." if len(failed) > 10 else "")
        fail("run", f"{len(failed)} input line{'s' if len(failed) > 1 else ''} failed (line {shown}); see above.")


def _number(value: Any) -> Any:
    """numpy scalars as Python numbers for `json.dumps`."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _progress(input_path: Optional[Path]) -> Any:
    """A tqdm bar on stderr (of the --input file's lines) when stderr is a terminal and the
    output is not (it would break the bar's line), else None."""
    if not sys.stderr.isatty() or sys.stdout.isatty():
        return None
    from tqdm import tqdm

    total = None
    if input_path is not None:
        with input_path.open("rb") as handle:
            total = sum(1 for _ in handle)
    return tqdm(total=total, unit="line", file=sys.stderr, dynamic_ncols=True)


def _report(progress: Any, message: str) -> None:
    if progress is not None:
        progress.write(message, file=sys.stderr)
    else:
        typer.echo(message, err=True)
