"""Write a small generated English-like corpus for pretraining: train and dev text files.

Documents are short stories separated by blank lines; each paragraph has several sentences.
The text is generated from templates with a fixed seed, and has structure a small model can
learn from a few thousand examples:

- agreement: a person's pronouns follow their name's gender ("Mary ... she ... her", also
  with two people in one sentence: "Mary thanked John because he had helped her"),
  verbs agree in number with their subject ("the dog runs" / "the dogs run"), "a"/"an" agree
  with the next word, and tense agrees with the time adverb ("yesterday ... walked",
  "tomorrow ... will walk");
- lexical classes: animals eat animal food, cooks cook in kitchens, and so on;
- order: the sentences of a story follow each other ("First", "Then", "After that",
  "Later", "Finally"; morning before noon before evening), so sentence-order prediction
  (SOP) is learnable too.

    python scripts/make_sample.py OUTPUT_DIR [--n-train 160] [--n-dev 24] [--seed 0]

writes OUTPUT_DIR/train.txt and OUTPUT_DIR/dev.txt (UTF-8, about 100 KB in all by default).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import List

NAMES = {
    "f": ["Mary", "Anna", "Laura", "Emma", "Sofia", "Clara", "Julia", "Nora", "Alice", "Helen", "Grace", "Ruth",
          "Irene", "Martha", "Olivia", "Rachel", "Sarah", "Lucy", "Diana", "Eva"],
    "m": ["John", "Peter", "David", "Paul", "Mark", "Tom", "James", "Oscar", "Henry", "Adam", "Victor", "Hugo",
          "George", "Samuel", "Daniel", "Robert", "Arthur", "Felix", "Leo", "Simon"],
}
PRONOUNS = {"f": ("she", "her", "her"), "m": ("he", "him", "his")}  # subject, object, possessive
JOBS = [  # job, place of work, object of the work verb, the work verb (3rd singular, past, base)
    ("teacher", "school", "the children", ("teaches", "taught", "teach")),
    ("baker", "bakery", "fresh bread", ("bakes", "baked", "bake")),
    ("cook", "kitchen", "a large dinner", ("cooks", "cooked", "cook")),
    ("doctor", "hospital", "the patients", ("helps", "helped", "help")),
    ("farmer", "farm", "the fields", ("plows", "plowed", "plow")),
    ("painter", "studio", "a portrait", ("paints", "painted", "paint")),
    ("writer", "library", "a long letter", ("writes", "wrote", "write")),
    ("engineer", "office", "a new bridge", ("designs", "designed", "design")),
    ("artist", "gallery", "an old statue", ("cleans", "cleaned", "clean")),
    ("officer", "station", "the old town", ("guards", "guarded", "guard")),
]
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Madrid", "Vienna", "Dublin", "Prague", "Athens", "Rome", "Warsaw",
          "Geneva", "Munich", "Naples", "Seville", "Bergen", "Krakow", "Porto", "Lyon", "Zagreb"]
ANIMALS = [  # singular, plural, food
    ("dog", "dogs", "meat"), ("cat", "cats", "fish"), ("horse", "horses", "hay"), ("cow", "cows", "grass"),
    ("bird", "birds", "seeds"), ("rabbit", "rabbits", "carrots"), ("goat", "goats", "leaves"),
    ("owl", "owls", "mice"), ("eagle", "eagles", "fish"), ("elephant", "elephants", "fruit"),
]
ANIMAL_VERBS = [("runs", "run"), ("sleeps", "sleep"), ("plays", "play"), ("waits", "wait"), ("rests", "rest")]
ADJECTIVES = ["old", "young", "small", "big", "quiet", "happy", "angry", "elegant", "eager", "tired", "orange", "ugly"]
PLACES = ["near the river", "in the garden", "behind the house", "under the tree", "on the hill", "by the lake"]
WEATHER = ["sunny", "cold", "rainy", "windy", "warm", "cloudy"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["In the morning", "At noon", "In the afternoon", "In the evening", "At night"]
CONNECTIVES = ["First", "Then", "After that", "Later", "Finally"]
NOUNS = """
time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business
issue side kind head house service friend father power hour game line end member law car city
community name president team minute idea kid body information back parent face level office
door health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy music market sense nation plan college interest death
experience effect class control care field development role effort rate heart drug show leader
light voice wife police mind price report decision son view relationship town road arm difference
value building action model season society tax director position player record paper space ground
form event official matter center couple site project activity star table need court oil situation
cost industry figure street image phone data picture practice piece land product doctor wall
patient worker news test movie north love support technology step baby computer type attention film
tree source organization hair window evidence population truth song river garden bridge island
forest valley mountain ocean desert village harbor castle tower museum library kitchen bakery
theater stadium airport station hotel bottle basket candle mirror blanket ladder pencil camera
guitar piano violin drum bicycle engine rocket planet comet storm cloud thunder rainbow winter
summer autumn spring
""".split()
MOVES = [("walks", "walked", "walk"), ("drives", "drove", "drive"), ("travels", "traveled", "travel")]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def capitalize(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


class Story:
    """One document: a person, their job and city, an animal, told in order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.gender = rng.choice("fm")
        self.name = rng.choice(NAMES[self.gender])
        self.subj, self.obj, self.poss = PRONOUNS[self.gender]
        self.job, self.workplace, self.work_object, self.work_verb = rng.choice(JOBS)
        self.city, self.other_city = rng.sample(CITIES, 2)
        self.animal, self.animals, self.food = rng.choice(ANIMALS)
        self.adjective = rng.choice(ADJECTIVES)

    def introduction(self) -> List[str]:
        adjective = self.adjective
        return [
            f"{self.name} is {article(adjective)} {adjective} {self.job} who lives in {self.city}.",
            f"Every day {self.subj} {self.work_verb[0]} {self.work_object} at the {self.workplace}.",
            f"{capitalize(self.poss)} {self.animal} {self.rng.choice(ANIMAL_VERBS)[0]} {self.rng.choice(PLACES)}.",
        ]

    def day(self) -> List[str]:
        """A day told in order: time adverbs and connectives both carry the order."""
        rng = self.rng
        tense = rng.choice(["past", "present", "future"])
        lead = {"past": "Yesterday", "present": "Today", "future": "Tomorrow"}[tense]
        weather = rng.choice(WEATHER)
        be = {"past": "was", "present": "is", "future": "will be"}[tense]
        sentences = [f"{lead} the weather {be} {weather} in {self.city}."]

        def verb(forms: tuple) -> str:
            return {"past": forms[1], "present": forms[0], "future": "will " + forms[2]}[tense]

        steps = [
            f"{self.subj} {verb(MOVES[rng.randrange(3)])} to the {self.workplace}",
            f"{self.subj} {verb(self.work_verb)} {self.work_object}",
            f"{self.subj} {verb(('feeds', 'fed', 'feed'))} {self.food} to {self.poss} {self.animal}",
            f"{self.subj} {verb(('calls', 'called', 'call'))} a friend in {self.other_city}",
            f"{self.subj} {verb(('reads', 'read', 'read'))} {article(self.adjective)} {self.adjective} book",
        ]
        n = rng.randint(3, 5)
        chosen = sorted(rng.sample(range(len(steps)), n))
        use_times = rng.random() < 0.5
        for k, i in enumerate(chosen):
            opener = TIMES[min(k + (len(TIMES) - n), len(TIMES) - 1)] if use_times else CONNECTIVES[k if k < n - 1 else 4]
            sentences.append(f"{opener}, {steps[i]}.")
        return sentences

    def animals_paragraph(self) -> List[str]:
        rng = self.rng
        sentences = []
        for _ in range(rng.randint(2, 4)):
            singular, plural, food = rng.choice(ANIMALS)
            adjective = rng.choice(ADJECTIVES)
            verb_s, verb_p = rng.choice(ANIMAL_VERBS)
            if rng.random() < 0.5:
                sentences.append(f"The {adjective} {singular} {verb_s} {rng.choice(PLACES)} and eats {food}.")
            else:
                count = rng.choice(["Two", "Three", "Many", "Some", "Five"])
                sentences.append(f"{count} {adjective} {plural} {verb_p} {rng.choice(PLACES)} and eat {food}.")
        sentences.append(f"{self.name} likes {article(self.adjective)} {self.adjective} {self.animal} best.")
        return sentences

    def conversation(self) -> List[str]:
        """Two people: each pronoun agrees with the gender of the person it refers to."""
        rng = self.rng
        gender = rng.choice("fm")
        friend = rng.choice([n for n in NAMES[gender] if n != self.name])
        subj, obj, poss = PRONOUNS[gender]
        first, second = rng.sample(NOUNS, 2)
        adjective = rng.choice(ADJECTIVES)
        return [
            f"{self.name} met {friend} in {self.other_city} to talk about the {first}.",
            f"{friend} said that {poss} {second} was {article(adjective)} {adjective} {second}.",
            f"{self.name} thanked {friend} because {subj} had helped {self.obj} with the {first}.",
            f"Then {friend} gave {self.obj} {article(self.adjective)} {self.adjective} {rng.choice(NOUNS)}.",
        ]

    def week(self) -> List[str]:
        rng = self.rng
        start = rng.randrange(3)
        sentences = []
        for day in DAYS[start : start + rng.randint(3, 4)]:
            place = rng.choice(["the market", "the park", "the museum", "the station", "the beach"])
            sentences.append(f"On {day} {self.name} went to {place} with {self.poss} {self.animal}.")
        sentences.append(f"At the end of the week {self.subj} was tired but happy.")
        return sentences

    def paragraphs(self) -> List[List[str]]:
        rng = self.rng
        parts = [self.introduction() + self.day()]
        extra = [self.animals_paragraph, self.week, self.conversation]
        rng.shuffle(extra)
        for make in extra[: rng.randint(1, 2)]:
            parts.append(make())
        return [[capitalize(s) for s in part] for part in parts]


def make_documents(n: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    documents = []
    for _ in range(n):
        story = Story(rng)
        # one paragraph per line (several sentences each), a blank line between documents
        documents.append("\n".join(" ".join(paragraph) for paragraph in story.paragraphs()))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=160)
    parser.add_argument("--n-dev", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", args.n_train, args.seed), ("dev", args.n_dev, args.seed + 1)):
        path = args.output_dir / f"{name}.txt"
        documents = make_documents(n, seed)
        path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
        print(f"Wrote {len(documents)} documents ({path.stat().st_size / 1000:.1f} KB) to {path}")


if __name__ == "__main__":
    main()
