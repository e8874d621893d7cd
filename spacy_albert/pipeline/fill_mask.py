"""`albert_fill_mask`: ALBERT's masked-language-model head as a spaCy component.

* Prediction: for a doc whose text contains the tokenizer's mask token (``[MASK]``, several
  allowed), `doc._.mask_fills` holds one list per mask (in text order), each the top-k
  candidates as dicts ``{"score", "token", "token_str", "sequence"}`` exactly as
  transformers' ``pipeline("fill-mask")`` returns them (``targets`` restricts the candidates
  in the same way). A doc without a mask (empty and whitespace docs included) gets ``[]``; a
  doc the component has not processed keeps ``None``. `AlbertFillMask.fill(text)` returns the
  reference pipeline's own format (a list of dicts for one mask, a list of lists for several).
* Texts longer than the model's window (``max_position_embeddings`` pieces with [CLS] and
  [SEP]) are not truncated: each mask is predicted in a window of that size centred on it
  (clamped to the text); the returned ``sequence`` is always the whole text. Within the window
  the results equal the reference's; the reference itself cannot run such texts.
* Training (`update`): masked-LM updates on raw docs, e.g. for domain adaptation, with the
  reference recipe (`DataCollatorForLanguageModeling`: ``mlm_probability`` of the non-special
  pieces selected, of those 80% replaced by [MASK], 10% by a random piece, 10% unchanged;
  labels -100 elsewhere), on windows of ``max_position_embeddings - 2`` pieces. Masks are
  drawn from torch's global generator, which `spacy train` seeds.
* Score: `mlm_acc` (the share of masked pieces predicted right) and `mlm_loss` (their mean
  cross-entropy) on the examples' texts, masked with the same recipe from a generator seeded
  with ``eval_seed``, so that scores are comparable between runs and steps.
"""

from __future__ import annotations

from pathlib import Path
import warnings
from itertools import islice
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from ..errors import AlbertError
from ..layers.task_model import export_task_model, get_module, task_autocast, get_tokenizer, load_task_checkpoint
from .guards import check_gradients, check_loss, next_step
from .serialization import PipeSerialization, claim_encoders

DOC_EXTENSION = "mask_fills"
if not Doc.has_extension(DOC_EXTENSION):
    Doc.set_extension(DOC_EXTENSION, default=None)

Fill = Dict[str, Any]  # {"score": float, "token": int, "token_str": str, "sequence": str}
Targets = Optional[Union[str, List[str]]]

DEFAULT_FILL_MASK_MODEL = """
[model]
@architectures = "spacy-albert.AlbertTaskModel.v1"
task = "masked-lm"
checkpoint = null
"""


@registry.scorers("spacy-albert.fill_mask_scorer.v1")
def make_fill_mask_scorer() -> Callable[..., Dict[str, Optional[float]]]:
    return score_fill_mask


def score_fill_mask(
    examples: Iterable[Example], *, pipe: "AlbertFillMask", **kwargs: Any
) -> Dict[str, Optional[float]]:
    """`mlm_acc` and `mlm_loss` of `pipe` on the examples' reference texts (see
    `AlbertFillMask.mlm_scores`); the component passes itself as `pipe`."""
    return pipe.mlm_scores(examples)


@Language.factory(
    "albert_fill_mask",
    default_config={
        "model": Config().from_str(DEFAULT_FILL_MASK_MODEL)["model"],
        "top_k": 5,
        "targets": None,
        "mlm_probability": 0.15,
        "eval_seed": 0,
        "max_batch_pieces": 4096,
        "scorer": {"@scorers": "spacy-albert.fill_mask_scorer.v1"},
    },
    assigns=[f"doc._.{DOC_EXTENSION}"],
    default_score_weights={"mlm_acc": 1.0, "mlm_loss": None},
)
def make_albert_fill_mask(
    nlp: Language,
    name: str,
    model: Model,
    top_k: int,
    targets: Targets,
    mlm_probability: float,
    eval_seed: int,
    max_batch_pieces: int,
    scorer: Optional[Callable],
) -> "AlbertFillMask":
    """Construct the masked-LM component (fill-mask prediction and masked-LM training)."""
    return AlbertFillMask(
        nlp.vocab, model, name, top_k=top_k, targets=targets, mlm_probability=mlm_probability,
        eval_seed=eval_seed, max_batch_pieces=max_batch_pieces, scorer=scorer,
    )  # fmt: skip


class AlbertFillMask(PipeSerialization, TrainablePipe):
    """Fill [MASK] pieces with ALBERT's masked-LM head; train it on raw text.

    The model is `spacy-albert.AlbertTaskModel.v1` with task "masked-lm"; its weights and
    vocabulary come from a Hugging Face checkpoint: the architecture's `checkpoint` setting, or
    `initialize(checkpoint=...)` (in a config: `[initialize.components.<name>] checkpoint`).
    """

    config_cfg_keys = ("top_k", "targets", "mlm_probability", "eval_seed", "max_batch_pieces")  # settings from the config, also at load

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "albert_fill_mask",
        *,
        top_k: int = 5,
        targets: Targets = None,
        mlm_probability: float = 0.15,
        eval_seed: int = 0,
        max_batch_pieces: int = 4096,
        scorer: Optional[Callable] = score_fill_mask,
    ) -> None:
        if model.attrs.get("task") != "masked-lm":
            task = model.attrs.get("task")
            raise ValueError(f"albert_fill_mask needs an AlbertTaskModel with task 'masked-lm', not {task!r}.")
        _check_top_k(top_k)
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability={mlm_probability!r}; it must lie strictly between 0 and 1.")
        if max_batch_pieces < 1:
            raise ValueError(f"max_batch_pieces={max_batch_pieces!r}; it must be positive.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "top_k": top_k,
            "targets": targets,
            "mlm_probability": mlm_probability,
            "eval_seed": eval_seed,
            "max_batch_pieces": max_batch_pieces,
        }
        self._target_cache: Dict[Any, Optional[List[int]]] = {}
        claim_encoders(self.model, name)

    # ---- settings --------------------------------------------------------------------------

    @property
    def top_k(self) -> int:
        return self.cfg["top_k"]

    @property
    def targets(self) -> Targets:
        return self.cfg["targets"]

    @property
    def mlm_probability(self) -> float:
        return self.cfg["mlm_probability"]

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's `AlbertTokenizerFast` (a clear error before `initialize`)."""
        return get_tokenizer(self.model)

    @property
    def window(self) -> int:
        """The most pieces one forward pass takes, [CLS] and [SEP] included."""
        return int(get_module(self.model).config.max_position_embeddings)

    # ---- prediction ------------------------------------------------------------------------


    def export(self, directory: str | Path) -> Path:
        """Write encoder + head and tokenizer as a Hugging Face checkpoint transformers loads."""
        return export_task_model(self.model, directory)

    def predict(self, docs: Iterable[Doc]) -> List[List[List[Fill]]]:
        """For each doc, one list of candidates per mask (`[]` for a doc without masks)."""
        docs = list(docs)
        if not docs:
            return []
        return self._fill_texts([doc.text for doc in docs], self.top_k, self.targets)

    def set_annotations(self, docs: Iterable[Doc], fills: List[List[List[Fill]]]) -> None:
        for doc, doc_fills in zip(docs, fills):
            doc._.set(DOC_EXTENSION, doc_fills)

    def fill(
        self, text: str, top_k: Optional[int] = None, targets: Targets = None
    ) -> Union[List[Fill], List[List[Fill]]]:
        """The reference pipeline's output for one text: a list of candidate dicts for one mask,
        a list of such lists for several, `[]` for none (where the reference raises)."""
        if not isinstance(text, str):
            raise TypeError(f"fill() takes one text (str), not {type(text).__name__}.")
        fills = self._fill_texts([text], self.top_k if top_k is None else top_k, targets)[0]
        return fills[0] if len(fills) == 1 else fills

    def _fill_texts(self, texts: Sequence[str], top_k: int, targets: Targets) -> List[List[List[Fill]]]:
        _check_top_k(top_k)
        tokenizer = self.tokenizer
        mask_id = tokenizer.mask_token_id
        if mask_id is None:
            raise AlbertError("The tokenizer defines no mask token, so there is nothing to fill.")
        target_ids = self._target_ids(targets)
        all_ids = [enc.ids for enc in self.model.attrs["albert"].backend.encode_batch(list(texts))]
        # Forward passes: (input ids, [(text index, mask index in the text, position in the input)]).
        requests: List[Tuple[List[int], List[Tuple[int, int, int]]]] = []
        mask_positions: List[List[int]] = []
        for t, ids in enumerate(all_ids):
            positions = [i for i, piece in enumerate(ids) if piece == mask_id]
            mask_positions.append(positions)
            if positions:
                requests.extend(self._fill_requests(t, ids, positions))
        probs: Dict[Tuple[int, int], torch.Tensor] = {}
        for chunk in self._chunks(requests):
            input_ids, attention_mask = self._pad([ids for ids, _ in chunk])
            rows = torch.tensor([r for r, (_, where) in enumerate(chunk) for _ in where], dtype=torch.long)
            cols = torch.tensor([pos for _, where in chunk for (_, _, pos) in where], dtype=torch.long)
            logits = self._logits_at(input_ids, attention_mask, rows, cols, is_train=False)
            chunk_probs = logits.float().softmax(dim=-1).cpu()
            keys = [(t, m) for _, where in chunk for (t, m, _) in where]
            probs.update(zip(keys, chunk_probs))
        results: List[List[List[Fill]]] = []
        for t, ids in enumerate(all_ids):
            positions = mask_positions[t]
            single_mask = len(positions) == 1
            results.append(
                [
                    self._candidates(ids, pos, probs[(t, m)], top_k, target_ids, single_mask)
                    for m, pos in enumerate(positions)
                ]
            )
        return results

    def _fill_requests(
        self, t: int, ids: List[int], positions: List[int]
    ) -> List[Tuple[List[int], List[Tuple[int, int, int]]]]:
        """One pass over the whole text when it fits, else one window per mask (centred on it)."""
        if len(ids) <= self.window:
            return [(ids, [(t, m, pos) for m, pos in enumerate(positions)])]
        content, size = ids[1:-1], self.window - 2
        windows: Dict[int, List[Tuple[int, int, int]]] = {}
        for m, pos in enumerate(positions):
            start = min(max(pos - 1 - size // 2, 0), len(content) - size)
            windows.setdefault(start, []).append((t, m, pos - start))
        return [([ids[0]] + content[s : s + size] + [ids[-1]], where) for s, where in windows.items()]

    def _candidates(
        self,
        ids: List[int],
        pos: int,
        probs: torch.Tensor,
        top_k: int,
        target_ids: Optional[List[int]],
        single_mask: bool,
    ) -> List[Fill]:
        """The reference's postprocessing of one mask's probabilities."""
        tokenizer = self.tokenizer
        if target_ids is not None:
            top_k = min(top_k, len(target_ids))
            probs = probs[torch.tensor(target_ids, dtype=torch.long)]
        values, predictions = probs.topk(min(top_k, probs.shape[-1]))
        row = []
        for v, p in zip(values.tolist(), predictions.tolist()):
            if target_ids is not None:
                p = target_ids[p]
            tokens = list(ids)
            tokens[pos] = p
            tokens = [i for i in tokens if i != tokenizer.pad_token_id]
            sequence = tokenizer.decode(tokens, skip_special_tokens=single_mask)
            row.append({"score": v, "token": p, "token_str": tokenizer.decode([p]), "sequence": sequence})
        return row

    def _target_ids(self, targets: Targets) -> Optional[List[int]]:
        """The reference's `get_target_ids`: a target that is not a vocabulary entry is tokenized
        and its first piece used (with a warning); one without pieces is dropped (warning)."""
        if targets is None:
            return None
        if isinstance(targets, str):
            targets = [targets]
        tokenizer = self.tokenizer
        key = (id(tokenizer), tuple(targets))
        if key in self._target_cache:
            return self._target_cache[key]
        vocab = tokenizer.get_vocab()
        backend = self.model.attrs["albert"].backend
        target_ids = []
        for target in targets:
            id_ = vocab.get(target, None)
            if id_ is None:
                pieces = backend.encode(target, add_special_tokens=False).ids
                if not pieces:
                    warnings.warn(
                        f"The specified target token `{target}` does not exist in the model vocabulary. "
                        "We cannot replace it with anything meaningful, ignoring it"
                    )
                    continue
                id_ = pieces[0]
                warnings.warn(
                    f"The specified target token `{target}` does not exist in the model vocabulary. "
                    f"Replacing with `{tokenizer.convert_ids_to_tokens(id_)}`."
                )
            target_ids.append(id_)
        target_ids = list(set(target_ids))
        if not target_ids:
            raise ValueError("At least one target must be provided when passed.")
        self._target_cache[key] = target_ids
        return target_ids

    # ---- model plumbing --------------------------------------------------------------------

    def _chunks(self, requests: List[Any]) -> Iterator[List[Any]]:
        """Requests (`(ids, ...)`) in groups of at most `max_batch_pieces` padded pieces."""
        limit, chunk, longest = self.cfg["max_batch_pieces"], [], 0
        for request in requests:
            longer = max(longest, len(request[0]))
            if chunk and longer * (len(chunk) + 1) > limit:
                yield chunk
                chunk, longer = [], len(request[0])
            chunk.append(request)
            longest = longer
        if chunk:
            yield chunk

    def _pad(self, sequences: List[List[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id or 0
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, s in enumerate(sequences):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention_mask[i, : len(s)] = 1
        return input_ids, attention_mask

    def _logits_at(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        *,
        is_train: bool,
    ) -> torch.Tensor:
        """The masked-LM head's logits at the pieces (rows, cols) only: the head works piece by
        piece, so these equal `AlbertForMaskedLM(...).logits[rows, cols]` without the
        (batch, length, vocabulary) tensor."""
        module = get_module(self.model)
        module.train(is_train)
        device = next(module.parameters()).device
        with torch.set_grad_enabled(is_train), task_autocast(self.model, device):
            hidden = module.albert(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), return_dict=True
            ).last_hidden_state
            return module.predictions(hidden[rows.to(device), cols.to(device)])

    def _windows(self, text: str) -> List[List[int]]:
        """The text's pieces in consecutive windows of `window - 2`, each as [CLS] ... [SEP]."""
        tokenizer = self.tokenizer
        content = self.model.attrs["albert"].backend.encode(text, add_special_tokens=False).ids
        size = self.window - 2
        cls, sep = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
        return [cls + content[i : i + size] + sep for i in range(0, len(content), size)]

    def _mask(
        self, input_ids: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """`mask_tokens` with this component's tokenizer and `mlm_probability`; every special
        piece (padding included) is excluded, as `get_special_tokens_mask` does in the reference."""
        tokenizer = self.tokenizer
        special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, dtype=torch.long))
        return mask_tokens(
            input_ids, special, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
            mlm_probability=self.mlm_probability, generator=generator,
        )  # fmt: skip

    # ---- training --------------------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One masked-LM step on the examples' texts: mask with the reference recipe, take the
        mean cross-entropy over the masked pieces, backpropagate (in chunks of at most
        `max_batch_pieces` pieces, with the gradient of the whole batch's mean) and let `sgd`
        update the weights. Dropout comes from the checkpoint's config, not `drop`. A
        non-finite loss (checked per chunk, before its backward pass) or gradient (checked
        before the optimizer step) raises `NonFiniteError` naming the component and its
        update step, with the gradients cleared and the weights unchanged (see `guards`)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "AlbertFillMask.update")
        step = next_step(self)
        windows = [w for eg in examples for w in self._windows(eg.predicted.text)]
        batches = []
        for chunk in self._chunks([(w,) for w in windows]):
            input_ids, attention_mask = self._pad([w for (w,) in chunk])
            # Padding is special too, so it is never selected (as in the reference collator).
            masked, labels = self._mask(input_ids)
            batches.append((masked, attention_mask, labels))
        total = sum(int((labels != -100).sum()) for _, _, labels in batches)
        if total == 0:
            return losses
        loss_sum = 0.0
        for masked, attention_mask, labels in batches:
            rows, cols = (labels != -100).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            logits = self._logits_at(masked, attention_mask, rows, cols, is_train=True)
            targets = labels[rows, cols].to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
            check_loss(self.name, step, loss, self.model)
            (loss / total).backward()
            loss_sum += float(loss.detach())
        check_gradients(self.name, step, self.model)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss_sum / total
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Any) -> Tuple[float, Any]:
        raise NotImplementedError("AlbertFillMask computes its masked-LM loss in torch, inside update().")

    def mlm_scores(self, examples: Iterable[Example]) -> Dict[str, Optional[float]]:
        """Masked-piece accuracy (`mlm_acc`) and mean cross-entropy (`mlm_loss`) on the
        examples' reference texts, masked with the reference recipe from a generator seeded with
        `eval_seed` (window by window, in order), so the same examples always get the same
        masks. None when no piece was selected."""
        generator = torch.Generator().manual_seed(int(self.cfg["eval_seed"]))
        requests = []
        for eg in examples:
            for window in self._windows(eg.reference.text):
                masked, labels = self._mask(torch.tensor([window], dtype=torch.long), generator)
                if (labels != -100).any():
                    requests.append((masked[0].tolist(), labels[0]))
        n, correct, loss_sum = 0, 0, 0.0
        for chunk in self._chunks(requests):
            input_ids, attention_mask = self._pad([ids for ids, _ in chunk])
            labels = torch.full(input_ids.shape, -100, dtype=torch.long)
            for i, (_, window_labels) in enumerate(chunk):
                labels[i, : len(window_labels)] = window_labels
            rows, cols = (labels != -100).nonzero(as_tuple=True)
            logits = self._logits_at(input_ids, attention_mask, rows, cols, is_train=False).float().cpu()
            gold = labels[rows, cols]
            n += int(gold.numel())
            correct += int((logits.argmax(dim=-1) == gold).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
        if n == 0:
            return {"mlm_acc": None, "mlm_loss": None}
        return {"mlm_acc": correct / n, "mlm_loss": loss_sum / n}

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """The scorer's result; the scorer gets this component as `pipe`."""
        return super().score(examples, pipe=self, **kwargs)

    # ---- setup -----------------------------------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint` (a local Hugging Face ALBERT directory or cached hub id), or the
        architecture's own `checkpoint`; the tokenizer must define a mask token."""
        validate_get_examples(get_examples, "AlbertFillMask.initialize")
        if checkpoint is not None:
            load_task_checkpoint(self.model, checkpoint)
        self.model.initialize(X=[eg.reference for eg in islice(get_examples(), 10)])
        self._target_cache.clear()
        if self.tokenizer.mask_token_id is None:
            raise AlbertError("The checkpoint's tokenizer defines no mask token, which fill-mask needs.")

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "AlbertFillMask":
        self._target_cache.clear()
        return super().from_bytes(bytes_data, exclude=exclude)

    def from_disk(self, path: Any, *, exclude: Iterable[str] = tuple()) -> "AlbertFillMask":
        self._target_cache.clear()
        return super().from_disk(path, exclude=exclude)


def mask_tokens(
    inputs: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The reference's `DataCollatorForLanguageModeling.torch_mask_tokens`, draw for draw
    (the same `generator` gives the same masks): returns (masked inputs, labels), labels -100
    where nothing was selected. `inputs` is not changed."""
    inputs = inputs.clone()
    labels = inputs.clone()
    probability_matrix = torch.full(labels.shape, mlm_probability)
    probability_matrix.masked_fill_(special_tokens_mask.bool(), value=0.0)
    masked_indices = torch.bernoulli(probability_matrix, generator=generator).bool()
    labels[~masked_indices] = -100
    indices_replaced = (
        torch.bernoulli(torch.full(labels.shape, mask_replace_prob), generator=generator).bool() & masked_indices
    )
    inputs[indices_replaced] = mask_token_id
    if mask_replace_prob == 1 or random_replace_prob == 0:
        return inputs, labels
    random_replace_prob_scaled = random_replace_prob / (1 - mask_replace_prob)
    indices_random = (
        torch.bernoulli(torch.full(labels.shape, random_replace_prob_scaled), generator=generator).bool()
        & masked_indices
        & ~indices_replaced
    )
    random_words = torch.randint(vocab_size, labels.shape, dtype=torch.long, generator=generator)
    inputs[indices_random] = random_words[indices_random]
    return inputs, labels


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k={top_k!r}; it must be a positive integer.")
