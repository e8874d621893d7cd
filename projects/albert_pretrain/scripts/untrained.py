"""Save a randomly initialised ALBERT with the same config and vocabulary as CHECKPOINT.

Evaluating it next to the pretrained model gives the baseline that pretraining should beat
(an untrained model's masked-LM accuracy is about 1 / vocab_size, its SOP accuracy about 50%).

    python scripts/untrained.py CHECKPOINT OUTPUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from spacy_albert import AlbertConfig, AlbertForPreTraining

    config = AlbertConfig.from_pretrained(args.checkpoint)
    torch.manual_seed(args.seed)
    model = AlbertForPreTraining(config)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    for name in TOKENIZER_FILES:
        if (args.checkpoint / name).exists():
            shutil.copy(args.checkpoint / name, args.output_dir / name)
    print(f"Saved an untrained {config.num_hidden_layers}-layer ALBERT (hidden {config.hidden_size}) to {args.output_dir}")


if __name__ == "__main__":
    main()
