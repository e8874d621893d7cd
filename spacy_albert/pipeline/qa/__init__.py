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

Model: ``spacy-albert.QuestionAnswering.v1`` (dropout, then the reference's ``qa_outputs``)
over a ``spacy-albert.AlbertTransformer.v1`` encoder of the component's own; the windows go in
as ``PieceSequences`` (packed, no padding), and ``predict`` returns the start/end logits of
every window (``QAScores``), which ``set_annotations`` decodes. ``export(directory)`` writes
encoder + head as an ``AlbertForQuestionAnswering`` checkpoint. A checkpoint with a QA head
(``qa_outputs``) gives a working component without training; one without gets a new head.

Training uses the reference recipe (transformers' ``run_qa.py``): each window of a question is
an input; its start/end positions are the pieces of the question's first gold answer when the
answer lies wholly inside the window, and the ``[CLS]`` piece otherwise (also for unanswerable
questions, as for SQuAD 2.0); the loss (``get_loss``) is the head's: per window the mean of
the start and end cross-entropies, averaged over the windows (each window's softmax covers its
own positions: there is no padding, where the reference's covers the padding of its batch
too). ``update`` is thinc's: one forward pass over the batch's windows, backprop into the
encoder, the optimizer's step in ``finish_update``. spaCy's ``drop`` (``[training] dropout``)
sets the head's dropout layer before ``qa_outputs``; the encoder's dropout is its configured
``hidden_dropout_prob`` / ``attention_probs_dropout_prob``. ``max_batch_windows`` is the number
of windows per forward pass at prediction.

Scores (``qa_exact``, ``qa_f1``, between 0 and 1): the official SQuAD v2.0 exact match and F1
of each question's best answer (rank 0 in the predicted doc's ``doc._.qa_answers``; "" when
there is none), max over its gold answers, averaged over the questions. Questions are matched
by their text.

Corpora: spaCy's ``spacy.Corpus.v1`` gives Examples whose predicted docs are bare text, so
evaluation during ``spacy train`` would see no questions; ``spacy-albert.QACorpus.v1`` (same
``.spacy`` files) copies ``doc._.questions`` onto the predicted docs.
"""

from .component import DEFAULT_QA_MODEL, AlbertQuestionAnswering, QAScores, answer_spans, make_albert_qa, qa_inputs
from .corpus import QACorpus, create_qa_corpus
from .decoding import decode_answers, decode_spans, select_starts_ends
from .extensions import ANSWERS_EXT, QUESTIONS_EXT, Answer, get_questions, register_extensions
from .metrics import exact_score, f1_score, gold_answers, make_qa_scorer, normalize_answer, score_qa
from .windows import (
    Encoded,
    QASettings,
    Window,
    make_qa_windows,
    target_positions,
    window_ranges,
)

__all__ = [
    "ANSWERS_EXT",
    "DEFAULT_QA_MODEL",
    "QUESTIONS_EXT",
    "AlbertQuestionAnswering",
    "Answer",
    "Encoded",
    "QACorpus",
    "QAScores",
    "QASettings",
    "Window",
    "answer_spans",
    "create_qa_corpus",
    "decode_answers",
    "decode_spans",
    "exact_score",
    "f1_score",
    "get_questions",
    "gold_answers",
    "make_albert_qa",
    "make_qa_scorer",
    "make_qa_windows",
    "normalize_answer",
    "qa_inputs",
    "register_extensions",
    "score_qa",
    "select_starts_ends",
    "target_positions",
    "window_ranges",
]
