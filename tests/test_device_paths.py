"""What a GPU would show, checked on the CPU: masked attention gets contiguous q/k/v, the
device-dependent "auto" choices are selectable, and the hot paths of prediction and training
read nothing back from the device per chunk, window, doc or parameter.

Reads are counted with a torch function mode: every call that makes the host wait for a
device tensor's value (`.item()`, `.tolist()`, `bool()`, `float()`, `int()`, `nonzero`,
boolean-mask indexing, `.cpu()`) made from spacy_albert's own code. `.numpy()` is not counted:
it fails on a CUDA tensor, so code that calls it holds host data anyway."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, SGD
from torch.overrides import TorchFunctionMode

import spacy_albert
from conftest import TINY_ALBERT
from spacy_albert.layers import transformer as transformer_module
from spacy_albert.layers.data import PieceSequences
from spacy_albert.layers.transformer import (
    build_albert_transformer,
    encode_sequences,
    get_torch_encoder,
    load_checkpoint,
)
from spacy_albert.layers.windows import ATTENTION_PADDING_TOLERANCE
from spacy_albert.pipeline.guards import check_arrays, finite_flags
from spacy_albert.errors import NonFiniteError

PACKAGE = str(Path(spacy_albert.__file__).parent)
TENSOR_PY = str(Path(torch.__file__).parent / "_tensor.py")
READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "cpu", "masked_select"}
TEXTS = ["The old man saw the river.", "A child went home with her mother and father at night.",
         "Alice lives in Paris with Bob.", "Bob visited Berlin yesterday, and it rained all day long."]  # fmt: skip


class DeviceReads(TorchFunctionMode):
    """Counts the device reads made by spacy_albert's code, by call site."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        bool_index = name == "__getitem__" and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in _flat(args[1:])
        )
        if name in READS or bool_index:
            # the code that asked for the value: torch's own reads (an optimizer's step count on
            # the host) are torch's business; the Python wrappers of Tensor methods are skipped
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename in (__file__, TENSOR_PY):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
                self.sites.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {name}")
        return func(*args, **(kwargs or {}))


def _flat(items):
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from _flat(item)
        else:
            yield item


def loaded_encoder(checkpoint, **settings):
    model = build_albert_transformer(**TINY_ALBERT, **settings)
    load_checkpoint(model, checkpoint)
    model.initialize()
    return model


def shim_of(model):
    return next(shim for node in model.walk() for shim in node.shims)


# ---- scaled_dot_product_attention: contiguous q/k/v whenever a mask is given ---------------
def test_masked_attention_gets_contiguous_inputs(albert_checkpoint, monkeypatch):
    """Both call sites (the padded layout's `attend`, the packed layout's buckets) hand SDPA
    contiguous q/k/v when they pass a mask (strided ones with a mask give wrong results on
    some torch/CUDA versions); the outputs are the unpatched ones."""
    real = torch.nn.functional.scaled_dot_product_attention
    calls = []

    def recording(q, k, v, attn_mask=None, dropout_p=0.0, **kwargs):
        caller = sys._getframe(2).f_code.co_name  # the caller of `packed.sdpa`
        calls.append((caller, attn_mask is not None, all(t.is_contiguous() for t in (q, k, v))))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, **kwargs)

    rng = np.random.default_rng(0)
    # windows one or two pieces apart share a padded bucket (attention_buckets = "padded")
    ids = [np.concatenate([[2], rng.integers(5, 500, n - 2), [3]]) for n in (12, 11, 10, 12, 7, 6)]
    outputs = {}
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
        for batching in ("padded", "packed"):
            model = loaded_encoder(albert_checkpoint, batching=batching, attention_buckets="padded",
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
            for is_train in (False, True):  # the inference-buffer path and the autograd one
                (hidden, _), _ = encode_sequences(model, PieceSequences(ids), is_train)
                outputs.setdefault((batching, is_train), []).append(hidden)
    masked = {(caller, contiguous) for caller, has_mask, contiguous in calls if has_mask}
    assert {caller for caller, _ in masked} == {"attend", "bucket_attention"}
    assert all(contiguous for _, contiguous in masked), calls
    for (batching, is_train), (plain, recorded) in outputs.items():
        np.testing.assert_array_equal(plain, recorded)


# ---- device-dependent choices, selectable on the CPU --------------------------------------
def test_attention_buckets_auto_follows_the_device_and_each_mode_is_selectable(albert_checkpoint, monkeypatch):
    """"auto" is "exact" on a CPU and "padded" on a GPU; the GPU's choice is chosen on the CPU
    by name, and every mode gives the same states."""
    tolerance = transformer_module._padding_tolerance
    model = loaded_encoder(albert_checkpoint)
    assert tolerance(model) == 0.0  # auto on the CPU
    monkeypatch.setattr(transformer_module, "get_torch_default_device", lambda: torch.device("cuda", 0))
    assert tolerance(model) == ATTENTION_PADDING_TOLERANCE  # auto on a GPU
    monkeypatch.undo()
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    states = {}
    for mode in ("auto", "exact", "padded"):
        encoder = loaded_encoder(albert_checkpoint, attention_buckets=mode)
        assert tolerance(encoder) == (ATTENTION_PADDING_TOLERANCE if mode == "padded" else 0.0)
        states[mode] = np.concatenate([d.hidden for d in encoder.predict(docs)], axis=1)
    np.testing.assert_array_equal(states["auto"], states["exact"])
    np.testing.assert_allclose(states["padded"], states["exact"], atol=1e-5)


def test_float16_loss_scaling_runs_on_the_cpu(albert_checkpoint):
    """The float16 encoder's path (autocast to float16 and a loss scaler that skips steps
    whose gradients overflowed) runs on the CPU: gradients accumulated over two backward
    passes are unscaled once, so the step moves the weights by a finite amount."""
    model = loaded_encoder(albert_checkpoint, precision="float16")
    shim = shim_of(model)
    assert shim.loss_scaling and shim.scaler.current_scale == 2.0**16
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    before = {k: v.clone() for k, v in get_torch_encoder(model).state_dict().items()}
    rng = np.random.default_rng(0)
    for _ in range(2):
        outputs, backprop = model.begin_update(docs)
        backprop([o.with_arrays(rng.normal(size=o.hidden.shape).astype("float32") * 1e-3,
                                rng.normal(size=o.cls.shape).astype("float32") * 1e-3) for o in outputs])  # fmt: skip
    model.finish_update(SGD(0.01))
    after = get_torch_encoder(model).state_dict()
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert 0 < moved < 1.0 and all(bool(torch.isfinite(v).all()) for v in after.values())
    assert shim.scaler.current_scale == 2.0**16  # no overflow: the scale stays


# ---- no device reads per chunk -------------------------------------------------------------
@pytest.mark.parametrize("batching", ["packed", "padded"])
def test_the_encoder_reads_nothing_back_from_the_device(albert_checkpoint, batching):
    """Prediction and a training step (forward, backward with float16's loss scaling, both
    through the shim) over many chunks make no device read at all: ids are checked on the
    host, the batch is uploaded at once, the scale stays on the device."""
    docs = [spacy.blank("en").make_doc(t) for t in TEXTS]
    for max_batch_pieces in (16, 4096):  # many chunks, one chunk
        model = loaded_encoder(albert_checkpoint, batching=batching, attention_buckets="padded",
                               max_batch_pieces=max_batch_pieces, window=12, stride=8)  # fmt: skip
        shim_of(model).scaler._enabled = True  # float16's scaler, on float32 arithmetic
        with DeviceReads() as reads:
            model.predict(docs)
            outputs, backprop = model.begin_update(docs)
            backprop([o.with_arrays(np.ones_like(o.hidden), np.ones_like(o.cls)) for o in outputs])
        assert reads.sites == [], reads.sites


def test_out_of_range_ids_are_still_refused_before_the_device(albert_checkpoint):
    model = loaded_encoder(albert_checkpoint)
    vocab = TINY_ALBERT.get("vocab_size") or get_torch_encoder(model).config.vocab_size
    for batching in ("packed", "padded"):
        model.attrs["settings"]["batching"] = batching
        with pytest.raises(ValueError, match=r"input_ids must lie in \[0, \d+\)"):
            encode_sequences(model, PieceSequences([[2, vocab + 5, 3]]), is_train=False)


def test_the_guards_read_the_device_once_per_check():
    arrays = [torch.ones(3, 2) for _ in range(5)]
    with DeviceReads() as reads:
        assert finite_flags(arrays + [np.ones(2)]) == [True] * 6
        arrays[3][1, 1] = float("nan")
        assert finite_flags(arrays) == [True, True, True, False, True]
        with pytest.raises(NonFiniteError, match="'ner', update step 4: the gradient of the scores is not finite"):
            check_arrays("ner", 4, "gradient of the scores", arrays)
    assert len(reads.sites) == 3, reads.sites  # one per check, not one per array


def ner_nlp(checkpoint, max_batch_pieces):
    encoder = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT, "checkpoint": str(checkpoint),
               "max_batch_pieces": max_batch_pieces, "window": 12, "stride": 8}  # fmt: skip
    nlp = spacy.blank("en")
    tok2vec = {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first", "encoder": encoder}
    nlp.add_pipe("albert_ner", config={"model": {"@architectures": "spacy-albert.TokenClassifier.v1", "tok2vec": tok2vec}})
    data = [("Alice lives in Paris with Bob.", [(0, 5, "PERSON"), (15, 20, "GPE"), (26, 29, "PERSON")]),
            ("Bob visited Berlin yesterday.", [(0, 3, "PERSON"), (12, 18, "GPE")])]  # fmt: skip
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in data]
    nlp.initialize(lambda: examples)
    return nlp, examples


def test_a_component_update_reads_the_device_once(albert_checkpoint):
    """`nlp.pipe` reads nothing back through torch (the annotations' one transfer is thinc's);
    `nlp.update` reads once (every weight gradient's finiteness together), whatever the
    number of chunks and docs."""
    counts = {}
    for max_batch_pieces in (16, 4096):
        nlp, examples = ner_nlp(albert_checkpoint, max_batch_pieces)
        optimizer = Adam(0.001)
        for n in (1, 4):
            with DeviceReads() as reads:
                list(nlp.pipe([eg.text for eg in examples] * n))
                nlp.update(examples * n, sgd=optimizer)
            counts[(max_batch_pieces, n)] = reads.sites
    assert all(len(sites) == 1 for sites in counts.values()), counts
    assert all("guards.py" in sites[0] for sites in counts.values())


def pretraining_settings(corpus_file, spm_dir, output, **overrides):
    from spacy_albert.pretraining.trainer import PretrainingSettings

    return PretrainingSettings(
        train=[str(corpus_file)], vocab=str(spm_dir), output=str(output), max_steps=2, batch_size=8,
        optimizer="adamw", lr=1e-3, warmup_steps=1, log_every=1, eval_every=0, save_every=0, progress=False, seed=3,
        embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        max_seq_length=48, **overrides,
    )  # fmt: skip


def test_pretraining_reads_the_device_once_per_step(corpus_file, spm_dir, tmp_path):
    """A pretraining step reads its losses and gradient norm once, however many
    micro-batches it accumulates (their counts come from the host)."""
    from spacy_albert.pretraining.trainer import Pretrainer

    sites = {}
    for grad_accum in (1, 4):
        settings = pretraining_settings(corpus_file, spm_dir, tmp_path / str(grad_accum), grad_accum=grad_accum)
        trainer = Pretrainer(settings)
        with DeviceReads() as reads:
            record = trainer.train_step()
        sites[grad_accum] = reads.sites
        assert np.isfinite(record["loss"]) and record["grad_norm"] > 0
    assert len(sites[1]) == len(sites[4]) == 1, sites


def test_float16_pretraining_step_runs_on_the_cpu(corpus_file, spm_dir, tmp_path):
    """The float16 pretraining path (autocast, losses scaled per micro-batch, the gradients
    unscaled once per step, after accumulating) runs on the CPU: its loss and its gradient
    norm (taken after the unscaling) are float32's within float16's rounding, where a missed
    or repeated unscaling would be 2**16 times off."""
    from spacy_albert.pretraining.trainer import Pretrainer

    records = {}
    for precision in ("float32", "float16"):
        settings = pretraining_settings(corpus_file, spm_dir, tmp_path / precision, grad_accum=2, precision=precision)
        trainer = Pretrainer(settings)
        assert trainer.scaler.is_enabled() == (precision == "float16")
        records[precision] = trainer.train_step()
    assert trainer.scaler.get_scale() == 2.0**16  # no overflow: a real step, the scale kept
    fp32, fp16 = records["float32"], records["float16"]
    assert fp16["loss"] == pytest.approx(fp32["loss"], rel=0.02)
    assert fp16["grad_norm"] == pytest.approx(fp32["grad_norm"], rel=0.1)


def test_cuda_rng_states_survive_a_checkpoint(tmp_path, monkeypatch):
    """On a GPU the trainer state also holds the CUDA generators (one per device): they make
    the round trip through the data-only files and are restored (emulated on the CPU)."""
    from spacy_albert.pretraining.state import load_trainer_state, rng_state, save_trainer_state, set_rng_state

    devices = [torch.randint(0, 255, (16,), dtype=torch.uint8) for _ in range(2)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [d.clone() for d in devices])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.extend(states))
    save_trainer_state(tmp_path, {"step": 1, "rng": rng_state()})
    set_rng_state(load_trainer_state(tmp_path)["rng"])
    assert len(restored) == 2 and all(torch.equal(a, b) for a, b in zip(restored, devices))


def test_int8_quantization_is_refused_off_the_cpu():
    """int8 dynamic quantization is CPU-only: an encoder on another device (here torch's
    "meta" device, standing in for a GPU) gets the error that names the GPU settings."""
    from spacy_albert.errors import AlbertError
    from spacy_albert.layers.encoder import WindowedEncoder
    from spacy_albert.layers.quantize import quantize_encoder
    from spacy_albert.models.configuration import AlbertConfig

    encoder = WindowedEncoder(AlbertConfig(vocab_size=50, **TINY_ALBERT)).to("meta")
    with pytest.raises(AlbertError, match=r'encoder is on meta: on a GPU use precision = "bfloat16"'):
        quantize_encoder(encoder)
    assert not encoder.quantized
