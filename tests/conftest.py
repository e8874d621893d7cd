"""Shared fixtures: a small generated corpus and SentencePiece models trained on it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run (a failure there is reproducible); a local run draws
# new ones and more of them: HYPOTHESIS_PROFILE=wide python -m pytest tests/test_alignment.py
settings.register_profile("ci", max_examples=150, derandomize=True, print_blob=True)
settings.register_profile("wide", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_WORDS = """
the of and to in is was for on that with as by at from his her they this have are not but had which
one were all their when there been has would more will who out some can about into them time only
other new could these two may first then any like than its now over such our man me even most made
after also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year off come
since against go came right used take three states himself few house use during without again place
around however home small found thought went say part once general high upon school every does got
united left number course war until always away something fact though water less public put think
almost hand enough far took head yet government system better set told nothing night end why called
find look asked later knew point next program city business give group toward young days let room
president side social given present several order national possible rather second face per among form
important often things early white case become large big need four within felt along children saw
best church ever least power development light thing seemed family interest want members mind country
area others done turned although open service certain kind problem began different door thus help
sense means whole matter perhaps itself times law human line above name example action company hands
local show whether five history gave today either act feet across taken past quite anything seen
having death experience body word half really week field car words already themselves information
tell together college shall money period held keep sure probably free seems political real behind
cannot miss question air office making brought whose special heard major problems ago became federal
moment study available known result street economic boy position reason change south board job
society areas west close turn love community true court force full seem policy wife future age voice
center woman control common necessary following front sometimes six girl clear further land run
students provide feel party able mother music education university child effect level stood military
town short morning total outside rate figure class art century north usually plan leave therefore
evidence million sound black strong hard various says believe type value play surface soon mean near
table lines modern road tax personal process situation alone gone idea increase nor private thinking
""".split()
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast unit tests first, end-to-end (`slow`) tests after."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


_SUFFIXES = ["", "", "", "", "s", "ing", "ed", "ly", "ness", "tion", "er", "able"]
_EXTRAS = [
    "café", "naïve", "résumé", "Zürich", "São Paulo", "Ångström", "jalapeño", "façade", "Ünïcödé",
    "東京", "北京大学", "日本語のテキスト", "한국어", "Привет мир", "Ελληνικά", "ΟΔΟΣ",
    "3.14", "42", "2,5", "$1,234.56", "``quoted''", '"double"', "'single'", "😀", "👍🏽", "🎉",
    "it's", "don't", "U.S.A.", "e-mail", "(parens)", "[brackets]", "ﬁne", "Ｆｕｌｌ", "½",
]


def make_corpus(n_lines: int = 700, seed: int = 0) -> list[str]:
    """Varied English-like lines with accents, CJK, emoji, quotes and comma-grouped numbers."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) + rng.choice(_SUFFIXES) for _ in range(rng.randint(4, 14))]
        for _ in range(rng.randint(0, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(_EXTRAS))
        if rng.random() < 0.35:
            number = rng.choice([rng.randint(1, 99), rng.randint(1_000, 99_999), rng.randint(10**6, 10**8)])
            words.insert(rng.randint(0, len(words)), f"{number:,}")
        if rng.random() < 0.25:
            listing = f"{rng.randint(1, 20)}, {rng.randint(1, 20)}, {rng.randint(1900, 2030)},"
            words.insert(rng.randint(0, len(words)), listing)
        line = " ".join(words)
        line = line.capitalize() if rng.random() < 0.5 else line
        lines.append(line + rng.choice([".", "!", "?", ",", ""]))
    return lines


@pytest.fixture(scope="session")
def corpus_lines() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory, corpus_lines: list[str]) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory: pytest.TempPathFactory, corpus_lines: list[str]) -> Path:
    """A directory holding a lower-cased ALBERT-style ``spiece.model`` (vocab 800)."""
    from spacy_albert.tokenization.training import train_sentencepiece

    directory = tmp_path_factory.mktemp("spm_uncased")
    train_sentencepiece(corpus_lines, directory, vocab_size=800, do_lower_case=True)
    return directory


@pytest.fixture(scope="session")
def spm_dir_cased(tmp_path_factory: pytest.TempPathFactory, corpus_lines: list[str]) -> Path:
    """A cased, accent-keeping variant of `spm_dir` (vocab 900)."""
    from spacy_albert.tokenization.training import train_sentencepiece

    directory = tmp_path_factory.mktemp("spm_cased")
    train_sentencepiece(corpus_lines, directory, vocab_size=900, do_lower_case=False, keep_accents=True)
    return directory


TINY_ALBERT = dict(
    embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=1, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=64,
)  # fmt: skip


def make_checkpoint(directory: Path, spm_dir: Path, sizes: dict) -> Path:
    """A random-init (seed 0) Hugging Face `AlbertModel` checkpoint of these sizes, saved by
    transformers, with `spm_dir`'s vocabulary."""
    import shutil

    import torch
    import transformers

    from spacy_albert import AlbertTokenizerFast

    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    transformers.AlbertModel(transformers.AlbertConfig(vocab_size=vocab_size, **sizes)).save_pretrained(directory)
    shutil.copy(spm_dir / "spiece.model", directory / "spiece.model")
    return directory


@pytest.fixture(scope="session")
def albert_checkpoint(tmp_path_factory: pytest.TempPathFactory, spm_dir: Path) -> Path:
    """A random-init Hugging Face ALBERT checkpoint (saved by transformers) with `spm_dir`'s
    vocabulary; max_position_embeddings=64 so that long docs need many windows."""
    return make_checkpoint(tmp_path_factory.mktemp("albert_checkpoint"), spm_dir, TINY_ALBERT)


def first_piece_logits(model, tokenizer, doc):
    """A transformers token-classification model's logits at the first piece of each spaCy
    token: the first piece with text in it, or the bare "▁" split off before that piece
    (the reference's word_ids() put it first)."""
    import numpy as np
    import torch

    enc = tokenizer(doc.text, return_offsets_mapping=True)
    with torch.no_grad():
        logits = model(torch.tensor([enc["input_ids"]])).logits[0].numpy()
    pieces, rows = enc.tokens(), []
    for token in doc:
        for i, (a, b) in enumerate(enc["offset_mapping"]):
            if b > token.idx and a < token.idx + len(token) and doc.text[a:b].strip():
                rows.append(logits[i - 1 if pieces[i - 1] == "▁" else i])
                break
    return np.stack(rows)
