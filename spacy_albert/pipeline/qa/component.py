"""The `albert_qa` component (factory ``albert_qa``): `AlbertQuestionAnswering`, and
`answer_spans`, the ``doc.spans`` form of its answers.

The model is `spacy-albert.QuestionAnswering.v1`: the reference's ``qa_outputs`` (start and
end logits) over an `spacy-albert.AlbertTransformer.v1` encoder of the component's own. Its
input is the component's question/context windows as `PieceSequences` (``[CLS] question [SEP]
context-part [SEP]``, token types 0 then 1), its output the logits [n_positions, 2] of every
position of every window, in order. `predict` returns them per window (`QAScores`, with the
questions and windows they belong to), `set_annotations` decodes them exactly as the
reference pipeline does, `get_loss` gives the reference loss and its gradient for them (or
for `begin_update`'s output over the training windows), and `update` is the usual thinc step
(spaCy's `drop` reaches the head's dropout layer; the encoder's own dropout is its
configured `hidden_dropout_prob`/`attention_probs_dropout_prob`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

from ...layers.data import PieceSequences
from ...layers.state import AlbertState
from ...training.distributed import global_count
from ...layers.transformer import albert_state, load_checkpoint, settings_of
from ...models.modeling_albert import AlbertForQuestionAnswering
from ..encoder_heads import HeadUpdateMixin, export_checkpoint, linear_tensors, set_linear
from ..serialization import PipeSerialization, claim_encoders
from .decoding import decode_answers
from .extensions import ANSWERS_EXT, Answer, get_questions
from .metrics import gold_answers, score_qa
from .windows import Encoded, QASettings, Window, make_qa_windows, target_positions

DEFAULT_QA_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-albert.QuestionAnswering.v1"
dropout = 0.0

[model.encoder]
@architectures = "spacy-albert.AlbertTransformer.v1"
"""
)["model"]


@Language.factory(
    "albert_qa",
    default_config={
        "model": DEFAULT_QA_MODEL,
        "top_k": 1,
        "max_answer_len": 15,
        "max_seq_len": 384,
        "doc_stride": 128,
        "max_question_len": 64,
        "handle_impossible_answer": False,
        "null_score_threshold": 0.0,
        "spans_key": "answers",
        "max_batch_windows": 32,
        "scorer": {"@scorers": "spacy-albert.qa_scorer.v1"},
    },
    assigns=[f"doc._.{ANSWERS_EXT}", "doc.spans"],
    default_score_weights={"qa_f1": 1.0, "qa_exact": 0.0},
)
def make_albert_qa(
    nlp: Language,
    name: str,
    model: Model,
    top_k: int,
    max_answer_len: int,
    max_seq_len: int,
    doc_stride: int,
    max_question_len: int,
    handle_impossible_answer: bool,
    null_score_threshold: float,
    spans_key: str,
    max_batch_windows: int,
    scorer: Optional[Callable],
) -> "AlbertQuestionAnswering":
    """Extractive question answering over each doc for the questions in `doc._.questions`.
    `max_batch_windows`: windows per forward pass at prediction (bounds the memory of the
    encoder's states; training runs one forward pass per batch of examples)."""
    settings = QASettings(
        top_k=top_k,
        max_answer_len=max_answer_len,
        max_seq_len=max_seq_len,
        doc_stride=doc_stride,
        max_question_len=max_question_len,
        handle_impossible_answer=handle_impossible_answer,
        null_score_threshold=null_score_threshold,
    )
    return AlbertQuestionAnswering(
        nlp.vocab, model, name, settings=settings, spans_key=spans_key, max_batch_windows=max_batch_windows,
        scorer=scorer,
    )  # fmt: skip


@dataclass
class _Item:
    """One question over one context, ready for the model."""

    question: str
    text: str
    context: Encoded
    windows: List[Window]


@dataclass
class QAScores:
    """What `predict` returns: the start/end logits [window length, 2] of every window (host
    arrays, column 0 start, column 1 end), in the order of `items` (per doc, its questions;
    per question, its windows)."""

    items: List[List[_Item]]
    logits: List[np.ndarray]

    @property
    def windows(self) -> List[Window]:
        return [w for items in self.items for item in items for w in item.windows]


def qa_inputs(windows: Sequence[Window]) -> PieceSequences:
    """The model's input for windows: their piece ids and token types."""
    return PieceSequences(
        ids=[np.asarray(w.input_ids, dtype="int64") for w in windows],
        type_ids=[np.asarray(w.token_type_ids, dtype="int64") for w in windows],
    )


class AlbertQuestionAnswering(PipeSerialization, HeadUpdateMixin, TrainablePipe):
    """ALBERT extractive QA (the reference's ``AlbertForQuestionAnswering``) as a spaCy component.

    The checkpoint comes from the encoder's ``checkpoint`` setting or from
    ``initialize(checkpoint=...)`` (in a config: ``[initialize.components.albert_qa]``).
    """

    config_cfg_keys = ("spans_key",)  # settings from the config, also at load

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "albert_qa",
        *,
        settings: Optional[QASettings] = None,
        spans_key: str = "answers",
        max_batch_windows: int = 32,
        scorer: Optional[Callable] = score_qa,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.settings = settings or QASettings()
        self.settings.validate()
        if max_batch_windows < 1:
            raise ValueError(f"max_batch_windows ({max_batch_windows}) must be >= 1")
        self.spans_key = spans_key
        self.max_batch_windows = max_batch_windows
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"spans_key": spans_key}
        # the current update's training windows: `training_inputs` builds them once and the
        # `get_loss` of the same update takes them (the examples match by identity)
        self._last_windows: Tuple[List[Example], List[Tuple[Window, int, int]]] = ([], [])
        claim_encoders(self.model, name)

    # -- inputs --------------------------------------------------------------------------------

    @property
    def encoder(self) -> Model:
        """The component's `AlbertTransformer`."""
        return self.model.get_ref("encoder")

    @property
    def _state(self) -> AlbertState:
        return albert_state(self.encoder)

    def _special_ids(self) -> Tuple[int, int, int]:
        tokenizer = self._state.tokenizer
        pad = tokenizer.pad_token_id
        return tokenizer.cls_token_id, tokenizer.sep_token_id, 0 if pad is None else pad

    def _items(self, text: str, questions: Sequence[str], settings: QASettings) -> List[_Item]:
        """Windows for every question over `text` (none for a blank context). Windows are at
        most `max_seq_len` pieces, capped at the encoder's `max_position_embeddings`."""
        questions = [q for q in questions if q.strip()]
        if not text.strip() or not questions:
            return []
        state = self._state
        backend = state.backend  # a clear error before the encoder has a vocabulary
        context = Encoded.of(backend, text)
        if not context.ids:
            return []
        cls_id, sep_id, _ = self._special_ids()
        max_positions = state.config.max_position_embeddings
        return [
            _Item(q, text, context, make_qa_windows(Encoded.of(backend, q), context, settings, cls_id=cls_id,
                                                    sep_id=sep_id, max_positions=max_positions))
            for q in questions
        ]  # fmt: skip

    def _logits(self, windows: List[Window]) -> List[np.ndarray]:
        """Start/end logits [length, 2] of each window (host arrays), `max_batch_windows`
        windows per forward pass."""
        results: List[np.ndarray] = []
        ops = self.model.ops
        for i in range(0, len(windows), self.max_batch_windows):
            inputs = qa_inputs(windows[i : i + self.max_batch_windows])
            scores = np.asarray(ops.to_numpy(self.model.predict(inputs)), dtype="float32")
            results.extend(np.split(scores, np.cumsum(inputs.lengths)[:-1]))
        return results

    def _decode(self, items: List[_Item], logits: Sequence[np.ndarray], settings: QASettings) -> List[List[Answer]]:
        """The reference pipeline's answers for each item, from its windows' logits."""
        cls_id = self._special_ids()[0] if items else 0
        results, k = [], 0
        for item in items:
            n = len(item.windows)
            pairs = [(scores[:, 0], scores[:, 1]) for scores in logits[k : k + n]]
            results.append(decode_answers(item.text, item.context, item.windows, pairs, settings, cls_id=cls_id))
            k += n
        return results

    def _answer(self, items: List[_Item], settings: QASettings) -> List[List[Answer]]:
        windows = [w for item in items for w in item.windows]
        return self._decode(items, self._logits(windows) if windows else [], settings)

    # -- prediction ----------------------------------------------------------------------------

    def export(self, directory: str | Path) -> Path:
        """Write encoder + head and tokenizer as an `AlbertForQuestionAnswering` checkpoint
        that transformers loads."""
        weight, bias = linear_tensors(self.model.get_ref("qa_outputs"))
        return export_checkpoint(
            self.encoder, AlbertForQuestionAnswering, {"qa_outputs.weight": weight, "qa_outputs.bias": bias},
            directory, num_labels=2,
        )  # fmt: skip

    def predict(self, docs: Iterable[Doc]) -> QAScores:
        """The start/end logits of every window of every question of each doc (the
        questions in `doc._.questions`): a `QAScores`, which `set_annotations` decodes."""
        docs = list(docs)
        items = [self._items(doc.text, get_questions(doc), self.settings) for doc in docs]
        windows = [w for doc_items in items for item in doc_items for w in item.windows]
        return QAScores(items, self._logits(windows) if windows else [])

    def set_annotations(self, docs: Iterable[Doc], scores: QAScores) -> None:
        """Decode `scores` into `doc._.qa_answers` (best first per question, with the
        question and rank) and `doc.spans[spans_key]`."""
        flat = [item for doc_items in scores.items for item in doc_items]
        answers = iter(self._decode(flat, scores.logits, self.settings))
        for doc, items in zip(docs, scores.items):
            entries = []
            for item in items:
                for rank, answer in enumerate(next(answers)):
                    entries.append({"question": item.question, **answer, "rank": rank})
            doc._.set(ANSWERS_EXT, entries)
            doc.spans[self.spans_key] = answer_spans(doc, entries)

    def qa(
        self, question: str, context: str, top_k: Optional[int] = None, **overrides: Any
    ) -> Union[Answer, List[Answer]]:
        """The reference pipeline's result for one question over one context: a dict
        ``{"score", "start", "end", "answer"}``, or a list of them when there are several.
        `overrides` may set `max_answer_len`, `max_seq_len`, `doc_stride`, `max_question_len`,
        `handle_impossible_answer` and `null_score_threshold`. A blank context gives []."""
        if top_k is not None:
            overrides["top_k"] = top_k
        settings = dataclasses.replace(self.settings, **overrides)
        settings.validate()
        items = self._items(context, [question], settings)
        if not items:
            return []
        answers = self._answer(items, settings)[0]
        return answers[0] if len(answers) == 1 else answers

    # -- training ------------------------------------------------------------------------------

    def _training_windows(self, examples: Iterable[Example]) -> List[Tuple[Window, int, int]]:
        """Each window of each question of the examples' reference docs, with its target
        start/end positions (`target_positions`: [CLS] when the question's first gold answer
        is not wholly inside the window, or the question has none)."""
        features = []
        for eg in examples:
            reference = eg.reference
            golds = gold_answers(reference, self.spans_key)
            items = self._items(reference.text, list(golds), self.settings)
            for item in items:
                answers = golds.get(item.question) or []
                target = next(((s, e) for _, s, e in answers if e > s), None)
                for window in item.windows:
                    start, end = target_positions(item.context, window, target)
                    features.append((window, start, end))
        return features

    def get_loss(
        self, examples: Iterable[Example], scores: Union[Floats2d, QAScores, Sequence[Floats2d]]
    ) -> Tuple[float, Floats2d]:
        """The reference loss (``AlbertForQuestionAnswering``'s) over the training windows of
        `examples` (see `_training_windows`): per window, the mean of the start and end
        cross-entropies over the window's positions; the mean over windows. Returns the loss
        and its gradient w.r.t. the scores, [n_positions, 2] on the model's device.

        `scores` are the logits of those windows: `begin_update`'s output on their
        `qa_inputs`, [n_positions, 2]; or `predict`'s (a `QAScores`, or a list of per-window
        arrays) when the predicted docs carry the reference's questions.

        The reference pads a batch to its longest window and its cross-entropy runs over the
        padding positions too (with whatever logits the model gives them); windows here are
        packed without padding, so each window's softmax covers its own positions only."""
        examples = list(examples)
        validate_examples(examples, "AlbertQuestionAnswering.get_loss")
        ops, xp = self.model.ops, self.model.ops.xp
        built_for, features = self._last_windows
        self._last_windows = ([], [])
        if len(built_for) != len(examples) or any(a is not b for a, b in zip(built_for, examples)):
            features = self._training_windows(examples)
        if isinstance(scores, QAScores):
            scores = scores.logits
        if isinstance(scores, (list, tuple)):
            scores = ops.xp.concatenate([ops.asarray2f(s) for s in scores]) if scores else ops.alloc2f(0, 2)
        scores = ops.asarray2f(scores)
        lengths = np.asarray([len(w.input_ids) for w, _, _ in features], dtype="int64")
        if scores.shape != (int(lengths.sum()), 2):
            raise ValueError(
                f"{self.name!r}: scores of shape {tuple(scores.shape)}, but the examples' {len(features)} windows "
                f"have {int(lengths.sum())} positions (expected [{int(lengths.sum())}, 2])."
            )
        n_global = global_count(len(features))  # the whole batch's windows under data-parallel training
        if not features:
            return 0.0, ops.alloc2f(0, 2)
        n_windows, longest = len(features), int(lengths.max())
        window_of = np.repeat(np.arange(n_windows), lengths)
        position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows, cols = ops.asarray1i(window_of), ops.asarray1i(position)
        # Windows side by side [n_windows, longest, 2], -inf beyond each window's end, so
        # that each softmax runs over its own window's positions.
        padded = xp.full((n_windows, longest, 2), -xp.inf, dtype="float32")
        padded[rows, cols] = scores
        shifted = padded - padded.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        probs = (exp / sums)[rows, cols]  # [n_positions, 2]
        log_probs = shifted - xp.log(sums)
        targets = ops.asarray2i(np.asarray([[s, e] for _, s, e in features], dtype="int32").reshape(-1, 2))
        windows = ops.asarray1i(np.arange(n_windows))
        picked = xp.stack([log_probs[windows, targets[:, 0], 0], log_probs[windows, targets[:, 1], 1]], axis=1)
        loss = -float(picked.astype("float64").sum()) / (2 * n_global)
        offsets = ops.asarray1i(np.cumsum(lengths) - lengths)
        d_scores = probs
        d_scores[offsets + targets[:, 0], 0] -= 1.0
        d_scores[offsets + targets[:, 1], 1] -= 1.0
        d_scores /= 2 * n_global
        return loss, ops.asarray2f(d_scores)

    def training_inputs(self, examples: List[Example]) -> Optional[Tuple[PieceSequences, List[Example]]]:
        """All windows of all questions of `examples` (with gold answers), one forward pass
        (the encoder chunks it by its `max_batch_pieces`); None when there are none. `drop`
        sets the head's dropout (before ``qa_outputs``)."""
        features = self._training_windows(examples)
        self._last_windows = (examples, features)
        if not features:
            return None
        return qa_inputs([w for w, _, _ in features]), examples

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint` (a Hugging Face ALBERT directory or cached hub id), or else the
        encoder's own `checkpoint` setting, into the encoder; then initialise the model and
        take the checkpoint's QA head (``qa_outputs``, [2, hidden_size]) when it has one (a
        checkpoint without one gets a new head)."""
        validate_get_examples(get_examples, "AlbertQuestionAnswering.initialize")
        encoder = self.encoder
        checkpoint = checkpoint or settings_of(encoder)["checkpoint"]
        weights = load_checkpoint(encoder, checkpoint) if checkpoint else {}
        width = albert_state(encoder).config.hidden_size
        qa_outputs = self.model.get_ref("qa_outputs")
        if qa_outputs.has_param("W") and qa_outputs.get_dim("nI") != width:  # re-initialised at another width
            qa_outputs.set_dim("nI", width, force=True)
        self.model.initialize()
        weight, bias = weights.get("qa_outputs.weight"), weights.get("qa_outputs.bias")
        if weight is not None and bias is not None and tuple(weight.shape) == (2, width) and tuple(bias.shape) == (2,):
            set_linear(qa_outputs, weight, bias, "qa_outputs")

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """`qa_exact` and `qa_f1` (see `score_qa`), with golds read under this `spans_key`."""
        examples = list(examples)
        validate_examples(examples, "AlbertQuestionAnswering.score")
        kwargs.setdefault("spans_key", self.spans_key)
        return self.scorer(examples, **kwargs)


def answer_spans(doc: Doc, entries: Sequence[Answer]) -> List[Span]:
    """A span for each non-empty entry of `entries` (answers in `doc._.qa_answers` form):
    whitespace stripped, expanded to token boundaries, `label_` = question, `id_` = index."""
    spans = []
    for index, entry in enumerate(entries):
        start, end = int(entry["start"]), int(entry["end"])
        text = doc.text[start:end]
        if not entry.get("answer") or not text.strip():
            continue
        start += len(text) - len(text.lstrip())
        end -= len(text) - len(text.rstrip())
        span = doc.char_span(start, end, label=entry["question"], alignment_mode="expand")
        if span is None:
            continue
        span.id_ = str(index)
        spans.append(span)
    return spans
