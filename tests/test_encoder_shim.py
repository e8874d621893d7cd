"""The encoder's thinc shim (`spacy_albert.layers.shim.AlbertShim`) and the one encoder every
component runs: loss scaling that stays right when gradients accumulate, prediction without
train/eval switching, config + tokenizer + weights saved together (shapes from the saved
model, 0.1 saves still loading), sequences with token types, and the removed architecture's
error."""

from __future__ import annotations

import numpy as np
import pytest
import spacy
import srsly
import torch
import transformers as hf
from thinc.api import SGD

from conftest import TINY_ALBERT
from spacy_albert.errors import AlbertError
from spacy_albert.layers.data import PieceSequences
from spacy_albert.layers.shim import AlbertShim
from spacy_albert.layers.transformer import (
    albert_state,
    build_albert_transformer,
    encode_sequences,
    get_torch_encoder,
    load_checkpoint,
)

TEXTS = ["The old man saw the river.", "A child went home with her mother and father at night.", ""]


def loaded_encoder(checkpoint, **settings):
    model = build_albert_transformer(**TINY_ALBERT, **settings)
    load_checkpoint(model, checkpoint)
    model.initialize()
    return model


def shim_of(model) -> AlbertShim:
    return next(shim for node in model.walk() for shim in node.shims)


def accumulate(model, docs, steps, seed):
    """`steps` backward passes of random output gradients, then one SGD step."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        outputs, backprop = model.begin_update(docs)
        backprop([o.with_arrays(rng.normal(size=o.hidden.shape).astype("float32"),
                                rng.normal(size=o.cls.shape).astype("float32")) for o in outputs])  # fmt: skip
    model.finish_update(SGD(0.1))


def test_loss_scaling_is_undone_once_when_gradients_accumulate(albert_checkpoint):
    """With accumulate_gradient > 1, gradients of several backward passes add up before one
    optimizer step; the scaled gradients are unscaled exactly once, so the step equals the
    unscaled one (thinc's own shim unscales after every backward pass, which divides the
    earlier passes' gradients by the scale again)."""
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in TEXTS]
    weights = {}
    for scaling in (False, True):
        model = loaded_encoder(albert_checkpoint)
        shim = shim_of(model)
        if scaling:
            shim.scaler._enabled = True  # float16's scaler, on float32 arithmetic: isolates the scaling
            assert shim.scaler.current_scale == 2.0**16
        accumulate(model, docs, steps=3, seed=0)
        weights[scaling] = {k: v.clone() for k, v in get_torch_encoder(model).state_dict().items()}
    before = get_torch_encoder(loaded_encoder(albert_checkpoint)).state_dict()
    moved = max(float((weights[False][k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-3  # the step did something
    for key in before:
        torch.testing.assert_close(weights[True][key], weights[False][key], rtol=1e-5, atol=1e-6)


def test_an_overflow_skips_the_step_and_lowers_the_scale(albert_checkpoint):
    model = loaded_encoder(albert_checkpoint)
    shim = shim_of(model)
    shim.scaler._enabled = True
    before = {k: v.clone() for k, v in get_torch_encoder(model).state_dict().items()}
    weight = get_torch_encoder(model).albert.embeddings.word_embeddings.weight
    weight.grad = torch.full_like(weight, float("inf"))
    model.finish_update(SGD(0.1))
    after = get_torch_encoder(model).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert shim.scaler.current_scale == 2.0**15
    assert not bool(weight.grad.any())


def test_predict_never_switches_the_module_mode(albert_checkpoint):
    """Prediction leaves the module in eval mode throughout (no train()/eval() toggling that
    threads predicting at once could race on); training runs in train mode and returns to eval."""
    model = loaded_encoder(albert_checkpoint, hidden_dropout_prob=0.3)
    module = get_torch_encoder(model)
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    calls = []
    original_train = module.train
    module.train = lambda mode=True: (calls.append(mode), original_train(mode))[1]
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    first = model.predict(docs)
    second = model.predict(docs)
    assert seen == [False, False] and calls == []
    np.testing.assert_array_equal(first[0].hidden, second[0].hidden)  # no dropout at prediction
    model.begin_update(docs)
    assert seen[-1] is True and not module.training


def test_saved_encoder_decides_its_shapes_and_tokenizer(albert_checkpoint, tmp_path):
    """Config, tokenizer and weights travel together: bytes of a loaded encoder restore into
    an encoder built with other sizes and no vocabulary."""
    model = loaded_encoder(albert_checkpoint)
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    expected = model.predict(docs)
    other = build_albert_transformer(embedding_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=20, vocab_size=50)  # fmt: skip
    other.from_bytes(model.to_bytes())
    assert albert_state(other).config.hidden_size == TINY_ALBERT["hidden_size"]
    assert albert_state(other).tokenizer is not None
    got = other.predict(docs)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.hidden, b.hidden)
    # the state held by the model's attrs is the shim's own, also after loading
    assert other.attrs["albert"] is albert_state(other)


def test_a_pipeline_saved_by_version_0_1_still_loads(albert_checkpoint):
    """spacy-albert 0.1 kept config and tokenizer in the model's attrs and only the weights
    in the shim: such bytes load, giving the same states."""
    model = loaded_encoder(albert_checkpoint)
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    expected = model.predict(docs)
    msg = srsly.msgpack_loads(model.to_bytes())
    shim_msg = srsly.msgpack_loads(msg["shims"][1][0])
    state = albert_state(model)
    msg["attrs"][0]["albert"] = srsly.msgpack_dumps({"config": state.config.to_dict(), "tokenizer": state.tokenizer_files})
    msg["shims"][1][0] = srsly.msgpack_dumps({"config": {}, "state": shim_msg["weights"]})
    old = build_albert_transformer(**TINY_ALBERT)
    old.from_bytes(srsly.msgpack_dumps(msg))
    for a, b in zip(expected, old.predict(docs)):
        np.testing.assert_array_equal(a.hidden, b.hidden)


def test_sequences_with_token_types_equal_the_reference(albert_checkpoint):
    """Sequences that bring their own special pieces and token types (question + context,
    prompt + choice) give transformers' states for every position, with every attention
    bucketing and both batchings."""
    reference = hf.AlbertModel.from_pretrained(albert_checkpoint, add_pooling_layer=False).eval()
    rng = np.random.default_rng(0)
    lengths = [7, 12, 3, 12, 30, 2]
    ids = [np.concatenate([[2], rng.integers(5, 500, n - 2), [3]]) if n > 2 else np.array([2, 3]) for n in lengths]
    types = [np.concatenate([np.zeros(n // 2, dtype="int64"), np.ones(n - n // 2, dtype="int64")]) for n in lengths]
    for batching in ("packed", "padded"):
        for buckets in ("exact", "padded"):
            model = loaded_encoder(albert_checkpoint, batching=batching, attention_buckets=buckets, max_batch_pieces=40)
            (hidden, cls), _ = encode_sequences(model, PieceSequences(ids, types), is_train=False)
            offset = 0
            for sequence, token_types in zip(ids, types):
                with torch.no_grad():
                    want = reference(torch.tensor([sequence]), token_type_ids=torch.tensor([token_types]))
                got = hidden[offset : offset + len(sequence)]
                np.testing.assert_allclose(got, want.last_hidden_state[0].numpy(), atol=1e-5)
                offset += len(sequence)
            assert offset == hidden.shape[0] and cls.shape == (len(ids), TINY_ALBERT["hidden_size"])


def test_attention_buckets_setting_is_checked():
    with pytest.raises(ValueError, match="attention_buckets='fast'"):
        build_albert_transformer(**TINY_ALBERT, attention_buckets="fast")


def test_the_removed_task_model_names_the_way_forward(tmp_path):
    nlp = spacy.blank("en")
    config = {"model": {"@architectures": "spacy-albert.AlbertTaskModel.v1", "task": "question-answering"}}
    with pytest.raises(AlbertError, match=r"AlbertTaskModel.v1 .*removed.*QuestionAnswering.v1.*spacy_albert export"):
        nlp.add_pipe("albert_qa", config=config)
    # a saved pipeline naming it (its config.cfg) fails to load with the same message
    nlp = spacy.blank("en")
    nlp.to_disk(tmp_path)
    text = (tmp_path / "config.cfg").read_text()
    text = text.replace("[components]\n", '[components]\n\n[components.albert_qa]\nfactory = "albert_qa"\n\n'
                        '[components.albert_qa.model]\n@architectures = "spacy-albert.AlbertTaskModel.v1"\n'
                        'task = "question-answering"\n')  # fmt: skip
    text = text.replace("pipeline = []", 'pipeline = ["albert_qa"]')
    (tmp_path / "config.cfg").write_text(text)
    with pytest.raises(AlbertError, match=r"with spacy-albert 0.1, export .*initialize it from that checkpoint"):
        spacy.load(tmp_path)
