"""`albert_textcat`: document categories from ALBERT's [CLS] state, as
`AlbertForSequenceClassification` computes them (pooler, dropout, linear), either exclusive
(softmax, single-label) or multi-label (sigmoid), written to `doc.cats`.

A checkpoint with a fine-tuned sequence-classification head (`id2label`) gives a working
component without training; `export()` writes encoder + head back in that format.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import CategoricalCrossentropy, Config, Model
from thinc.types import Floats2d

from ..errors import AlbertError
from ..layers.heads import set_sequence_width
from ..models.modeling_albert import AlbertForSequenceClassification
from ..training.distributed import global_count
from .encoder_heads import HeadUpdateMixin, export_checkpoint, find_encoder, linear_tensors, load_encoder, read_head, set_linear
from .serialization import PipeSerialization, claim_encoders
from .sorted_pipe import LengthSortedPipe

DEFAULT_TEXTCAT_MODEL = """
[model]
@architectures = "spacy-albert.SequenceClassifier.v1"
nO = null
dropout = 0.1

[model.tok2vec]
@architectures = "spacy-albert.AlbertTransformer.v1"
"""


@registry.scorers("spacy-albert.textcat_scorer.v1")
def make_textcat_scorer() -> Callable:
    def score(examples: Iterable[Example], *, labels: List[str], exclusive: bool, threshold: float, **kwargs: Any):
        return Scorer.score_cats(
            examples, "cats", labels=labels, multi_label=not exclusive, threshold=threshold, **kwargs
        )

    return score


@Language.factory(
    "albert_textcat",
    assigns=["doc.cats"],
    default_config={"model": Config().from_str(DEFAULT_TEXTCAT_MODEL)["model"], "exclusive_classes": True, "threshold": 0.5,
                    "scorer": {"@scorers": "spacy-albert.textcat_scorer.v1"}},  # fmt: skip
    default_score_weights={"cats_score": 1.0, "cats_macro_f": None, "cats_macro_auc": None, "cats_micro_f": None,
                           "cats_f_per_type": None},  # fmt: skip
)
def make_albert_textcat(
    nlp: Language, name: str, model: Model, exclusive_classes: bool, threshold: float, scorer: Optional[Callable]
) -> "AlbertTextCategorizer":
    """Construct an ALBERT text categorizer."""
    return AlbertTextCategorizer(nlp.vocab, model, name, exclusive_classes=exclusive_classes,
                                 threshold=threshold, scorer=scorer)  # fmt: skip


class AlbertTextCategorizer(PipeSerialization, HeadUpdateMixin, LengthSortedPipe, TrainablePipe):
    """Sequence classification over the [CLS] state: softmax (exclusive) or sigmoid."""

    config_cfg_keys = ("threshold",)  # settings from the config, also at load

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "albert_textcat",
        *,
        exclusive_classes: bool = True,
        threshold: float = 0.5,
        scorer: Optional[Callable] = None,
    ) -> None:
        self.vocab, self.model, self.name, self.scorer = vocab, model, name, scorer
        self.cfg = {"labels": [], "exclusive_classes": exclusive_classes, "threshold": threshold}
        claim_encoders(self.model, name)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.cfg["labels"])

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"Invalid category {label!r}.")
        if label in self.cfg["labels"]:
            return 0
        if self.model.get_ref("classifier").has_param("W"):
            raise AlbertError(f"Cannot add category {label!r} to {self.name!r} after its classifier is initialised.")
        self.cfg["labels"].append(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
        checkpoint: Optional[str] = None,
    ) -> None:
        """Load the encoder checkpoint (own encoder), take its sequence-classification head
        and `id2label` if it has one, else the labels given or found in the examples."""
        validate_get_examples(get_examples, "AlbertTextCategorizer.initialize")
        checkpoint = load_encoder(self.model, checkpoint)
        head = self._checkpoint_head(checkpoint) if checkpoint else None
        if head is not None and "labels" in head:
            self.cfg["labels"] = list(head["labels"])
        else:
            found = labels or sorted({cat for eg in get_examples() for cat in eg.reference.cats})
            for label in found:
                self.add_label(label)
        if not self.cfg["labels"]:
            raise AlbertError(f"{self.name!r} has no categories: give labels=... or examples with cats.")
        if self.cfg["exclusive_classes"] and len(self.cfg["labels"]) < 2:
            raise AlbertError(f"{self.name!r} is exclusive (softmax) and needs at least two categories.")
        self.model.get_ref("classifier").set_dim("nO", len(self.cfg["labels"]), force=True)
        tok2vec = self.model.get_ref("tok2vec")
        if not tok2vec.has_dim("nO") and tok2vec.name == "albert_transformer":
            tok2vec.initialize()  # its own encoder, built from scratch: the config's width
        if not tok2vec.has_dim("nO"):
            raise AlbertError(
                f"{self.name!r} listens to a shared albert component that has not been initialised: put the "
                "albert component before it in the pipeline."
            )
        set_sequence_width(self.model, tok2vec.get_dim("nO"))
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs)
        if head is not None and "pooler.weight" in head:  # the pretrained pooler, as the reference loads it
            set_linear(self.model.get_ref("pooler"), head["pooler.weight"], head["pooler.bias"], "pooler")
        if head is not None and "labels" in head:
            set_linear(self.model.get_ref("classifier"), head["classifier.weight"], head["classifier.bias"], "classifier")

    def _checkpoint_head(self, checkpoint: str) -> Optional[dict[str, Any]]:
        """The checkpoint's pooler, and its classifier with labels if it has a fine-tuned one."""
        config, weights = read_head(checkpoint)
        head: dict[str, Any] = {}
        for name in ("albert.pooler.weight", "albert.pooler.bias", "pooler.weight", "pooler.bias"):
            if name in weights:
                head[name.replace("albert.", "")] = weights[name]
        weight, bias = weights.get("classifier.weight"), weights.get("classifier.bias")
        if weight is not None and bias is not None and weight.shape[0] == config.num_labels:
            head.update({"classifier.weight": weight, "classifier.bias": bias})
            head["labels"] = [config.id2label[i] for i in range(config.num_labels)]
        return head or None

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = list(docs)
        if not docs:
            return self.model.ops.alloc2f(0, len(self.labels))
        return self._probabilities(self.model.predict(docs))

    def _probabilities(self, logits: Floats2d) -> Floats2d:
        ops = self.model.ops
        if self.cfg["exclusive_classes"]:
            return ops.softmax(logits, axis=-1)
        return ops.sigmoid(logits)

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for doc, row in zip(docs, scores):
            for label, value in zip(self.labels, row):
                doc.cats[label] = float(value)

    def _gold(self, examples: List[Example]) -> tuple[np.ndarray, np.ndarray]:
        """Gold values [docs, labels] and a mask of the known ones (built on the host, from
        the docs, as one array for the batch)."""
        truths = np.zeros((len(examples), len(self.labels)), dtype="float32")
        known = np.zeros_like(truths, dtype=bool)
        for i, eg in enumerate(examples):
            unknown = set(eg.reference.cats) - set(self.labels)
            if unknown:
                raise AlbertError(f"{self.name!r} got categories {sorted(unknown)} that are not among {list(self.labels)}.")
            for j, label in enumerate(self.labels):
                if label in eg.reference.cats:
                    value = eg.reference.cats[label]
                    if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
                        raise AlbertError(
                            f"{self.name!r} got the value {value!r} for category {label!r}: gold values lie in [0, 1]."
                        )
                    truths[i, j] = value
                    known[i, j] = True
        return truths, known

    def get_loss(self, examples: Iterable[Example], logits: Floats2d) -> tuple[float, Floats2d]:
        """Cross-entropy (exclusive) or binary cross-entropy (multi-label), averaged as the
        reference does; unknown gold values are ignored.

        Exclusive: the mean over docs whose gold is complete and not all zero (normalised to
        sum to 1) of -sum(gold * log(max(p, 1e-12))). Multi-label: the mean over known values
        of the binary cross-entropy, each log floored at log(1e-12), computed from the logits
        (so that a confident logit gives no log(0)). The gradient with respect to the logits is
        (probabilities - gold) over the same rows or values, from thinc's
        `CategoricalCrossentropy`, divided by the same count. The gold is built on the host once
        per batch; the arithmetic runs on `model.ops`."""
        examples = list(examples)
        ops, xp = self.model.ops, self.model.ops.xp
        truths, known = self._gold(examples)
        logits = ops.asarray2f(logits)
        probs = self._probabilities(logits)
        if self.cfg["exclusive_classes"]:
            used = known.all(axis=1) & (truths.sum(axis=1) > 0)
            n = max(1, global_count(int(used.sum())))  # the global batch's count (data-parallel)
            gold = ops.asarray2f(truths / np.maximum(truths.sum(axis=1, keepdims=True), 1e-12))
            mask = ops.asarray2f(np.broadcast_to(used[:, None], truths.shape).astype("float32"))
            rows = ops.asarray1i(np.flatnonzero(used))
            log_probs = xp.log(xp.maximum(probs[rows], 1e-12))
            loss = 0.0 - float((gold[rows] * log_probs).sum(dtype="float64")) / n
        else:
            n = max(1, global_count(int(known.sum())))
            gold = ops.asarray2f(truths)
            mask = ops.asarray2f(known.astype("float32"))
            rows, cols = (ops.asarray1i(a) for a in np.nonzero(known))
            x, t = logits[rows, cols], gold[rows, cols]
            # log p = -softplus(-x), log (1 - p) = -softplus(x), each at least log(1e-12)
            floor = float(np.log(1e-12))
            tail = xp.log1p(xp.exp(-xp.abs(x)))
            log_p = xp.maximum(-(xp.maximum(-x, 0) + tail), floor)
            log_not_p = xp.maximum(-(xp.maximum(x, 0) + tail), floor)
            loss = 0.0 - float((t * log_p + (1 - t) * log_not_p).sum(dtype="float64")) / n
        d_logits = CategoricalCrossentropy(normalize=False).get_grad(probs, gold)
        d_logits *= mask
        d_logits /= n
        return loss, d_logits

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        validate_examples(examples, "AlbertTextCategorizer.score")
        kwargs.setdefault("threshold", self.cfg["threshold"])
        scorer = self.scorer or make_textcat_scorer()
        return scorer(examples, labels=list(self.labels), exclusive=self.cfg["exclusive_classes"], **kwargs)

    def export(self, directory: str | Path, nlp: Optional[Language] = None) -> Path:
        """Write encoder + head as an `AlbertForSequenceClassification` checkpoint."""
        encoder = find_encoder(self.model, nlp, self.name)
        pooler_w, pooler_b = linear_tensors(self.model.get_ref("pooler"))
        weight, bias = linear_tensors(self.model.get_ref("classifier"))
        labels = list(self.labels)
        problem = "single_label_classification" if self.cfg["exclusive_classes"] else "multi_label_classification"
        return export_checkpoint(
            encoder,
            AlbertForSequenceClassification,
            {"albert.pooler.weight": pooler_w, "albert.pooler.bias": pooler_b,
             "classifier.weight": weight, "classifier.bias": bias},  # fmt: skip
            directory,
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=problem,
        )
