"""Bad input, hostile files and faults around saved pipelines and the shared encoder: each
case asserts the exact outcome (a result, or an error whose message names the component,
file or setting and the fix)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
from spacy.training import Example
from thinc.api import Adam

from spacy_albert.errors import AlbertError, CorruptedFileError, ShapeMismatchError
from spacy_albert.layers.transformer import get_torch_encoder

from conftest import TINY_ALBERT

ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
H = TINY_ALBERT["hidden_size"]
NER_DATA = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited New York City yesterday.", [(0, 3, "PER"), (12, 25, "LOC")]),
    ("Nothing happened here.", []),
]
TEXTS = ["Alice lives in Paris.", "Bob visited New York City with Alice yesterday.", "Nothing here."]
LISTENER = {"@architectures": "spacy-albert.AlbertListener.v1", "width": H}
PARSER = {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "hidden_width": 16,
          "maxout_pieces": 2, "use_upper": True}  # fmt: skip


def examples(nlp):
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in NER_DATA]


def ner_nlp(checkpoint, steps=2, **encoder):
    """An `albert_ner` pipeline with its own encoder, trained a few steps."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"model": {
        "@architectures": "spacy-albert.TokenClassifier.v1",
        "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first",
                    "encoder": {**ENCODER, "checkpoint": str(checkpoint), **encoder}}}})  # fmt: skip
    optimizer = nlp.initialize(lambda: examples(nlp), sgd=Adam(0.01))
    for _ in range(steps):
        nlp.update(examples(nlp), sgd=optimizer)
    return nlp


def shared_nlp(checkpoint, albert=None, listener=None, store_outputs=True):
    """The shared `albert` component with spaCy's `ner` listening to it (not initialised)."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": {**ENCODER, **(albert or {})}, "store_outputs": store_outputs})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(checkpoint)}
    nlp.add_pipe("ner", config={"model": {**PARSER, "tok2vec": {**LISTENER, **(listener or {})}}})
    return nlp


def scores(nlp, texts=TEXTS):
    ner = nlp.get_pipe("albert_ner")
    return [ner.predict([nlp.make_doc(t)])[0] for t in texts]


def ents(nlp, texts=TEXTS):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]


@pytest.fixture(scope="module")
def saved(albert_checkpoint, tmp_path_factory):
    """A trained `albert_ner` pipeline saved to disk, with its reference scores."""
    nlp = ner_nlp(albert_checkpoint)
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    nlp.to_disk(path)
    return path, scores(nlp)


def copy_pipeline(path: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(path, target)
    return target


def edit_encoder_message(model_bytes: bytes, edit) -> bytes:
    """A thinc model's bytes with `edit` applied to its ALBERT encoder's message (the shim's:
    config, tokenizer files and safetensors weights, saved together)."""
    msg = srsly.msgpack_loads(model_bytes)
    j = next(k for k, shims in enumerate(msg["shims"]) if shims)
    encoder = srsly.msgpack_loads(msg["shims"][j][0])
    edit(encoder)
    msg["shims"][j][0] = srsly.msgpack_dumps(encoder)
    return srsly.msgpack_dumps(msg)


# ---- security: nothing is written from a loaded file -----------------------------------------
@pytest.mark.parametrize("hostile_name", ["../../escaped.pth", "/tmp/spacy_albert_escaped.pth", "sub/dir.json"])
def test_tokenizer_file_names_from_a_saved_model_are_refused(saved, tmp_path, hostile_name):
    path = copy_pipeline(saved[0], tmp_path)
    model_file = path / "albert_ner" / "model"
    model_file.write_bytes(edit_encoder_message(
        model_file.read_bytes(), lambda m: m["tokenizer"].update({hostile_name: b"import os; os.system('echo pwned')\n"})
    ))  # fmt: skip
    target = (Path("/tmp") / "spacy_albert_escaped.pth") if hostile_name.startswith("/") else None
    if target is not None and target.exists():
        target.unlink()
    with pytest.raises(CorruptedFileError, match=r"'albert_ner'.*albert_ner/model.*tokenizer file"):
        spacy.load(path)
    assert target is None or not target.exists()
    assert not (tmp_path / "escaped.pth").exists() and not (path / "escaped.pth").exists()
    with pytest.raises(AlbertError, match="tokenizer file"):  # the same through from_bytes
        spacy.util.load_model_from_config(spacy.load(saved[0]).config).from_bytes(
            _bytes_with_hostile_name(saved[0], hostile_name)
        )


def _bytes_with_hostile_name(path: Path, name: str) -> bytes:
    nlp = spacy.load(path)
    data = srsly.msgpack_loads(nlp.to_bytes())
    component = srsly.msgpack_loads(data["albert_ner"])
    component["model"] = edit_encoder_message(component["model"], lambda m: m["tokenizer"].update({name: b"x"}))
    data["albert_ner"] = srsly.msgpack_dumps(component)
    return srsly.msgpack_dumps(data)


# ---- data loss: a failed save keeps the previous pipeline --------------------------------------
@pytest.mark.parametrize("fault", ["serialise", "write"])
def test_a_failed_save_leaves_the_previous_pipeline_intact(saved, tmp_path, monkeypatch, albert_checkpoint, fault):
    path = copy_pipeline(saved[0], tmp_path)
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    other = ner_nlp(albert_checkpoint, steps=4)  # different weights, to be saved over it
    if fault == "serialise":
        import spacy_albert.layers.quantize as quantize

        def broken(*args, **kwargs):
            raise KeyboardInterrupt  # Ctrl-C while the weights are serialised

        monkeypatch.setattr(quantize, "serialize_weights", broken)
        expected = KeyboardInterrupt
    else:
        real_fsync = os.fsync

        def broken(fd):
            real_fsync(fd)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken)
        expected = OSError
    with pytest.raises(expected):
        other.to_disk(path)
    monkeypatch.undo()
    after = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after[Path("albert_ner/model")] == before[Path("albert_ner/model")]
    assert after[Path("albert_ner/cfg")] == before[Path("albert_ner/cfg")]
    assert not [p for p in after if p.name.endswith(".tmp")]  # no temp files left behind
    for a, b in zip(scores(spacy.load(path)), saved[1]):
        np.testing.assert_array_equal(a, b)


# ---- loading: settings from the config take effect -----------------------------------------------
@pytest.mark.parametrize(
    "setting",
    [{"quantize": "int8"}, {"precision": "bfloat16"}, {"batching": "padded"}, {"sort_buffer": 3},
     {"window": 6}, {"stride": 2}, {"max_batch_pieces": 17}, {"torch_compile": True}, {"spans": "sentences"},
     {"output_layers": 2}],
)  # fmt: skip
def test_encoder_settings_overridden_at_load_take_effect(saved, setting):
    key, value = next(iter(setting.items()))
    override = {"components": {"albert_ner": {"model": {"tok2vec": {"encoder": setting}}}}}
    nlp = spacy.load(saved[0], config=override)
    encoder = nlp.get_pipe("albert_ner").model.get_ref("tok2vec").layers[0]
    assert encoder.attrs["settings"][key] == value
    module = get_torch_encoder(encoder)
    if key == "quantize":
        assert module.quantized  # at load, not lazily at the first call (which would race between threads)
        assert nlp("Alice lives in Paris.")
    if key in ("precision", "torch_compile"):
        assert getattr(module, key) == value
    if key == "window":  # a window of 6 pieces changes the states of a longer doc
        changed = scores(nlp)[1]
        assert not np.allclose(changed, saved[1][1], atol=1e-4)
    if key in ("batching", "sort_buffer", "max_batch_pieces", "stride"):
        for a, b in zip(scores(nlp), saved[1]):  # settings of speed, not of results
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_cfg_settings_overridden_at_load_take_effect(saved):
    nlp = spacy.load(saved[0], config={"components": {"albert_ner": {"spans_key": "people"}}})
    ner = nlp.get_pipe("albert_ner")
    assert ner.cfg["spans_key"] == "people" and ner.labels == ("LOC", "PER")  # labels from disk


def test_an_int8_pipeline_cannot_be_loaded_as_float(albert_checkpoint, tmp_path):
    from spacy_albert.layers.quantize import quantize_pipeline

    nlp = ner_nlp(albert_checkpoint)
    quantize_pipeline(nlp)
    nlp.to_disk(tmp_path / "int8")
    assert spacy.load(tmp_path / "int8").config["components"]["albert_ner"]["model"]["tok2vec"]["encoder"]["quantize"] == "int8"
    override = {"components": {"albert_ner": {"model": {"tok2vec": {"encoder": {"quantize": None}}}}}}
    with pytest.raises(AlbertError, match=r"'albert_ner'.*saved int8-quantized.*quantize = \"int8\""):
        spacy.load(tmp_path / "int8", config=override)


def test_store_outputs_overridden_at_load(albert_checkpoint, tmp_path):
    nlp = shared_nlp(albert_checkpoint)
    nlp.initialize(lambda: examples(nlp))
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p", config={"components": {"albert": {"store_outputs": False}}})
    assert loaded.get_pipe("albert").store_outputs is False
    with pytest.raises(AlbertError, match=r"store_outputs = false.*\[components.albert\] store_outputs = true"):
        loaded("Alice lives in Paris.")


# ---- corrupted files ------------------------------------------------------------------------------
def _truncate_safetensors_inside(data: bytes) -> bytes:
    """The model file with the encoder's safetensors bytes cut in half (msgpack still valid)."""
    return edit_encoder_message(data, lambda m: m.update(weights=m["weights"][: len(m["weights"]) // 2]))


def _corrupt_tokenizer(data: bytes) -> bytes:
    return edit_encoder_message(data, lambda m: m.update(tokenizer={name: b"\x00garbage" * 10 for name in m["tokenizer"]}))


CORRUPTIONS = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: np.random.default_rng(0).bytes(4096),
    "extra data": lambda data: data + b"\x01\x02",
    "safetensors truncated inside": _truncate_safetensors_inside,
    "tokenizer bytes corrupted": _corrupt_tokenizer,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_model_file_names_the_component_and_the_file(saved, tmp_path, corruption):
    path = copy_pipeline(saved[0], tmp_path)
    model_file = path / "albert_ner" / "model"
    model_file.write_bytes(CORRUPTIONS[corruption](model_file.read_bytes()))
    with pytest.raises(CorruptedFileError) as info:
        spacy.load(path)
    message = str(info.value)
    assert "'albert_ner'" in message and str(model_file) in message
    assert "restore the pipeline" in message
    assert "/tmp/tmp" not in message  # no temporary file names


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe"])
def test_a_corrupted_cfg_file_names_the_component_and_the_file(saved, tmp_path, content):
    path = copy_pipeline(saved[0], tmp_path)
    (path / "albert_ner" / "cfg").write_bytes(content)
    with pytest.raises(CorruptedFileError, match=r"'albert_ner'.*albert_ner/cfg"):
        spacy.load(path)


def test_a_missing_model_file_names_the_component(saved, tmp_path):
    path = copy_pipeline(saved[0], tmp_path)
    (path / "albert_ner" / "model").unlink()
    with pytest.raises(CorruptedFileError, match=r"'albert_ner': cannot read .*albert_ner/model"):
        spacy.load(path)


# ---- the shared encoder and its listeners ----------------------------------------------------------
def test_retokenized_doc_is_an_error_not_shifted_features(albert_checkpoint):
    nlp = shared_nlp(albert_checkpoint)
    nlp.initialize(lambda: examples(nlp))
    doc = nlp.get_pipe("albert")(nlp.make_doc("Bob visited New York City yesterday."))
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[2:5])
    assert len(doc) == 5
    with pytest.raises(AlbertError, match=r"has 5 tokens.*computed for 7.*retokenized"):
        nlp.get_pipe("ner")(doc)


def test_listener_mixing_layers_with_enough_output_layers_trains(albert_checkpoint):
    nlp = shared_nlp(albert_checkpoint, albert={"output_layers": 2}, listener={"layers": 2})
    optimizer = nlp.initialize(lambda: examples(nlp))
    for _ in range(3):
        nlp.update(examples(nlp), sgd=optimizer)
    doc = nlp("Alice lives in Paris.")
    assert doc._.albert_data.hidden.shape[0] == 2
    pool = next(node for node in nlp.get_pipe("ner").model.walk() if "mix" in node.param_names)
    mix = pool.get_param("mix")
    assert np.abs(mix).max() > 0  # the learned layer weights moved from their zero start


def test_listener_mixing_more_layers_than_kept_fails_at_initialize(albert_checkpoint):
    nlp = shared_nlp(albert_checkpoint, listener={"layers": 2})
    with pytest.raises(AlbertError, match=r"'ner' mixes layers = 2.*output_layers = 1.*output_layers = 2"):
        nlp.initialize(lambda: examples(nlp))


def test_listener_width_is_checked_at_initialize(albert_checkpoint):
    nlp = shared_nlp(albert_checkpoint, listener={"width": H + 1})
    with pytest.raises(ShapeMismatchError, match=rf"'ner' has width {H + 1}.*width {H}.*remove the listener's width"):
        nlp.initialize(lambda: examples(nlp))


def test_store_outputs_false_names_the_setting(albert_checkpoint):
    nlp = shared_nlp(albert_checkpoint, store_outputs=False)
    with pytest.warns(UserWarning, match="store_outputs = false"):
        nlp.initialize(lambda: examples(nlp))
    with pytest.raises(AlbertError, match=r"store_outputs = false.*store_outputs = true"):
        nlp("Alice lives in Paris.")


def test_uninitialised_encoder_names_its_own_component():
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"model": {
        "@architectures": "spacy-albert.TokenClassifier.v1",
        "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "encoder": ENCODER}}})  # fmt: skip
    with pytest.raises(AlbertError, match=r"'albert_ner' has no vocabulary yet.*\[initialize.components.albert_ner\]"):
        nlp("Alice lives in Paris.")
