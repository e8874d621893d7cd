"""Write a small generated sentiment corpus in the SST-2 TSV format (``sentence<TAB>label``,
with that header; label 1 = positive, 0 = negative).

Sentences come from templates with a fixed seed: positive and negative words, negation
("not good" is negative, "not bad" positive), contrast ("... , but ...": the second half
decides) and intensifiers, over a varied vocabulary of film words.

    python scripts/make_sample.py OUTPUT_DIR [--n-train 600] [--n-dev 150] [--seed 0]

writes OUTPUT_DIR/train.tsv and OUTPUT_DIR/dev.tsv.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import List, Tuple

POSITIVE = ["good", "great", "wonderful", "brilliant", "moving", "charming", "funny", "beautiful", "clever",
            "delightful", "gripping", "excellent", "touching", "fresh", "superb"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "clumsy", "tedious", "weak", "messy", "lifeless",
            "predictable", "painful", "silly", "shallow", "dreadful"]
SUBJECTS = ["the film", "this movie", "the story", "the plot", "the acting", "the script", "the ending",
            "the cast", "the soundtrack", "the director 's work", "the dialogue", "the photography"]
NOUNS = """
time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business
issue side kind head house service friend father power hour game line end member law car city
community name president team minute idea kid body information back parent face level office door
health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy music market sense nation plan college interest death
experience effect class control care field development role effort rate heart drug show leader
light voice wife police mind price report decision son view relationship town road arm difference
value building action model season society tax director position player record paper space ground
form event official matter center couple site project activity star table need court oil situation
cost industry figure street image phone data picture practice piece land product doctor wall
patient worker news test movie north love support technology step baby computer type attention film
tree source
""".split()
INTENSIFIERS = ["", "", "", "very ", "really ", "truly ", "quite ", "remarkably "]
POS_PHRASES = ["a joy to watch", "worth every minute", "the best film of the year", "a real pleasure",
               "an instant classic"]
NEG_PHRASES = ["a waste of time", "hard to sit through", "the worst film of the year", "a total mess",
               "a forgettable experience"]


def clause(rng: random.Random, positive: bool) -> str:
    """A clause with the given polarity: a plain adjective, or a negated one of the other side."""
    subject = rng.choice(SUBJECTS) if rng.random() < 0.6 else f"the {rng.choice(NOUNS)} scene"
    if rng.random() < 0.15:
        word = rng.choice(NEGATIVE if positive else POSITIVE)
        return f"{subject} is not {word}" if rng.random() < 0.5 else f"{subject} is n't {word} at all"
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    verb = rng.choice(["is", "was", "feels", "seems"])
    return f"{subject} {verb} {rng.choice(INTENSIFIERS)}{word}"


def make_example(rng: random.Random) -> Tuple[str, int]:
    label = rng.random() < 0.5
    kind = rng.random()
    if kind < 0.6:
        sentence = clause(rng, label)
    elif kind < 0.75:  # contrast: the clause after "but" decides
        sentence = f"{clause(rng, not label)} , but {clause(rng, label)}"
    elif kind < 0.9:
        sentence = f"{clause(rng, label)} and {clause(rng, label)}"
    else:
        sentence = rng.choice(POS_PHRASES if label else NEG_PHRASES)
        sentence = f"{rng.choice(SUBJECTS)} is {sentence}"
    return sentence + rng.choice(["", " .", " !"]), int(label)


def write(path: Path, examples: List[Tuple[str, int]]) -> None:
    lines = ["sentence\tlabel"] + [f"{sentence}\t{label}" for sentence, label in examples]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    n_pos = sum(label for _, label in examples)
    print(f"Wrote {len(examples)} sentences ({n_pos} positive) to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-dev", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write(args.output_dir / "train.tsv", [make_example(rng) for _ in range(args.n_train)])
    write(args.output_dir / "dev.tsv", [make_example(rng) for _ in range(args.n_dev)])


if __name__ == "__main__":
    main()
