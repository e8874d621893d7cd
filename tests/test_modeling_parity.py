"""Parity of the native ALBERT with transformers' reference, in both directions.

Random-init reference models are saved with `save_pretrained` and loaded with ours (and the
reverse); every output and loss must agree within 1e-5 in float32 eval mode.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import transformers as hf
from torch.nn import functional as F

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


# ---- the packed (padding-free) layout and every attention path, against transformers -------
# The spaCy encoder (`WindowedEncoder`) runs `AlbertModel.packed_hidden_states` on packed
# chunks and `AlbertModel.forward` on padded ones; every branch is forced here on CPU: the
# attention buckets (one length, no copies / padded with a key mask: `padding_tolerance`), the
# padded batches, the inference fast path (`inference_buffers`) on and off, autograd, int8,
# bfloat16 autocast and the padded fallback of relative positions.
PACKED_VOCAB = 99
# 5 passes over 2 groups of 2 layers: passes 0-2 run group 0, passes 3-4 group 1 (3 passes over
# 2 groups of 2 layers would be uneven too, but transformers cannot run it: its head masks
# per group are one layer short).
_SHARED = dict(
    embedding_size=16, hidden_size=32, num_attention_heads=4, num_hidden_layers=5, num_hidden_groups=2,
    inner_group_num=2, intermediate_size=37, hidden_act="gelu_new", type_vocab_size=3,
)  # fmt: skip
PACKED_CONFIGS = {
    "shared_gelu_new": _SHARED,
    "gelu": {**_SHARED, "hidden_act": "gelu"},
    "chunked_relu": {**_SHARED, "hidden_act": "relu", "chunk_size_feed_forward": 5},  # no in-place activation
}
LAYOUTS = {
    "packed_one_length": dict(batching="packed", padding_tolerance=0.0),
    "packed_padded_buckets": dict(batching="packed", padding_tolerance=1e9),
    "padded": dict(batching="padded"),
}
SEQUENCE_LENGTHS = [12, 12, 12, 7, 7, 20, 3, 15, 2]  # repeated lengths: buckets of several windows


def encoder_and_reference(name: str, **extra):
    """Our spaCy encoder and transformers' AlbertModel with the same weights, every weight
    moved away from its initial value (LayerNorms not 1 and 0, biases not 0)."""
    from spacy_albert.layers.encoder import WindowedEncoder

    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    config = {**PACKED_CONFIGS[name], **extra}
    encoder = WindowedEncoder(sa.AlbertConfig(vocab_size=PACKED_VOCAB, **config)).eval()
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ref_config = hf.AlbertConfig(vocab_size=PACKED_VOCAB, attn_implementation="eager", **config)
    ref = hf.AlbertModel(ref_config, add_pooling_layer=False).eval()
    ref.load_state_dict(encoder.albert.state_dict())
    return encoder, ref


def sequences(seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """[CLS] ... [SEP] sequences and their token types (a second segment of type 1, the last
    piece of type 2)."""
    rng = np.random.default_rng(seed)
    seqs = [[2, *rng.integers(5, PACKED_VOCAB, size=n - 2).tolist(), 3] for n in SEQUENCE_LENGTHS]
    types = [[0] * (n // 2) + [1] * (n - n // 2 - 1) + [2] for n in SEQUENCE_LENGTHS]
    return seqs, types


def reference_states(ref, seqs, types, n_layers: int) -> torch.Tensor:
    """transformers' last `n_layers` hidden states of each sequence alone (a padded batch with
    its attention mask), concatenated: [n_layers, total positions, H]."""
    width = max(map(len, seqs))
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask, token_types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        if types is not None:
            token_types[i, : len(seq)] = torch.tensor(types[i])
    out = ref(input_ids=ids, attention_mask=mask, token_type_ids=None if types is None else token_types,
              output_hidden_states=True)  # fmt: skip
    states = torch.stack(out.hidden_states[-n_layers:])
    return torch.cat([states[:, i, : len(seq)] for i, seq in enumerate(seqs)], dim=1)


def sequence_batch(layout: str, seqs, types, n_layers: int = 2, max_batch_pieces: int = 40):
    from spacy_albert.layers.windows import make_sequence_batch

    batch = make_sequence_batch(seqs, types, max_batch_pieces=max_batch_pieces, **LAYOUTS[layout])
    batch.n_layers = n_layers
    check_layout(batch, layout)
    return batch


def check_layout(batch, layout: str) -> None:
    """The batch runs the attention path its layout names (so each test forces its branch)."""
    assert len(batch.chunks) > 1
    buckets = [b for chunk in batch.chunks for b in chunk.buckets]
    if layout == "padded":
        assert not any(chunk.packed for chunk in batch.chunks)
    elif layout == "packed_one_length":  # views of the packed rows, one of several windows
        assert all(isinstance(gather, tuple) and mask is None for gather, mask, _ in buckets)
        assert any(gather[1] > 1 for gather, _, _ in buckets)
    else:  # gathered, padded, masked
        assert any(isinstance(gather, np.ndarray) and mask is not None for gather, mask, _ in buckets)


@pytest.fixture
def buffer_uses(monkeypatch):
    """Counts the inference buffers handed out, to tell which path ran."""
    from spacy_albert.models.packed import InferenceBuffers

    calls = []
    original = InferenceBuffers.get

    def get(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InferenceBuffers, "get", get)
    return calls


@pytest.mark.parametrize("config_name", sorted(PACKED_CONFIGS))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("with_types", [False, True], ids=["no_types", "types"])
def test_every_layout_and_inference_path_matches_transformers(buffer_uses, config_name, layout, with_types):
    encoder, ref = encoder_and_reference(config_name)
    seqs, types = sequences()
    types = types if with_types else None
    batch = sequence_batch(layout, seqs, types)
    offsets = np.cumsum([0] + SEQUENCE_LENGTHS[:-1])
    with torch.no_grad():
        expected = reference_states(ref, seqs, types, n_layers=2)
        for inference_buffers in (None, True, False):  # None: on, as autograd is off
            encoder.inference_buffers = inference_buffers
            buffer_uses.clear()
            hidden, cls = encoder(batch)
            assert bool(buffer_uses) == (inference_buffers is not False), inference_buffers
            label = f"{config_name}/{layout}/buffers={inference_buffers}"
            assert_close(expected, hidden, label)
            assert_close(expected[:, offsets], cls, f"{label} cls")


def test_packed_hidden_states_is_the_models_padding_free_forward():
    """The model's own packed entry, on a chunk's tensors: every hidden state (the projected
    embeddings included) of each window equals the reference's for that window alone."""
    from spacy_albert.layers.windows import make_sequence_batch

    encoder, ref = encoder_and_reference("shared_gelu_new")
    model, n_layers = encoder.albert, encoder.config.num_hidden_layers + 1
    seqs, types = sequences(seed=1)
    for tolerance in (0.0, 1e9):
        (chunk,) = make_sequence_batch(seqs, types, max_batch_pieces=10**6, padding_tolerance=tolerance).chunks
        t = chunk.tensors(torch.device("cpu"))
        order = chunk.window_doc  # the chunk holds the sequences sorted by length
        with torch.no_grad():
            expected = reference_states(ref, [seqs[i] for i in order], [types[i] for i in order], n_layers)
            for inference_buffers in (True, False):
                states = model.packed_hidden_states(t["input_ids"], t["position_ids"], t["token_type_ids"],
                                                    t["buckets"], n_layers, inference_buffers=inference_buffers)  # fmt: skip
                assert_close(expected, states, f"tolerance={tolerance}, buffers={inference_buffers}")
    args = (t["input_ids"], t["position_ids"], None, t["buckets"])
    with pytest.raises(ValueError, match="autograd off"):
        model.packed_hidden_states(*args, inference_buffers=True)
    with pytest.raises(ValueError, match="n_layers"):
        model.packed_hidden_states(*args, n_layers + 1)
    with pytest.raises(ValueError, match="shape"):
        model.packed_hidden_states(t["input_ids"][None], t["position_ids"][None], None, t["buckets"])
    with torch.no_grad(), pytest.raises(ValueError, match="position_ids must lie in"):
        model.packed_hidden_states(t["input_ids"], t["position_ids"] + 10**4, None, t["buckets"])


def test_gradients_match_transformers_in_every_layout():
    """With autograd (the inference fast path off by itself), every parameter's gradient of
    a loss over the states matches the reference's: through the concatenated q/k/v weights,
    the shared layers, the buckets' gathers and scatters, and the embeddings."""
    seqs, types = sequences()
    weights = torch.randn(2, 1, _SHARED["hidden_size"], generator=torch.Generator().manual_seed(0))
    grads = {}
    for layout in sorted(LAYOUTS):
        encoder, ref = encoder_and_reference("shared_gelu_new")
        hidden, _ = encoder(sequence_batch(layout, seqs, types))
        (hidden * weights).sum().backward()
        grads[layout] = {name: p.grad for name, p in encoder.albert.named_parameters()}
    (reference_states(ref, seqs, types, n_layers=2) * weights).sum().backward()

    def assert_grad_close(ours, theirs, what):  # 1e-5 of the largest entry (sums over 90 positions)
        diff = (ours - theirs).abs().max().item()
        assert diff <= 1e-5 * max(1.0, theirs.abs().max().item()), f"{what}: max abs diff {diff:.3g}"

    for name, p in ref.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
        for layout in LAYOUTS:
            assert_grad_close(grads[layout][name], p.grad, f"{layout}: {name}")
    embedding = "embeddings.word_embeddings.weight"
    for layout in ("packed_one_length", "packed_padded_buckets"):
        assert_grad_close(grads[layout][embedding], grads["padded"][embedding], f"{layout} vs padded")


def test_overlapping_windows_average_the_reference_states_of_each_window():
    """`make_windows` over docs longer than a window: each piece's states are the mean of the
    reference's states of the windows that see it, each doc's [CLS] the mean over its windows."""
    from spacy_albert.layers.windows import make_windows, span_windows

    encoder, ref = encoder_and_reference("gelu")
    rng = np.random.default_rng(3)
    pieces = [rng.integers(5, PACKED_VOCAB, size=n) for n in (0, 5, 23, 50, 14)]
    spans = [[(0, len(p))] if len(p) else [] for p in pieces]
    with torch.no_grad():
        expected, expected_cls = [], []
        for ids, doc_spans in zip(pieces, spans):
            windows = span_windows(doc_spans, 16, 10) or [(0, 0)]
            seqs = [[2, *ids[start:end].tolist(), 3] for start, end in windows]
            states = reference_states(ref, seqs, None, n_layers=2)
            total, counts = torch.zeros(2, len(ids), _SHARED["hidden_size"]), torch.zeros(len(ids))
            offset = 0
            for (start, end), seq in zip(windows, seqs):
                total[:, start:end] += states[:, offset + 1 : offset + 1 + end - start]
                counts[start:end] += 1
                expected_cls.append(states[:, offset] / len(windows))
                offset += len(seq)
            expected.append(total / counts.clamp(min=1)[None, :, None])
        doc_cls = []
        i = 0
        for doc_spans in spans:
            n = len(span_windows(doc_spans, 16, 10) or [(0, 0)])
            doc_cls.append(sum(expected_cls[i : i + n]))
            i += n
        for layout, settings in LAYOUTS.items():
            batch = make_windows(pieces, spans, window=16, stride=10, cls_id=2, sep_id=3, pad_id=0,
                                 max_batch_pieces=60, n_layers=2, **settings)  # fmt: skip
            hidden, cls = encoder(batch)
            assert_close(torch.cat(expected, dim=1), hidden, layout)
            assert_close(torch.stack(doc_cls, dim=1), cls, f"{layout} cls")


@pytest.mark.parametrize("position_embedding_type", ["relative_key", "relative_key_query"])
def test_relative_positions_run_padded_and_match_transformers(position_embedding_type):
    encoder, ref = encoder_and_reference("shared_gelu_new", position_embedding_type=position_embedding_type,
                                         max_position_embeddings=40)  # fmt: skip
    seqs, types = sequences()
    with torch.no_grad():
        expected = reference_states(ref, seqs, types, n_layers=2)
        for layout in ("packed_one_length", "padded"):  # packed chunks fall back to padded ones
            assert_close(expected, encoder(sequence_batch(layout, seqs, types))[0], f"{position_embedding_type}/{layout}")
    t = sequence_batch("packed_one_length", seqs, types).chunks[0].tensors(torch.device("cpu"))
    with pytest.raises(ValueError, match="absolute position"):
        encoder.albert.packed_hidden_states(t["input_ids"], t["position_ids"], None, t["buckets"])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_int8_encoder_stays_close_to_the_float_reference(layout):
    from spacy_albert.layers.quantize import quantize_encoder

    encoder, ref = encoder_and_reference("shared_gelu_new")
    seqs, types = sequences()
    batch = sequence_batch(layout, seqs, types)
    quantize_encoder(encoder)
    assert encoder.quantized
    with torch.no_grad():
        expected = reference_states(ref, seqs, types, n_layers=2)
        for inference_buffers in (True, False):
            encoder.inference_buffers = inference_buffers
            hidden, _ = encoder(batch)
            cosine = F.cosine_similarity(hidden.flatten(), expected.flatten(), dim=0)
            assert cosine > 0.99 and (hidden - expected).abs().max() > 1e-4, (inference_buffers, cosine)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_bfloat16_autocast_stays_close_to_the_float_reference(layout):
    encoder, ref = encoder_and_reference("gelu")
    encoder.precision = "bfloat16"
    seqs, types = sequences()
    batch = sequence_batch(layout, seqs, types)
    with torch.no_grad():
        expected = reference_states(ref, seqs, types, n_layers=2)
        hidden, _ = encoder(batch)  # the inference fast path stays off under autocast
        assert hidden.dtype == torch.float32
        assert 1e-4 < (hidden - expected).abs().max() < 0.15
        encoder.inference_buffers = True
        with pytest.raises(ValueError, match="autocast"):
            encoder(batch)
