"""``pretrain`` and ``evaluate-pretraining``: ALBERT's MLM + SOP pretraining from raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer

from ..models.configuration import ENCODER_DEFAULTS
from ..models.precision import PRECISIONS
from ._app import app, fail
from ._io import InputError, check_output_dir, check_text_inputs, read_json_object


def _one_of(*choices: str) -> Callable[[str], str]:
    """A typer callback accepting one of `choices` (any case)."""

    def check(value: str) -> str:
        if value.lower() not in choices:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}.")
        return value.lower()

    return check


def _fraction(value: float) -> float:
    """A typer callback accepting a share strictly below 1 (and not negative)."""
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1).")
    return value


def _probability(value: float) -> float:
    """A typer callback accepting a probability strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{value} is not in (0, 1).")
    return value


def _device(value: str) -> str:
    """A typer callback accepting what `torch.device` does (cpu, cuda, cuda:N, mps...)."""
    import torch

    try:
        torch.device(value)
    except RuntimeError:
        raise typer.BadParameter(f"{value!r} is not a torch device; use cpu, cuda or cuda:N.") from None
    return value


def check_inputs(output: Path, texts: List[Path], config: Optional[Path]) -> None:
    """Fail early, naming the file, on what pretraining would find only later (or never):
    an output that is a file, text that is not UTF-8, a --config that is not a JSON object."""
    check_output_dir(output, "--output")
    check_text_inputs(texts)
    if config is not None:
        try:
            read_json_object(config)
        except InputError as err:
            raise InputError(f"--config {err} Pass an AlbertConfig JSON file (a checkpoint's config.json).") from None


@app.command("pretrain")
def pretrain_cli(
    train: List[Path] = typer.Argument(..., help="Raw text files, .spacy files or directories.", exists=True),
    vocab: Path = typer.Option(..., "--vocab", help="train-vocab's output directory (or a spiece.model).", exists=True),
    output: Path = typer.Option(..., "--output", "-o", help="Output: an HF checkpoint, checkpoints/ and logs."),
    dev: List[Path] = typer.Option([], "--dev", help="Held-out text (default: hold out --dev-fraction).", exists=True),
    dev_fraction: float = typer.Option(0.02, "--dev-fraction", callback=_fraction),
    config: Optional[Path] = typer.Option(None, "--config", help="An AlbertConfig JSON (sizes below ignored).", exists=True),
    init: Optional[Path] = typer.Option(None, "--init", help="Continue pretraining this HF checkpoint.", exists=True),
    embedding_size: int = typer.Option(ENCODER_DEFAULTS["embedding_size"], "--embedding-size", min=1),
    hidden_size: int = typer.Option(ENCODER_DEFAULTS["hidden_size"], "--hidden-size", min=1),
    num_layers: int = typer.Option(ENCODER_DEFAULTS["num_hidden_layers"], "--num-layers", min=1),
    num_heads: int = typer.Option(ENCODER_DEFAULTS["num_attention_heads"], "--num-heads", min=1),
    intermediate_size: int = typer.Option(ENCODER_DEFAULTS["intermediate_size"], "--intermediate-size", min=1),
    num_groups: int = typer.Option(ENCODER_DEFAULTS["num_hidden_groups"], "--num-groups", min=1, help="Groups of shared layers."),
    inner_group_num: int = typer.Option(ENCODER_DEFAULTS["inner_group_num"], "--inner-group-num", min=1, help="Layers per group."),
    dropout: float = typer.Option(
        ENCODER_DEFAULTS["hidden_dropout_prob"], "--dropout", min=0.0, max=1.0, help="Hidden/attention dropout (ALBERT v2: 0)."
    ),
    classifier_dropout: float = typer.Option(
        0.1, "--classifier-dropout", min=0.0, max=1.0, help="Dropout before the SOP classifier."
    ),
    max_seq_length: int = typer.Option(128, "--max-seq-length", min=5),
    short_seq_prob: float = typer.Option(0.1, "--short-seq-prob", min=0.0, max=1.0),
    mlm_probability: float = typer.Option(0.15, "--mlm-probability", callback=_probability),
    max_predictions: Optional[int] = typer.Option(None, "--max-predictions", min=1, help="Default: 15% of max-seq-length + 1."),
    max_ngram: int = typer.Option(3, "--max-ngram", min=1),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Global batch (all ranks, all micro-batches)."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1),
    max_steps: int = typer.Option(1000, "--max-steps", min=1),
    optimizer: str = typer.Option("lamb", "--optimizer", callback=_one_of("lamb", "adamw"), help="lamb or adamw."),
    lr: float = typer.Option(1.76e-3, "--lr"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0, help="Default: max-steps / 80."),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    adam_eps: float = typer.Option(1e-6, "--adam-eps"),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm"),
    precision: str = typer.Option(
        "float32", "--precision", callback=_one_of(*PRECISIONS),
        help="float32, bfloat16 or float16 (autocast; float16 with loss scaling)."
    ),
    device: str = typer.Option("cpu", "--device", callback=_device, help="cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed"),
    log_every: int = typer.Option(10, "--log-every", min=1),
    eval_every: int = typer.Option(200, "--eval-every", min=0, help="0: at the end only."),
    save_every: int = typer.Option(500, "--save-every", min=0, help="0: no periodic checkpoints."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", min=0),
    resume: Optional[str] = typer.Option(None, "--resume", help="A checkpoints/step-N directory, or 'auto' (latest)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0, help="Stop (and save) after this long."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Pretrain ALBERT (masked LM with n-gram masking + sentence-order prediction) from raw text.

    Run data-parallel with `torchrun --nproc_per_node N -m spacy_albert pretrain ...`.
    The output directory is a Hugging Face checkpoint of AlbertForPreTraining."""
    from ..errors import AlbertError
    from ..pretraining import PretrainingSettings, pretrain

    settings = PretrainingSettings(
        train=[str(p) for p in train],
        vocab=str(vocab),
        output=str(output),
        dev=[str(p) for p in dev],
        dev_fraction=dev_fraction,
        config=str(config) if config else None,
        init=str(init) if init else None,
        embedding_size=embedding_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        num_hidden_groups=num_groups,
        inner_group_num=inner_group_num,
        dropout=dropout,
        classifier_dropout=classifier_dropout,
        max_seq_length=max_seq_length,
        short_seq_prob=short_seq_prob,
        mlm_probability=mlm_probability,
        max_predictions=max_predictions,
        max_ngram=max_ngram,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_steps=max_steps,
        optimizer=optimizer,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        adam_eps=adam_eps,
        max_grad_norm=max_grad_norm,
        precision=precision,
        device=device,
        seed=seed,
        log_every=log_every,
        eval_every=eval_every,
        save_every=save_every,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        max_minutes=max_minutes,
        threads=threads,
        progress=progress,
    )
    try:
        check_inputs(output, train + dev, config)
        summary = pretrain(settings)
    except (ValueError, OSError, AlbertError) as err:
        fail("pretrain", err)
    if "eval" in summary:  # rank 0
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"Saved the pretrained model to {output}")


@app.command("evaluate-pretraining")
def evaluate_pretraining_cli(
    checkpoint: Path = typer.Argument(..., help="An AlbertForPreTraining checkpoint with its spiece.model.", exists=True),
    texts: List[Path] = typer.Argument(..., help="Held-out raw text files, .spacy files or directories.", exists=True),
    max_seq_length: int = typer.Option(128, "--max-seq-length", min=5),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", callback=_device),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
) -> None:
    """Held-out masked-LM accuracy/loss and sentence-order accuracy of a pretrained checkpoint."""
    from ..errors import AlbertError
    from ..pretraining import evaluate_checkpoint

    try:
        check_text_inputs(texts)
        metrics = evaluate_checkpoint(
            checkpoint, [str(t) for t in texts], max_seq_length=max_seq_length, batch_size=batch_size,
            seed=seed, device=device,
        )  # fmt: skip
        text = json.dumps(metrics, indent=2)
        typer.echo(text)
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text + "\n", encoding="utf-8")
    except (ValueError, OSError, AlbertError) as err:
        fail("evaluate-pretraining", err)
