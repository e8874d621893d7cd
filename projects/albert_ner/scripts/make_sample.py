"""Write a small generated NER corpus in the WNUT-17 / CoNLL two-column format, and raw text
from the same domain for the tiny pretraining.

One token and its BIO tag per line (tab-separated), a blank line between sentences; entity
types PERSON, LOC and ORG (multi-word names included) and sentences without entities. The
sentences come from templates with a fixed seed.

The raw text (`text.txt`: one sentence per line, a blank line between documents) plays the
part of the large unlabelled corpus a real ALBERT is pretrained on: more sentences than the
labelled data, written as running text (punctuation attached, `Alice's`), from which the
SentencePiece vocabulary learns whole-word pieces for the common words and names, as
albert-base-v2's vocabulary has them (`▁alice`, `▁paris`). Trained on the tokenized CoNLL
text alone, whose words are always followed by a space, SentencePiece keeps almost none of
them and splits most names into a bare `▁` and letters, so every name starts with the same
piece.

    python scripts/make_sample.py OUTPUT_DIR [--n-train 400] [--n-dev 100] [--n-text 4000] [--seed 0]

writes OUTPUT_DIR/train.conll, OUTPUT_DIR/dev.conll and OUTPUT_DIR/text.txt.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path
from typing import List, Tuple

FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Hugo", "Irene", "Jack", "Karen", "Liam",
         "Maria", "Noah", "Olivia", "Pedro", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Walter", "Yuki",
         "Zoe", "Ahmed", "Bianca", "Chen", "Dmitri", "Elif", "Fatima", "Gustav", "Hana", "Igor", "Jonas", "Kofi"]
LAST = ["Smith", "Garcia", "Miller", "Nguyen", "Kowalski", "Okafor", "Rossi", "Schmidt", "Tanaka", "Dubois"]
LOC = ["Paris", "Berlin", "London", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Toronto", "Madrid", "Boston",
       "New York", "San Francisco", "Rio de Janeiro", "Hong Kong", "Cape Town", "Buenos Aires", "Texas", "Kenya"]
ORG = ["Google", "Microsoft", "Acme Corp", "Globex", "Initech", "Umbrella Labs", "the United Nations", "Red Cross",
       "Tesla", "Nike", "Oxford University", "Stark Industries", "Wayne Enterprises", "BBC", "NASA"]
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
TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{PER} flew from {LOC} to {LOC} on Monday .",
    "yesterday {PER} met {PER} at the {ORG} office",
    "{ORG} opened a new store in {LOC} !",
    "the weather in {LOC} is amazing today",
    "i think {PER} is right about this",
    "{ORG} hired {PER} as a manager .",
    "{PER} and {PER} are moving to {LOC} next year",
    "just landed in {LOC} , so tired lol",
    "{PER} said {ORG} will announce the results tomorrow .",
    "congrats to {PER} on the new job at {ORG} !!",
    "traffic in {LOC} is terrible this morning",
    "{ORG} is looking for engineers in {LOC}",
    "watching the game with {PER} tonight",
    "{PER} from {ORG} gave a great talk",
    "anyone else going to {LOC} this summer ?",
    "this is so much fun",
    "can't wait for the weekend !",
    "my phone died again ...",
    "best coffee ever , no doubt",
    "{PER} posted a photo of the {NOUN} in {LOC}",
    "loving this {NOUN} so much",
    "who left the {NOUN} near the {NOUN} ?",
    "{ORG} says the {NOUN} will be ready in {LOC} soon",
    "the {NOUN} at {ORG} is broken again",
    # entities before punctuation and "'s", as running text has them
    "thanks , {PER} !",
    "happy birthday {PER} !!",
    "{PER} 's new {NOUN} is great",
    "dinner with {PER} and {PER} in {LOC} .",
    "the new {NOUN} from {ORG} is out , finally",
    "{ORG} 's office in {LOC} is closed today .",
    "we moved from {LOC} to {LOC} .",
    "so proud of {PER} , {PER} and {PER}",
    "{PER} , have you seen the {NOUN} ?",
    "greetings from {LOC} !",
    "shout out to {ORG} for the free {NOUN} .",
    "there is a new {NOUN} in {LOC}",
    "they say {ORG} will open an office in {LOC}",
    "{PER} called them from {LOC} , then left",
]
PLACEHOLDERS = {"{PER}": "PERSON", "{LOC}": "LOC", "{ORG}": "ORG"}

Sentence = List[Tuple[str, str]]


def entity(rng: random.Random, label: str) -> List[str]:
    if label == "PERSON":
        name = [rng.choice(FIRST)]
        return name + [rng.choice(LAST)] if rng.random() < 0.4 else name
    return (rng.choice(LOC) if label == "LOC" else rng.choice(ORG)).split()


def make_sentence(rng: random.Random) -> Sentence:
    tokens: Sentence = []
    for word in rng.choice(TEMPLATES).split():
        if word == "{NOUN}":
            word = rng.choice(NOUNS)
        label = PLACEHOLDERS.get(word)
        if label is None:
            tokens.append((word, "O"))
            continue
        words = entity(rng, label)
        if words[0] == "the":  # "the United Nations": the article stays outside the entity
            tokens.append(("the", "O"))
            words = words[1:]
        tokens.extend((w, ("B-" if i == 0 else "I-") + label) for i, w in enumerate(words))
    if rng.random() < 0.3:  # capitalise the first word now and then, as tweets do or don't
        word, tag = tokens[0]
        tokens[0] = (word[:1].upper() + word[1:], tag)
    return tokens


def running_text(sentence: Sentence) -> str:
    """The sentence as running text: no space before punctuation or "'s"."""
    return re.sub(r" ([.,!?]+|\.\.\.|'s)(?= |$)", r"\1", " ".join(word for word, _ in sentence))


def write(path: Path, sentences: List[Sentence]) -> None:
    blocks = ["\n".join(f"{word}\t{tag}" for word, tag in sentence) for sentence in sentences]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    n_ents = sum(tag.startswith("B-") for sentence in sentences for _, tag in sentence)
    print(f"Wrote {len(sentences)} sentences ({n_ents} entities) to {path}")


def write_text(path: Path, sentences: List[Sentence], doc_size: int = 10) -> None:
    lines = [running_text(sentence) for sentence in sentences]
    docs = ["\n".join(lines[i : i + doc_size]) for i in range(0, len(lines), doc_size)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    print(f"Wrote {len(lines)} sentences of raw text ({len(docs)} documents) to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-dev", type=int, default=100)
    parser.add_argument("--n-text", type=int, default=4000, help="Sentences of raw text for pretraining.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write(args.output_dir / "train.conll", [make_sentence(rng) for _ in range(args.n_train)])
    write(args.output_dir / "dev.conll", [make_sentence(rng) for _ in range(args.n_dev)])
    text_rng = random.Random(args.seed + 1)  # its own stream: --n-text leaves the labelled data alone
    write_text(args.output_dir / "text.txt", [make_sentence(text_rng) for _ in range(args.n_text)])


if __name__ == "__main__":
    main()
