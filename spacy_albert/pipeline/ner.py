"""`albert_ner`: named entities from an ALBERT token-classification head.

Each spaCy token is classified from its first piece (as `AlbertForTokenClassification` is
trained), into BILUO (default) or BIO tags; decoding is a constrained Viterbi search, so the
entities written to `doc.ents` (and optionally `doc.spans[spans_key]`) are always valid and
never overlap. A checkpoint with a fine-tuned token-classification head (`id2label`) gives a
working component without training, and `export()` writes encoder + head back in that format.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

from ..errors import AlbertError
from ..models.modeling_albert import AlbertForTokenClassification
from .encoder_heads import HeadUpdateMixin, export_checkpoint, find_encoder, linear_tensors, load_encoder, read_head, set_linear
from .sorted_pipe import LengthSortedPipe

SCHEMES = ("BILUO", "BIO")
DEFAULT_NER_MODEL = """
[model]
@architectures = "spacy-albert.TokenClassifier.v1"
nO = null
dropout = 0.1

[model.tok2vec]
@architectures = "spacy-albert.AlbertTok2Vec.v1"
pooling = "first"

[model.tok2vec.encoder]
@architectures = "spacy-albert.AlbertTransformer.v1"
"""


@Language.factory(
    "albert_ner",
    assigns=["doc.ents"],
    default_config={"model": Config().from_str(DEFAULT_NER_MODEL)["model"], "scheme": "BILUO", "spans_key": None,
                    "scorer": {"@scorers": "spacy.ner_scorer.v1"}},  # fmt: skip
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_albert_ner(
    nlp: Language, name: str, model: Model, scheme: str, spans_key: Optional[str], scorer: Optional[Callable]
) -> "AlbertNER":
    """Construct an ALBERT named entity recognizer."""
    return AlbertNER(nlp.vocab, model, name, scheme=scheme, spans_key=spans_key, scorer=scorer)


def tag_names(labels: Iterable[str], scheme: str) -> List[str]:
    prefixes = "BILU" if scheme == "BILUO" else "BI"
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


@lru_cache(maxsize=16)
def _cached_masks(tags: tuple[str, ...], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return transition_masks(list(tags), scheme)


def transition_masks(tags: List[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed[prev, next], allowed at start, allowed at the end) for valid tag sequences."""
    kind = [t.split("-", 1)[0] for t in tags]
    label = [t.split("-", 1)[1] if "-" in t else None for t in tags]
    n = len(tags)
    continuing = ("I", "L") if scheme == "BILUO" else ("I",)
    inside = np.array([k in continuing for k in kind])  # continues an open entity
    opens = np.array([k in ("B", "I") for k in kind])  # leaves an entity open
    allowed = np.zeros((n, n), dtype=bool)
    for p in range(n):
        for q in range(n):
            if scheme == "BILUO":
                allowed[p, q] = (label[q] == label[p] and inside[q]) if opens[p] else not inside[q]
            else:
                allowed[p, q] = (not inside[q]) or (opens[p] and label[p] == label[q])
    start = ~inside
    end = ~opens if scheme == "BILUO" else np.ones(n, dtype=bool)
    return allowed, start, end


def viterbi(log_probs: np.ndarray, allowed: np.ndarray, start: np.ndarray, end: np.ndarray) -> List[int]:
    """The best tag sequence under the transition constraints."""
    n_tokens = log_probs.shape[0]
    if n_tokens == 0:
        return []
    penalty = np.where(allowed, 0.0, -np.inf)
    score = np.where(start, log_probs[0], -np.inf)
    back = np.zeros((n_tokens, log_probs.shape[1]), dtype="int64")
    for t in range(1, n_tokens):
        candidates = score[:, None] + penalty
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[t]
    best = [int(np.argmax(np.where(end, score, -np.inf)))]
    for t in range(n_tokens - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return best[::-1]


def decode_batch(
    log_probs: List[np.ndarray], allowed: np.ndarray, start: np.ndarray, end: np.ndarray
) -> List[np.ndarray]:
    """`viterbi` for many docs at once: the best valid tag ids of each doc.

    A doc whose per-token argmax is a valid sequence with a clear winner at every token
    (so the unique best path) takes it directly; the others run one Viterbi recursion
    together, over tokens, vectorised across docs."""
    results: List[Optional[np.ndarray]] = [None] * len(log_probs)
    pending = []
    for i, lp in enumerate(log_probs):
        if len(lp) == 0:
            results[i] = np.zeros(0, dtype="int64")
            continue
        best = lp.argmax(axis=1)
        if lp.shape[1] > 1:
            top2 = np.partition(lp, -2, axis=1)[:, -2:]
            clear = bool((top2[:, 1] - top2[:, 0] > 1e-5).all())
        else:
            clear = True
        if clear and start[best[0]] and end[best[-1]] and allowed[best[:-1], best[1:]].all():
            results[i] = best
        else:
            pending.append(i)
    if pending:
        lengths = np.array([len(log_probs[i]) for i in pending])
        n_tags = allowed.shape[0]
        scores_in = np.zeros((len(pending), int(lengths.max()), n_tags))
        for row, i in enumerate(pending):
            scores_in[row, : lengths[row]] = log_probs[i]
        penalty = np.where(allowed, 0.0, -np.inf)
        score = np.where(start, scores_in[:, 0], -np.inf)
        back = np.zeros(scores_in.shape, dtype="int64")
        for t in range(1, scores_in.shape[1]):
            candidates = score[:, :, None] + penalty[None]
            back[:, t] = candidates.argmax(axis=1)
            active = (t < lengths)[:, None]
            score = np.where(active, candidates.max(axis=1) + scores_in[:, t], score)
        current = np.argmax(np.where(end, score, -np.inf), axis=1)
        paths = np.zeros((len(pending), scores_in.shape[1]), dtype="int64")
        rows = np.arange(len(pending))
        for t in range(scores_in.shape[1] - 1, -1, -1):
            inside = t < lengths
            paths[inside, t] = current[inside]
            if t:
                current = np.where(inside, back[rows, t, current], current)
        for row, i in enumerate(pending):
            results[i] = paths[row, : lengths[row]]
    return results  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _tag_kinds(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, List[str]]:
    """Each tag's kind ("O", "B", "I", "L", "U") as a char array, and its label index."""
    labels = sorted({t[2:] for t in tags if t != "O"})
    kinds = np.array([t[0] if t != "O" else "O" for t in tags])
    label_ids = np.array([labels.index(t[2:]) if t != "O" else -1 for t in tags])
    return kinds, label_ids, labels


def tag_spans(tag_ids: np.ndarray, tags: tuple[str, ...], scheme: str) -> List[tuple[int, int, str]]:
    """(start, end, label) of the entities of a valid tag sequence, without a per-token loop."""
    kinds, label_ids, labels = _tag_kinds(tags)
    kind = kinds[tag_ids]
    if scheme == "BILUO":
        starts = np.flatnonzero((kind == "B") | (kind == "U"))
        ends = np.flatnonzero((kind == "L") | (kind == "U")) + 1
    else:
        starts = np.flatnonzero(kind == "B")
        following = np.append(kind[1:], "O")
        ends = np.flatnonzero(((kind == "B") | (kind == "I")) & (following != "I")) + 1
    return [(int(a), int(b), labels[label_ids[tag_ids[a]]]) for a, b in zip(starts, ends)]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class AlbertNER(HeadUpdateMixin, LengthSortedPipe, TrainablePipe):
    """Token classification over ALBERT pieces, decoded into valid entity spans."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "albert_ner",
        *,
        scheme: str = "BILUO",
        spans_key: Optional[str] = None,
        scorer: Optional[Callable] = None,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r}; choose one of {SCHEMES}.")
        self.vocab, self.model, self.name = vocab, model, name
        self.scorer = scorer
        self.cfg = {"labels": [], "tags": [], "scheme": scheme, "spans_key": spans_key}

    # ---- labels ---------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def tags(self) -> List[str]:
        return list(self.cfg["tags"])

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"Invalid entity label {label!r}.")
        if label in self.cfg["labels"]:
            return 0
        if self.model.get_ref("classifier").has_param("W"):
            raise AlbertError(f"Cannot add label {label!r} to {self.name!r} after its classifier is initialised.")
        self.cfg["labels"].append(label)
        self.cfg["tags"] = tag_names(self.cfg["labels"], self.cfg["scheme"])
        return 1

    # ---- initialize -----------------------------------------------------------------------
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load the encoder checkpoint (the component's own encoder), take the checkpoint's
        token-classification head and `id2label` if it has one, else the labels given or
        found in the examples; then initialise the model."""
        validate_get_examples(get_examples, "AlbertNER.initialize")
        checkpoint = load_encoder(self.model, checkpoint)
        head = self._checkpoint_head(checkpoint) if checkpoint else None
        if head is not None:
            tags, weight, bias = head
            self._set_tags(tags)
        else:
            found = labels or sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
            for label in found:
                self.add_label(label)
        if not self.cfg["tags"]:
            raise AlbertError(f"{self.name!r} has no labels: give labels=... or examples with entities.")
        self.model.get_ref("classifier").set_dim("nO", len(self.cfg["tags"]), force=True)
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs)
        if head is not None:
            set_linear(self.model.get_ref("classifier"), weight, bias, "classifier")

    def _checkpoint_head(self, checkpoint: str) -> Optional[tuple[List[str], object, object]]:
        config, weights = read_head(checkpoint)
        weight, bias = weights.get("classifier.weight"), weights.get("classifier.bias")
        if weight is None or bias is None or weight.shape[0] != config.num_labels:
            return None
        tags = [config.id2label[i] for i in range(config.num_labels)]
        if not all(t == "O" or (len(t) > 2 and t[1] == "-" and t[0] in "BILU") for t in tags):
            return None  # not an entity tagger (e.g. LABEL_0, LABEL_1)
        return tags, weight, bias

    def _set_tags(self, tags: List[str]) -> None:
        scheme = "BILUO" if any(t[0] in "LU" for t in tags if t != "O") else "BIO"
        self.cfg["scheme"], self.cfg["tags"] = scheme, list(tags)
        self.cfg["labels"] = sorted({t[2:] for t in tags if t != "O"})

    # ---- prediction -----------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> List[Floats2d]:
        docs = list(docs)
        if not docs:
            return []
        return self.model.predict(docs)

    def set_annotations(self, docs: Iterable[Doc], scores: List[Floats2d]) -> None:
        docs = list(docs)
        tags, scheme = tuple(self.cfg["tags"]), self.cfg["scheme"]
        allowed, start, end = _cached_masks(tags, scheme)
        log_probs = [_log_softmax(self.model.ops.to_numpy(doc_scores)) for doc_scores in scores]
        for doc, best in zip(docs, decode_batch(log_probs, allowed, start, end)):
            spans = [Span(doc, a, b, label=label) for a, b, label in tag_spans(best, tags, scheme)]
            doc.ents = spans
            if self.cfg["spans_key"]:
                doc.spans[self.cfg["spans_key"]] = spans

    # ---- training -------------------------------------------------------------------------
    def _unknown_label(self, label: str) -> AlbertError:
        return AlbertError(
            f"{self.name!r} got the entity label {label!r}, which is not one of its labels "
            f"{list(self.labels)}: add it (add_label) before initialising, or re-initialise."
        )

    @property
    def _tag_index(self) -> Dict[str, int]:
        return {t: i for i, t in enumerate(self.cfg["tags"])}

    def _gold_ids(self, example: Example, index: Optional[Dict[str, int]] = None) -> np.ndarray:
        """Gold tag ids for the predicted tokens; -1 where the gold is missing."""
        index = self._tag_index if index is None else index
        predicted, reference = example.predicted, example.reference
        if len(predicted) == len(reference) and np.array_equal(predicted.to_array("ORTH"), reference.to_array("ORTH")):
            return self._gold_ids_same_tokens(reference, index)
        gold = example.get_aligned_ner()
        if self.cfg["scheme"] == "BIO":
            gold = [None if t in (None, "-") else t.replace("L-", "I-").replace("U-", "B-") for t in gold]
        ids = np.full(len(gold), -1, dtype="int64")
        for i, tag in enumerate(gold):
            if tag in (None, "-"):
                continue
            if tag not in index:
                raise self._unknown_label(tag[2:])
            ids[i] = index[tag]
        return ids

    def _gold_ids_same_tokens(self, reference: Doc, index: Optional[Dict[str, int]] = None) -> np.ndarray:
        """`_gold_ids` when the predicted tokens are the reference's (the usual case), without
        spaCy's token-by-token alignment."""
        index = self._tag_index if index is None else index
        ids = np.where(reference.to_array("ENT_IOB") == 0, -1, index["O"]).astype("int64")  # 0: missing
        biluo = self.cfg["scheme"] == "BILUO"
        for ent in reference.ents:
            if f"B-{ent.label_}" not in index:
                raise self._unknown_label(ent.label_)
            if len(ent) == 1:
                ids[ent.start] = index[f"U-{ent.label_}" if biluo else f"B-{ent.label_}"]
                continue
            ids[ent.start] = index[f"B-{ent.label_}"]
            ids[ent.start + 1 : ent.end] = index[f"I-{ent.label_}"]
            if biluo:
                ids[ent.end - 1] = index[f"L-{ent.label_}"]
        return ids

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> tuple[float, List[Floats2d]]:
        """Mean cross-entropy over tokens with a gold tag (the reference's loss)."""
        validate_examples(examples, "AlbertNER.get_loss")
        ops = self.model.ops
        index = self._tag_index
        gold = [self._gold_ids(eg, index) for eg in examples]
        n = max(1, sum(int((g >= 0).sum()) for g in gold))
        loss, grads = 0.0, []
        for doc_scores, ids in zip(scores, gold):
            probs = ops.softmax(doc_scores, axis=-1)
            d = ops.to_numpy(probs).copy()
            known = ids >= 0
            rows = np.flatnonzero(known)
            loss -= float(np.log(np.maximum(d[rows, ids[rows]], 1e-12)).sum())
            d[rows, ids[rows]] -= 1.0
            d[~known] = 0.0
            grads.append(ops.asarray2f(d / n))
        return loss / n, grads

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, object]:
        validate_examples(examples, "AlbertNER.score")
        scorer = self.scorer or (lambda egs, **kw: get_ner_prf(egs))
        return scorer(examples, **kwargs)

    # ---- export ---------------------------------------------------------------------------
    def export(self, directory: str | Path, nlp: Optional[Language] = None) -> Path:
        """Write encoder + head as an `AlbertForTokenClassification` checkpoint (exact with
        `pooling = "first"`, the reference's way of labelling words)."""
        encoder = find_encoder(self.model, nlp, self.name)
        weight, bias = linear_tensors(self.model.get_ref("classifier"))
        tags = self.cfg["tags"]
        return export_checkpoint(
            encoder,
            AlbertForTokenClassification,
            {"classifier.weight": weight, "classifier.bias": bias},
            directory,
            id2label=dict(enumerate(tags)),
            label2id={t: i for i, t in enumerate(tags)},
        )
