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

Model: `spacy-albert.MultipleChoice.v1` over an `spacy-albert.AlbertTransformer.v1` encoder
of the component's own: the [CLS] state of each (prompt, choice) sequence goes through the
pooler (dense + tanh), a dropout layer and the classifier, one logit per sequence, laid out as
the reference's `albert.pooler` and `classifier`. It is a thinc model like any other: spaCy's
`drop` sets the head's dropout (the encoder's own dropout is its configured
`hidden_dropout_prob` / `attention_probs_dropout_prob`), gradients flow back through
`begin_update`, and the optimizer steps in `finish_update`.

Encoding follows the reference's example: each (prompt, choice) pair becomes
`[CLS] prompt [SEP] choice [SEP]` with token type ids 0/1, truncated to `max_length` pieces
(at most the encoder's `max_position_embeddings`) with the `truncation` strategy, by default
"longest_first" (the reference's `truncation=True`: pieces are taken from the longer of prompt
and choice); "only_first" truncates only the prompt and raises on a choice too long to fit.

Batching: the reference model wants [batch, num_choices, sequence] inputs, but scores every
sequence independently (one logit from each pooled [CLS] state). The component therefore
hands all (prompt, choice) pairs of a batch to the encoder as one `PieceSequences` (which
packs and chunks them by its own `max_batch_pieces`) and applies the softmax / cross-entropy
per doc over that doc's own choices. So docs may have different numbers of choices, and a
doc's result does not depend on the other docs in its batch (up to float rounding). The
training loss is the reference's `CrossEntropyLoss` (mean over the docs that have choices and
a gold answer); `get_loss` gives it with its gradient.

Training from `.spacy` files: spaCy's corpus reader makes the predicted docs from the text
alone, so add the `spacy-albert.copy_extensions.v1` augmenter to the corpora (see
`configs/albert_multiple_choice.cfg`) to copy `choices` onto them; otherwise evaluation has
nothing to choose from.

`export(directory)` writes encoder + head as an `AlbertForMultipleChoice` checkpoint (with
tokenizer) that transformers and spacy-albert load.
"""

from __future__ import annotations

from pathlib import Path
import copy
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

from ..layers.data import PieceSequences
from ..layers.state import AlbertState
from ..training.distributed import global_count
from ..layers.transformer import albert_state, load_checkpoint, settings_of
from ..models.modeling_albert import AlbertForMultipleChoice
from .encoder_heads import HeadUpdateMixin, export_checkpoint, linear_tensors, set_linear
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
@architectures = "spacy-albert.MultipleChoice.v1"
dropout = 0.1

[model.encoder]
@architectures = "spacy-albert.AlbertTransformer.v1"
"""
)["model"]

# The scores of `begin_update` ([n_pairs, 1]) or of `predict` (one array per doc).
Scores = Union[Floats2d, List[Any]]


@Language.factory(
    "albert_multiple_choice",
    default_config={
        "model": DEFAULT_MULTIPLE_CHOICE_MODEL,
        "max_length": 256,
        "truncation": "longest_first",
        "set_cats": True,
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
    scorer: Optional[Callable],
) -> "AlbertMultipleChoice":
    """Construct an ALBERT multiple-choice component (see the module docstring)."""
    return AlbertMultipleChoice(
        nlp.vocab, model, name, max_length=max_length, truncation=truncation, set_cats=set_cats, scorer=scorer
    )


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


class AlbertMultipleChoice(PipeSerialization, HeadUpdateMixin, TrainablePipe):
    """Scores each of a doc's `doc._.choices` as the answer to its text as the reference's
    `AlbertForMultipleChoice` does, trained with its cross-entropy over the choices.

    The checkpoint (a Hugging Face ALBERT directory or cached hub id; a plain `AlbertModel`
    keeps its pooler and starts a new classifier) comes from `initialize(checkpoint=...)`, in a
    config `[initialize.components.<name>] checkpoint`, or from the encoder's `checkpoint`
    setting.
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
        scorer: Optional[Callable] = score_multiple_choice,
    ) -> None:
        if not all(model.has_ref(ref) for ref in ("encoder", "pooler", "classifier")):
            raise ValueError(
                f"{name}: the model must be spacy-albert.MultipleChoice.v1 (an encoder, a pooler and a "
                f"classifier), got {model.name!r}."
            )
        if truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(f"{name}: truncation={truncation!r}; choose one of {TRUNCATION_STRATEGIES}.")
        if max_length < 4:
            raise ValueError(f"{name}: max_length must be >= 4.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.max_length = max_length
        self.truncation = truncation
        self.set_cats = set_cats
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {}
        self._warned_no_gold = False
        claim_encoders(self.model, name)

    @property
    def encoder(self) -> Model:
        """The component's own `AlbertTransformer`."""
        return self.model.get_ref("encoder")

    # ---------------------------------------------------------------- prediction

    def predict(self, docs: Iterable[Doc]) -> List[np.ndarray]:
        """One float32 array of reference logits per doc (empty for a doc without choices)."""
        return self._logits([(doc.text, _as_choices(doc._.get(CHOICES))) for doc in docs])

    def set_annotations(self, docs: Iterable[Doc], scores: List[np.ndarray]) -> None:
        for doc, logits in zip(docs, scores):
            probs = _softmax(self.model.ops.to_numpy(logits))
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
        sizes = [len(choices) for _, choices in items]
        flat = np.zeros((sum(sizes),), dtype="float32")
        if flat.size:
            logits = self.model.predict(self._inputs(items))
            flat = np.asarray(self.model.ops.to_numpy(logits), dtype="float32").reshape(-1)
        return _split(flat, sizes)

    def export(self, directory: Union[str, Path]) -> Path:
        """Write encoder + head and tokenizer as an `AlbertForMultipleChoice` checkpoint that
        transformers (and spacy-albert) load."""
        pooler_w, pooler_b = linear_tensors(self.model.get_ref("pooler"))
        weight, bias = linear_tensors(self.model.get_ref("classifier"))
        head = {"albert.pooler.weight": pooler_w, "albert.pooler.bias": pooler_b,
                "classifier.weight": weight, "classifier.bias": bias}  # fmt: skip
        return export_checkpoint(self.encoder, AlbertForMultipleChoice, head, directory)

    # ---------------------------------------------------------------- training

    def training_inputs(self, examples: List[Example]) -> Optional[Tuple[PieceSequences, List[Example]]]:
        """The (prompt, choice) pairs of the examples that have choices and a gold
        `correct_choice`; the others are skipped (None when none is left, with a warning once)."""
        kept = [eg for eg in examples if _choices_of(eg) and _gold_answer(eg) is not None]
        if not kept:
            if examples and not self._warned_no_gold:
                self._warned_no_gold = True
                warnings.warn(
                    f"{self.name}: a training batch without any example that has doc._.{CHOICES} (list of str) and "
                    f"doc._.{CORRECT_CHOICE} (int) on its reference doc; nothing to learn from. Were the docs "
                    "saved with DocBin(store_user_data=True)?"
                )
            return None
        return self.get_inputs(kept), kept

    def get_loss(self, examples: Iterable[Example], scores: Scores) -> Tuple[float, Scores]:
        """The reference's cross-entropy over each example's choices (the mean over the
        examples with choices and a gold `correct_choice`) and its gradient with respect to
        `scores`, in the same form. `scores` is either

        * what `model.begin_update` (or `model.predict`) gives for `get_inputs(examples)`: one
          [n_pairs, 1] array, the examples' choices in order (the reference doc's choices, else
          the predicted doc's; an example without choices has no rows), or
        * what `predict` gives: one array of logits per example (an empty one: skipped).

        The gradient is (softmax - one-hot) / n_used on each used example's rows and zero
        elsewhere, a float32 array on `model.ops` of the shape of `scores` (a list of them for
        the per-doc form). The arithmetic runs on `model.ops` (numpy or cupy)."""
        examples = list(examples)
        validate_examples(examples, "AlbertMultipleChoice.get_loss")
        ops, xp = self.model.ops, self.model.ops.xp
        per_doc = isinstance(scores, (list, tuple))
        if per_doc:
            if len(scores) != len(examples):
                raise ValueError(f"{self.name}: {len(scores)} arrays of scores for {len(examples)} examples.")
            sizes = [int(np.prod(s.shape)) for s in scores]
            parts = [ops.asarray(s, dtype="float32").reshape(-1) for s in scores]
            flat = xp.concatenate(parts) if sum(sizes) else ops.alloc1f(0)
        else:
            sizes = [len(_choices_of(eg)) for eg in examples]
            if scores.ndim != 2 or scores.shape[1] != 1 or scores.shape[0] != sum(sizes):
                raise ValueError(
                    f"{self.name}: scores of shape {tuple(scores.shape)} for {sum(sizes)} (prompt, choice) pairs: "
                    "get_loss takes begin_update's [n_pairs, 1] logits or predict's list of arrays."
                )
            flat = ops.asarray(scores, dtype="float32").reshape(-1)
        answers: List[Optional[int]] = []
        for eg, size in zip(examples, sizes):
            answer = _gold_answer(eg) if size else None
            if answer is not None and size != len(_choices_of(eg)):
                raise ValueError(
                    f"{self.name}: {size} scores for an example with {len(_choices_of(eg))} choices "
                    f"(doc: {eg.reference.text[:60]!r})."
                )
            answers.append(answer)
        loss, d_flat = _cross_entropy(ops, flat, sizes, answers)
        if not per_doc:
            return loss, d_flat.reshape(scores.shape)
        bounds = np.cumsum([0] + sizes)
        return loss, [d_flat[a:b].reshape(s.shape) for a, b, s in zip(bounds[:-1], bounds[1:], scores)]

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint` (else the encoder's own `checkpoint` setting) into the encoder,
        initialise the head at the encoder's width, and take the checkpoint's pooler
        (`albert.pooler.*`, or `pooler.*` in a bare `AlbertModel` checkpoint) and classifier
        (`classifier.*` of shape [1, hidden]) where it has them with fitting shapes; the others
        start as the reference initialises them (normal(0, initializer_range), zero bias)."""
        validate_get_examples(get_examples, "AlbertMultipleChoice.initialize")
        encoder = self.encoder
        checkpoint = checkpoint or settings_of(encoder)["checkpoint"]
        weights = load_checkpoint(encoder, checkpoint) if checkpoint else {}
        self.model.initialize()
        state: AlbertState = albert_state(encoder)
        width = state.config.hidden_size
        for name, keys, shape in (
            ("pooler", ("albert.pooler", "pooler"), (width, width)),
            ("classifier", ("classifier",), (1, width)),
        ):
            found = next(
                ((weights[f"{key}.weight"], weights[f"{key}.bias"]) for key in keys
                 if f"{key}.weight" in weights and f"{key}.bias" in weights),
                None,
            )  # fmt: skip
            if found is None or tuple(found[0].shape) != shape or tuple(found[1].shape) != shape[:1]:
                weight = torch.empty(shape).normal_(0.0, state.config.initializer_range)
                found = (weight, torch.zeros(shape[0]))
            set_linear(self.model.get_ref(name), found[0], found[1], name)

    def add_label(self, label: str) -> int:
        raise NotImplementedError(f"{self.name} has no labels: the choices come with each doc.")

    # ---------------------------------------------------------------- encoding

    def get_inputs(self, examples: Iterable[Example]) -> PieceSequences:
        """The model's input for `examples` as `update` builds it: one `[CLS] prompt [SEP] choice
        [SEP]` sequence per (predicted text, choice) pair, the choices of each example (the
        reference doc's, else the predicted doc's) in order. `model.begin_update` of it gives
        the [n_pairs, 1] logits that `get_loss(examples, ...)` takes."""
        return self._inputs([(eg.predicted.text, _choices_of(eg)) for eg in examples])

    def _inputs(self, items: List[Tuple[str, List[str]]]) -> PieceSequences:
        """The model's input for the (prompt, choices) items: one sequence per pair, in order."""
        rows = self._encode([(prompt, choice) for prompt, choices in items for choice in choices])
        return PieceSequences(
            [np.asarray(ids, dtype="int64") for ids, _ in rows], [np.asarray(types, dtype="int64") for _, types in rows]
        )

    def _encode(self, pairs: List[Tuple[str, str]]) -> List[Tuple[List[int], List[int]]]:
        """(input ids, token type ids) of `[CLS] prompt [SEP] choice [SEP]` for each pair."""
        if not pairs:
            return []
        state: AlbertState = albert_state(self.encoder)
        state.backend  # a clear error when no checkpoint was loaded
        max_length = min(self.max_length, state.config.max_position_embeddings)
        encoding = state.tokenizer(
            [prompt for prompt, _ in pairs], [choice for _, choice in pairs],
            truncation=self.truncation, max_length=max_length, return_token_type_ids=True,
        )  # fmt: skip
        return list(zip(encoding["input_ids"], encoding["token_type_ids"]))


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


def _cross_entropy(ops: Any, flat: Any, sizes: List[int], answers: List[Optional[int]]) -> Tuple[float, Any]:
    """The reference's `CrossEntropyLoss()(logits.view(-1, num_choices), labels)` over docs
    with any numbers of choices (docs with the same number as one [docs, choices] block), the
    mean over the docs with an answer, and its gradient with respect to the flat logits."""
    xp = ops.xp
    d_flat = ops.alloc1f(int(flat.shape[0]))
    used = [i for i, answer in enumerate(answers) if answer is not None]
    n_used = global_count(len(used))  # the whole batch's count under data-parallel training
    if not used:
        return 0.0, d_flat
    starts = np.cumsum([0] + sizes)[:-1]
    total = xp.zeros((), dtype="float64")
    for n in sorted({sizes[i] for i in used}):
        members = [i for i in used if sizes[i] == n]
        index = xp.asarray(starts[members][:, None] + np.arange(n)[None, :])
        gold = xp.asarray(np.asarray([answers[i] for i in members], dtype="int64"))
        rows = xp.arange(len(members))
        z = flat[index].astype("float64")
        z = z - z.max(axis=1, keepdims=True)
        log_probs = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
        total = total - log_probs[rows, gold].sum()
        d_logits = xp.exp(log_probs)
        d_logits[rows, gold] -= 1.0
        d_flat[index] = (d_logits / n_used).astype("float32")
    return float(total) / n_used, d_flat
