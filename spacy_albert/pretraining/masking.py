"""ALBERT's masked-LM inputs: n-gram masking over whole words, then 80/10/10 replacement.

As in the paper (section 4.1) and the reference ``create_pretraining_data.py``: 15% of the
pieces are predicted; they are chosen as n-grams of whole words, with the n-gram length
``n`` drawn with probability proportional to ``1/n`` for ``n = 1..max_ngram`` (3); a word is
a piece starting with ``▁`` plus the pieces that continue it. Each chosen piece becomes
``[MASK]`` 80% of the time, a random piece 10% and stays itself 10%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

IGNORE_INDEX = -100
WORD_START = "▁"


@dataclass(frozen=True)
class MaskingSettings:
    """What the reference calls ``masked_lm_prob``, ``max_predictions_per_seq`` and ``ngram``."""

    mask_token_id: int
    vocab_size: int
    special_ids: Tuple[int, ...]
    mlm_probability: float = 0.15
    max_predictions: int = 20
    max_ngram: int = 3
    first_random_id: int = 5  # random replacements skip <pad> <unk> [CLS] [SEP] [MASK]

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        if self.max_ngram < 1 or self.max_predictions < 1:
            raise ValueError("max_ngram and max_predictions must be at least 1.")
        if self.first_random_id >= self.vocab_size:
            raise ValueError(f"The vocabulary ({self.vocab_size} pieces) has no ordinary pieces to sample.")


def ngram_probabilities(max_ngram: int) -> np.ndarray:
    """p(n) = (1/n) / sum_k (1/k), n = 1..max_ngram."""
    weights = 1.0 / np.arange(1, max_ngram + 1)
    return weights / weights.sum()


def word_groups(input_ids: Sequence[int], word_starts: np.ndarray, special: np.ndarray) -> List[List[int]]:
    """Positions grouped into words: a word starts at a ``▁`` piece (or after a special one)."""
    groups: List[List[int]] = []
    previous_special = True
    for position, piece in enumerate(input_ids):
        if special[piece]:
            previous_special = True
            continue
        if word_starts[piece] or previous_special or not groups:
            groups.append([position])
        else:
            groups[-1].append(position)
        previous_special = False
    return groups


def mask_ngrams(
    input_ids: Sequence[int],
    settings: MaskingSettings,
    word_starts: np.ndarray,
    special: np.ndarray,
    rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
    """Masked copy of `input_ids` and the labels (the original id where masked, else -100).

    `word_starts` and `special` are boolean lookups over the vocabulary.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    labels = np.full_like(ids, IGNORE_INDEX)
    groups = word_groups(ids.tolist(), word_starts, special)
    n_pieces = sum(len(g) for g in groups)
    if n_pieces == 0:
        return ids.copy(), labels
    budget = min(settings.max_predictions, max(1, int(round(n_pieces * settings.mlm_probability))))
    probabilities = ngram_probabilities(settings.max_ngram)
    covered = np.zeros(len(groups), dtype=bool)
    chosen: List[int] = []
    for start in rng.permutation(len(groups)):
        if len(chosen) >= budget:
            break
        n = int(rng.choice(settings.max_ngram, p=probabilities)) + 1
        # Shrink the n-gram until it fits the sequence, the budget and unmasked words.
        while n >= 1:
            words = range(start, min(start + n, len(groups)))
            positions = [p for w in words for p in groups[w]]
            if len(chosen) + len(positions) <= budget and not covered[list(words)].any():
                break
            n -= 1
        if n == 0:
            continue
        covered[list(words)] = True
        chosen.extend(positions)
    masked = ids.copy()
    if not chosen:
        return masked, labels
    positions = np.array(sorted(chosen))
    labels[positions] = ids[positions]
    choice = rng.random(len(positions))
    random_ids = rng.integers(settings.first_random_id, settings.vocab_size, len(positions))
    masked[positions] = np.where(
        choice < 0.8, settings.mask_token_id, np.where(choice < 0.9, random_ids, ids[positions])
    )
    return masked, labels
