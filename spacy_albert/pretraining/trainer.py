"""ALBERT pretraining: masked LM (n-gram masking) + sentence-order prediction.

One global batch per optimizer step, split over ranks (torch.distributed) and then over
gradient-accumulation micro-batches. Everything a step sees is a function of
``(seed, step)``: the epoch's instance order, and each instance's mask (drawn from an RNG
seeded with ``(seed, epoch, instance)``). Losses are normalised by the *global* batch
(masked pieces for MLM, instances for SOP), so one process, several ranks or several
micro-batches compute the same gradient, and a resumed run continues the same trajectory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.configuration import ENCODER_DEFAULTS, AlbertConfig
from ..models.modeling_albert import AlbertForPreTraining
from ..models.checkpoint import check_vocab_matches
from ..tokenization import AlbertTokenizerFast
from .corpus import read_documents
from .instances import Instance, build_instances, piece_starts_word, special_ids
from .masking import IGNORE_INDEX, MaskingSettings, mask_ngrams
from .optim import build_optimizer, linear_schedule
from .state import (
    STATE_JSON,
    TrainerStateError,
    has_trainer_state,
    load_trainer_state,
    rng_state,
    save_trainer_state,
    set_rng_state,
)
from ..util_io import atomic_write_text, fsync_path
from ..models.precision import autocast, check_precision

STATE_FILE = STATE_JSON  # with trainer_state.safetensors; see .state
LOG_FILE = "pretraining_log.jsonl"
CHECKPOINTS = "checkpoints"
EVAL_EPOCH = 2**31 - 1  # the masking "epoch" of held-out evaluation: fixed masks


@dataclass
class PretrainingSettings:
    """Everything a pretraining run depends on (saved with each checkpoint)."""

    train: List[str]
    vocab: str
    output: str
    dev: List[str] = field(default_factory=list)
    dev_fraction: float = 0.02
    max_dev_instances: int = 2000
    # The model: a config.json, a checkpoint to continue from, or these sizes.
    config: Optional[str] = None
    init: Optional[str] = None
    embedding_size: int = ENCODER_DEFAULTS["embedding_size"]
    hidden_size: int = ENCODER_DEFAULTS["hidden_size"]
    num_hidden_layers: int = ENCODER_DEFAULTS["num_hidden_layers"]
    num_attention_heads: int = ENCODER_DEFAULTS["num_attention_heads"]
    intermediate_size: int = ENCODER_DEFAULTS["intermediate_size"]
    num_hidden_groups: int = ENCODER_DEFAULTS["num_hidden_groups"]
    inner_group_num: int = ENCODER_DEFAULTS["inner_group_num"]
    hidden_act: str = ENCODER_DEFAULTS["hidden_act"]
    dropout: float = ENCODER_DEFAULTS["hidden_dropout_prob"]
    classifier_dropout: float = 0.1
    # Data and masking.
    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    mlm_probability: float = 0.15
    max_predictions: Optional[int] = None
    max_ngram: int = 3
    # Optimisation.
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 1000
    optimizer: str = "lamb"
    lr: float = 1.76e-3
    warmup_steps: Optional[int] = None
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    max_grad_norm: float = 1.0
    precision: str = "float32"
    # Running.
    device: str = "cpu"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 500
    keep_checkpoints: int = 2
    resume: Optional[str] = None
    max_minutes: Optional[float] = None
    threads: Optional[int] = None
    progress: bool = True

    def validate(self, world_size: int) -> None:
        check_precision(self.precision)
        if self.batch_size % (world_size * self.grad_accum):
            raise ValueError(
                f"batch_size {self.batch_size} must be divisible by world size x grad_accum "
                f"({world_size} x {self.grad_accum})."
            )
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1.")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.max_steps // 80)


# ---------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------
@dataclass
class Masker:
    settings: MaskingSettings
    word_starts: np.ndarray
    special: np.ndarray
    seed: int

    @classmethod
    def for_tokenizer(
        cls,
        tokenizer: AlbertTokenizerFast,
        seed: int,
        max_seq_length: int,
        mlm_probability: float = 0.15,
        max_ngram: int = 3,
        max_predictions: Optional[int] = None,
    ) -> "Masker":
        """ALBERT's masking for `tokenizer`'s vocabulary; `max_predictions` defaults to 15% of
        `max_seq_length` + 1 (20 for 128, as the reference)."""
        settings = MaskingSettings(
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_ids=tuple(tokenizer.all_special_ids),
            mlm_probability=mlm_probability,
            max_predictions=max_predictions or max(1, round(max_seq_length * mlm_probability)) + 1,
            max_ngram=max_ngram,
        )
        return cls(settings, piece_starts_word(tokenizer), special_ids(tokenizer), seed)

    def __call__(self, instance: Instance, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, index])
        return mask_ngrams(instance.input_ids, self.settings, self.word_starts, self.special, rng)


def collate_instances(
    instances: Sequence[Instance], indices: Sequence[int], epoch: int, masker: Masker, pad_id: int
) -> Dict[str, torch.Tensor]:
    """Padded tensors of the instances at `indices`, masked for `epoch`; `masked_rows` are the
    flat positions (row-major, as `labels != IGNORE_INDEX` selects them) of the masked pieces,
    found here on the host so that the device never reads a mask back."""
    length = max(len(instances[i].input_ids) for i in indices)
    n = len(indices)
    input_ids = np.full((n, length), pad_id, dtype=np.int64)
    labels = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    token_types = np.zeros((n, length), dtype=np.int64)
    attention = np.zeros((n, length), dtype=np.int64)
    order = np.zeros(n, dtype=np.int64)
    for row, index in enumerate(indices):
        instance = instances[index]
        ids, lab = masker(instance, epoch, index)
        input_ids[row, : len(ids)] = ids
        labels[row, : len(ids)] = lab
        token_types[row, instance.n_first : len(ids)] = 1
        attention[row, : len(ids)] = 1
        order[row] = instance.sentence_order_label
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "token_type_ids": torch.from_numpy(token_types),
        "labels": torch.from_numpy(labels),
        "sentence_order_label": torch.from_numpy(order),
        "masked_rows": torch.from_numpy(np.flatnonzero(labels != IGNORE_INDEX).astype(np.int64)),
    }


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def pretraining_outputs(
    model: AlbertForPreTraining, batch: Dict[str, torch.Tensor], host: Optional[Dict[str, torch.Tensor]] = None
) -> Dict[str, torch.Tensor]:
    """MLM logits at the masked positions only (the reference's ``masked_lm_positions``) and SOP
    logits; the full vocabulary projection over every position is never computed. `host`, the
    same batch before it went to the device, lets the ids be checked there (no device read)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "token_type_ids": batch["token_type_ids"], "return_dict": True}  # fmt: skip
    if host is not None:
        ids = host["input_ids"]
        model.albert.check_ids(ids.numpy(), host["token_type_ids"].numpy(), None, ids.shape[1])
        if host["attention_mask"].numpy().all():
            inputs["attention_mask"] = None
        inputs["check_inputs"] = False
    outputs = model.albert(**inputs)
    rows = batch["masked_rows"]
    hidden = outputs.last_hidden_state
    return {
        "mlm_logits": model.predictions(hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)).float(),
        "mlm_labels": batch["labels"].reshape(-1).index_select(0, rows),
        "sop_logits": model.sop_classifier(outputs.pooler_output).float(),
    }


# ---------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------
def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every gradient over the ranks in one flat buffer."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: AlbertForPreTraining,
    instances: Sequence[Instance],
    masker: Masker,
    pad_id: int,
    batch_size: int = 32,
    precision: str = "float32",
) -> Dict[str, float]:
    """Held-out MLM accuracy/loss and SOP accuracy/loss with fixed masks."""
    if not instances:
        return {}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    masked = 0
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # on the device, read once at the end
    for start in range(0, len(instances), batch_size):
        indices = range(start, min(start + batch_size, len(instances)))
        batch = {k: v.to(device) for k, v in collate_instances(instances, indices, EVAL_EPOCH, masker, pad_id).items()}
        with autocast(precision, device.type):
            out = pretraining_outputs(model, batch)
        masked += int(out["mlm_labels"].numel())
        sop_labels = batch["sentence_order_label"]
        totals = totals + torch.stack([
            (out["mlm_logits"].argmax(-1) == out["mlm_labels"]).sum().double(),
            F.cross_entropy(out["mlm_logits"], out["mlm_labels"], reduction="sum").double(),
            (out["sop_logits"].argmax(-1) == sop_labels).sum().double(),
            F.cross_entropy(out["sop_logits"], sop_labels, reduction="sum").double(),
        ])  # fmt: skip
    model.train(was_training)
    hits_f, mlm_loss, sop_hits_f, sop_loss = totals.tolist()
    hits, sop_hits = int(hits_f), int(sop_hits_f)
    return {
        "mlm_accuracy": hits / max(1, masked),
        "mlm_loss": mlm_loss / max(1, masked),
        "sop_accuracy": sop_hits / len(instances),
        "sop_loss": sop_loss / len(instances),
        "instances": len(instances),
        "masked_pieces": masked,
    }


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
def load_tokenizer(vocab: str | os.PathLike) -> AlbertTokenizerFast:
    """The tokenizer of a vocabulary directory (train-vocab's output, a checkpoint) or spiece.model."""
    path = Path(vocab)
    if path.is_file():
        return AlbertTokenizerFast(vocab_file=str(path))
    if not path.is_dir():
        raise FileNotFoundError(f"Vocabulary {str(path)!r} is neither a directory nor a spiece.model file.")
    return AlbertTokenizerFast.from_pretrained(path)


def build_model(settings: PretrainingSettings, tokenizer: AlbertTokenizerFast) -> AlbertForPreTraining:
    if settings.init:
        model = AlbertForPreTraining.from_pretrained(settings.init)
    else:
        if settings.config:
            config = AlbertConfig.from_json_file(settings.config)
            config.vocab_size = len(tokenizer)
        else:
            config = AlbertConfig(
                vocab_size=len(tokenizer),
                embedding_size=settings.embedding_size,
                hidden_size=settings.hidden_size,
                num_hidden_layers=settings.num_hidden_layers,
                num_attention_heads=settings.num_attention_heads,
                intermediate_size=settings.intermediate_size,
                num_hidden_groups=settings.num_hidden_groups,
                inner_group_num=settings.inner_group_num,
                hidden_act=settings.hidden_act,
                hidden_dropout_prob=settings.dropout,
                attention_probs_dropout_prob=settings.dropout,
                classifier_dropout_prob=settings.classifier_dropout,
            )
        config.max_position_embeddings = max(config.max_position_embeddings, settings.max_seq_length)
        config.pad_token_id = tokenizer.pad_token_id
        config.bos_token_id = tokenizer.cls_token_id
        config.eos_token_id = tokenizer.sep_token_id
        model = AlbertForPreTraining(config)
    check_vocab_matches(tokenizer, model.config)
    if settings.max_seq_length > model.config.max_position_embeddings:
        raise ValueError(
            f"max_seq_length {settings.max_seq_length} exceeds the model's max_position_embeddings "
            f"{model.config.max_position_embeddings}."
        )
    return model


def split_dev(instances: List[Instance], fraction: float, cap: int, seed: int) -> tuple[List[Instance], List[Instance]]:
    """Hold out a seeded random `fraction` of the instances (at most `cap`) for evaluation."""
    if fraction <= 0 or len(instances) < 2:
        return instances, []
    n_dev = min(cap, max(1, int(len(instances) * fraction)))
    order = np.random.default_rng([seed, 1]).permutation(len(instances))
    dev = set(order[:n_dev].tolist())
    return [x for i, x in enumerate(instances) if i not in dev], [instances[i] for i in sorted(dev)]


def latest_checkpoint(output: str | os.PathLike) -> Optional[Path]:
    """The newest `checkpoints/step-N` holding a trainer state (an old-format one included, so
    that resuming it gives a clear error instead of silently starting elsewhere)."""
    found = sorted((Path(output) / CHECKPOINTS).glob("step-*"))
    found = [p for p in found if p.is_dir() and has_trainer_state(p)]
    return found[-1] if found else None


def _fsync_tree(directory: Path) -> None:
    """fsync every file in `directory` (one level) and the folder itself."""
    for path in directory.iterdir():
        if path.is_file():
            fsync_path(path)
    fsync_path(directory)


class Pretrainer:
    """One pretraining run; `run()` trains, evaluates, checkpoints and writes the final model."""

    def __init__(self, settings: PretrainingSettings) -> None:
        self.settings = s = settings
        self.rank, self.world, self.device = init_distributed(s.device)
        s.validate(self.world)
        if s.threads:
            torch.set_num_threads(s.threads)
        self.output = Path(s.output)
        self.tokenizer = load_tokenizer(s.vocab)
        self.masker = Masker.for_tokenizer(
            self.tokenizer, s.seed, s.max_seq_length, s.mlm_probability, s.max_ngram, s.max_predictions
        )
        self.train_instances, self.dev_instances = self._instances()
        if len(self.train_instances) < s.batch_size:
            raise ValueError(
                f"Only {len(self.train_instances)} training instances for a batch size of {s.batch_size}: "
                "use more text or a smaller --batch-size."
            )
        torch.manual_seed(s.seed)
        self.model = build_model(s, self.tokenizer).to(self.device)
        self.model.train()
        self.optimizer = build_optimizer(
            self.model, s.optimizer, s.lr, s.weight_decay, (s.adam_beta1, s.adam_beta2), s.adam_eps
        )
        self.scheduler = linear_schedule(self.optimizer, s.warmup, s.max_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=s.precision == "float16")
        self.step = 0
        if s.resume:
            self._resume(s.resume)
        elif self.world > 1:
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, 0)

    # -- data ---------------------------------------------------------------------------
    def _instances(self) -> tuple[List[Instance], List[Instance]]:
        s = self.settings
        kwargs = dict(max_seq_length=s.max_seq_length, short_seq_prob=s.short_seq_prob)
        train = build_instances(read_documents(s.train), self.tokenizer, seed=s.seed, **kwargs)
        if s.dev:
            dev = build_instances(read_documents(s.dev), self.tokenizer, seed=s.seed + 1, **kwargs)
            return train, dev[: s.max_dev_instances]
        return split_dev(train, s.dev_fraction, s.max_dev_instances, s.seed)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_instances) // self.settings.batch_size

    def global_batch(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, instance indices) of the global batch of optimizer step `step`."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.train_instances), self.settings.seed, epoch)
        size = self.settings.batch_size
        return epoch, order[position * size : (position + 1) * size]

    def micro_batches(self, step: int) -> List[Dict[str, torch.Tensor]]:
        """This rank's share of the step's global batch, in `grad_accum` micro-batches."""
        return [{k: v.to(self.device) for k, v in batch.items()} for batch in self._host_micro_batches(step)]

    def _host_micro_batches(self, step: int) -> List[Dict[str, torch.Tensor]]:
        """`micro_batches(step)` on the host (CPU tensors)."""
        epoch, indices = self.global_batch(step)
        share = np.array_split(indices, self.world)[self.rank]
        pad = self.tokenizer.pad_token_id
        parts = np.array_split(share, self.settings.grad_accum)
        return [collate_instances(self.train_instances, part.tolist(), epoch, self.masker, pad) for part in parts]

    def _global_sum(self, *values: float) -> List[float]:
        if self.world == 1:
            return list(values)
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        return totals.tolist()

    # -- one step -----------------------------------------------------------------------
    def train_step(self) -> Dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches (float16: scaled losses, the
        gradients unscaled once, before clipping and the step). The counts come from the host
        batches and the losses and gradient norm stay on the device until one read at the
        end of the step (no host sync per micro-batch)."""
        s = self.settings
        host_batches = self._host_micro_batches(self.step)
        # Every rank normalises by the global counts, so the summed gradient is the global mean.
        local_masked = sum(len(b["masked_rows"]) for b in host_batches)
        local_pieces = sum(int(b["attention_mask"].numpy().sum()) for b in host_batches)  # on the host: no device read
        n_masked, n_pieces = self._global_sum(local_masked, local_pieces)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # mlm, sop
        for host in host_batches:
            batch = {k: v.to(self.device) for k, v in host.items()}
            with autocast(s.precision, self.device.type):
                out = pretraining_outputs(self.model, batch, host)
            mlm = F.cross_entropy(out["mlm_logits"], out["mlm_labels"], reduction="sum") / max(1.0, n_masked)
            sop = F.cross_entropy(out["sop_logits"], batch["sentence_order_label"], reduction="sum") / s.batch_size
            self.scaler.scale(mlm + sop).backward()
            totals = totals + torch.stack([mlm.detach(), sop.detach()]).double()
        if self.world > 1:
            all_reduce_gradients(self.model)
            dist.all_reduce(totals)
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        norm = grad_norm.detach().double().reshape(1).to(totals.device)
        mlm_total, sop_total, norm = torch.cat([totals, norm]).tolist()  # the step's one read
        return {
            "loss": mlm_total + sop_total,
            "mlm_loss": mlm_total,
            "sop_loss": sop_total,
            "lr": lr,
            "grad_norm": norm,
            "pieces": int(n_pieces),
        }

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """An HF checkpoint (config, weights, tokenizer) plus the trainer state to resume from."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        state = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "settings": asdict(self.settings),
        }
        save_trainer_state(directory, state)  # safetensors + JSON, no pickle; JSON written last

    def save_checkpoint(self) -> Path:
        """Save `checkpoints/step-N`: written into a hidden temporary folder, synced, then renamed
        into place, so a crash never leaves a half checkpoint under a `step-*` name."""
        root = self.output / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        directory = root / f"step-{self.step:08d}"
        for leftover in root.glob(".step-*"):  # from a save that crashed
            shutil.rmtree(leftover, ignore_errors=True)
        partial = root / f".{directory.name}.partial-{uuid.uuid4().hex[:8]}"
        replaced: Optional[Path] = None
        try:
            self.save(partial)
            _fsync_tree(partial)
            if directory.exists():
                replaced = root / f".{directory.name}.replaced-{uuid.uuid4().hex[:8]}"
                os.replace(directory, replaced)
            os.replace(partial, directory)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        fsync_path(root)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        old = sorted(p for p in root.glob("step-*") if p != directory)
        for stale in old[: max(0, len(old) - self.settings.keep_checkpoints + 1)]:
            shutil.rmtree(stale, ignore_errors=True)
        return directory

    def _resume(self, resume: str) -> None:
        directory = latest_checkpoint(self.output) if resume == "auto" else Path(resume)
        if directory is None:
            return  # "auto" with nothing saved yet: start from scratch
        state = load_trainer_state(directory)  # data only (JSON + safetensors); checks come first
        weights = AlbertForPreTraining.from_pretrained(directory)
        self.model.load_state_dict(weights.state_dict())
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            self.step = int(state["step"])
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise TrainerStateError(
                f"The trainer state in {str(directory)!r} does not fit this run ({type(err).__name__}: {err}): "
                "resume with the settings (optimizer, model sizes, precision) it was saved with, or start "
                f"a new run from its weights with --init {str(directory)!r}."
            ) from err

    # -- the loop -----------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.rank == 0:
            with (self.output / LOG_FILE).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def evaluate(self) -> Dict[str, float]:
        s = self.settings
        return evaluate(
            self.model, self.dev_instances, self.masker, self.tokenizer.pad_token_id,
            batch_size=max(1, s.batch_size // max(1, s.grad_accum)), precision=s.precision,
        )  # fmt: skip

    def run(self) -> Dict[str, object]:
        from tqdm import tqdm

        s = self.settings
        if self.rank == 0:
            self.output.mkdir(parents=True, exist_ok=True)
            if self.step == 0:
                (self.output / LOG_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        pieces = 0
        bar = tqdm(
            total=s.max_steps, initial=self.step, disable=not s.progress or self.rank != 0,
            unit="step", dynamic_ncols=True, desc="pretrain", mininterval=1.0,
        )  # fmt: skip
        stopped_early = False
        if s.eval_every and self.step == 0 and self.rank == 0 and self.dev_instances:
            self._log({"step": 0, "eval": self.evaluate()})  # the untrained baseline
        training_seconds = 0.0  # excludes evaluation and checkpointing
        while self.step < s.max_steps:
            step_started = time.perf_counter()
            record = self.train_step()
            training_seconds += time.perf_counter() - step_started
            pieces += record.pop("pieces")
            elapsed = time.perf_counter() - started
            record.update(step=self.step, pieces_per_second=pieces / training_seconds, elapsed=elapsed)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", pieces_s=f"{record['pieces_per_second']:.0f}")
            if self.step % s.log_every == 0 or self.step == s.max_steps:
                self._log(record)
            periodic_eval = s.eval_every and self.step % s.eval_every == 0 and self.step < s.max_steps
            if periodic_eval and self.rank == 0 and self.dev_instances:
                self._log({"step": self.step, "eval": self.evaluate()})
            if s.save_every and self.step % s.save_every == 0 and self.rank == 0:
                self.save_checkpoint()
            if s.max_minutes is not None and _any_rank(elapsed > 60 * s.max_minutes, self.world, self.device):
                stopped_early = True
                break
        bar.close()
        summary: Dict[str, object] = {"steps": self.step, "stopped_early": stopped_early}
        summary["pieces_per_second"] = pieces / max(1e-9, training_seconds)
        summary["training_seconds"] = training_seconds
        if self.rank == 0:
            metrics = self.evaluate() if self.dev_instances else {}
            summary["eval"] = metrics
            self._log({"step": self.step, "eval": metrics, "final": True})
            if stopped_early or (s.save_every and self.step % s.save_every):
                self.save_checkpoint()  # what --resume auto continues from
            self.model.save_pretrained(self.output)
            self.tokenizer.save_pretrained(self.output)
            atomic_write_text(self.output / "pretraining_metrics.json", json.dumps(summary, indent=2) + "\n")
        if self.world > 1:
            dist.barrier()
        return summary


def pretrain(settings: PretrainingSettings) -> Dict[str, object]:
    """Run ALBERT pretraining; see `PretrainingSettings`. Returns the final summary."""
    return Pretrainer(settings).run()


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    texts: Sequence[str | os.PathLike],
    *,
    max_seq_length: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    max_ngram: int = 3,
    mlm_probability: float = 0.15,
    device: str = "cpu",
) -> Dict[str, float]:
    """Held-out MLM/SOP metrics of a saved `AlbertForPreTraining` on raw text files."""
    tokenizer = load_tokenizer(checkpoint)
    model = AlbertForPreTraining.from_pretrained(checkpoint).to(device)
    check_vocab_matches(tokenizer, model.config)
    instances = build_instances(read_documents(texts), tokenizer, max_seq_length=max_seq_length, seed=seed)
    masker = Masker.for_tokenizer(tokenizer, seed, max_seq_length, mlm_probability, max_ngram)
    if not instances:
        raise ValueError("The evaluation text gave no instances (it needs sentences of at least two pieces).")
    return evaluate(model, instances, masker, tokenizer.pad_token_id, batch_size=batch_size)


__all__ = ["PretrainingSettings", "Pretrainer", "pretrain", "evaluate_checkpoint", "evaluate"]
