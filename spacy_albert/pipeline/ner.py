"""`albert_ner`: named entities from an ALBERT token-classification head.

Each spaCy token is classified from its first piece (as `AlbertForTokenClassification` is
trained), into BILUO (default) or BIO tags; decoding is a constrained Viterbi search, so the
entities written to `doc.ents` (and optionally `doc.spans[spans_key]`) are always valid and
never overlap. As with spaCy's `ner`, no entity starts on a whitespace token (spaces, line
breaks); nor does one end on it or consist of whitespace only: a whitespace token is O, or
inside an entity that goes on past it ("New  York"). Gold entities are trimmed to fit. A
checkpoint with a fine-tuned token-classification head (`id2label`) gives a
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
from thinc.api import CategoricalCrossentropy, Config, Model, Ops
from thinc.types import Floats2d

from ..errors import AlbertError
from ..models.modeling_albert import AlbertForTokenClassification
from ..training.distributed import global_count
from .encoder_heads import HeadUpdateMixin, export_checkpoint, find_encoder, linear_tensors, load_encoder, read_head, set_linear
from .serialization import PipeSerialization, claim_encoders
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


@lru_cache(maxsize=16)
def _cached_space_masks(tags: tuple[str, ...], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return whitespace_masks(list(tags), scheme)


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


def whitespace_masks(tags: List[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a whitespace token may be: (the tags allowed on it, allowed[its tag, next tag],
    the tags a doc may end with on it).

    No entity starts, ends or lies wholly on whitespace: a whitespace token is O, or I inside
    an entity that goes on past it. spaCy's `ner` forbids B and U on whitespace (its I may
    cover inner whitespace, as in "New  York"); L on whitespace is forbidden here too, and in
    BIO an I on whitespace must be followed by another I of its entity."""
    allowed, _, _ = transition_masks(tags, scheme)
    kind = [t.split("-", 1)[0] for t in tags]
    label = [t.split("-", 1)[1] if "-" in t else None for t in tags]
    is_out = np.array([k == "O" for k in kind])
    is_in = np.array([k == "I" for k in kind])
    after = allowed.copy()
    if scheme == "BIO":  # (BILUO's I has to go on anyway)
        for p in np.flatnonzero(is_in):
            after[p] = is_in & np.array([lab == label[p] for lab in label])
    return is_out | is_in, after, is_out


def _check_space(space: Optional[np.ndarray], space_masks: Optional[tuple], n_tokens: int) -> Optional[np.ndarray]:
    if space is None:
        return None
    space = np.asarray(space, dtype=bool)
    if space.shape != (n_tokens,):
        raise ValueError(f"space has shape {space.shape}, expected ({n_tokens},): one flag per token.")
    if space_masks is None:
        raise ValueError("Give space_masks = whitespace_masks(tags, scheme) with space.")
    return space if space.any() else None


def viterbi(
    log_probs: np.ndarray,
    allowed: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    space: Optional[np.ndarray] = None,
    space_masks: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
) -> List[int]:
    """The best tag sequence under the transition constraints; with `space` (a flag per
    token: whitespace or not) and `space_masks` (`whitespace_masks`), also under the
    whitespace constraints (so the best sequence without entities on whitespace)."""
    n_tokens = log_probs.shape[0]
    if n_tokens == 0:
        return []
    space = _check_space(space, space_masks, n_tokens)
    penalty = np.where(allowed, 0.0, -np.inf)
    if space is not None:
        space_tags, space_allowed, space_end = space_masks  # type: ignore[misc]
        log_probs = np.where(space[:, None] & ~space_tags[None], -np.inf, log_probs)
        space_penalty = np.where(space_allowed, 0.0, -np.inf)
        if space[-1]:
            end = end & space_end
    score = np.where(start, log_probs[0], -np.inf)
    back = np.zeros((n_tokens, log_probs.shape[1]), dtype="int64")
    for t in range(1, n_tokens):
        candidates = score[:, None] + (space_penalty if space is not None and space[t - 1] else penalty)
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[t]
    best = [int(np.argmax(np.where(end, score, -np.inf)))]
    for t in range(n_tokens - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return best[::-1]


def _is_valid(
    best: np.ndarray,
    allowed: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    space: Optional[np.ndarray],
    space_masks: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> bool:
    """Whether a (non-empty) tag sequence meets the constraints `viterbi` searches under."""
    if space is None:
        return bool(start[best[0]] and end[best[-1]] and allowed[best[:-1], best[1:]].all())
    space_tags, space_allowed, space_end = space_masks  # type: ignore[misc]
    transitions = np.where(space[:-1], space_allowed[best[:-1], best[1:]], allowed[best[:-1], best[1:]])
    return bool(
        start[best[0]]
        and end[best[-1]]
        and (not space[-1] or space_end[best[-1]])
        and space_tags[best[space]].all()
        and transitions.all()
    )


def decode_batch(
    log_probs: List[np.ndarray],
    allowed: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    spaces: Optional[List[Optional[np.ndarray]]] = None,
    space_masks: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
) -> List[np.ndarray]:
    """`viterbi` for many docs at once: the best valid tag ids of each doc (with `spaces`,
    each doc's whitespace flags, and `space_masks`, also without entities on whitespace).

    A doc whose per-token argmax is a valid sequence with a clear winner at every token
    (so the unique best path) takes it directly; the others run one Viterbi recursion
    together, over tokens, vectorised across docs."""
    results: List[Optional[np.ndarray]] = [None] * len(log_probs)
    checked = [
        _check_space(spaces[i] if spaces is not None else None, space_masks, len(lp)) for i, lp in enumerate(log_probs)
    ]
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
        if clear and _is_valid(best, allowed, start, end, checked[i], space_masks):
            results[i] = best
        else:
            pending.append(i)
    if pending:
        lengths = np.array([len(log_probs[i]) for i in pending])
        n_tags = allowed.shape[0]
        scores_in = np.zeros((len(pending), int(lengths.max()), n_tags))
        space_in = np.zeros(scores_in.shape[:2], dtype=bool)
        for row, i in enumerate(pending):
            scores_in[row, : lengths[row]] = log_probs[i]
            if checked[i] is not None:
                space_in[row, : lengths[row]] = checked[i]
        penalty = np.where(allowed, 0.0, -np.inf)
        doc_end = np.broadcast_to(end, (len(pending), n_tags))
        if space_in.any():
            space_tags, space_allowed, space_end = space_masks  # type: ignore[misc]
            scores_in = np.where(space_in[:, :, None] & ~space_tags, -np.inf, scores_in)
            space_penalty = np.where(space_allowed, 0.0, -np.inf)
            last_space = space_in[np.arange(len(pending)), lengths - 1]
            doc_end = np.where(last_space[:, None], end & space_end, end)
        score = np.where(start, scores_in[:, 0], -np.inf)
        back = np.zeros(scores_in.shape, dtype="int64")
        for t in range(1, scores_in.shape[1]):
            if space_in[:, t - 1].any():
                candidates = score[:, :, None] + np.where(space_in[:, t - 1, None, None], space_penalty, penalty)
            else:
                candidates = score[:, :, None] + penalty[None]
            back[:, t] = candidates.argmax(axis=1)
            active = (t < lengths)[:, None]
            score = np.where(active, candidates.max(axis=1) + scores_in[:, t], score)
        current = np.argmax(np.where(doc_end, score, -np.inf), axis=1)
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


def _trim_space_edges(gold: List[Optional[str]], space: np.ndarray) -> List[Optional[str]]:
    """BILUO gold tags (None or "-": missing) with each entity trimmed of whitespace tokens at
    its edges (they become O; an entity of whitespace only becomes all O), no gold (None) for
    whitespace inside an entity, and O for whitespace tokens without gold (see `_gold_ids`)."""
    gold = list(gold)
    i = 0
    while i < len(gold):
        tag = gold[i]
        if tag is None or len(tag) < 3 or tag[0] not in "BU":
            if space[i] and tag in (None, "-"):
                gold[i] = "O"
            i += 1
            continue
        label, j = tag[2:], i
        if tag[0] == "B":
            while j + 1 < len(gold) and gold[j + 1] in (f"I-{label}", f"L-{label}"):
                j += 1
                if gold[j][0] == "L":  # type: ignore[index]
                    break
        a, b = i, j + 1
        while a < b and space[a]:
            a += 1
        while b > a and space[b - 1]:
            b -= 1
        gold[i : j + 1] = ["O"] * (j + 1 - i)
        if b - a == 1:
            gold[a] = f"U-{label}"
        elif b > a:
            inner = [None if space[k] else f"I-{label}" for k in range(a + 1, b - 1)]
            gold[a:b] = [f"B-{label}", *inner, f"L-{label}"]
        i = j + 1
    return gold


def _space_flags(doc: Doc) -> np.ndarray:
    """Whether each token is whitespace only (spaCy's `is_space`)."""
    return doc.to_array("IS_SPACE").astype(bool) if len(doc) else np.zeros(0, dtype=bool)


def _batch_log_softmax(ops: Ops, scores: List[Floats2d]) -> List[np.ndarray]:
    """Each doc's log-softmax of its scores, computed on `ops` for the batch at once and
    brought to the host (where decoding runs) in one transfer."""
    scores = list(scores)
    if not scores:
        return []
    lengths = [int(doc_scores.shape[0]) for doc_scores in scores]
    flat = ops.asarray2f(ops.flatten(scores))
    xp = ops.xp
    if flat.shape[0]:
        flat = flat - flat.max(axis=-1, keepdims=True)
        flat = flat - xp.log(xp.exp(flat).sum(axis=-1, keepdims=True))
    return np.split(ops.to_numpy(flat), np.cumsum(lengths)[:-1])


class AlbertNER(PipeSerialization, HeadUpdateMixin, LengthSortedPipe, TrainablePipe):
    """Token classification over ALBERT pieces, decoded into valid entity spans."""

    config_cfg_keys = ("spans_key",)  # settings from the config, also at load

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
        claim_encoders(self.model, name)

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
        space_masks = _cached_space_masks(tags, scheme)
        log_probs = _batch_log_softmax(self.model.ops, scores)
        spaces = [_space_flags(doc) for doc in docs]
        for doc, best in zip(docs, decode_batch(log_probs, allowed, start, end, spaces, space_masks)):
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
        """Gold tag ids for the predicted tokens; -1 where the gold is missing.

        Whitespace tokens are never supervised towards an entity tag: outside a gold entity
        (missing gold included, as spaCy's `Example.get_aligned_ner` does) they are O; a gold
        entity is trimmed of whitespace tokens at its edges (which become O; an entity of
        whitespace only is dropped), as decoding never starts or ends one there; whitespace
        inside an entity ("New  York") gets no gold (-1): its only valid tag there is the
        entity's I, which its neighbours already decide."""
        index = self._tag_index if index is None else index
        predicted, reference = example.predicted, example.reference
        if len(predicted) == len(reference) and np.array_equal(predicted.to_array("ORTH"), reference.to_array("ORTH")):
            return self._gold_ids_same_tokens(reference, index)
        gold = _trim_space_edges(example.get_aligned_ner(), _space_flags(predicted))
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
        space = _space_flags(reference)
        ids[space] = index["O"]
        biluo = self.cfg["scheme"] == "BILUO"
        for ent in reference.ents:
            if f"B-{ent.label_}" not in index:
                raise self._unknown_label(ent.label_)
            a, b = ent.start, ent.end
            while a < b and space[a]:
                a += 1
            while b > a and space[b - 1]:
                b -= 1
            if a == b:
                continue  # whitespace only: O
            if b - a == 1:
                ids[a] = index[f"U-{ent.label_}" if biluo else f"B-{ent.label_}"]
                continue
            ids[a] = index[f"B-{ent.label_}"]
            ids[a + 1 : b] = np.where(space[a + 1 : b], -1, index[f"I-{ent.label_}"])
            if biluo:
                ids[b - 1] = index[f"L-{ent.label_}"]
        return ids

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> tuple[float, List[Floats2d]]:
        """Mean cross-entropy over tokens with a gold tag (the reference's loss). Whitespace
        tokens are only ever pushed towards O, never towards an entity tag (see `_gold_ids`).

        The gold is built once for the batch (one id array, -1 where missing) and the
        arithmetic runs on `model.ops` over the batch's scores joined together: thinc's
        `CategoricalCrossentropy` gives the gradient (softmax minus one-hot, none where the
        gold is missing), and the loss is -log of the gold tag's probability (floored at
        1e-12), both divided by the number of tokens with a gold tag."""
        validate_examples(examples, "AlbertNER.get_loss")
        examples, scores = list(examples), list(scores)
        if not scores:
            return 0.0, []
        ops, xp = self.model.ops, self.model.ops.xp
        index = self._tag_index
        gold = np.concatenate([self._gold_ids(eg, index) for eg in examples] or [np.zeros(0, "int64")])
        lengths = [int(doc_scores.shape[0]) for doc_scores in scores]
        if len(gold) != sum(lengths):
            raise ValueError(f"{self.name!r}: scores for {sum(lengths)} tokens, but the examples have {len(gold)}.")
        rows = np.flatnonzero(gold >= 0)
        n = max(1, global_count(len(rows)))  # the global batch's count under data-parallel training
        probs = ops.softmax(ops.asarray2f(ops.flatten(scores)), axis=-1)
        truths = ops.asarray1i(gold)
        d_scores = CategoricalCrossentropy(normalize=False, missing_value=-1).get_grad(probs, truths)
        d_scores /= n
        rows_d = ops.asarray1i(rows)
        picked = probs[rows_d, truths[rows_d]]
        loss = 0.0 - float(xp.log(xp.maximum(picked, 1e-12)).sum(dtype="float64")) / n
        return loss, ops.unflatten(d_scores, np.asarray(lengths, dtype="int32"))

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
