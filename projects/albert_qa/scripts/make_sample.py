"""Write a small generated question-answering corpus in the SQuAD JSON format (v2.0 style).

Each paragraph is a short generated biography; its questions ask for the birthplace, birth
year, field of study, university, company and so on, with exact ``answer_start`` offsets.
Some questions have no answer in their paragraph (``"is_impossible": true``, as in SQuAD 2.0).
Fixed seed, so the files are the same on every run.

    python scripts/make_sample.py OUTPUT_DIR [--n-train 120] [--n-dev 30] [--impossible 0.15] [--seed 0]

writes OUTPUT_DIR/train.json and OUTPUT_DIR/dev.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any, Dict, List, Tuple

FIRST = {"f": ["Maria", "Ada", "Lena", "Rosa", "Ines", "Marta", "Chloe", "Hannah", "Priya", "Mei"],
         "m": ["Oscar", "Felix", "Ivan", "Tomas", "Kenji", "Rahul", "Lucas", "Mateo", "Erik", "Omar"]}
LAST = ["Novak", "Alvarez", "Lindqvist", "Okoro", "Brennan", "Sato", "Moreau", "Kaplan", "Ferreira", "Weber",
        "Haddad", "Costa", "Fischer", "Ivanova", "Duarte"]
CITIES = ["Lisbon", "Krakow", "Nairobi", "Osaka", "Montreal", "Porto", "Bergen", "Seville", "Leipzig", "Mumbai",
          "Valparaiso", "Adelaide", "Tbilisi", "Ghent", "Cork"]
SUBJECTS = ["chemistry", "physics", "architecture", "economics", "mathematics", "medicine", "biology",
            "history", "law", "computer science", "music", "philosophy"]
UNIVERSITIES = ["the University of Vienna", "Uppsala University", "the Technical University of Delft",
                "McGill University", "the University of Bologna", "Kyoto University", "the Sorbonne",
                "Trinity College Dublin"]
JOBS = ["an engineer", "a teacher", "a journalist", "a surgeon", "a designer", "a researcher", "a lawyer"]
COMPANIES = ["Northwind Labs", "Bluefield Energy", "Quanta Systems", "Harbor Books", "Silverline Medical",
             "Greenleaf Foods", "Orbit Robotics", "Atlas Maps"]
PRONOUNS = {"f": ("She", "she", "her", "Her"), "m": ("He", "he", "his", "His")}


class Builder:
    """Builds a context sentence by sentence and records the character span of each fact."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: Dict[str, Tuple[str, int]] = {}

    def add(self, *parts: Tuple[str, str]) -> None:
        """`parts` are (text, fact name or "") pairs making one sentence."""
        if self.text:
            self.text += " "
        for part, fact in parts:
            if fact:
                self.spans[fact] = (part, len(self.text))
            self.text += part


def make_paragraph(rng: random.Random, index: int, prefix: str, p_impossible: float) -> Dict[str, Any]:
    gender = rng.choice("fm")
    first, last = rng.choice(FIRST[gender]), rng.choice(LAST)
    name = f"{first} {last}"
    He, he, his, His = PRONOUNS[gender]
    city, city2 = rng.sample(CITIES, 2)
    year = rng.randint(1890, 1990)
    year2 = year + rng.randint(22, 40)
    subject, university = rng.choice(SUBJECTS), rng.choice(UNIVERSITIES)
    job, company, years = rng.choice(JOBS), rng.choice(COMPANIES), rng.randint(2, 15)

    b = Builder()
    if rng.random() < 0.5:
        b.add((name, "name"), (" was born in ", ""), (city, "city"), (" in ", ""), (str(year), "year"), (".", ""))
    else:
        b.add(("Born in ", ""), (str(year), "year"), (" in ", ""), (city, "city"), (", ", ""), (name, "name"),
              (" grew up near the sea.", ""))
    b.add((He, ""), (" studied ", ""), (subject, "subject"), (" at ", ""), (university, "university"), (".", ""))
    b.add(("After graduating, ", ""), (he, ""), (" worked as ", ""), (job, "job"), (" for ", ""),
          (f"{years} years", "years"), (".", ""))
    b.add(("In ", ""), (str(year2), "year2"), (", ", ""), (he, ""), (" moved to ", ""), (city2, "city2"),
          (", where ", ""), (he, ""), (" founded ", ""), (company, "company"), (".", ""))
    if rng.random() < 0.5:
        b.add((His, ""), (" first book was about ", ""), (subject, ""), (" and sold well.", ""))

    questions = [
        (f"Where was {name} born?", "city"),
        (f"When was {name} born?", "year"),
        (f"What did {first} {last} study?", "subject"),
        (f"Where did {name} study?", "university"),
        (f"What did {name} work as after graduating?", "job"),
        (f"How long did {name} work as {job}?", "years"),
        (f"Which city did {name} move to in {year2}?", "city2"),
        (f"What company did {name} found?", "company"),
        (f"In which year did {name} move to {city2}?", "year2"),
    ]
    impossible = [
        f"When did {name} die?",
        f"Who was the brother of {name}?",
        f"What prize did {name} win?",
        f"Where did {name} open a second office?",
    ]
    qas = []
    for j, (question, fact) in enumerate(rng.sample(questions, 4)):
        text, start = b.spans[fact]
        assert b.text[start : start + len(text)] == text
        qas.append({"id": f"{prefix}-{index}-{j}", "question": question, "is_impossible": False,
                    "answers": [{"text": text, "answer_start": start}]})  # fmt: skip
    if rng.random() < min(1.0, 4 * p_impossible / max(1e-9, 1 - p_impossible)):  # `p_impossible` of all questions
        qas.append({"id": f"{prefix}-{index}-x", "question": rng.choice(impossible), "is_impossible": True,
                    "answers": [], "plausible_answers": []})  # fmt: skip
    return {"title": name, "paragraphs": [{"context": b.text, "qas": qas}]}


def write(path: Path, articles: List[Dict[str, Any]]) -> None:
    path.write_text(json.dumps({"version": "v2.0", "data": articles}, ensure_ascii=False) + "\n", encoding="utf-8")
    qas = [qa for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    n_impossible = sum(qa["is_impossible"] for qa in qas)
    print(f"Wrote {len(articles)} paragraphs, {len(qas)} questions ({n_impossible} impossible) to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=120)
    parser.add_argument("--n-dev", type=int, default=30)
    parser.add_argument("--impossible", type=float, default=0.15, help="Share of unanswerable questions (0: v1.1).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write(args.output_dir / "train.json", [make_paragraph(rng, i, "train", args.impossible) for i in range(args.n_train)])
    write(args.output_dir / "dev.json", [make_paragraph(rng, i, "dev", args.impossible) for i in range(args.n_dev)])


if __name__ == "__main__":
    main()
