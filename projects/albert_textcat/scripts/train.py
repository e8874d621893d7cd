"""`spacy train` with torch's CPU thread count pinned first.

    python scripts/train.py THREADS CONFIG [spacy train options ...]

Everything after THREADS goes to `spacy train` unchanged; THREADS 0 keeps torch's default (all
cores). torch sums in a different order on a different number of threads, and a few hundred
training steps turn those rounding differences into a different score, so the demo pins the
thread count to keep its figures independent of the number of cores (one thread is also the
fastest for the tiny demo model).
"""

from __future__ import annotations

import sys


def main() -> None:
    threads = int(sys.argv.pop(1))
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    from spacy.cli import setup_cli

    sys.argv.insert(1, "train")
    setup_cli()


if __name__ == "__main__":
    main()
