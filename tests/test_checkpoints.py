"""Checkpoint I/O: config fields, cross-head loading, hub cache resolution and clear errors."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
import transformers as hf

import spacy_albert as sa
from spacy_albert.errors import CheckpointError, ShapeMismatchError
from spacy_albert.models.checkpoint import check_vocab_matches

TINY = dict(vocab_size=90, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=20)  # fmt: skip
SPEC_FIELDS = [
    "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
    "num_attention_heads", "intermediate_size", "inner_group_num", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size", "initializer_range",
    "layer_norm_eps", "classifier_dropout_prob", "position_embedding_type", "pad_token_id", "bos_token_id",
    "eos_token_id",
]  # fmt: skip


def ids(n: int = 7) -> torch.Tensor:
    return torch.arange(2, 2 + n).unsqueeze(0)


@pytest.fixture
def ref_mlm_dir(tmp_path):
    torch.manual_seed(0)
    model = hf.AlbertForMaskedLM(hf.AlbertConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "mlm")
    return model, tmp_path / "mlm"


def mlm_head_keys(path) -> list[str]:
    """The MLM head's weights in a transformers checkpoint (the decoder, tied to the embeddings, is not saved)."""
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as f:
        return sorted(k for k in f.keys() if k.startswith("predictions."))


# ---- config -----------------------------------------------------------------------------
def test_config_defaults_are_the_specs():
    ours, ref = sa.AlbertConfig(), hf.AlbertConfig()
    for name in SPEC_FIELDS:
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.num_labels == 2 and ours.problem_type is None


def test_config_json_round_trip_keeps_labels_and_unknown_keys(tmp_path):
    config = sa.AlbertConfig(
        **TINY, id2label={0: "O", 1: "B-PER"}, problem_type="single_label_classification", my_custom_key=[1, 2]
    )
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["id2label"] == {"0": "O", "1": "B-PER"} and data["label2id"] == {"O": 0, "B-PER": 1}
    again = sa.AlbertConfig.from_pretrained(tmp_path)
    assert again == config and again.my_custom_key == [1, 2] and again.id2label[1] == "B-PER"
    ref = hf.AlbertConfig.from_pretrained(tmp_path)
    assert ref.id2label == {0: "O", 1: "B-PER"} and ref.problem_type == "single_label_classification"
    assert ref.my_custom_key == [1, 2]


def test_config_reads_a_transformers_config_with_overrides(tmp_path):
    hf.AlbertConfig(**TINY, num_labels=5, finetuning_task="ner").save_pretrained(tmp_path)
    config = sa.AlbertConfig.from_pretrained(tmp_path)
    assert config.num_labels == 5 and config.finetuning_task == "ner" and config.hidden_size == 16
    assert sa.AlbertConfig.from_pretrained(tmp_path, num_labels=2).id2label == {0: "LABEL_0", 1: "LABEL_1"}


@pytest.mark.parametrize(
    "bad,message",
    [
        (dict(hidden_act="swishy"), "hidden_act"),
        (dict(hidden_size=30, num_attention_heads=4), "multiple of"),
        (dict(position_embedding_type="rotary"), "position_embedding_type"),
        (dict(problem_type="ranking"), "problem_type"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
    ],
)
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        sa.AlbertConfig(**{**TINY, **bad})


def test_unknown_activation_in_a_checkpoint_is_a_clear_error(tmp_path):
    hf.AlbertModel(hf.AlbertConfig(**TINY)).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["hidden_act"] = "not_an_activation"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="hidden_act.*not_an_activation"):
        sa.AlbertModel.from_pretrained(tmp_path)


# ---- loading across heads ---------------------------------------------------------------
def test_head_checkpoint_loads_into_another_head(ref_mlm_dir, caplog):
    ref, path = ref_mlm_dir
    with caplog.at_level(logging.WARNING, logger="spacy_albert"):
        model, info = sa.AlbertForSequenceClassification.from_pretrained(path, num_labels=4, output_loading_info=True)
    # The MLM checkpoint has no pooler and no classifier: both are initialised and reported.
    assert sorted(info.missing_keys) == sorted(
        ["albert.pooler.weight", "albert.pooler.bias", "classifier.weight", "classifier.bias"]
    )
    assert sorted(info.unexpected_keys) == mlm_head_keys(path)  # the MLM head's weights are left out
    assert "newly initialised" in caplog.text and "classifier.weight" in caplog.text
    with torch.no_grad():
        expected = ref.albert(ids()).last_hidden_state
        got = model.albert(ids()).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert model(ids()).logits.shape == (1, 4)


def test_bare_model_and_heads_convert_both_ways(ref_mlm_dir, tmp_path):
    ref, path = ref_mlm_dir
    bare, info = sa.AlbertModel.from_pretrained(path, output_loading_info=True)  # strips "albert."
    assert info.missing_keys == ["pooler.weight", "pooler.bias"]
    bare.save_pretrained(tmp_path / "bare")
    mlm, info = sa.AlbertForMaskedLM.from_pretrained(tmp_path / "bare", output_loading_info=True)  # adds "albert."
    assert sorted(info.missing_keys) == mlm_head_keys(path)
    with torch.no_grad():
        torch.testing.assert_close(
            mlm.albert(ids()).last_hidden_state, ref.albert(ids()).last_hidden_state, atol=1e-5, rtol=0
        )


def test_legacy_gamma_beta_and_position_id_keys_load(ref_mlm_dir, tmp_path):
    ref, _ = ref_mlm_dir
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in ref.state_dict().items()}  # fmt: skip
    state["albert.embeddings.position_ids"] = torch.arange(512)[None]
    (tmp_path / "old").mkdir()
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    ref.config.save_pretrained(tmp_path / "old")
    model, info = sa.AlbertForMaskedLM.from_pretrained(tmp_path / "old", output_loading_info=True)
    assert not info.missing_keys and not info.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(model(ids()).logits, ref(ids()).logits, atol=1e-5, rtol=0)


def test_sharded_checkpoint_loads(ref_mlm_dir, tmp_path):
    ref, _ = ref_mlm_dir
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    model = sa.AlbertForMaskedLM.from_pretrained(tmp_path / "sharded")
    with torch.no_grad():
        torch.testing.assert_close(model(ids()).logits, ref(ids()).logits, atol=1e-5, rtol=0)


def test_mismatched_head_can_be_reinitialised(tmp_path):
    hf.AlbertForTokenClassification(hf.AlbertConfig(**TINY, num_labels=3)).save_pretrained(tmp_path)
    with pytest.raises(ShapeMismatchError, match="classifier.weight.*ignore_mismatched_sizes"):
        sa.AlbertForTokenClassification.from_pretrained(tmp_path, num_labels=5)
    model, info = sa.AlbertForTokenClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert {k for k, _, _ in info.mismatched_keys} == {"classifier.weight", "classifier.bias"}
    assert model.classifier.out_features == 5


# ---- errors -----------------------------------------------------------------------------
def test_missing_directory_config_and_weights(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        sa.AlbertModel.from_pretrained(tmp_path / "nowhere" / "model")
    with pytest.raises(CheckpointError, match="config"):
        sa.AlbertModel.from_pretrained(tmp_path)
    sa.AlbertConfig(**TINY).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="No weights.*model.safetensors"):
        sa.AlbertModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_corrupted_weights_name_the_file(tmp_path, name):
    sa.AlbertConfig(**TINY).save_pretrained(tmp_path)
    (tmp_path / name).write_bytes(b"\x00\x01 this is not a weights file " * 10)
    with pytest.raises(CheckpointError, match=f"{name}.*corrupted"):
        sa.AlbertModel.from_pretrained(tmp_path)


def test_truncated_safetensors_is_reported(ref_mlm_dir, tmp_path):
    _, path = ref_mlm_dir
    shutil.copytree(path, tmp_path / "cut")
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="corrupted"):
        sa.AlbertForMaskedLM.from_pretrained(tmp_path / "cut")


def test_invalid_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        sa.AlbertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="'bert' model"):
        sa.AlbertConfig.from_pretrained(tmp_path)


def test_vocab_size_mismatch_names_both_sizes(ref_mlm_dir, tmp_path):
    _, path = ref_mlm_dir
    shutil.copytree(path, tmp_path / "edited")
    config = json.loads((tmp_path / "edited" / "config.json").read_text())
    config["vocab_size"] = 200
    (tmp_path / "edited" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ShapeMismatchError, match="90 rows.*vocab_size is 200"):
        sa.AlbertForMaskedLM.from_pretrained(tmp_path / "edited")


def test_non_albert_weights_are_rejected(tmp_path):
    sa.AlbertConfig(**TINY).save_pretrained(tmp_path)
    torch.save({"some.other.weight": torch.zeros(3)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="No weights.*match"):
        sa.AlbertModel.from_pretrained(tmp_path)


def test_bad_inputs_give_clear_errors():
    model = sa.AlbertModel(sa.AlbertConfig(**TINY, max_position_embeddings=16)).eval()
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 90\)"):
        model(torch.tensor([[2, 95, 3]]))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(torch.tensor([[2, 5, 3]]), token_type_ids=torch.tensor([[0, 2, 0]]))
    with pytest.raises(ValueError, match="longer than max_position_embeddings=16"):
        model(torch.full((1, 17), 5))
    with pytest.raises(ValueError, match="input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="num_choices"):
        sa.AlbertForMultipleChoice(sa.AlbertConfig(**TINY))(torch.tensor([[2, 5, 3]]))
    with pytest.raises(ValueError, match="num_labels must be 2"):
        sa.AlbertForQuestionAnswering(sa.AlbertConfig(**TINY, num_labels=3))


def test_empty_batch_and_all_padding_row_do_not_crash():
    model = sa.AlbertModel(sa.AlbertConfig(**TINY)).eval()
    with torch.no_grad():
        assert model(torch.zeros((0, 5), dtype=torch.long)).last_hidden_state.shape == (0, 5, 16)
        out = model(torch.tensor([[2, 5, 3], [0, 0, 0]]), attention_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]))
    assert torch.isfinite(out.last_hidden_state).all()


def test_tokenizer_vocab_must_fit_the_config():
    class FakeTokenizer:
        pad_token_id = 0

        def __len__(self) -> int:
            return 120

    check_vocab_matches(FakeTokenizer(), sa.AlbertConfig(**{**TINY, "vocab_size": 120}))
    with pytest.raises(ShapeMismatchError, match="120 pieces.*vocab_size is 90"):
        check_vocab_matches(FakeTokenizer(), sa.AlbertConfig(**TINY))


# ---- hub ids ----------------------------------------------------------------------------
def _fake_hub_cache(cache, repo: str, source) -> None:
    """Lay out a huggingface_hub cache entry for `repo` holding the files of `source`."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("a" * 40)
    shutil.copytree(source, snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("a" * 40)


def test_hub_id_resolves_from_the_local_cache_offline(ref_mlm_dir, tmp_path, monkeypatch):
    ref, path = ref_mlm_dir
    _fake_hub_cache(tmp_path / "hub", "someone/tiny-albert", path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = sa.AlbertForMaskedLM.from_pretrained("someone/tiny-albert", cache_dir=tmp_path / "hub")
    with torch.no_grad():
        torch.testing.assert_close(model(ids()).logits, ref(ids()).logits, atol=1e-5, rtol=0)
    with pytest.raises(CheckpointError, match="not in the huggingface_hub cache"):
        sa.AlbertModel.from_pretrained("someone/not-cached", cache_dir=tmp_path / "hub")
