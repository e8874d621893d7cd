"""ALBERT pretraining from raw text: documents → SOP instances → n-gram-masked batches →
MLM + SOP training (LAMB/AdamW, warm-up and decay, accumulation, mixed precision,
torch.distributed), with checkpoints that resume exactly. See `trainer.PretrainingSettings`."""

from .trainer import PretrainingSettings, evaluate_checkpoint, pretrain

__all__ = ["PretrainingSettings", "pretrain", "evaluate_checkpoint"]
