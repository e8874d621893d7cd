"""Data-parallel `spacy train` with torch.distributed (gloo on CPU, nccl on GPU), under torchrun.

spaCy's own training loop (`spacy.training.loop.train`) runs on every rank, unchanged but for
three hooks installed for the run (`_hooks`):

- ``nlp.update``: the loop hands it each (sub-)batch of the *global* batch, exactly as in one
  process (same batcher, same shuffle, same `accumulate_gradient` split); every rank updates
  on its strided share of it. After the step's last sub-batch, the gradients of every
  parameter of the pipeline (thinc parameters of every component and the torch parameters
  behind their shims) are summed across ranks in one flat bucket, before any `finish_update`,
  so that every rank takes the same optimizer step.
- the loop's batch stream, to know the global batch (its length ends the step; its words
  count in the table);
- its evaluation: rank 0 scores the dev set, the others receive the scores (every rank needs
  them for `patience`); the losses of the table are first summed across ranks.

Summing gradients gives the single-process gradient when each component's loss is a sum over
the batch (spaCy's `ner`, `parser`, `tagger`, `textcat`...). A component whose loss is a mean
over the batch's tokens or docs divides by `global_count(n)` instead of `n`: the count over the
whole global (sub-)batch, so that each rank's share of the sum is exact (spacy-albert's
components do). Rank 0 alone writes `model-best`/`model-last` and prints; the others are quiet.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import torch
import torch.distributed as dist

from ..errors import AlbertError

DEFAULT_TIMEOUT_S = 1800.0


class DistributedTrainingError(AlbertError, RuntimeError):
    """Ranks that cannot train together: different configs or data, or a batch too small."""


@dataclass
class Context:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world > 1


_ACTIVE: Optional[Context] = None  # set while a data-parallel run trains


def global_count(n: int) -> int:
    """`n` summed over the ranks of a data-parallel run (`n` itself otherwise): the
    normaliser a component's mean loss must divide by so that the ranks' gradients add up
    to the single-process one. Every rank must call it at the same point of its update."""
    ctx = _ACTIVE
    if ctx is None or not ctx.distributed:
        return n
    total = torch.tensor([n], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(total)
    return int(total.item())


# ---------------------------------------------------------------------------------------
# Process group
# ---------------------------------------------------------------------------------------
def init_process_group(gpu_id: int = -1, timeout_s: float = DEFAULT_TIMEOUT_S) -> Context:
    """This process's `Context` from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT); one process without it. With `gpu_id` >= 0, local rank r uses GPU
    `gpu_id + r` and nccl; on CPU, gloo. A peer that does not join or answer within
    `timeout_s` fails the run instead of hanging it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        device = torch.device("cuda", gpu_id) if gpu_id >= 0 else torch.device("cpu")
        return Context(device=device)
    if gpu_id >= 0:
        device = torch.device("cuda", gpu_id + local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
            )
        except (RuntimeError, ValueError) as err:  # DistStoreError (a RuntimeError) on a timeout
            raise DistributedTrainingError(
                f"rank {os.environ.get('RANK', '?')} of {world} could not join the process group at "
                f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')} within "
                f"{timeout_s:g} s ({str(err).strip().splitlines()[0]}): start every rank (torchrun on each "
                "machine with the same --rdzv-endpoint) or raise --dist-timeout."
            ) from None
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device)


def check_same(ctx: Context, what: str, value: str, fix: str) -> None:
    """Fail on every rank, naming the ranks, if `value` differs between ranks."""
    if not ctx.distributed:
        return
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    digests: List[Optional[str]] = [None] * ctx.world
    dist.all_gather_object(digests, digest)
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedTrainingError(f"the {what} of rank(s) {differ} differs from rank 0's: {fix}")


# ---------------------------------------------------------------------------------------
# The pipeline's parameters, as torch tensors
# ---------------------------------------------------------------------------------------
class _ThincParam:
    """A thinc node's parameter (numpy or cupy), seen as a torch tensor (shared memory)."""

    def __init__(self, node: Any, name: str) -> None:
        self.node, self.name = node, name

    def value(self) -> torch.Tensor:
        from thinc.api import xp2torch

        return xp2torch(self.node.get_param(self.name))

    def set_value(self, tensor: torch.Tensor) -> None:
        array = self.node.get_param(self.name)
        array[...] = _to_xp(tensor, array)

    def grad(self) -> Optional[torch.Tensor]:
        from thinc.api import xp2torch

        return xp2torch(self.node.get_grad(self.name)) if self.node.has_grad(self.name) else None

    def set_grad(self, tensor: torch.Tensor) -> None:
        if self.node.has_grad(self.name):
            array = self.node.get_grad(self.name)
            array[...] = _to_xp(tensor, array)
        else:
            param = self.node.get_param(self.name)
            self.node.set_grad(self.name, _to_xp(tensor, param).astype(param.dtype, copy=True))


class _TorchParam:
    """A torch parameter behind a shim."""

    def __init__(self, param: torch.nn.Parameter) -> None:
        self.param = param

    def value(self) -> torch.Tensor:
        return self.param.data

    def set_value(self, tensor: torch.Tensor) -> None:
        self.param.data.copy_(tensor.view_as(self.param))

    def grad(self) -> Optional[torch.Tensor]:
        return self.param.grad

    def set_grad(self, tensor: torch.Tensor) -> None:
        tensor = tensor.view_as(self.param).to(self.param.dtype)
        if self.param.grad is None:
            self.param.grad = tensor.to(self.param.device).clone()
        else:
            self.param.grad.copy_(tensor)


def _to_xp(tensor: torch.Tensor, like: Any) -> Any:
    from thinc.api import torch2xp

    return torch2xp(tensor).reshape(like.shape)


def pipeline_parameters(nlp: Any) -> List[Union[_ThincParam, _TorchParam]]:
    """Every parameter of every component's model, once each, in the same order on every
    rank: each thinc node's parameters and the torch parameters of its shims."""
    from thinc.api import Model

    params: List[Union[_ThincParam, _TorchParam]] = []
    seen: set = set()
    for _, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            if ("node", node.id) in seen:
                continue
            seen.add(("node", node.id))
            params.extend(_ThincParam(node, name) for name in node.param_names if node.has_param(name))
            for shim in node.shims:
                module = getattr(shim, "_model", None)
                if not isinstance(module, torch.nn.Module) or ("shim", id(shim)) in seen:
                    continue
                seen.add(("shim", id(shim)))
                for p in module.parameters():
                    if p.requires_grad and ("torch", id(p)) not in seen:
                        seen.add(("torch", id(p)))
                        params.append(_TorchParam(p))
    return params


def _flat(tensors: List[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to(device=device, dtype=torch.float32) for t in tensors])


def _unflat(flat: torch.Tensor, like: List[torch.Tensor]) -> Iterator[torch.Tensor]:
    offset = 0
    for t in like:
        yield flat[offset : offset + t.numel()].view(t.shape)
        offset += t.numel()


def broadcast_parameters(ctx: Context, nlp: Any) -> None:
    """Rank 0's weights on every rank (the same start even if a checkpoint differs)."""
    params = pipeline_parameters(nlp)
    values = [p.value() for p in params]
    flat = _flat(values, ctx.device)
    dist.broadcast(flat, 0)
    for param, value in zip(params, _unflat(flat, values)):
        param.set_value(value)


def all_reduce_gradients(ctx: Context, nlp: Any) -> None:
    """Sum every gradient of the pipeline across ranks, in one flat bucket (float32). A
    parameter some rank has a gradient for gets the sum on every rank; one no rank has a
    gradient for keeps none (so that no rank steps a parameter the others do not)."""
    params = pipeline_parameters(nlp)
    grads = [p.grad() for p in params]
    present = torch.tensor([g is not None for g in grads], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(present)
    chosen = [(p, g) for p, g, n in zip(params, grads, present.tolist()) if n]
    if not chosen:
        return
    shapes = [p.value() for p, _ in chosen]
    parts = [g if g is not None else torch.zeros_like(v) for (_, g), v in zip(chosen, shapes)]
    flat = _flat(parts, ctx.device)
    dist.all_reduce(flat)
    for (param, _), total in zip(chosen, _unflat(flat, shapes)):
        param.set_grad(total)


def _unseen_class_sets(nlp: Any) -> List[set]:
    """The `unseen_classes` sets of the pipeline's transition-based models (spaCy's ner and
    parser mask the scores of classes no gold has shown yet: state that each rank's update
    changes from its own share of the batch)."""
    from thinc.api import Model

    sets, seen = [], set()
    for _, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if isinstance(model, Model):
            for node in model.walk():
                unseen = node.attrs.get("unseen_classes")
                if isinstance(unseen, set) and id(unseen) not in seen:
                    seen.add(id(unseen))
                    sets.append(unseen)
    return sets


def sync_unseen_classes(ctx: Context, nlp: Any) -> None:
    """A class any rank's gold has shown is seen on every rank (as in one process, where
    the whole batch updates one set)."""
    sets = _unseen_class_sets(nlp)
    if not sets:
        return
    gathered: List[Optional[List[set]]] = [None] * ctx.world
    dist.all_gather_object(gathered, [set(s) for s in sets])
    for i, unseen in enumerate(sets):
        unseen.intersection_update(*(g[i] for g in gathered if g is not None))


def sum_losses(ctx: Context, losses: Dict[str, float]) -> None:
    """Replace each rank's losses by their sum over the ranks (the global batch's loss)."""
    gathered: List[Optional[Dict[str, float]]] = [None] * ctx.world
    dist.all_gather_object(gathered, dict(losses))
    for name in losses:
        losses[name] = float(sum(g.get(name, 0.0) for g in gathered if g))


# Components whose summed per-rank gradients are the one-process gradient: losses summed over
# the batch (spaCy's), or averaged with `global_count` (spacy-albert's), or no loss (encoders).
# albert_fill_mask also averages with `global_count`, but each rank draws the masks of its own
# share, so (as with dropout) its run equals one process's in expectation, not in value.
EXACT_COMPONENTS = frozenset({
    "AlbertComponent", "AlbertNER", "AlbertTextCategorizer", "AlbertQuestionAnswering", "AlbertMultipleChoice",
    "Tok2Vec", "EntityRecognizer", "DependencyParser", "Tagger", "Morphologizer", "SentenceRecognizer",
    "TextCategorizer", "MultiLabel_TextCategorizer", "SpanCategorizer",
})  # fmt: skip


def inexact_components(nlp: Any, frozen: List[str]) -> List[str]:
    """The trained components not known to be exact data-parallel (`EXACT_COMPONENTS`): e.g.
    albert_fill_mask (random masks per rank), or a component whose loss is a mean over its
    own share of the batch."""
    return [
        f"{name!r} ({type(proc).__name__})"
        for name, proc in nlp.pipeline
        if name not in frozen and getattr(proc, "is_trainable", False) and type(proc).__name__ not in EXACT_COMPONENTS
    ]


# ---------------------------------------------------------------------------------------
# Hooks into spaCy's training loop
# ---------------------------------------------------------------------------------------
def shard(ctx: Context, examples: List[Any], step: int) -> List[Any]:
    """This rank's strided share of a (sub-)batch (strided: the batch comes sorted by length)."""
    if len(examples) < ctx.world:
        raise DistributedTrainingError(
            f"step {step}: a batch of {len(examples)} example(s) cannot be split over {ctx.world} ranks "
            "(every rank needs at least one of every batch, and of every sub-batch that "
            "[training] accumulate_gradient cuts): use a larger [training.batcher] size, a smaller "
            "accumulate_gradient, or fewer processes."
        )
    return examples[ctx.rank :: ctx.world]


@dataclass
class _StepState:
    batch_len: int = 0
    seen: int = 0
    step: int = 0
    checked_data: bool = False
    losses: Optional[Dict[str, float]] = None


def _batch_fingerprint(batch: List[Any]) -> str:
    return "\n".join(eg.reference.text for eg in batch)


@contextlib.contextmanager
def _hooks(ctx: Context, nlp: Any) -> Iterator[None]:
    """Install the data-parallel hooks into spaCy's loop for the duration of a run."""
    from spacy.training import loop

    state = _StepState()
    original_update = nlp.update
    original_loop = loop.train_while_improving

    def update(examples: Any, *args: Any, **kwargs: Any) -> Dict[str, float]:
        examples = list(examples)
        state.losses = kwargs.get("losses", state.losses)
        result = original_update(shard(ctx, examples, state.step), *args, **kwargs)
        sync_unseen_classes(ctx, nlp)
        state.seen += len(examples)
        if state.seen >= state.batch_len:  # the step's last sub-batch: before any finish_update
            all_reduce_gradients(ctx, nlp)
        return result

    def batches(train_data: Any) -> Iterator[Any]:
        for step, (epoch, batch) in enumerate(train_data):
            batch = list(batch)
            if not state.checked_data:
                check_same(ctx, "first training batch", _batch_fingerprint(batch),
                           "every rank must read the same training data ([paths.train]) in the same order.")  # fmt: skip
                state.checked_data = True
            state.batch_len, state.seen, state.step = len(batch), 0, step
            yield epoch, batch

    def train_while_improving(nlp_: Any, optimizer: Any, train_data: Any, evaluate: Callable, **kwargs: Any):
        def evaluate_on_rank_0() -> Any:
            if state.losses is not None:
                sum_losses(ctx, state.losses)
            result = [evaluate() if ctx.rank == 0 else None]
            dist.broadcast_object_list(result, src=0)
            return result[0]

        return original_loop(nlp_, optimizer, batches(train_data), evaluate_on_rank_0, **kwargs)

    global _ACTIVE
    nlp.update, loop.train_while_improving, _ACTIVE = update, train_while_improving, ctx
    try:
        yield
    finally:
        del nlp.update
        loop.train_while_improving, _ACTIVE = original_loop, None


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
def train(
    config_path: Union[str, Path],
    output_path: Optional[Union[str, Path]] = None,
    *,
    use_gpu: int = -1,
    overrides: Optional[Dict[str, Any]] = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """`spacy train CONFIG --output DIR [--gpu-id N] [overrides]`: in one process, spaCy's own
    command; under torchrun, the same training data-parallel over the ranks (see the module)."""
    from spacy.cli._util import setup_gpu, show_validation_error
    from spacy.cli.train import train as spacy_train
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp
    from spacy.util import load_config
    from wasabi import msg

    overrides = dict(overrides or {})
    ctx = init_process_group(use_gpu, timeout_s)
    if not ctx.distributed:
        spacy_train(config_path, output_path, use_gpu=use_gpu, overrides=overrides)
        return
    device_id = ctx.device.index if ctx.device.type == "cuda" else -1
    quiet = contextlib.redirect_stdout(io.StringIO()) if ctx.rank else contextlib.nullcontext()
    try:
        with quiet:
            output = Path(output_path) if output_path is not None and ctx.rank == 0 else None
            if output is not None:
                output.mkdir(parents=True, exist_ok=True)
                msg.info(f"Saving to output directory: {output}")
            msg.info(f"Data-parallel training: {ctx.world} ranks ({'nccl' if device_id >= 0 else 'gloo'})")
            setup_gpu(device_id)
            with show_validation_error(config_path):
                config = load_config(config_path, overrides=overrides, interpolate=False)
            check_same(ctx, "config (with its overrides)", config.to_str(),
                       "launch every rank with the same config file and the same --section.key overrides.")  # fmt: skip
            msg.divider("Initializing pipeline")
            with show_validation_error(config_path, hint_fill=False):
                nlp = init_nlp(config, use_gpu=device_id)
            broadcast_parameters(ctx, nlp)
            msg.good("Initialized pipeline")
            inexact = inexact_components(nlp, list(nlp.config["training"]["frozen_components"]))
            if inexact:
                msg.warn(f"Data-parallel training is approximate for {', '.join(inexact)}: its loss is not "
                         "known to be a sum (or a global mean) over the batch, or it draws random masks per rank, "
                         "so its summed gradient may differ from one process's.")  # fmt: skip
            msg.divider("Training pipeline")
            if ctx.rank:  # no logger output (files, trackers) from the other ranks
                nlp.config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
            with _hooks(ctx, nlp):  # stdout: the real one on rank 0, the `quiet` buffer elsewhere
                train_nlp(nlp, output, use_gpu=device_id, stdout=sys.stdout, stderr=sys.stderr)
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
