"""The reference documentation's usage examples, run with our classes on tiny random models.

Each example runs twice, with spacy_albert and with transformers on the same checkpoint and
vocabulary, and both must give the same predictions and losses.
"""

from __future__ import annotations

import shutil
import zlib

import pytest
import torch
import transformers as hf

import spacy_albert as sa

TINY = dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
LOSS_ATOL = 1e-5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, spm_dir):
    """Make checkpoints of every head sharing one vocabulary; returns a path factory."""
    vocab_size = len(sa.AlbertTokenizer(str(spm_dir / "spiece.model")))
    root = tmp_path_factory.mktemp("spec")
    made = {}

    def get(head: str, **config):
        key = (head, tuple(sorted(config.items())))
        if key not in made:
            # The same weights whichever tests run, in whatever order (not a count of those made).
            torch.manual_seed(zlib.crc32(repr(key).encode()))
            path = root / f"{head}-{len(made)}"
            getattr(hf, head)(hf.AlbertConfig(vocab_size=vocab_size, **TINY, **config)).save_pretrained(path)
            shutil.copy(spm_dir / "spiece.model", path / "spiece.model")
            made[key] = path
        return made[key]

    return get


def both(head: str, path, **kwargs):
    """(ours, reference) model and tokenizer pairs for one checkpoint."""
    ours = getattr(sa, head).from_pretrained(path, **kwargs), sa.AlbertTokenizer.from_pretrained(path)
    ref = getattr(hf, head).from_pretrained(path, **kwargs).eval(), hf.AlbertTokenizer.from_pretrained(path)
    return ours, ref


def test_config_examples():
    xxlarge = sa.AlbertConfig()
    base = sa.AlbertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072)
    assert (xxlarge.hidden_size, xxlarge.intermediate_size, base.hidden_size) == (4096, 16384, 768)
    with torch.device("meta"):  # the xxlarge shapes without allocating them
        model = sa.AlbertModel(xxlarge)
    configuration = model.config
    assert configuration is xxlarge
    ref_params = sum(p.numel() for p in hf.AlbertModel(hf.AlbertConfig(hidden_size=64, num_attention_heads=4,
                                                                         intermediate_size=256)).parameters())  # fmt: skip
    ours_params = sa.AlbertModel(sa.AlbertConfig(hidden_size=64, num_attention_heads=4, intermediate_size=256))
    assert ours_params.num_parameters() == ref_params


def test_masked_lm_example(checkpoint):
    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertForMaskedLM", checkpoint("AlbertForMaskedLM"))
    results = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        inputs = tok("The capital of [MASK] is Paris.", return_tensors="pt")
        with torch.no_grad():
            logits = m(**inputs).logits
        mask_token_index = (inputs.input_ids == tok.mask_token_id)[0].nonzero(as_tuple=True)[0]
        assert len(mask_token_index) == 1
        predicted_token_id = logits[0, mask_token_index].argmax(axis=-1)
        # The spec's "France" is many pieces in this tiny vocabulary; "state" is one, as France is in albert-base.
        labels = tok("The capital of state is Paris.", return_tensors="pt")["input_ids"]
        labels = torch.where(inputs.input_ids == tok.mask_token_id, labels, -100)
        loss = m(**inputs, labels=labels).loss
        results.append((tok.decode(predicted_token_id), predicted_token_id.tolist(), loss.item()))
    assert results[0][:2] == results[1][:2]
    assert results[0][2] == pytest.approx(results[1][2], abs=LOSS_ATOL)


def test_question_answering_example(checkpoint):
    (model, tokenizer), (ref_model, ref_tokenizer) = both(
        "AlbertForQuestionAnswering", checkpoint("AlbertForQuestionAnswering")
    )
    results = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        question, text = "Who was Jim Henson?", "Jim Henson was a nice puppet"
        inputs = tok(question, text, return_tensors="pt")
        with torch.no_grad():
            outputs = m(**inputs)
        start, end = outputs.start_logits.argmax(), outputs.end_logits.argmax()
        answer = tok.decode(inputs.input_ids[0, start : end + 1], skip_special_tokens=True)
        loss = m(**inputs, start_positions=torch.tensor([12]), end_positions=torch.tensor([13])).loss
        results.append((inputs.input_ids.tolist(), int(start), int(end), answer, loss.item()))
    assert results[0][:4] == results[1][:4]
    assert results[0][4] == pytest.approx(results[1][4], abs=LOSS_ATOL)


def test_multiple_choice_example(checkpoint):
    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertForMultipleChoice", checkpoint("AlbertForMultipleChoice"))
    results = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        prompt = "In Italy, pizza served in formal settings, such as at a restaurant, is presented unsliced."
        choice0, choice1 = "It is eaten with a fork and a knife.", "It is eaten while held in the hand."
        labels = torch.tensor(0).unsqueeze(0)
        encoding = tok([prompt, prompt], [choice0, choice1], return_tensors="pt", padding=True)
        with torch.no_grad():
            outputs = m(**{k: v.unsqueeze(0) for k, v in encoding.items()}, labels=labels)
        assert outputs.logits.shape == (1, 2)
        results.append((encoding["input_ids"].tolist(), outputs.logits, outputs.loss))
    assert results[0][0] == results[1][0]
    torch.testing.assert_close(results[0][1], results[1][1], atol=LOSS_ATOL, rtol=0)
    torch.testing.assert_close(results[0][2], results[1][2], atol=LOSS_ATOL, rtol=0)


def test_sequence_classification_examples(checkpoint):
    path = checkpoint("AlbertForSequenceClassification", num_labels=3)
    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertForSequenceClassification", path)
    single = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        inputs = tok("Hello, my dog is cute", return_tensors="pt")
        with torch.no_grad():
            logits = m(**inputs).logits
        predicted_class_id = logits.argmax().item()
        loss = m(**inputs, labels=torch.tensor([1])).loss
        single.append((m.config.id2label[predicted_class_id], loss.item()))
    assert single[0][0] == single[1][0] and single[0][1] == pytest.approx(single[1][1], abs=LOSS_ATOL)

    (model, tokenizer), (ref_model, ref_tokenizer) = both(
        "AlbertForSequenceClassification", path, problem_type="multi_label_classification"
    )
    multi = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        inputs = tok("Hello, my dog is cute", return_tensors="pt")
        with torch.no_grad():
            logits = m(**inputs).logits
        predicted_class_ids = torch.arange(0, logits.shape[-1])[torch.sigmoid(logits).squeeze(dim=0) > 0.5]
        num_labels = len(m.config.id2label)
        labels = torch.sum(
            torch.nn.functional.one_hot(predicted_class_ids[None, :].clone(), num_classes=num_labels), dim=1
        ).to(torch.float)
        loss = m(**inputs, labels=labels).loss
        multi.append((predicted_class_ids.tolist(), loss.item()))
    assert multi[0][0] == multi[1][0] and multi[0][1] == pytest.approx(multi[1][1], abs=LOSS_ATOL)


def test_token_classification_example(checkpoint):
    path = checkpoint("AlbertForTokenClassification", num_labels=5)
    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertForTokenClassification", path)
    results = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        inputs = tok("HuggingFace is a company based in Paris and New York", add_special_tokens=False,
                     return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            logits = m(**inputs).logits
        predicted_token_class_ids = logits.argmax(-1)
        classes = [m.config.id2label[t.item()] for t in predicted_token_class_ids[0]]
        loss = m(**inputs, labels=predicted_token_class_ids).loss
        results.append((classes, loss.item()))
    assert results[0][0] == results[1][0] and results[0][1] == pytest.approx(results[1][1], abs=LOSS_ATOL)


def test_pretraining_and_base_model_examples(checkpoint):
    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertForPreTraining", checkpoint("AlbertForPreTraining"))
    outs = []
    for m, tok in ((model, tokenizer), (ref_model, ref_tokenizer)):
        input_ids = torch.tensor(tok.encode("Hello, my dog is cute", add_special_tokens=True)).unsqueeze(0)
        with torch.no_grad():
            outputs = m(input_ids)
        outs.append((input_ids, outputs.prediction_logits, outputs.sop_logits))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[0][2], outs[1][2], atol=1e-5, rtol=0)

    (model, tokenizer), (ref_model, ref_tokenizer) = both("AlbertModel", checkpoint("AlbertModel"))
    inputs = tokenizer("Hello, my dog is cute", return_tensors="pt")
    ref_inputs = ref_tokenizer("Hello, my dog is cute", return_tensors="pt")
    with torch.no_grad():
        last_hidden_states = model(**inputs).last_hidden_state
        torch.testing.assert_close(last_hidden_states, ref_model(**ref_inputs).last_hidden_state, atol=1e-5, rtol=0)
