"""`albert_fill_mask`: ALBERT's masked-language-model head as a spaCy component.

The model is `spacy-albert.MaskedLanguageModel.v1` over an `spacy-albert.AlbertTransformer.v1`
encoder of its own: the component builds the piece sequences itself (its windows of the text,
[CLS] ... [SEP], with the masked positions as `PieceSequences.rows`) and the model returns the
vocabulary logits [n_rows, vocab] at those rows. The reference's MLM head (`predictions`, its
decoder tied to the word embeddings) lives in the encoder: it loads from a checkpoint's
`predictions.*`, is saved with the pipeline and exported with the encoder.

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
  labels -100 elsewhere), drawn over the batch's windows (``max_position_embeddings - 2``
  pieces each, padded to the longest as the collator pads them) from torch's global
  generator, which `spacy train` seeds. `masked_inputs(examples)` gives the model's input
  (rows: the selected positions) and the gold piece ids of those rows, and keeps the labels
  for `get_loss(examples, scores)`: the mean cross-entropy over the selected pieces and its
  gradient w.r.t. the logits. `update` is the usual thinc step (`begin_update`, `get_loss`,
  backprop, `finish_update`): spaCy's `drop` sets the head's dropout (on the hidden states
  of the selected pieces), the encoder's own dropout is its configured
  `hidden_dropout_prob` / `attention_probs_dropout_prob`.
* Score: `mlm_acc` (the share of masked pieces predicted right) and `mlm_loss` (their mean
  cross-entropy) on the examples' texts, masked window by window with the same recipe from a
  generator seeded with ``eval_seed``, so that scores are comparable between runs and steps.
* `export(directory)` writes encoder + MLM head as an `AlbertForMaskedLM` checkpoint with its
  tokenizer.

Batching: the encoder runs its inputs in chunks of at most its own `max_batch_pieces`
positions; scoring also hands it at most that many pieces per call, which bounds the logits
held at once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

from ..errors import AlbertError
from ..layers.data import PieceSequences
from ..layers.state import AlbertState
from ..training.distributed import global_count
from ..layers.transformer import albert_state, load_checkpoint, settings_of
from ..models.modeling_albert import AlbertForMaskedLM
from .encoder_heads import HeadUpdateMixin, export_checkpoint
from .serialization import PipeSerialization, claim_encoders

DOC_EXTENSION = "mask_fills"
if not Doc.has_extension(DOC_EXTENSION):
    Doc.set_extension(DOC_EXTENSION, default=None)

Fill = Dict[str, Any]  # {"score": float, "token": int, "token_str": str, "sequence": str}
Targets = Optional[Union[str, List[str]]]
MLM_ARCHITECTURE = "spacy-albert.MaskedLanguageModel.v1"

DEFAULT_FILL_MASK_MODEL = """
[model]
@architectures = "spacy-albert.MaskedLanguageModel.v1"
dropout = 0.0

[model.encoder]
@architectures = "spacy-albert.AlbertTransformer.v1"
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
    scorer: Optional[Callable],
) -> "AlbertFillMask":
    """Construct the masked-LM component (fill-mask prediction and masked-LM training)."""
    return AlbertFillMask(
        nlp.vocab, model, name, top_k=top_k, targets=targets, mlm_probability=mlm_probability,
        eval_seed=eval_seed, scorer=scorer,
    )  # fmt: skip


class AlbertFillMask(PipeSerialization, HeadUpdateMixin, TrainablePipe):
    """Fill [MASK] pieces with ALBERT's masked-LM head; train it on raw text.

    The model is `spacy-albert.MaskedLanguageModel.v1` with its own encoder; weights and
    vocabulary come from a Hugging Face checkpoint: the encoder's `checkpoint` setting, or
    `initialize(checkpoint=...)` (in a config: `[initialize.components.<name>] checkpoint`).
    """

    config_cfg_keys = ("top_k", "targets", "mlm_probability", "eval_seed")  # settings from the config, also at load

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
        scorer: Optional[Callable] = score_fill_mask,
    ) -> None:
        if model.name != "albert_mlm_head" or not model.has_ref("encoder"):
            raise ValueError(
                f"albert_fill_mask needs a {MLM_ARCHITECTURE} model (a masked-LM head over "
                f"spacy-albert.AlbertTransformer.v1), not {model.name!r}."
            )
        _check_top_k(top_k)
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability={mlm_probability!r}; it must lie strictly between 0 and 1.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "top_k": top_k,
            "targets": targets,
            "mlm_probability": mlm_probability,
            "eval_seed": eval_seed,
        }
        self._target_cache: Dict[Any, Optional[List[int]]] = {}
        # The gold piece ids of the rows of the last `masked_inputs` batch (see `get_loss`).
        self._pending_labels: Optional[np.ndarray] = None
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
    def encoder(self) -> Model:
        """The component's own `AlbertTransformer`."""
        return self.model.get_ref("encoder")

    @property
    def _state(self) -> AlbertState:
        return albert_state(self.encoder)

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's `AlbertTokenizerFast` (a clear error before `initialize`)."""
        state = self._state
        state.backend  # raises a clear error when no checkpoint was loaded
        return state.tokenizer

    @property
    def window(self) -> int:
        """The most pieces one forward pass takes, [CLS] and [SEP] included."""
        return int(self._state.config.max_position_embeddings)

    # ---- prediction ------------------------------------------------------------------------

    def export(self, directory: str | Path) -> Path:
        """Write encoder + MLM head and tokenizer as an `AlbertForMaskedLM` checkpoint that
        transformers loads."""
        return export_checkpoint(self.encoder, AlbertForMaskedLM, {}, directory)

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
        all_ids = [enc.ids for enc in self._state.backend.encode_batch(list(texts))]
        # Forward windows: (input ids, [(text index, mask index in the text, position in the window)]).
        requests: List[Tuple[List[int], List[Tuple[int, int, int]]]] = []
        mask_positions: List[List[int]] = []
        for t, ids in enumerate(all_ids):
            positions = [i for i, piece in enumerate(ids) if piece == mask_id]
            mask_positions.append(positions)
            if positions:
                requests.extend(self._fill_requests(t, ids, positions))
        probs: Dict[Tuple[int, int], torch.Tensor] = {}
        if requests:
            windows = [np.asarray(ids, dtype="int64") for ids, _ in requests]
            offsets = _offsets(windows)
            rows = [offsets[r] + pos for r, (_, where) in enumerate(requests) for (_, _, pos) in where]
            logits = self.model.predict(PieceSequences(windows, rows=np.asarray(rows, dtype="int64")))
            all_probs = _to_torch(self.model, logits).softmax(dim=-1)
            keys = [(t, m) for _, where in requests for (t, m, _) in where]
            probs.update(zip(keys, all_probs))
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
        """One window with the whole text when it fits, else one per mask (centred on it)."""
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
        backend = self._state.backend
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

    # ---- masking ---------------------------------------------------------------------------

    def _windows(self, text: str) -> List[List[int]]:
        """The text's pieces in consecutive windows of `window - 2`, each as [CLS] ... [SEP]."""
        tokenizer = self.tokenizer
        content = self._state.backend.encode(text, add_special_tokens=False).ids
        size = self.window - 2
        cls, sep = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
        return [cls + content[i : i + size] + sep for i in range(0, len(content), size)]

    def _pad(self, sequences: List[List[int]]) -> torch.Tensor:
        """The sequences as one [n, longest] tensor padded with the pad piece, as the reference
        collator pads a batch before masking it."""
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(sequences), max(map(len, sequences))), pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return input_ids

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

    def masked_inputs(
        self, examples: Iterable[Example], generator: Optional[torch.Generator] = None
    ) -> Tuple[PieceSequences, np.ndarray]:
        """A training batch: the windows of the examples' predicted texts, padded into one
        tensor and masked with the reference recipe (from `generator`, default torch's global
        one), as the model's input (`rows`: the flat positions of the selected pieces, in
        order) and the gold piece ids of those rows (int64, one per row).

        The labels are also kept on the component: `get_loss(examples, scores)` uses those of
        the last call (`update` calls it once per step)."""
        windows = [w for eg in examples for w in self._windows(eg.predicted.text)]
        if not windows:
            inputs, labels = PieceSequences([], rows=np.zeros((0,), dtype="int64")), np.zeros((0,), dtype="int64")
        else:
            # Padding is special too, so it is never selected (as in the reference collator).
            masked, gold = self._mask(self._pad(windows), generator)
            ids = [masked[i, : len(w)].numpy().astype("int64") for i, w in enumerate(windows)]
            which, positions = (gold != -100).nonzero(as_tuple=True)
            rows = (_offsets(ids)[which.numpy()] + positions.numpy()).astype("int64")
            inputs, labels = PieceSequences(ids, rows=rows), gold[which, positions].numpy().astype("int64")
        self._pending_labels = labels
        return inputs, labels

    # ---- training --------------------------------------------------------------------------

    def training_inputs(self, examples: List[Example]) -> Optional[Tuple[PieceSequences, List[Example]]]:
        """One masked-LM batch of the examples' texts (`masked_inputs`: the reference recipe,
        from torch's global generator); None when no piece was selected. `drop` sets the
        dropout on the masked pieces' hidden states before the head."""
        inputs, labels = self.masked_inputs(examples)
        return (inputs, examples) if len(labels) else None

    def get_loss(
        self, examples: Iterable[Example], scores: Floats2d, *, labels: Optional[Any] = None
    ) -> Tuple[float, Floats2d]:
        """The mean cross-entropy of the logits `scores` [n_rows, vocab] (the model's output
        for a `masked_inputs` batch) against the gold piece ids of their rows, and its
        gradient w.r.t. `scores` (on the model's ops: numpy or cupy).

        The gold ids are `labels` when given, else those of the last `masked_inputs` call
        (the masking is random, so they cannot be recomputed from `examples`)."""
        labels = self._pending_labels if labels is None else labels
        if labels is None:
            raise AlbertError(
                f"{self.name!r}: get_loss needs the gold pieces of the masked rows: build the batch with "
                "masked_inputs(examples) (update does), or pass labels=..."
            )
        ops = self.model.ops
        xp = ops.xp
        scores = ops.asarray2f(scores)
        n = len(labels)
        if scores.shape[0] != n:
            raise ValueError(
                f"{self.name!r}: {scores.shape[0]} rows of scores for {n} masked pieces: the scores are not "
                "the model's output for the last masked_inputs batch."
            )
        n_global = global_count(n)  # the whole batch's masked pieces under data-parallel training
        if n == 0:
            return 0.0, ops.alloc2f(*scores.shape)
        gold = ops.asarray1i(labels)
        index = xp.arange(n)
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        losses = xp.log(total[:, 0]) - shifted[index, gold]
        loss = float(losses.astype("float64").sum()) / n_global
        d_scores = exp / total
        d_scores[index, gold] -= 1.0
        d_scores /= n_global
        return loss, d_scores

    def mlm_scores(self, examples: Iterable[Example]) -> Dict[str, Optional[float]]:
        """Masked-piece accuracy (`mlm_acc`) and mean cross-entropy (`mlm_loss`) on the
        examples' reference texts, masked with the reference recipe from a generator seeded with
        `eval_seed` (window by window, in order), so the same examples always get the same
        masks. None when no piece was selected."""
        generator = torch.Generator().manual_seed(int(self.cfg["eval_seed"]))
        requests: List[Tuple[np.ndarray, np.ndarray, torch.Tensor]] = []  # (masked ids, positions, gold)
        for eg in examples:
            for window in self._windows(eg.reference.text):
                masked, labels = self._mask(torch.tensor([window], dtype=torch.long), generator)
                selected = labels[0] != -100
                if selected.any():
                    positions = selected.nonzero(as_tuple=True)[0]
                    requests.append((masked[0].numpy().astype("int64"), positions.numpy(), labels[0, positions]))
        n, correct, loss_sum = 0, 0, 0.0
        for group in self._score_groups(requests):
            ids = [masked for masked, _, _ in group]
            rows = np.concatenate([offset + positions for offset, (_, positions, _) in zip(_offsets(ids), group)])
            logits = _to_torch(self.model, self.model.predict(PieceSequences(ids, rows=rows.astype("int64"))))
            gold = torch.cat([labels for _, _, labels in group])
            n += int(gold.numel())
            correct += int((logits.argmax(dim=-1) == gold).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
        if n == 0:
            return {"mlm_acc": None, "mlm_loss": None}
        return {"mlm_acc": correct / n, "mlm_loss": loss_sum / n}

    def _score_groups(self, requests: List[Any]) -> Iterator[List[Any]]:
        """Windows (`(ids, ...)`) in groups of at most the encoder's `max_batch_pieces` pieces
        (one window at least), so that the logits of one group stay small."""
        limit, group, size = settings_of(self.encoder)["max_batch_pieces"], [], 0
        for request in requests:
            if group and size + len(request[0]) > limit:
                yield group
                group, size = [], 0
            group.append(request)
            size += len(request[0])
        if group:
            yield group

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
        """Load `checkpoint` (a local Hugging Face ALBERT directory or cached hub id; its
        `predictions.*`, if any, into the MLM head), or the encoder's own `checkpoint`
        setting; the tokenizer must define a mask token."""
        validate_get_examples(get_examples, "AlbertFillMask.initialize")
        if checkpoint is not None:
            load_checkpoint(self.encoder, checkpoint)
        self.model.initialize()
        self._target_cache.clear()
        self._pending_labels = None
        if self.tokenizer.mask_token_id is None:
            raise AlbertError("The checkpoint's tokenizer defines no mask token, which fill-mask needs.")

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "AlbertFillMask":
        self._target_cache.clear()
        return super().from_bytes(bytes_data, exclude=exclude)

    def from_disk(self, path: Any, *, exclude: Iterable[str] = tuple()) -> "AlbertFillMask":
        self._target_cache.clear()
        return super().from_disk(path, exclude=exclude)


def _offsets(sequences: Sequence[Any]) -> np.ndarray:
    """Each sequence's first row in the concatenation (as `PieceSequences.offsets`)."""
    lengths = np.asarray([len(s) for s in sequences], dtype="int64")
    return np.cumsum(lengths) - lengths


def _to_torch(model: Model, logits: Floats2d) -> torch.Tensor:
    """The model's logits as a float32 CPU tensor (the reference's postprocessing runs there)."""
    return torch.from_numpy(np.ascontiguousarray(model.ops.to_numpy(logits), dtype="float32"))


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
