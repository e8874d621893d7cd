"""The `albert_qa` component (factory ``albert_qa``): `AlbertQuestionAnswering`, and
`answer_spans`, the ``doc.spans`` form of its answers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ...layers.task_model import export_task_model, get_tokenizer, load_task_checkpoint, run_task_model
from ..guards import check_gradients, check_loss, next_step
from ..serialization import PipeSerialization, claim_encoders
from .decoding import decode_answers
from .extensions import ANSWERS_EXT, Answer, get_questions
from .metrics import gold_answers, score_qa
from .windows import Encoded, QASettings, Window, collate_qa_windows, make_qa_windows, target_positions

DEFAULT_QA_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-albert.AlbertTaskModel.v1"
task = "question-answering"
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
    """Extractive question answering over each doc for the questions in `doc._.questions`."""
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


class AlbertQuestionAnswering(PipeSerialization, TrainablePipe):
    """ALBERT extractive QA (``AlbertForQuestionAnswering``) as a spaCy component.

    The checkpoint comes from the model's ``checkpoint`` setting or from
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
        claim_encoders(self.model, name)

    # -- inputs --------------------------------------------------------------------------------

    def _special_ids(self) -> Tuple[int, int, int]:
        tokenizer = get_tokenizer(self.model)
        pad = tokenizer.pad_token_id
        return tokenizer.cls_token_id, tokenizer.sep_token_id, 0 if pad is None else pad

    def _items(self, text: str, questions: Sequence[str], settings: QASettings) -> List[_Item]:
        """Windows for every question over `text` (none for a blank context)."""
        questions = [q for q in questions if q.strip()]
        if not text.strip() or not questions:
            return []
        backend = self.model.attrs["albert"].backend
        context = Encoded.of(backend, text)
        if not context.ids:
            return []
        cls_id, sep_id, _ = self._special_ids()
        max_positions = self.model.attrs["albert"].config.max_position_embeddings
        return [
            _Item(q, text, context, make_qa_windows(Encoded.of(backend, q), context, settings, cls_id=cls_id,
                                                    sep_id=sep_id, max_positions=max_positions))
            for q in questions
        ]  # fmt: skip

    def _logits(self, windows: List[Window]) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Start and end logits of each window, unpadded."""
        _, _, pad_id = self._special_ids()
        results = []
        for i in range(0, len(windows), self.max_batch_windows):
            batch = windows[i : i + self.max_batch_windows]
            output = run_task_model(self.model, collate_qa_windows(batch, pad_id), is_train=False)
            starts = output.start_logits.float().cpu().numpy()
            ends = output.end_logits.float().cpu().numpy()
            for j, w in enumerate(batch):
                n = len(w.input_ids)
                results.append((starts[j, :n], ends[j, :n]))
        return results

    def _answer(self, items: List[_Item], settings: QASettings) -> List[List[Answer]]:
        windows = [w for item in items for w in item.windows]
        logits = self._logits(windows) if windows else []
        cls_id = self._special_ids()[0]
        results, k = [], 0
        for item in items:
            n = len(item.windows)
            results.append(decode_answers(item.text, item.context, item.windows, logits[k : k + n], settings,
                                          cls_id=cls_id))  # fmt: skip
            k += n
        return results

    # -- prediction ----------------------------------------------------------------------------


    def export(self, directory: str | Path) -> Path:
        """Write encoder + head and tokenizer as a Hugging Face checkpoint transformers loads."""
        return export_task_model(self.model, directory)

    def predict(self, docs: Iterable[Doc]) -> List[List[Answer]]:
        """For each doc, its answers: the `doc._.qa_answers` entries it will get."""
        docs = list(docs)
        items_per_doc = [self._items(doc.text, get_questions(doc), self.settings) for doc in docs]
        flat = [item for items in items_per_doc for item in items]
        answers = iter(self._answer(flat, self.settings) if flat else [])
        predictions = []
        for items in items_per_doc:
            entries = []
            for item in items:
                for rank, answer in enumerate(next(answers)):
                    entries.append({"question": item.question, **answer, "rank": rank})
            predictions.append(entries)
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: List[List[Answer]]) -> None:
        for doc, entries in zip(docs, predictions):
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

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One step of the reference QA loss over all windows of all questions of `examples`
        (the mean over windows, accumulated in chunks of `max_batch_windows`). Dropout is the
        checkpoint's own (`hidden_dropout_prob`, active in training); `drop` is not used. A
        non-finite loss (checked per chunk, before its backward pass) or gradient (checked
        before the optimizer step) raises `NonFiniteError` naming the component and its
        update step, with the gradients cleared and the weights unchanged (see `guards`)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "AlbertQuestionAnswering.update")
        step = next_step(self)
        features = self._training_windows(examples)
        if not features:
            return losses
        set_dropout_rate(self.model, drop)
        _, _, pad_id = self._special_ids()
        total = 0.0
        for i in range(0, len(features), self.max_batch_windows):
            batch = features[i : i + self.max_batch_windows]
            inputs = collate_qa_windows([w for w, _, _ in batch], pad_id)
            inputs["start_positions"] = torch.tensor([s for _, s, _ in batch], dtype=torch.long)
            inputs["end_positions"] = torch.tensor([e for _, _, e in batch], dtype=torch.long)
            output = run_task_model(self.model, inputs, is_train=True)
            loss = output.loss.float() * (len(batch) / len(features))
            check_loss(self.name, step, loss, self.model)
            loss.backward()
            total += loss.item()
        check_gradients(self.name, step, self.model)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += total
        return losses

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load `checkpoint` (a Hugging Face ALBERT directory or cached hub id; a checkpoint
        without a QA head gets a new one), or the model's own `checkpoint` setting."""
        validate_get_examples(get_examples, "AlbertQuestionAnswering.initialize")
        if checkpoint is not None:
            load_task_checkpoint(self.model, checkpoint)
        self.model.initialize()

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
