"""spacy-albert: a native PyTorch ALBERT for spaCy.

The model classes and tokenizers carry the reference (Hugging Face) names. They are imported
lazily so that `import spacy_albert` (done by spaCy's entry points) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "AlbertConfig": "spacy_albert.models.configuration",
    "AlbertModel": "spacy_albert.models.modeling_albert",
    "AlbertPreTrainedModel": "spacy_albert.models.modeling_albert",
    "AlbertForPreTraining": "spacy_albert.models.modeling_albert",
    "AlbertForMaskedLM": "spacy_albert.models.modeling_albert",
    "AlbertForSequenceClassification": "spacy_albert.models.modeling_albert",
    "AlbertForMultipleChoice": "spacy_albert.models.modeling_albert",
    "AlbertForTokenClassification": "spacy_albert.models.modeling_albert",
    "AlbertForQuestionAnswering": "spacy_albert.models.modeling_albert",
    "AlbertTokenizer": "spacy_albert.tokenization.tokenization_albert",
    "AlbertTokenizerFast": "spacy_albert.tokenization.tokenization_albert_fast",
    "BatchEncoding": "spacy_albert.tokenization.base",
    "train_sentencepiece": "spacy_albert.tokenization.training",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spacy_albert' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
