"""spacy-transformers interoperability: `spacy-albert.TransformerModel.v1` against
spacy-transformers' own `TransformerModel.v3` on one random HF ALBERT checkpoint, its two
alignments, and `python -m spacy_albert migrate` of a trained spacy-transformers pipeline."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
import torch
from spacy.training import Example
from thinc.api import Adam, Config, fix_random_seed

from spacy_albert.errors import CorruptedFileError
from spacy_albert.interop.alignment import align_span, spacy_transformers_alignment
from spacy_albert.interop.migrate import MigrationError, migrate

spacy_transformers = pytest.importorskip("spacy_transformers")
from spacy_transformers.align import get_alignment_via_offset_mapping  # noqa: E402

from conftest import _WORDS  # noqa: E402

NLP = spacy.blank("en")
TRAP = "This is so much fun"
TRF = "spacy-transformers.TransformerModel.v3"
OURS = "spacy-albert.TransformerModel.v1"
CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer","ner"]

[components]

[components.transformer]
factory = "transformer"

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "CHECKPOINT"

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = WINDOW
stride = STRIDE

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
hidden_width = 16
maxout_pieces = 2
use_upper = false

[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0

[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def config_text(checkpoint: Path, arch: str = TRF, alignment: str | None = None, window: int = 6, stride: int = 4) -> str:
    text = CONFIG.replace("CHECKPOINT", str(checkpoint)).replace("WINDOW", str(window)).replace("STRIDE", str(stride))
    text = text.replace(TRF, arch)
    if alignment:
        text = text.replace('name = "', f'alignment = "{alignment}"\nname = "', 1)
    return text


def make_nlp(checkpoint: Path, **kwargs):
    nlp = spacy.util.load_model_from_config(Config().from_str(config_text(checkpoint, **kwargs)), auto_fill=True)
    return nlp


def examples_for(nlp, n: int, seed: int) -> list[Example]:
    """Lower-case word salads with one capitalised place name each, labelled LOC."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        i = rng.randrange(len(words))
        words[i] = rng.choice(["Paris", "London", "Berlin"])
        start = sum(len(w) + 1 for w in words[:i])
        doc = nlp.make_doc(" ".join(words))
        out.append(Example.from_dict(doc, {"entities": [(start, start + len(words[i]), "LOC")]}))
    return out


def texts_for_parity(corpus_lines: list[str]) -> list[str]:
    return [TRAP, "", "Hello world, again", "Paris", "(parens)", *corpus_lines[:10]]


def trf_data(nlp, texts):
    return [doc._.trf_data for doc in nlp.pipe(texts)]


def hidden(data):
    """A doc's real (unpadded) piece states [n_positions, width] from its TransformerData."""
    mask = np.asarray(data.wordpieces.attention_mask).astype(bool)
    return np.asarray(data.model_output.last_hidden_state)[mask]


def same_alignment(a, b) -> bool:
    return np.array_equal(a.align.lengths, b.align.lengths) and np.array_equal(a.align.dataXd, b.align.dataXd)


def listener_vectors(nlp, texts):
    """The token vectors the ner component's listener gives (TransformerListener or AlbertListener)."""
    from spacy_albert.layers.listener import AlbertListener

    docs = list(nlp.pipe(texts, disable=["ner"]))
    nodes = nlp.get_pipe("ner").model.walk()
    listener = next(n for n in nodes if isinstance(n, AlbertListener) or n.has_ref("listener"))
    return listener.predict(docs)


# -- alignment ------------------------------------------------------------------------------
def _spans(doc):
    starts = np.array([t.idx for t in doc], dtype="int64")
    return starts, starts + np.array([len(t) for t in doc], dtype="int64")


@pytest.fixture(scope="module")
def reference_tokenizer(spm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model"))


def test_the_metaspace_trap_ours_equals_word_ids_compat_equals_spacy_transformers(reference_tokenizer, corpus_lines):
    compared = 0
    for text in [TRAP, "Hello world, again", " two  spaces ", *corpus_lines[:40]]:
        doc = NLP(text)
        span = doc[:]
        enc = reference_tokenizer(span.text, return_offsets_mapping=True, add_special_tokens=False)
        offsets = np.asarray(enc["offset_mapping"], dtype="int64").reshape(-1, 2)
        starts, ends = _spans(span)
        starts, ends = starts - doc[0].idx, ends - doc[0].idx
        # ours: the pieces transformers' word_ids() give each word (pre-split on spaCy's tokens)
        ours = align_span("albert", span.text, offsets, starts, ends)
        words = [t.text for t in doc]
        split = reference_tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        if split.tokens() == enc.tokens():  # pre-splitting can change the pieces: compare where it does not
            expected = [[j for j, w in enumerate(split.word_ids()) if w == i] for i in range(len(words))]
            assert [ours.pieces_of(i).tolist() for i in range(len(words))] == expected, (text, enc.tokens())
            compared += 1
        # compat: spacy-transformers' own alignment, exactly
        compat = spacy_transformers_alignment(len(span.text), offsets, starts, ends)
        theirs = get_alignment_via_offset_mapping([span], offsets[None])
        assert np.array_equal(compat.lengths, theirs.lengths), text
        assert np.array_equal(compat.indices, theirs.dataXd), text
    assert compared >= 4  # the trap among them (tests/test_alignment.py checks word_ids() widely)


def test_this_is_so_much_fun(tmp_path, corpus_lines):
    """The Metaspace offset trap with a vocabulary holding the five words whole: ours gives
    each word its own piece, spacy-transformers each word also the next word's piece."""
    transformers = pytest.importorskip("transformers")
    from spacy_albert.tokenization.training import train_sentencepiece

    lines = corpus_lines[:200] + ["This is so much fun."] * 200 + ["fun"] * 100
    train_sentencepiece(lines, tmp_path, vocab_size=400, do_lower_case=True)
    reference = transformers.AlbertTokenizerFast(vocab_file=str(tmp_path / "spiece.model"))
    enc = reference(TRAP, return_offsets_mapping=True, add_special_tokens=False)
    assert enc.tokens() == ["▁this", "▁is", "▁so", "▁much", "▁fun"]
    doc = NLP(TRAP)
    offsets = np.asarray(enc["offset_mapping"], dtype="int64")
    starts, ends = _spans(doc)
    ours = align_span("albert", TRAP, offsets, starts, ends)
    compat = align_span("spacy-transformers", TRAP, offsets, starts, ends)
    assert ours.lengths.tolist() == [1, 1, 1, 1, 1] and ours.indices.tolist() == enc.word_ids()
    assert compat.lengths.tolist() == [2, 2, 2, 2, 1]
    assert compat.indices.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    theirs = get_alignment_via_offset_mapping([doc[:]], offsets[None])
    assert theirs.lengths.tolist() == [2, 2, 2, 2, 1] and theirs.dataXd.tolist() == compat.indices.tolist()


# -- the drop-in architecture ------------------------------------------------------------------
@pytest.fixture(scope="module")
def parity_pipelines(albert_checkpoint):
    """Untrained pipelines on one checkpoint: spacy-transformers', ours, ours in compat mode."""
    pipes = {}
    for key, kwargs in {"trf": {}, "ours": {"arch": OURS}, "compat": {"arch": OURS, "alignment": "spacy-transformers"}}.items():
        fix_random_seed(0)
        nlp = make_nlp(albert_checkpoint, **kwargs)
        nlp.get_pipe("ner").add_label("LOC")
        nlp.initialize()
        pipes[key] = nlp
    return pipes


def test_trf_data_equals_spacy_transformers(parity_pipelines, corpus_lines):
    texts = texts_for_parity(corpus_lines)
    theirs, ours, compat = (trf_data(parity_pipelines[k], texts) for k in ("trf", "ours", "compat"))
    agreeing = 0
    for text, a, b, c in zip(texts, theirs, ours, compat):
        assert b.wordpieces.strings == a.wordpieces.strings and np.array_equal(b.wordpieces.input_ids, a.wordpieces.input_ids)
        assert np.array_equal(b.wordpieces.attention_mask, a.wordpieces.attention_mask)
        if not text:
            assert "last_hidden_state" not in a.model_output and "last_hidden_state" not in b.model_output
            continue
        # compat mode: equal tensors and equal alignment on every doc (the trap included)
        np.testing.assert_allclose(hidden(c), hidden(a), atol=1e-5)
        assert same_alignment(c, a), text
        np.testing.assert_allclose(hidden(b), hidden(a), atol=1e-5)  # the states never depend on the alignment
        agreeing += same_alignment(b, a)
        assert b.model_output.last_hidden_state.shape == a.model_output.last_hidden_state.shape
    assert agreeing >= 2  # one-word docs: no next word to leak into
    trap_ours, trap_theirs = ours[0], theirs[0]
    assert not same_alignment(trap_ours, trap_theirs)  # the Metaspace offset trap


def test_compat_mode_trains_as_spacy_transformers(albert_checkpoint):
    """transformer + ner updates: the same losses, and the same encoder states after two
    updates (Adam turns the float noise of gradients that are zero in theory, such as the
    attention key biases', into steps of the learning rate, so later steps drift apart)."""
    results = []
    for kwargs in ({}, {"arch": OURS, "alignment": "spacy-transformers"}):
        fix_random_seed(0)
        nlp = make_nlp(albert_checkpoint, **kwargs)
        examples = examples_for(nlp, 8, seed=1)
        optimizer = nlp.initialize(lambda: examples)
        before = [hidden(d) for d in trf_data(nlp, [TRAP, "Paris is big"])]
        losses = []
        for step in range(3):
            if step == 2:
                states = [hidden(d) for d in trf_data(nlp, [TRAP, "Paris is big"])]
            update: dict = {}
            nlp.update(examples, sgd=optimizer, losses=update)
            losses.append((update["transformer"], float(update["ner"])))
        results.append((np.array(losses), states, before))
    (losses_a, states_a, before_a), (losses_b, states_b, _) = results
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-5)
    assert losses_a[-1, 1] < losses_a[0, 1]
    for a, b, untrained in zip(states_a, states_b, before_a):
        assert np.abs(a - untrained).max() > 1e-3  # the encoder did learn
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_pipeline_round_trips_without_the_checkpoint(parity_pipelines, tmp_path):
    nlp = parity_pipelines["compat"]
    texts = [TRAP, "Paris is big"]
    before = trf_data(nlp, texts)
    nlp.to_disk(tmp_path / "p")
    # the saved pipeline holds config, vocabulary and weights: a name that does not exist is fine
    loaded = spacy.load(tmp_path / "p", config={"components": {"transformer": {"model": {"name": "/no/such/dir"}}}})
    from_bytes = make_nlp(Path("/no/such/dir"), arch=OURS, alignment="spacy-transformers").from_bytes(nlp.to_bytes())
    for other in (loaded, from_bytes):
        for a, b in zip(before, trf_data(other, texts)):
            np.testing.assert_array_equal(hidden(b), hidden(a))
            assert same_alignment(a, b)
    # the alignment is a setting: a load-time override switches it
    switched = spacy.load(tmp_path / "p", config={"components": {"transformer": {"model": {"alignment": "albert"}}}})
    assert not same_alignment(trf_data(switched, [TRAP])[0], before[0])


def test_replace_listeners_gives_the_component_its_own_copy(albert_checkpoint):
    fix_random_seed(0)
    nlp = make_nlp(albert_checkpoint, arch=OURS)
    examples = examples_for(nlp, 4, seed=3)
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer)
    texts = [TRAP, "Paris is big"]
    before = listener_vectors(nlp, texts)
    nlp.replace_listeners("transformer", "ner", ["model.tok2vec"])
    tok2vec = nlp.config["components"]["ner"]["model"]["tok2vec"]
    assert tok2vec["@architectures"] == "spacy-albert.Tok2VecTransformer.v1" and tok2vec["pooling"]
    docs = [nlp.make_doc(t) for t in texts]
    tok2vec_model = nlp.get_pipe("ner").model.get_ref("tok2vec").layers[0]
    for a, b in zip(tok2vec_model.predict(docs), before):
        np.testing.assert_allclose(a, b, atol=1e-6)
    nlp.update(examples, sgd=optimizer)  # the copy trains, and the pipeline round-trips
    reloaded = spacy.util.load_model_from_config(nlp.config, auto_fill=True).from_bytes(nlp.to_bytes())
    assert entities(reloaded, texts) == entities(nlp, texts)


def test_bad_settings_are_named(albert_checkpoint):
    with pytest.raises(ValueError, match="alignment"):
        make_nlp(albert_checkpoint, arch=OURS, alignment="wordpiece")
    text = config_text(albert_checkpoint, arch=OURS).replace('name = "', 'transformer_config = {"output_hidden_states": true}\nname = "', 1)
    with pytest.raises(ValueError, match="output_hidden_states"):
        spacy.util.load_model_from_config(Config().from_str(text), auto_fill=True)


def test_mixed_precision_takes_the_grad_scaler_config():
    from spacy_albert.interop.transformer_model import encoder_of, transformer_model
    from spacy_albert.layers.shim import albert_shims
    from spacy_transformers.span_getters import configure_strided_spans

    spans = configure_strided_spans(window=8, stride=6)
    scaled = transformer_model("unused", spans, mixed_precision=True, grad_scaler_config={"init_scale": 8.0})
    (shim,) = albert_shims(encoder_of(scaled))
    assert shim.loss_scaling and shim.scaler.current_scale == 8.0
    (plain,) = albert_shims(encoder_of(transformer_model("unused", spans, grad_scaler_config={"init_scale": 8.0})))
    assert not plain.loss_scaling  # float32: no loss scaling, whatever the scaler settings


@pytest.mark.slow
def test_spacy_train_with_the_architecture_line_swapped(albert_checkpoint, tmp_path):
    """`spacy train` on a spacy-transformers config whose only change is the architecture."""
    nlp = spacy.blank("en")
    from spacy.tokens import DocBin

    DocBin(docs=[eg.reference for eg in examples_for(nlp, 16, seed=2)]).to_disk(tmp_path / "train.spacy")
    base = config_text(albert_checkpoint, window=24, stride=20)
    swapped = config_text(albert_checkpoint, arch=OURS, window=24, stride=20)
    assert [l for l in swapped.splitlines() if l not in base.splitlines()] == [f"@architectures = \"{OURS}\""]
    full = spacy.util.load_model_from_config(Config().from_str(swapped), auto_fill=True).config
    full["paths"]["train"] = full["paths"]["dev"] = str(tmp_path / "train.spacy")
    full["corpora"] = {"train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}"},
                       "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}"}}  # fmt: skip
    full["training"].update(max_steps=6, eval_frequency=6, max_epochs=0)
    full.to_disk(tmp_path / "config.cfg")
    proc = subprocess.run([sys.executable, "-m", "spacy", "train", tmp_path / "config.cfg", "--output", tmp_path / "out"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.config["components"]["transformer"]["model"]["@architectures"] == OURS
    data = trained("Paris is big")._.trf_data
    assert hidden(data).shape[1] == 32 and data.align.lengths.shape == (3,)
    untrained = make_nlp(albert_checkpoint, arch=OURS, window=24, stride=20)
    untrained.get_pipe("ner").add_label("LOC")
    untrained.initialize()
    assert np.abs(hidden(data) - hidden(untrained("Paris is big")._.trf_data)).max() > 1e-4  # the encoder learned


# -- migrate -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_trf_pipeline(albert_checkpoint, tmp_path_factory):
    """A spacy-transformers transformer + ner pipeline trained until it finds places."""
    fix_random_seed(0)
    nlp = make_nlp(albert_checkpoint, window=24, stride=20)
    examples = examples_for(nlp, 16, seed=0)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.005))  # the default 0.001 needs more steps
    for _ in range(15):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("trf_pipeline") / "pipeline"
    nlp.to_disk(path)
    test_texts = [eg.reference.text for eg in examples_for(nlp, 30, seed=5)] + [TRAP, ""]
    return path, nlp, test_texts


def entities(nlp, texts):
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("native", [False, True], ids=["transformer", "native"])
def test_migrate_keeps_predictions(trained_trf_pipeline, tmp_path, native):
    source, original, texts = trained_trf_pipeline
    digest = tree_digest(source)
    expected = entities(original, texts)
    assert sum(map(len, expected)) >= 5, "the trained pipeline must find entities for the test to mean anything"
    out = tmp_path / "migrated"
    if native:  # the command line, in a subprocess
        args = [sys.executable, "-m", "spacy_albert", "migrate", source, out, "--native"]
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Migrated" in proc.stdout
    else:
        assert migrate(source, out) == []  # nothing approximated
    assert tree_digest(source) == digest  # IN untouched
    migrated = spacy.load(out)
    assert migrated.pipe_names == original.pipe_names
    assert entities(migrated, texts) == expected
    for a, b in zip(listener_vectors(migrated, texts), listener_vectors(original, texts)):
        if len(b):  # (an empty doc's vectors are [0, width] or [0, 0])
            np.testing.assert_allclose(a, b, atol=1e-5)
    scores = [nlp.evaluate(examples_for(nlp, 20, seed=7)) for nlp in (original, migrated)]
    assert scores[0]["ents_f"] == pytest.approx(scores[1]["ents_f"])
    # the weights carry over exactly (the pooler, which no listener reads, is left out)
    from spacy_albert.layers.transformer import get_torch_encoder

    model = migrated.get_pipe("transformer").model
    encoder = get_torch_encoder(model if native else model.layers[0])
    hf_state = original.get_pipe("transformer").model.transformer.state_dict()
    ours = encoder.albert.state_dict()
    compared = 0
    for key, value in hf_state.items():
        if key in ours:
            assert torch.equal(ours[key], value), key
            compared += 1
    assert compared >= len(ours) - 1 and not any(k.startswith("pooler") for k in ours)
    if native:
        assert migrated.get_pipe("transformer").__class__.__name__ == "AlbertComponent"
        check_native_loads_and_packages_without_spacy_transformers(out, expected, texts, tmp_path)


def site_without_spacy_transformers(tmp_path: Path) -> Path:
    """A site directory that mirrors this interpreter's (links) without spacy-transformers'
    package and metadata: run with `python -S` and `site.addsitedir` on it, spacy-transformers
    is not installed (no module, no entry points)."""
    import site

    view = tmp_path / "site_without_spacy_transformers"
    view.mkdir()
    for directory in site.getsitepackages():
        for entry in Path(directory).iterdir():
            if not entry.name.lower().replace("-", "_").startswith("spacy_transformers") and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    return view


def run_without_spacy_transformers(view: Path, code: str, *args) -> subprocess.CompletedProcess:
    prelude = (
        f"import site, sys, importlib.util; site.addsitedir({str(view)!r})\n"
        "assert importlib.util.find_spec('spacy_transformers') is None, 'spacy_transformers is visible'\n"
    )
    return subprocess.run([sys.executable, "-S", "-c", prelude + code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=view.parent)  # fmt: skip


def check_native_loads_and_packages_without_spacy_transformers(path, expected, texts, tmp_path):
    view = site_without_spacy_transformers(tmp_path)
    script = (
        "import json, spacy\n"
        f"nlp = spacy.load({str(path)!r})\n"
        f"print(json.dumps([[[e.start_char, e.end_char, e.label_] for e in d.ents] for d in nlp.pipe({texts!r})]))\n"
    )
    proc = run_without_spacy_transformers(view, script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[list(e) for e in doc] for doc in expected]
    # `spacy package` writes the package without spacy-transformers (building the wheel and
    # installing it into a fresh environment is tests/test_packaging.py's job)
    package = "import spacy.cli; sys.argv = ['spacy'] + sys.argv[1:]; spacy.cli.setup_cli()"
    (tmp_path / "pkg").mkdir()
    args = ["package", path, tmp_path / "pkg", "--build", "none", "--name", "migrated", "--version", "0.0.1", "--force"]
    proc = run_without_spacy_transformers(view, package, *args)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    meta = srsly.read_json(tmp_path / "pkg" / "en_migrated-0.0.1" / "meta.json")
    assert any(r.startswith("spacy-albert") for r in meta["requirements"])
    assert not any(r.startswith("spacy-transformers") for r in meta["requirements"]), meta["requirements"]


@pytest.mark.slow
def test_migrate_refuses_what_it_cannot_do(trained_trf_pipeline, tmp_path):
    source, _, _ = trained_trf_pipeline
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(MigrationError, match="--force"):
        migrate(source, tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep"
    with pytest.raises(MigrationError, match="outside"):
        migrate(source, source / "inner")
    # a transformer that is not ALBERT, and pickled weights that would run code, are refused
    for case in ("bert", "pickle"):
        bad = tmp_path / f"bad_{case}"
        import shutil

        shutil.copytree(source, bad)
        msg = srsly.msgpack_loads((bad / "transformer" / "model").read_bytes())
        for node in msg["shims"]:
            for i, shim_bytes in enumerate(node):
                shim = srsly.msgpack_loads(shim_bytes)
                if case == "bert":
                    shim["config"]["model_type"] = "bert"
                else:
                    buffer = io.BytesIO()
                    torch.save({"weights": _Exploit(str(tmp_path / "pwned"))}, buffer)
                    shim["state"] = buffer.getvalue()
                node[i] = srsly.msgpack_dumps(shim)
        (bad / "transformer" / "model").write_bytes(srsly.msgpack_dumps(msg))
        error = MigrationError if case == "bert" else CorruptedFileError
        with pytest.raises(error, match="not ALBERT" if case == "bert" else "plain tensors"):
            migrate(bad, tmp_path / f"out_{case}")
        assert not (tmp_path / f"out_{case}").exists()
    assert not (tmp_path / "pwned").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))
