"""Fine-tuning any spaCy config, in one process (`spacy train`) or data-parallel under torchrun."""

from .distributed import DistributedTrainingError, global_count, train

__all__ = ["train", "global_count", "DistributedTrainingError"]
