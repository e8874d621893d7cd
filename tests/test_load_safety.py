"""Loading never runs code from a file and never follows a path taken from loaded data:
hostile pickles are refused (their payload never runs), shard indexes cannot point outside
the checkpoint, hub ids and revisions cannot be paths, trainer states are data-only and
round-trip exactly, and writes are atomic."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import spacy_albert as sa
from spacy_albert.errors import CheckpointError
from spacy_albert.hub import check_hub_id, check_revision, resolve_model_dir
from spacy_albert.models.checkpoint import read_checkpoint_weights
from spacy_albert.pretraining.state import (
    LEGACY_STATE,
    STATE_JSON,
    STATE_TENSORS,
    TrainerStateError,
    decode,
    encode,
    load_trainer_state,
    rng_state,
    save_trainer_state,
    set_rng_state,
)
from spacy_albert.pretraining.trainer import latest_checkpoint
from spacy_albert.util_io import atomic_write_bytes

TINY = dict(vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=24, max_position_embeddings=32)  # fmt: skip


class _Payload:
    """Unpickling this creates `marker`: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _hostile_pickle(path: Path, marker: Path, **extra) -> None:
    torch.save({"weight": torch.zeros(2), "payload": _Payload(marker), **extra}, path)
    assert not marker.exists()


# ---- atomic writes ----------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(str(target), b"two")
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


# ---- weights ------------------------------------------------------------------------------
def test_hostile_pytorch_model_bin_is_refused_without_running(tmp_path: Path) -> None:
    sa.AlbertConfig(**TINY).save_pretrained(tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}-marker"
    _hostile_pickle(tmp_path / "pytorch_model.bin", marker)
    with pytest.raises(CheckpointError, match=r"Refusing to load .*pytorch_model\.bin.*could run code"):
        sa.AlbertModel.from_pretrained(tmp_path)
    assert not marker.exists()


def _sharded(tmp_path: Path) -> tuple[Path, dict]:
    """A safetensors checkpoint split into two shards with an index."""
    model = sa.AlbertModel(sa.AlbertConfig(**TINY))
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    state = read_checkpoint_weights(directory)
    (directory / "model.safetensors").unlink()
    names = sorted(state)
    half = len(names) // 2
    weight_map = {}
    parts = (("model-00001-of-00002.safetensors", names[:half]), ("model-00002-of-00002.safetensors", names[half:]))
    for shard, part in parts:
        save_file({k: state[k].contiguous() for k in part}, str(directory / shard))
        weight_map.update({k: shard for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory, weight_map


def test_plain_sharded_index_loads(tmp_path: Path) -> None:
    directory, _ = _sharded(tmp_path)
    sa.AlbertModel.from_pretrained(directory)


@pytest.mark.parametrize(
    "shard",
    ["../outside.safetensors", "ABSOLUTE", "sub/model.safetensors", "..\\outside.safetensors",
     "C:outside.safetensors", "..", "model-00001-of-00002.bin", 7],
)  # fmt: skip
def test_shard_index_cannot_point_outside_the_directory(tmp_path: Path, shard) -> None:
    directory, weight_map = _sharded(tmp_path)
    outside = tmp_path / "outside.safetensors"  # a readable file the index must not reach
    save_file({k: torch.zeros(1) for k in weight_map}, str(outside))
    if shard == "ABSOLUTE":
        shard = str(outside)
    first = next(iter(weight_map))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {**weight_map, first: shard}}))
    with pytest.raises(CheckpointError, match=r"Invalid shard index .*model\.safetensors\.index\.json.*not a plain"):
        sa.AlbertModel.from_pretrained(directory)


def test_bin_shard_index_needs_bin_names(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    sa.AlbertModel(sa.AlbertConfig(**TINY)).save_pretrained(directory)
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"x": "/etc/passwd"}}))
    with pytest.raises(CheckpointError, match=r"'/etc/passwd', which is not a plain '\*\.bin' file name"):
        read_checkpoint_weights(directory)


# ---- hub ids ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["someone/..", "a--b", "x y", "someone/name:evil", "../no-such-dir-xyz", "~no-such-user-xyz", "a/b/c"]
)
def test_path_like_hub_ids_are_refused(name: str) -> None:
    with pytest.raises(CheckpointError, match="does not exist|not a valid hub id"):
        resolve_model_dir(name, local_files_only=True)


def test_hub_ids_and_revisions_are_checked() -> None:
    assert check_hub_id("albert/albert-base-v2") == "albert/albert-base-v2"
    assert check_hub_id("albert-base-v2") == "albert-base-v2"
    assert check_revision("refs/pr/1") == "refs/pr/1" and check_revision("a" * 40) == "a" * 40
    for bad in ("../../etc", "/abs", "main/../..", "a//b", ""):
        with pytest.raises(CheckpointError, match="Invalid hub revision"):
            check_revision(bad)
    with pytest.raises(CheckpointError, match="Invalid hub revision"):
        resolve_model_dir("someone/model", revision="../../x", local_files_only=True)


# ---- tokenizer configs --------------------------------------------------------------------
def test_tokenizer_config_cannot_name_a_model_file(spm_dir: Path, tmp_path: Path) -> None:
    import shutil

    from spacy_albert.tokenization import AlbertTokenizer, AlbertTokenizerFast

    directory = tmp_path / "tok"
    shutil.copytree(spm_dir, directory)
    AlbertTokenizer.from_pretrained(directory).save_pretrained(directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["sp_model_kwargs"] = {"enable_sampling": False}
    config_path.write_text(json.dumps(config))
    AlbertTokenizer.from_pretrained(directory)  # sampling settings are fine
    config["sp_model_kwargs"] = {"model_file": str(tmp_path / "elsewhere.model")}
    config_path.write_text(json.dumps(config))
    for cls in (AlbertTokenizer, AlbertTokenizerFast):
        with pytest.raises(CheckpointError, match=r"tokenizer_config\.json.*sp_model_kwargs sets \['model_file'\]"):
            cls.from_pretrained(directory)


# ---- trainer state --------------------------------------------------------------------------
def _optimizer_state() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def _assert_same(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_trainer_state_round_trips_exactly(tmp_path: Path) -> None:
    _, optimizer = _optimizer_state()
    random.random(), np.random.rand(), torch.rand(3)  # move every RNG off its seed
    state = {
        "step": 7, "optimizer": optimizer.state_dict(), "rng": rng_state(),
        "odd": {"__tensor__": "not a marker", 1: "int key", "inf": float("inf"), "nan": float("nan"),
                "half": torch.arange(3, dtype=torch.bfloat16)},
    }  # fmt: skip
    save_trainer_state(tmp_path, state)
    assert {STATE_JSON, STATE_TENSORS} == {p.name for p in tmp_path.iterdir()}
    loaded = load_trainer_state(tmp_path)
    _assert_same(state, loaded)
    # Restored RNGs continue exactly where the saved ones were.
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(loaded["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])
    # The optimizer takes the loaded state and steps exactly as the original.
    model2, optimizer2 = _optimizer_state()
    optimizer2.load_state_dict(loaded["optimizer"])
    _assert_same(optimizer2.state_dict(), optimizer.state_dict())


def test_encode_refuses_objects() -> None:
    with pytest.raises(TypeError, match=r"Cannot store a _Payload at state\.x"):
        encode({"x": _Payload(Path("unused"))}, {})
    with pytest.raises(KeyError, match="not in trainer_state.safetensors"):
        decode({"__tensor__": "missing"}, {})
    with pytest.raises(ValueError, match="numpy dtype 'object' is not allowed"):
        decode({"__ndarray__": {"dtype": "object", "shape": [1], "data": [1]}}, {})


def test_legacy_pickle_state_is_refused_without_running(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    marker = tmp_path / "marker"
    _hostile_pickle(checkpoint / LEGACY_STATE, marker)
    assert latest_checkpoint(tmp_path) == checkpoint  # found, so that resume fails loudly
    with pytest.raises(TrainerStateError, match=r"trainer_state\.pt.*old pickle format.*no longer loaded.*--init"):
        load_trainer_state(checkpoint)
    assert not marker.exists()


def test_incomplete_or_corrupt_trainer_state_names_the_file(tmp_path: Path) -> None:
    _, optimizer = _optimizer_state()
    save_trainer_state(tmp_path, {"step": 1, "optimizer": optimizer.state_dict()})
    tensors, document = (tmp_path / STATE_TENSORS).read_bytes(), (tmp_path / STATE_JSON).read_text()

    (tmp_path / STATE_TENSORS).write_bytes(tensors[:-10])
    with pytest.raises(TrainerStateError, match=r"trainer_state\.safetensors' is truncated or corrupted.*Delete"):
        load_trainer_state(tmp_path)
    (tmp_path / STATE_TENSORS).write_bytes(tensors)

    (tmp_path / STATE_JSON).write_text(document[: len(document) // 2])
    with pytest.raises(TrainerStateError, match=r"trainer_state\.json' is truncated or corrupted.*--resume auto"):
        load_trainer_state(tmp_path)

    (tmp_path / STATE_JSON).write_text(document.replace("state.optimizer.state.0.exp_avg\"", "elsewhere\""))
    with pytest.raises(TrainerStateError, match=r"trainer_state\.json' is corrupted .*'elsewhere'"):
        load_trainer_state(tmp_path)

    (tmp_path / STATE_JSON).unlink()
    with pytest.raises(TrainerStateError, match=r"trainer_state\.json' is missing .*not saved completely"):
        load_trainer_state(tmp_path)
    assert latest_checkpoint(tmp_path) is None

    (tmp_path / STATE_JSON).write_text(document)
    (tmp_path / STATE_TENSORS).unlink()
    with pytest.raises(TrainerStateError, match=r"trainer_state\.safetensors' is missing"):
        load_trainer_state(tmp_path)


# ---- spaCy pipelines ------------------------------------------------------------------------
def test_spacy_load_of_a_pipeline_folder_unpickles_nothing(albert_checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import spacy
    import srsly

    from conftest import TINY_ALBERT

    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}})
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(albert_checkpoint)}
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")

    def refuse(*args, **kwargs):
        raise AssertionError("a pipeline load unpickled something")

    original_torch_load = torch.load

    def safe_torch_load(*args, weights_only=None, **kwargs):
        if weights_only is not True:
            raise AssertionError("torch.load without weights_only=True")
        return original_torch_load(*args, weights_only=True, **kwargs)

    for module, name in ((pickle, "loads"), (pickle, "load"), (srsly, "pickle_loads")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(torch, "load", safe_torch_load)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["albert"]
    loaded("Still works.")
