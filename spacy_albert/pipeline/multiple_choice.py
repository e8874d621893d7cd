"""`albert_multiple_choice`: the reference's `AlbertForMultipleChoice` as a spaCy component
(SWAG / RocStories-style tasks: pick the right continuation of a prompt).

Data conventions (Doc extensions, registered when this module is imported):

* The doc's text is the prompt; `doc._.choices` (list[str]; any sequence of str, e.g. the
  tuple a DocBin round trip gives back) holds its candidate answers.
* `doc._.correct_choice` (int, gold only): the index of the right answer in `doc._.choices`.
  Both are plain user data, so they round-trip through `DocBin(store_user_data=True)`.
* Predictions: `doc._.choice_probs` (list[float], one per choice, softmax over the reference
  logits) and, with `set_cats = true`, `doc.cats[choice] = probability`. Choices that repeat
  the same text share one `doc.cats` key holding their summed probability (the probability
  that the chosen answer has that text); `doc._.choice_probs` always has one entry per choice.
* A doc without choices (None or []) gets `choice_probs == []` and no cats; one choice gets
  probability 1; an empty prompt is encoded as the reference tokenizer does it.

Encoding follows the reference's example: each (prompt, choice) pair becomes
`[CLS] prompt [SEP] choice [SEP]` with token type ids 0/1, truncated to `max_length` pieces
(at most the model's `max_position_embeddings`) with the `truncation` strategy, by default
"longest_first" (the reference's `truncation=True`: pieces are taken from the longer of prompt
and choice); "only_first" truncates only the prompt and raises on a choice too long to fit.

Batching: the reference model has no choice mask and wants [batch, num_choices, sequence]
inputs. Since it scores every sequence independently (one logit from each pooled [CLS]
state), the component runs all (prompt, choice) pairs of a batch as [pairs, 1, sequence]
(padded with attention mask 0, as the reference pads a doc's choices) and applies the softmax
/ cross-entropy per doc over that doc's own choices. So docs may have different numbers of
choices, and a doc's result does not depend on the other docs in its batch (up to float
rounding of the padded matmuls). The training loss is the reference's `CrossEntropyLoss`
(mean over the docs that have choices and a gold answer).

Training from `.spacy` files: spaCy's corpus reader makes the predicted docs from the text
alone, so add the `spacy-albert.copy_extensions.v1` augmenter to the corpora (see
`configs/albert_multiple_choice.cfg`) to copy `choices` onto them; otherwise evaluation has
nothing to choose from.
"""

from __future__ import annotations

from pathlib import Path
import copy
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from ..layers.task_model import export_task_model, get_module, get_tokenizer, load_task_checkpoint, run_task_model
from .guards import check_gradients, check_loss, next_step
from .serialization import PipeSerialization, claim_encoders

CHOICES = "choices"
CORRECT_CHOICE = "correct_choice"
CHOICE_PROBS = "choice_probs"
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")

for _name in (CHOICES, CORRECT_CHOICE, CHOICE_PROBS):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)

DEFAULT_MULTIPLE_CHOICE_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-albert.AlbertTaskModel.v1"
task = "multiple-choice"
checkpoint = null
"""
)["model"]


@Language.factory(
    "albert_multiple_choice",
    default_config={
        "model": DEFAULT_MULTIPLE_CHOICE_MODEL,
        "max_length": 256,
        "truncation": "longest_first",
        "set_cats": True,
        "max_batch_pairs": 64,
        "scorer": {"@scorers": "spacy-albert.multiple_choice_scorer.v1"},
    },
    requires=[f"doc._.{CHOICES}"],
    assigns=[f"doc._.{CHOICE_PROBS}", "doc.cats"],
    default_score_weights={"choice_acc": 1.0},
)
def make_albert_multiple_choice(
    nlp: Language,
    name: str,
    model: Model,
    max_length: int,
    truncation: str,
    set_cats: bool,
    max_batch_pairs: int,
    scorer: Optional[Callable],
) -> "AlbertMultipleChoice":
    """Construct an ALBERT multiple-choice component (see the module docstring)."""
    return AlbertMultipleChoice(
        nlp.vocab, model, name, max_length=max_length, truncation=truncation, set_cats=set_cats,
        max_batch_pairs=max_batch_pairs, scorer=scorer,
    )  # fmt: skip


def score_multiple_choice(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Optional[float]]:
    """`choice_acc`: the share of gold examples (with choices and a `correct_choice`) whose most
    probable predicted choice is the correct one; None when there are no such examples."""
    correct = total = 0
    unannotated = 0
    for eg in examples:
        gold = eg.reference._.get(CORRECT_CHOICE)
        choices = _choices_of(eg)
        if gold is None or not choices:
            continue
        total += 1
        probs = eg.predicted._.get(CHOICE_PROBS)
        if not probs or len(probs) != len(choices):
            unannotated += 1
            continue
        correct += int(int(np.argmax(probs)) == int(gold))
    if unannotated:
        warnings.warn(
            f"{unannotated} of {total} examples had no choice probabilities on the predicted doc (counted "
            f"as wrong): are `doc._.{CHOICES}` copied onto them? With spacy.Corpus.v1, add "
            f'`augmenter = {{"@augmenters": "spacy-albert.copy_extensions.v1"}}` to the corpus.'
        )
    return {"choice_acc": correct / total if total else None}


@registry.scorers("spacy-albert.multiple_choice_scorer.v1")
def make_multiple_choice_scorer() -> Callable:
    return score_multiple_choice


@registry.augmenters("spacy-albert.copy_extensions.v1")
def make_copy_extensions(names: List[str] = [CHOICES]) -> Callable[[Language, Example], Iterator[Example]]:
    """An augmenter for corpus readers: copies the named Doc extensions (default: `choices`, the
    component's input) from each reference doc onto its predicted doc, which spaCy's readers
    build from the text alone. Gold values (`correct_choice`) are better left off the list."""
    names = list(names)
    for name in names:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)

    def copy_extensions(nlp: Language, example: Example) -> Iterator[Example]:
        for name in names:
            value = example.reference._.get(name)
            if value is not None:
                # DocBin's msgpack turns lists into tuples; give the predicted doc lists again.
                value = list(value) if isinstance(value, tuple) else value
                example.predicted._.set(name, copy.deepcopy(value))
        yield example

    return copy_extensions


class AlbertMultipleChoice(PipeSerialization, TrainablePipe):
    """Scores each of a doc's `doc._.choices` as the answer to its text with the reference's
    `AlbertForMultipleChoice`, trained with its cross-entropy over the choices.

    The checkpoint (a Hugging Face ALBERT directory or cached hub id; a plain `AlbertModel`
    starts a new classifier) comes from the model's `checkpoint` setting or from
    `initialize(checkpoint=...)`, in a config `[initialize.components.<name>] checkpoint`.
    Dropout comes from the checkpoint's config (the torch modules' own dropout layers).
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "albert_multiple_choice",
        *,
        max_length: int = 256,
        truncation: str = "longest_first",
        set_cats: bool = True,
        max_batch_pairs: int = 64,
        scorer: Optional[Callable] = score_multiple_choice,
    ) -> None:
        if model.attrs.get("task") != "multiple-choice":
            raise ValueError(
                f"{name}: the model must be spacy-albert.AlbertTaskModel.v1 with task = \"multiple-choice\", "
                f"got task={model.attrs.get('task')!r}."
            )
        if truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(f"{name}: truncation={truncation!r}; choose one of {TRUNCATION_STRATEGIES}.")
        if max_length < 4 or max_batch_pairs < 1:
            raise ValueError(f"{name}: max_length must be >= 4 and max_batch_pairs >= 1.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.max_length = max_length
        self.truncation = truncation
        self.set_cats = set_cats
        self.max_batch_pairs = max_batch_pairs
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {}
        self._warned_no_gold = False
        claim_encoders(self.model, name)

    # ---------------------------------------------------------------- prediction


    def export(self, directory: str | Path) -> Path:
        """Write encoder + head and tokenizer as a Hugging Face checkpoint transformers loads."""
        return export_task_model(self.model, directory)

    def predict(self, docs: Iterable[Doc]) -> List[np.ndarray]:
        """One float32 array of reference logits per doc (empty for a doc without choices)."""
        return self._logits([(doc.text, _as_choices(doc._.get(CHOICES))) for doc in docs])

    def set_annotations(self, docs: Iterable[Doc], scores: List[np.ndarray]) -> None:
        for doc, logits in zip(docs, scores):
            probs = _softmax(logits)
            doc._.set(CHOICE_PROBS, probs.tolist())
            if self.set_cats and len(probs):
                cats: Dict[str, float] = {}
                for choice, prob in zip(_as_choices(doc._.get(CHOICES)), probs.tolist()):
                    cats[choice] = cats.get(choice, 0.0) + prob
                doc.cats.update(cats)

    def choose(self, prompt: str, choices: Sequence[str]) -> List[float]:
        """The probability of each of `choices` as the answer to `prompt`."""
        return _softmax(self._logits([(prompt, _as_choices(choices))])[0]).tolist()

    def _logits(self, items: List[Tuple[str, List[str]]]) -> List[np.ndarray]:
        pairs = [(prompt, choice) for prompt, choices in items for choice in choices]
        flat = np.zeros((len(pairs),), dtype="float32")
        if pairs:
            rows = self._encode(pairs)
            # Similar lengths together: less padding (which the attention mask makes irrelevant).
            order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
            for start in range(0, len(order), self.max_batch_pairs):
                chunk = order[start : start + self.max_batch_pairs]
                logits = run_task_model(self.model, self._collate([rows[i] for i in chunk]), is_train=False).logits
                flat[chunk] = logits.float().reshape(-1).cpu().numpy()
        return _split(flat, [len(choices) for _, choices in items])

    # ---------------------------------------------------------------- training

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One step on the reference's cross-entropy over each example's choices. Examples
        without choices or without a gold `correct_choice` are skipped. A non-finite loss
        (checked before the backward pass) or gradient (checked before the optimizer step)
        raises `NonFiniteError` naming the component and its update step, with the gradients
        cleared and the weights unchanged (see `guards`)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "AlbertMultipleChoice.update")
        step = next_step(self)
        items, answers = [], []
        for eg in examples:
            choices, answer = _choices_of(eg), _gold_answer(eg)
            if choices and answer is not None:
                items.append((eg.predicted.text, choices))
                answers.append(answer)
        if not items:
            if examples and not self._warned_no_gold:
                self._warned_no_gold = True
                warnings.warn(
                    f"{self.name}: a training batch without any example that has doc._.{CHOICES} (list of str) and "
                    f"doc._.{CORRECT_CHOICE} (int) on its reference doc; nothing to learn from. Were the docs "
                    "saved with DocBin(store_user_data=True)?"
                )
            return losses
        rows = self._encode([(prompt, choice) for prompt, choices in items for choice in choices])
        logits = run_task_model(self.model, self._collate(rows), is_train=True).logits.float().reshape(-1)
        loss = _cross_entropy(logits, [len(choices) for _, choices in items], answers)
        check_loss(self.name, step, loss, self.model)
        loss.backward()
        check_gradients(self.name, step, self.model)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += float(loss.detach())
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[np.ndarray]) -> Tuple[float, List[np.ndarray]]:
        """The reference's cross-entropy (mean over examples with choices and a gold answer) of
        `scores` (as `predict` returns them) and its gradient with respect to them."""
        examples = list(examples)
        validate_examples(examples, "AlbertMultipleChoice.get_loss")
        grads = [np.zeros_like(s) for s in scores]
        gold = [(i, _gold_answer(eg)) for i, eg in enumerate(examples) if len(scores[i]) and _choices_of(eg)]
        gold = [(i, answer) for i, answer in gold if answer is not None]
        loss = 0.0
        for i, answer in gold:
            probs = _softmax(scores[i])
            loss -= float(np.log(probs[answer]))
            probs[answer] -= 1.0
            grads[i] = (probs / len(gold)).astype(scores[i].dtype)
        return (loss / len(gold) if gold else 0.0), grads

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint`, or the model's own `checkpoint` setting, and check the data."""
        validate_get_examples(get_examples, "AlbertMultipleChoice.initialize")
        if checkpoint is not None:
            load_task_checkpoint(self.model, checkpoint)
        self.model.initialize()

    def add_label(self, label: str) -> int:
        raise NotImplementedError(f"{self.name} has no labels: the choices come with each doc.")

    # ---------------------------------------------------------------- encoding

    def _encode(self, pairs: List[Tuple[str, str]]) -> List[Tuple[List[int], List[int]]]:
        """(input ids, token type ids) of `[CLS] prompt [SEP] choice [SEP]` for each pair."""
        max_length = min(self.max_length, get_module(self.model).config.max_position_embeddings)
        encoding = get_tokenizer(self.model)(
            [prompt for prompt, _ in pairs], [choice for _, choice in pairs],
            truncation=self.truncation, max_length=max_length, return_token_type_ids=True,
        )  # fmt: skip
        return list(zip(encoding["input_ids"], encoding["token_type_ids"]))

    def _collate(self, rows: List[Tuple[List[int], List[int]]]) -> Dict[str, torch.Tensor]:
        """[pairs, 1, longest] inputs, padded on the tokenizer's side as the reference pads."""
        tokenizer = get_tokenizer(self.model)
        width = max(len(ids) for ids, _ in rows)
        shape = (len(rows), width)
        input_ids = torch.full(shape, tokenizer.pad_token_id, dtype=torch.long)
        token_type_ids = torch.full(shape, tokenizer.pad_token_type_id, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        for row, (ids, types) in enumerate(rows):
            span = slice(width - len(ids), width) if tokenizer.padding_side == "left" else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            token_type_ids[row, span] = torch.tensor(types, dtype=torch.long)
            attention_mask[row, span] = 1
        tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {key: value.unsqueeze(1) for key, value in tensors.items()}


def _as_choices(choices: Optional[Sequence[str]]) -> List[str]:
    if choices is None:
        return []
    if isinstance(choices, str) or not all(isinstance(c, str) for c in choices):
        raise TypeError(f"doc._.{CHOICES} must be a list of strings, got {choices!r}.")
    return list(choices)


def _choices_of(eg: Example) -> List[str]:
    """An example's choices: the reference doc's (which the gold answer indexes), else the
    predicted doc's."""
    choices = eg.reference._.get(CHOICES)
    return _as_choices(choices if choices is not None else eg.predicted._.get(CHOICES))


def _gold_answer(eg: Example) -> Optional[int]:
    answer = eg.reference._.get(CORRECT_CHOICE)
    if answer is None:
        return None
    n_choices = len(_choices_of(eg))
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)) or not 0 <= answer < n_choices:
        raise ValueError(
            f"doc._.{CORRECT_CHOICE} must be an int index into the doc's {n_choices} choices, got {answer!r} "
            f"(doc: {eg.reference.text[:60]!r})."
        )
    return int(answer)


def _split(flat: np.ndarray, sizes: List[int]) -> List[np.ndarray]:
    bounds = np.cumsum([0] + sizes)
    return [flat[start:end].copy() for start, end in zip(bounds[:-1], bounds[1:])]


def _softmax(logits: np.ndarray) -> np.ndarray:
    if not len(logits):
        return np.zeros((0,), dtype="float64")
    shifted = np.exp(logits.astype("float64") - logits.max())
    return shifted / shifted.sum()


def _cross_entropy(logits: torch.Tensor, sizes: List[int], answers: List[int]) -> torch.Tensor:
    """The reference's `CrossEntropyLoss()(logits.view(-1, num_choices), labels)`, over docs
    with any numbers of choices: docs with the same number share one [docs, choices] call."""
    starts = np.cumsum([0] + sizes)[:-1].tolist()
    total = logits.new_zeros(())
    for n in sorted(set(sizes)):
        members = [i for i, size in enumerate(sizes) if size == n]
        index = torch.tensor([[starts[i] + j for j in range(n)] for i in members], device=logits.device)
        labels = torch.tensor([answers[i] for i in members], device=logits.device)
        total = total + torch.nn.functional.cross_entropy(logits[index], labels, reduction="sum")
    return total / len(sizes)
