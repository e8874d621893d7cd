"""``pretrain`` and ``evaluate-pretraining``: ALBERT's MLM + SOP pretraining from raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ._app import app


@app.command("pretrain")
def pretrain_cli(
    train: List[Path] = typer.Argument(..., help="Raw text files, .spacy files or directories.", exists=True),
    vocab: Path = typer.Option(..., "--vocab", help="train-vocab's output directory (or a spiece.model).", exists=True),
    output: Path = typer.Option(..., "--output", "-o", help="Output: an HF checkpoint, checkpoints/ and logs."),
    dev: List[Path] = typer.Option([], "--dev", help="Held-out text (default: hold out --dev-fraction).", exists=True),
    dev_fraction: float = typer.Option(0.02, "--dev-fraction"),
    config: Optional[Path] = typer.Option(None, "--config", help="An AlbertConfig JSON (sizes below ignored).", exists=True),
    init: Optional[Path] = typer.Option(None, "--init", help="Continue pretraining this HF checkpoint.", exists=True),
    embedding_size: int = typer.Option(128, "--embedding-size"),
    hidden_size: int = typer.Option(768, "--hidden-size"),
    num_layers: int = typer.Option(12, "--num-layers"),
    num_heads: int = typer.Option(12, "--num-heads"),
    intermediate_size: int = typer.Option(3072, "--intermediate-size"),
    num_groups: int = typer.Option(1, "--num-groups", help="Groups of shared layers."),
    inner_group_num: int = typer.Option(1, "--inner-group-num", help="Layers per group."),
    dropout: float = typer.Option(0.0, "--dropout", help="Hidden/attention dropout (ALBERT v2: 0)."),
    classifier_dropout: float = typer.Option(0.1, "--classifier-dropout", help="Dropout before the SOP classifier."),
    max_seq_length: int = typer.Option(128, "--max-seq-length"),
    short_seq_prob: float = typer.Option(0.1, "--short-seq-prob"),
    mlm_probability: float = typer.Option(0.15, "--mlm-probability"),
    max_predictions: Optional[int] = typer.Option(None, "--max-predictions", help="Default: 15% of max-seq-length + 1."),
    max_ngram: int = typer.Option(3, "--max-ngram"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Global batch (all ranks, all micro-batches)."),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    max_steps: int = typer.Option(1000, "--max-steps"),
    optimizer: str = typer.Option("lamb", "--optimizer", help="lamb or adamw."),
    lr: float = typer.Option(1.76e-3, "--lr"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Default: max-steps / 80."),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    adam_eps: float = typer.Option(1e-6, "--adam-eps"),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm"),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (autocast)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed"),
    log_every: int = typer.Option(10, "--log-every"),
    eval_every: int = typer.Option(200, "--eval-every"),
    save_every: int = typer.Option(500, "--save-every"),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints"),
    resume: Optional[str] = typer.Option(None, "--resume", help="A checkpoints/step-N directory, or 'auto' (latest)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop (and save) after this long."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
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
        summary = pretrain(settings)
    except (ValueError, FileNotFoundError, AlbertError) as err:
        typer.echo(f"pretrain: {err}", err=True)
        raise typer.Exit(1)
    if "eval" in summary:  # rank 0
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"Saved the pretrained model to {output}")


@app.command("evaluate-pretraining")
def evaluate_pretraining_cli(
    checkpoint: Path = typer.Argument(..., help="An AlbertForPreTraining checkpoint with its spiece.model.", exists=True),
    texts: List[Path] = typer.Argument(..., help="Held-out raw text files, .spacy files or directories.", exists=True),
    max_seq_length: int = typer.Option(128, "--max-seq-length"),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
) -> None:
    """Held-out masked-LM accuracy/loss and sentence-order accuracy of a pretrained checkpoint."""
    from ..errors import AlbertError
    from ..pretraining import evaluate_checkpoint

    try:
        metrics = evaluate_checkpoint(
            checkpoint, [str(t) for t in texts], max_seq_length=max_seq_length, batch_size=batch_size,
            seed=seed, device=device,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, AlbertError) as err:
        typer.echo(f"evaluate-pretraining: {err}", err=True)
        raise typer.Exit(1)
    text = json.dumps(metrics, indent=2)
    typer.echo(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")
