"""`albert_qa`: extractive question answering with an ALBERT QA head, at parity with
transformers' ``pipeline("question-answering")`` (fast tokenizer, ``align_to_words=True``).

A doc is the *context*; its questions are in ``doc._.questions`` (a list of strings; a single
string is accepted too). Docs without questions, and empty or whitespace-only contexts, get no
answers (the reference rejects an empty context and answers " " for a whitespace one).

Outputs, set on every doc the component processes:

- ``doc._.qa_answers``: a list of dicts, the reference pipeline's output for every question,
  best first per question: ``{"question", "answer", "start", "end", "score", "rank"}``
  (``start``/``end`` are exact character offsets into ``doc.text``; the answer text may begin
  with the space its first piece covers, as in the reference). An impossible answer
  (``handle_impossible_answer=True``) is ``{"answer": "", "start": 0, "end": 0, ...}``; its
  score is the reference's (the smallest [CLS] start x end probability over the windows) and it
  ranks first when it beats the best span's score by more than ``null_score_threshold``
  (0, the default, ranks exactly as the reference does).
- ``doc.spans[spans_key]`` (default ``"answers"``): a span for each non-empty answer, in the
  same order. The span is the answer with surrounding whitespace stripped, expanded to spaCy
  token boundaries (``doc.char_span(..., alignment_mode="expand")``); its ``label_`` is the
  question and its ``id_`` the answer's index in ``doc._.qa_answers``. The exact answer is read
  through the span extensions ``span._.qa_question``, ``qa_answer`` (exact text), ``qa_start``,
  ``qa_end``, ``qa_score`` and ``qa_rank`` (getters that look the answer up in
  ``doc._.qa_answers``; without it they fall back to the span's own label, text and offsets).

``nlp.get_pipe("albert_qa").qa(question, context, top_k=None, **settings)`` answers one
question over a string, in the reference pipeline's format (a dict, or a list of dicts).

Gold data (the reference doc of an Example), as `spacy_albert.pipeline.squad` writes it:
``doc._.questions`` and ``doc._.qa_answers`` with one dict per gold answer
``{"question", "answer", "start", "end"}`` (several per question allowed; an unanswerable
question has ``"answer": ""``). Without ``doc._.qa_answers`` the gold answers are the spans in
``doc.spans[spans_key]`` (question = ``span.label_``). A question without any gold answer is
unanswerable. Both conventions round-trip through ``DocBin(store_user_data=True)``.

Windows: the question is cut to ``max_question_len`` pieces (as the reference's slow-tokenizer
path does; its fast path never cuts the question), and each window is
``[CLS] question [SEP] context-window [SEP]`` with ``max_seq_len`` pieces at most and
``doc_stride`` pieces of overlap, exactly as the reference's ``truncation="only_second"`` with
``return_overflowing_tokens=True`` lays them out. ``max_seq_len`` is capped at the model's
``max_position_embeddings``; a stride that does not fit the room left by a long question is
cut to half that room (the reference would fail there).

Training uses the reference recipe (transformers' ``run_qa.py``): each window of a question is
an input; its start/end positions are the pieces of the question's first gold answer when the
answer lies wholly inside the window, and the ``[CLS]`` piece otherwise (also for unanswerable
questions, as for SQuAD 2.0); the loss is the head's (mean of start and end cross-entropy).

Scores (``qa_exact``, ``qa_f1``, between 0 and 1): the official SQuAD v2.0 exact match and F1
of each question's best answer (rank 0 in the predicted doc's ``doc._.qa_answers``; "" when
there is none), max over its gold answers, averaged over the questions. Questions are matched
by their text.

Corpora: spaCy's ``spacy.Corpus.v1`` gives Examples whose predicted docs are bare text, so
evaluation during ``spacy train`` would see no questions; ``spacy-albert.QACorpus.v1`` (same
``.spacy`` files) copies ``doc._.questions`` onto the predicted docs.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Corpus, Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..layers.task_model import export_task_model, get_tokenizer, load_task_checkpoint, run_task_model
from .guards import check_gradients, check_loss, next_step
from .serialization import PipeSerialization, claim_encoders

QUESTIONS_EXT = "questions"
ANSWERS_EXT = "qa_answers"
_SPAN_FIELDS = {
    "qa_question": ("question", lambda span: span.label_),
    "qa_answer": ("answer", lambda span: span.text),
    "qa_start": ("start", lambda span: span.start_char),
    "qa_end": ("end", lambda span: span.end_char),
    "qa_score": ("score", lambda span: None),
    "qa_rank": ("rank", lambda span: None),
}

Answer = Dict[str, Any]


def _answer_of_span(span: Span) -> Optional[Answer]:
    """The entry of ``doc._.qa_answers`` a span stands for (its ``id_`` is the index)."""
    answers = span.doc._.get(ANSWERS_EXT)
    key = span.id_
    if not answers or not key.isdigit() or int(key) >= len(answers):
        return None
    answer = answers[int(key)]
    return answer if isinstance(answer, dict) and answer.get("question") == span.label_ else None


def _span_getter(field: str, fallback: Callable[[Span], Any]) -> Callable[[Span], Any]:
    def getter(span: Span) -> Any:
        answer = _answer_of_span(span)
        return fallback(span) if answer is None else answer.get(field)

    return getter


def register_extensions() -> None:
    """Register ``doc._.questions``, ``doc._.qa_answers`` and the ``span._.qa_*`` getters."""
    for name in (QUESTIONS_EXT, ANSWERS_EXT):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    for name, (field, fallback) in _SPAN_FIELDS.items():
        if not Span.has_extension(name):
            Span.set_extension(name, getter=_span_getter(field, fallback))


register_extensions()


def get_questions(doc: Doc) -> List[str]:
    """The doc's questions (``doc._.questions``) as a list; blank questions are left out."""
    questions = doc._.get(QUESTIONS_EXT)
    if questions is None:
        return []
    if isinstance(questions, str):
        questions = [questions]
    return [q for q in questions if isinstance(q, str) and q.strip()]


# ---------------------------------------------------------------------------------------------
# Windows


@dataclass
class Encoded:
    """Pieces of one text (no special tokens): ids, character offsets and word ids."""

    ids: List[int]
    offsets: List[Tuple[int, int]]
    words: List[Optional[int]]

    @classmethod
    def of(cls, backend: Any, text: str) -> "Encoded":
        enc = backend.encode(text, add_special_tokens=False)
        return cls(list(enc.ids), [tuple(o) for o in enc.offsets], list(enc.word_ids))


@dataclass
class Window:
    """``[CLS] question [SEP] context[start:end] [SEP]``; context pieces begin at ``offset``."""

    input_ids: List[int]
    token_type_ids: List[int]
    offset: int
    start: int
    end: int
    question: Encoded


@dataclass
class QASettings:
    top_k: int = 1
    max_answer_len: int = 15
    max_seq_len: int = 384
    doc_stride: int = 128
    max_question_len: int = 64
    handle_impossible_answer: bool = False
    null_score_threshold: float = 0.0

    def validate(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k parameter should be >= 1 (got {self.top_k})")
        if self.max_answer_len < 1:
            raise ValueError(f"max_answer_len parameter should be >= 1 (got {self.max_answer_len})")
        if self.max_seq_len < 4:
            raise ValueError(f"max_seq_len ({self.max_seq_len}) must leave room for 3 special pieces and context")
        if self.doc_stride < 0 or self.doc_stride > self.max_seq_len:
            raise ValueError(f"`doc_stride` ({self.doc_stride}) is larger than `max_seq_len` ({self.max_seq_len})")
        if self.max_question_len < 1:
            raise ValueError(f"max_question_len ({self.max_question_len}) must be >= 1")


def window_ranges(n_context: int, room: int, stride: int) -> List[Tuple[int, int]]:
    """Context piece ranges as `tokenizers`' `Encoding.truncate` (direction right) makes them:
    windows of `room` pieces, each starting `room - stride` pieces after the previous one,
    until one reaches the end. A stride that leaves no progress (the reference fails there) is
    cut to half the room."""
    if n_context <= room:
        return [(0, n_context)]
    if stride >= room:
        stride = room // 2
    ranges = []
    for start in range(0, n_context, room - stride):
        stop = min(start + room, n_context)
        ranges.append((start, stop))
        if stop == n_context:
            break
    return ranges


def make_windows(
    question: Encoded, context: Encoded, settings: QASettings, *, cls_id: int, sep_id: int, max_positions: int
) -> List[Window]:
    max_seq_len = min(settings.max_seq_len, max_positions)
    n = min(settings.max_question_len, max_seq_len - 4)
    question = Encoded(question.ids[:n], question.offsets[:n], question.words[:n])
    head = [cls_id, *question.ids, sep_id]
    room = max_seq_len - len(head) - 1
    windows = []
    for start, end in window_ranges(len(context.ids), room, settings.doc_stride):
        ids = head + context.ids[start:end] + [sep_id]
        types = [0] * len(head) + [1] * (end - start + 1)
        windows.append(Window(ids, types, len(head), start, end, question))
    return windows


def collate(windows: Sequence[Window], pad_id: int) -> Dict[str, torch.Tensor]:
    """Right-padded torch inputs for a batch of windows."""
    length = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(windows), length), dtype=torch.long)
    mask = torch.zeros((len(windows), length), dtype=torch.long)
    for i, w in enumerate(windows):
        n = len(w.input_ids)
        ids[i, :n] = torch.tensor(w.input_ids)
        types[i, :n] = torch.tensor(w.token_type_ids)
        mask[i, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------
# Decoding: transformers' `decode_spans`, `select_starts_ends` and `postprocess`, op for op


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    p_mask: np.ndarray,
    attention_mask: np.ndarray,
    min_null_score: float = 1000000,
    top_k: int = 1,
    handle_impossible_answer: bool = False,
    max_answer_len: int = 15,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _word_span(context: Encoded, window: Window, word: int) -> Optional[Tuple[int, int]]:
    """`Encoding.word_to_chars(word, sequence_index=1)` on the window's encoding: the pieces
    of `word` within the window (scanning while word ids do not exceed it)."""
    first = last = None
    for i in range(window.start, window.end):
        w = context.words[i]
        if w is not None and w > word:
            break
        if w == word:
            first = i if first is None else first
            last = i
    if first is None:
        return None
    return context.offsets[first][0], context.offsets[last][1]


def _char_indices(context: Encoded, window: Window, s: int, e: int) -> Tuple[int, int]:
    """The reference's `get_indices(enc, s, e, sequence_index=1, align_to_words=True)`: the
    words of pieces `s` and `e` (`token_to_word`, in their own sequence) mapped to characters
    of the context within the window (`word_to_chars`); the pieces' own offsets where that
    fails (special pieces)."""

    def piece(position: int) -> Tuple[Optional[int], Tuple[int, int]]:
        i = position - window.offset
        if 0 <= i < window.end - window.start:
            return context.words[window.start + i], context.offsets[window.start + i]
        i = position - 1
        if 0 <= i < len(window.question.ids):  # a [CLS] inside the question, as the reference allows
            return window.question.words[i], window.question.offsets[i]
        return None, (0, 0)

    (start_word, start_offsets), (end_word, end_offsets) = piece(s), piece(e)
    if start_word is not None and end_word is not None:
        first, last = _word_span(context, window, start_word), _word_span(context, window, end_word)
        if first is not None and last is not None:
            return first[0], last[1]
    return start_offsets[0], end_offsets[1]


def decode_answers(
    text: str,
    context: Encoded,
    windows: Sequence[Window],
    logits: Sequence[Tuple[np.ndarray, np.ndarray]],
    settings: QASettings,
    *,
    cls_id: int,
) -> List[Answer]:
    """The reference pipeline's answers for one question: `{"score", "start", "end", "answer"}`
    dicts, best first, at most `top_k`."""
    min_null_score = 1000000
    answers: List[Answer] = []
    for window, (start_logits, end_logits) in zip(windows, logits):
        ids = np.asarray(window.input_ids)
        p_mask = np.ones((1, len(ids)), dtype=np.int64)
        p_mask[0, window.offset : window.offset + window.end - window.start] = 0
        p_mask[0, ids == cls_id] = 0
        attention_mask = np.ones((1, len(ids)), dtype=np.int64)
        starts, ends, scores, min_null_score = select_starts_ends(
            np.asarray(start_logits, dtype=np.float32)[None],
            np.asarray(end_logits, dtype=np.float32)[None],
            p_mask,
            attention_mask,
            min_null_score,
            settings.top_k,
            settings.handle_impossible_answer,
            settings.max_answer_len,
        )
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = _char_indices(context, window, int(s), int(e))
            target = text[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if same:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if settings.handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    threshold = settings.null_score_threshold
    return sorted(answers, key=lambda a: a["score"] - (threshold if a["answer"] == "" else 0.0), reverse=True)[
        : settings.top_k
    ]


# ---------------------------------------------------------------------------------------------
# Gold answers and scoring


def gold_answers(doc: Doc, spans_key: str = "answers") -> Dict[str, List[Tuple[str, int, int]]]:
    """Each question of a reference doc with its gold answers ``(text, start, end)``; an
    unanswerable question (no or only empty answers) maps to an empty list."""
    golds: Dict[str, List[Tuple[str, int, int]]] = {q: [] for q in get_questions(doc)}
    entries = doc._.get(ANSWERS_EXT)
    if entries is not None:
        for entry in entries:
            question = entry.get("question")
            golds.setdefault(question, [])
            answer = entry.get("answer") or ""
            if answer and not entry.get("is_impossible"):
                golds[question].append((answer, int(entry["start"]), int(entry["end"])))
    elif spans_key in doc.spans:
        for span in doc.spans[spans_key]:
            golds.setdefault(span.label_, []).append((span.text, span.start_char, span.end_char))
    return golds


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text, flags=re.UNICODE)

    exclude = set(string.punctuation)
    s = "".join(ch for ch in s.lower() if ch not in exclude)
    return " ".join(remove_articles(s).split())


def exact_score(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def score_qa(examples: Iterable[Example], *, spans_key: str = "answers", **kwargs: Any) -> Dict[str, Any]:
    """SQuAD v2.0 exact match and F1 (0-1) of the best predicted answer of every gold question
    (an unanswerable question's gold answer is ""; a question without prediction answers "")."""
    exact, f1 = [], []
    for eg in examples:
        best: Dict[str, str] = {}
        for entry in eg.predicted._.get(ANSWERS_EXT) or []:
            best.setdefault(entry["question"], entry["answer"])
        for question, answers in gold_answers(eg.reference, spans_key).items():
            texts = [text for text, _, _ in answers if normalize_answer(text)] or [""]
            pred = best.get(question, "")
            exact.append(max(exact_score(g, pred) for g in texts))
            f1.append(max(f1_score(g, pred) for g in texts))
    if not exact:
        return {"qa_exact": None, "qa_f1": None}
    return {"qa_exact": sum(exact) / len(exact), "qa_f1": sum(f1) / len(f1)}


@registry.scorers("spacy-albert.qa_scorer.v1")
def make_qa_scorer() -> Callable[..., Dict[str, Any]]:
    return score_qa


class QACorpus:
    """`spacy.Corpus` over `.spacy` files of QA docs, whose Examples' predicted docs carry the
    reference's questions (spaCy's own corpus gives them bare text, so evaluation during
    `spacy train` would have no questions to answer)."""

    def __init__(self, path: Optional[Union[str, Path]], *, limit: int = 0, shuffle: bool = False) -> None:
        if path is None:
            raise ValueError("QACorpus needs a path to a .spacy file or a directory of them.")
        self.path = path
        self.corpus = Corpus(path, limit=limit, shuffle=shuffle)

    def __call__(self, nlp: Language) -> Iterator[Example]:
        asked = False
        for eg in self.corpus(nlp):
            questions = get_questions(eg.reference)
            eg.predicted._.set(QUESTIONS_EXT, questions)
            asked = asked or bool(questions)
            yield eg
        if not asked:  # nothing to train or evaluate on: not QA data
            raise ValueError(
                f"QACorpus: no doc in {self.path} has questions (doc._.questions); "
                "convert SQuAD JSON with `spacy-albert convert INPUT OUTPUT -f squad`."
            )


@registry.readers("spacy-albert.QACorpus.v1")
def create_qa_corpus(path: Optional[Path], limit: int = 0, shuffle: bool = False) -> QACorpus:
    """Examples from `.spacy` files (docs with `_.questions` and `_.qa_answers`)."""
    return QACorpus(path, limit=limit, shuffle=shuffle)


# ---------------------------------------------------------------------------------------------
# The component

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
            _Item(q, text, context, make_windows(Encoded.of(backend, q), context, settings, cls_id=cls_id,
                                                 sep_id=sep_id, max_positions=max_positions))
            for q in questions
        ]  # fmt: skip

    def _logits(self, windows: List[Window]) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Start and end logits of each window, unpadded."""
        _, _, pad_id = self._special_ids()
        results = []
        for i in range(0, len(windows), self.max_batch_windows):
            batch = windows[i : i + self.max_batch_windows]
            output = run_task_model(self.model, collate(batch, pad_id), is_train=False)
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
            inputs = collate([w for w, _, _ in batch], pad_id)
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


def target_positions(context: Encoded, window: Window, answer: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """Start and end positions of an answer's pieces in a window (transformers' `run_qa.py`):
    the [CLS] piece (0, 0) when there is no answer or it is not wholly inside the window."""
    first, last = window.start, window.end - 1
    offsets = context.offsets
    if answer is None or last < first:
        return 0, 0
    start_char, end_char = answer
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return 0, 0
    i = first
    while i <= last and offsets[i][0] <= start_char:
        i += 1
    j = last
    while j >= first and offsets[j][1] >= end_char:
        j -= 1
    return window.offset + (i - 1 - first), window.offset + (j + 1 - first)


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
