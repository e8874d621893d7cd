"""Parity of the native ALBERT with transformers' reference, in both directions.

Random-init reference models are saved with `save_pretrained` and loaded with ours (and the
reverse); every output and loss must agree within 1e-5 in float32 eval mode.
"""

from __future__ import annotations

import zlib

import pytest
import torch
import transformers as hf

import spacy_albert as sa

ATOL = 1e-5

# Each config exercises something different; together they cover the list:
# groups=2 x inner=2, E != H, non-default activations, type_vocab_size > 2, relative positions.
CONFIGS = {
    "small": dict(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37),
    "groups": dict(
        embedding_size=24, hidden_size=48, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
        num_attention_heads=6, intermediate_size=64, hidden_act="relu", type_vocab_size=3,
    ),
    "gelu_types": dict(
        embedding_size=20, hidden_size=40, num_hidden_layers=5, num_hidden_groups=2, num_attention_heads=5,
        intermediate_size=50, hidden_act="gelu", type_vocab_size=4, max_position_embeddings=64,
    ),
    "silu_equal_dims": dict(
        embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        hidden_act="silu", layer_norm_eps=1e-6,
    ),
    "relative_prelu": dict(
        embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
        hidden_act="prelu", position_embedding_type="relative_key_query", max_position_embeddings=40,
    ),
    "relative_key_quick_gelu": dict(
        embedding_size=16, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=30,
        hidden_act="quick_gelu", position_embedding_type="relative_key", type_vocab_size=3,
    ),
}
VOCAB = 120
HEADS = [
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForMaskedLM",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
    "AlbertForMultipleChoice",
]


def n_labels(head: str) -> int:
    """Sentence order and QA (start, end) are two-way; the other heads get 3 labels."""
    return 2 if head in ("AlbertForPreTraining", "AlbertForQuestionAnswering") else 3


def make_config(name: str, **extra) -> hf.AlbertConfig:
    return hf.AlbertConfig(vocab_size=VOCAB, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                           **CONFIGS[name], **extra)  # fmt: skip


def make_inputs(config: hf.AlbertConfig, pair: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A padded batch: row 0 full, row 1 and 2 padded; with pairs, token types switch mid-way."""
    g = torch.Generator().manual_seed(seed)
    batch, length = 3, 13
    ids = torch.randint(5, VOCAB, (batch, length), generator=g)
    lengths = [length, 9, 4]
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = 0
        ids[row, 0] = 2
        ids[row, n - 1] = 3
    types = torch.zeros_like(ids)
    if pair:
        for row, n in enumerate(lengths):
            types[row, n // 2 : n] = 1
        types[0, -2:] = config.type_vocab_size - 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def labels_for(head: str, inputs: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = inputs["input_ids"]
    if head in ("AlbertForPreTraining", "AlbertForMaskedLM"):
        labels = torch.full_like(ids, -100)
        labels[:, 2] = ids[:, 2]
        labels[0, 5] = ids[0, 5]
        out = {"labels": labels}
        if head == "AlbertForPreTraining":
            out["sentence_order_label"] = torch.tensor([0, 1, 1])
        return out
    if head == "AlbertForSequenceClassification":
        return {"labels": torch.randint(0, config.num_labels, (ids.shape[0],), generator=g)}
    if head == "AlbertForTokenClassification":
        labels = torch.randint(0, config.num_labels, ids.shape, generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        return {"labels": labels}
    if head == "AlbertForQuestionAnswering":
        # The last position is out of range and must be clamped to the ignored index.
        return {"start_positions": torch.tensor([1, 2, 40]), "end_positions": torch.tensor([3, 30, 2])}
    if head == "AlbertForMultipleChoice":
        return {"labels": torch.tensor([1])}
    return {}


def choices(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Multiple choice takes [batch, choices, sequence]: one question with 3 choices."""
    return {k: v.unsqueeze(0) for k, v in inputs.items()}


def assert_close(a, b, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
    assert diff <= ATOL, f"{what}: max abs diff {diff:.3g}"


def compare_outputs(ref_out, our_out, label: str) -> None:
    names = [n for n in ("last_hidden_state", "pooler_output", "prediction_logits", "sop_logits", "logits",
                         "start_logits", "end_logits", "loss") if getattr(ref_out, n, None) is not None]  # fmt: skip
    assert names
    for name in names:
        assert_close(getattr(ref_out, name), getattr(our_out, name), f"{label}.{name}")
    for seq in ("hidden_states", "attentions"):
        ref_seq, our_seq = getattr(ref_out, seq), getattr(our_out, seq)
        assert (ref_seq is None) == (our_seq is None), f"{label}.{seq} presence"
        if ref_seq is not None:
            assert len(ref_seq) == len(our_seq), f"{label}.{seq} count"
            for i, (r, o) in enumerate(zip(ref_seq, our_seq)):
                assert_close(r, o, f"{label}.{seq}[{i}]")


@pytest.fixture(scope="module")
def saved_reference(tmp_path_factory):
    """Reference models saved once per (config, head), with eager attention."""
    cache: dict[tuple[str, str], tuple[object, str]] = {}

    def get(config_name: str, head: str):
        key = (config_name, head)
        if key not in cache:
            # A seed of its own per (config, head), stable across processes (unlike hash() of a str).
            torch.manual_seed(zlib.crc32(f"{config_name}/{head}".encode()) % 1000)
            config = make_config(config_name, num_labels=n_labels(head), attn_implementation="eager")
            model = getattr(hf, head)(config).eval()
            path = tmp_path_factory.mktemp(f"{config_name}-{head}")
            model.save_pretrained(path)
            cache[key] = (model, str(path))
        return cache[key]

    return get


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("head", HEADS)
def test_reference_checkpoint_loads_with_identical_outputs(saved_reference, config_name, head):
    ref, path = saved_reference(config_name, head)
    ours = getattr(sa, head).from_pretrained(path)
    assert not ours.training
    for pair in (False, True):
        inputs = make_inputs(ref.config, pair)
        if head == "AlbertForMultipleChoice":
            inputs = choices(inputs)
        inputs.update(labels_for(head, inputs, ref.config))
        with torch.no_grad():
            # Fast path (SDPA) with hidden states, then the explicit path with attentions.
            for flags in ({"output_hidden_states": True}, {"output_attentions": True}):
                compare_outputs(ref(**inputs, **flags), ours(**inputs, **flags), f"{head}[{config_name},pair={pair}]")


@pytest.mark.parametrize("config_name", ["groups", "relative_prelu"])
def test_head_mask_and_position_ids_match(saved_reference, config_name):
    ref, path = saved_reference(config_name, "AlbertModel")
    ours = sa.AlbertModel.from_pretrained(path)
    inputs = make_inputs(ref.config, pair=True)
    n_layers, n_heads = ref.config.num_hidden_layers, ref.config.num_attention_heads
    head_mask = torch.ones(n_layers, n_heads)
    head_mask[0, 1] = 0
    head_mask[-1, 0] = 0.5
    positions = torch.arange(13).flip(0).expand(3, -1)
    with torch.no_grad():
        for kwargs in ({"head_mask": head_mask}, {"head_mask": head_mask[0]}, {"position_ids": positions}):
            compare_outputs(
                ref(**inputs, **kwargs, output_attentions=True),
                ours(**inputs, **kwargs, output_attentions=True),
                f"AlbertModel[{config_name}] {sorted(kwargs)}",
            )


def test_return_dict_false_gives_the_reference_tuple(saved_reference):
    ref, path = saved_reference("groups", "AlbertForPreTraining")
    ours = sa.AlbertForPreTraining.from_pretrained(path)
    inputs = make_inputs(ref.config, pair=True)
    inputs.update(labels_for("AlbertForPreTraining", inputs, ref.config))
    with torch.no_grad():
        ref_tuple = ref(**inputs, output_hidden_states=True, return_dict=False)
        our_tuple = ours(**inputs, output_hidden_states=True, return_dict=False)
    # (loss, prediction_logits, sop_logits, hidden_states): the embeddings' and every layer's.
    assert isinstance(our_tuple, tuple) and len(our_tuple) == len(ref_tuple) == 4
    for i in range(3):
        assert_close(ref_tuple[i], our_tuple[i], f"tuple[{i}]")
    n_hidden = ref.config.num_hidden_layers + 1
    assert isinstance(our_tuple[3], tuple) and len(our_tuple[3]) == len(ref_tuple[3]) == n_hidden
    for i, (a, b) in enumerate(zip(ref_tuple[3], our_tuple[3])):
        assert_close(a, b, f"tuple[3][{i}]")


@pytest.mark.parametrize(
    "problem_type,num_labels,labels",
    [
        ("regression", 1, torch.tensor([0.5, -1.0, 2.0])),
        ("single_label_classification", 4, torch.tensor([0, 3, 1])),
        ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])),
        (None, 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])),  # inferred: multi-label
        (None, 1, torch.tensor([0.1, 0.2, 0.3])),  # inferred: regression
    ],
)
def test_sequence_classification_problem_types(tmp_path, problem_type, num_labels, labels):
    torch.manual_seed(3)
    config = make_config("small", num_labels=num_labels, problem_type=problem_type)
    ref = hf.AlbertForSequenceClassification(config).eval()
    ref.save_pretrained(tmp_path)
    ours = sa.AlbertForSequenceClassification.from_pretrained(tmp_path)
    inputs = make_inputs(config, pair=True)
    with torch.no_grad():
        compare_outputs(ref(**inputs, labels=labels), ours(**inputs, labels=labels), str(problem_type))
    assert ours.config.problem_type == ref.config.problem_type


@pytest.mark.parametrize("config_name", ["groups", "relative_prelu"])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("safe", [True, False])
def test_our_checkpoint_loads_in_transformers(tmp_path, config_name, head, safe):
    torch.manual_seed(7)
    config = sa.AlbertConfig(vocab_size=VOCAB, num_labels=n_labels(head), **CONFIGS[config_name])
    ours = getattr(sa, head)(config).eval()
    ours.save_pretrained(tmp_path, safe_serialization=safe)
    ref, info = getattr(hf, head).from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref.eval()
    inputs = make_inputs(ref.config, pair=True)
    if head == "AlbertForMultipleChoice":
        inputs = choices(inputs)
    inputs.update(labels_for(head, inputs, ref.config))
    with torch.no_grad():
        compare_outputs(ref(**inputs, output_attentions=True), ours(**inputs, output_attentions=True), head)


def test_state_dict_keys_are_the_references():
    for head in HEADS:
        config = make_config("groups", num_labels=n_labels(head))
        ref_keys = set(getattr(hf, head)(config).state_dict())
        our_keys = set(getattr(sa, head)(sa.AlbertConfig(**config.to_dict())).state_dict())
        assert our_keys == ref_keys, head


def test_mlm_decoder_is_tied_to_word_embeddings():
    model = sa.AlbertForMaskedLM(sa.AlbertConfig(vocab_size=VOCAB, **CONFIGS["small"]))
    assert model.predictions.decoder.weight is model.albert.embeddings.word_embeddings.weight
    assert model.predictions.decoder.bias is model.predictions.bias
    inputs = make_inputs(model.config, pair=False)
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert model.albert.embeddings.word_embeddings.weight.grad is not None


def test_parameters_are_shared_across_layers():
    """12 layers over one group hold the parameters of one layer, like the paper says."""
    one = sa.AlbertModel(sa.AlbertConfig(vocab_size=VOCAB, **{**CONFIGS["small"], "num_hidden_layers": 1}))
    twelve = sa.AlbertModel(sa.AlbertConfig(vocab_size=VOCAB, **{**CONFIGS["small"], "num_hidden_layers": 12}))
    assert one.num_parameters() == twelve.num_parameters()


def test_dropout_is_active_in_training_mode_only(saved_reference):
    _, path = saved_reference("small", "AlbertModel")
    model = sa.AlbertModel.from_pretrained(path)
    inputs = make_inputs(model.config, pair=False)
    with torch.no_grad():
        eval_a, eval_b = model(**inputs).last_hidden_state, model(**inputs).last_hidden_state
        model.train()
        train_a, train_b = model(**inputs).last_hidden_state, model(**inputs).last_hidden_state
    assert torch.equal(eval_a, eval_b)
    assert not torch.allclose(train_a, train_b)


def test_chunked_feed_forward_gives_the_same_output(saved_reference):
    _, path = saved_reference("small", "AlbertModel")
    plain = sa.AlbertModel.from_pretrained(path)
    chunked = sa.AlbertModel.from_pretrained(path, chunk_size_feed_forward=4)
    inputs = make_inputs(plain.config, pair=True)
    with torch.no_grad():
        assert_close(plain(**inputs).last_hidden_state, chunked(**inputs).last_hidden_state, "chunked")


def test_bfloat16_loading_and_forward(saved_reference):
    ref, path = saved_reference("small", "AlbertForTokenClassification")
    model = sa.AlbertForTokenClassification.from_pretrained(path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    inputs = make_inputs(ref.config, pair=False)
    with torch.no_grad():
        low = model(**inputs).logits.float()
        full = ref(**inputs).logits
    assert 1e-4 < (low - full).abs().max() < 0.05  # bf16 rounding: not zero (a dtype left unused), not more
    assert sa.AlbertModel.from_pretrained(path, dtype="auto").dtype == torch.float32
