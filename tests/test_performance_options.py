"""Speed options of the ALBERT encoder: packed (padding-free) batching, length-sorted
`nlp.pipe`, int8 dynamic quantization (config flag, serialization, CLI, training guard),
precision / torch.compile settings on CPU, forked workers, and the vectorised NER decoding.
(The packed layout's and every attention path's parity with transformers, relative positions'
padded fallback included, is in test_modeling_parity.py.)"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam

from spacy_albert.errors import AlbertError
from spacy_albert.layers.windows import attention_buckets, make_windows
from spacy_albert.pipeline.ner import decode_batch, tag_names, tag_spans, transition_masks, viterbi

from conftest import TINY_ALBERT

ENCODER = {"@architectures": "spacy-albert.AlbertTransformer.v1", **TINY_ALBERT}
NER_DATA = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
    ("Yesterday Alice flew to New York City.", [(10, 15, "PER"), (24, 37, "LOC")]),
    ("Nothing happened here.", []),
]


@pytest.fixture(autouse=True)
def fixed_seed():
    spacy.util.fix_random_seed(0)


@pytest.fixture(scope="module")
def texts(corpus_lines):
    """Docs of very different lengths (several windows for the longest), empty ones included."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        n = int(rng.choice([1, 2, 3, 8, 20]))
        start = int(rng.integers(0, len(corpus_lines) - n))
        out.append(" ".join(corpus_lines[start : start + n]))
    return out + ["", "   ", "Alice lives in Paris."]


def albert_nlp(checkpoint, **encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert", config={"model": {**ENCODER, **encoder}})
    nlp.get_pipe("albert").initialize(lambda: [Example.from_dict(nlp.make_doc("hi"), {})], checkpoint=str(checkpoint))
    return nlp


def ner_nlp(checkpoint, steps=0, **encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("albert_ner", config={"model": {
        "@architectures": "spacy-albert.TokenClassifier.v1",
        "tok2vec": {"@architectures": "spacy-albert.AlbertTok2Vec.v1", "pooling": "first",
                    "encoder": {**ENCODER, "checkpoint": str(checkpoint), **encoder}}}})  # fmt: skip
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in NER_DATA]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


def states(nlp, texts, **pipe_kwargs):
    return [(d._.albert_data.hidden.copy(), d._.albert_data.cls.copy()) for d in nlp.pipe(texts, **pipe_kwargs)]


def ents(docs):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]


# ---- packed batching ------------------------------------------------------------------------
def test_packed_batching_matches_padded(albert_checkpoint, texts):
    packed = states(albert_nlp(albert_checkpoint, batching="packed"), texts, batch_size=8)
    padded = states(albert_nlp(albert_checkpoint, batching="padded"), texts, batch_size=8)
    for (h1, c1), (h2, c2) in zip(packed, padded):
        assert h1.shape == h2.shape
        np.testing.assert_allclose(h1, h2, atol=1e-5, rtol=0)
        np.testing.assert_allclose(c1, c2, atol=1e-5, rtol=0)


def test_packed_batching_keeps_several_layers(albert_checkpoint, texts):
    packed = states(albert_nlp(albert_checkpoint, output_layers=3, max_batch_pieces=200), texts)
    padded = states(albert_nlp(albert_checkpoint, output_layers=3, batching="padded"), texts)
    for (h1, _), (h2, _) in zip(packed, padded):
        assert h1.shape[0] == 3
        np.testing.assert_allclose(h1, h2, atol=1e-5, rtol=0)


def test_packed_windows_cover_pieces_within_budget():
    rng = np.random.default_rng(1)
    pieces = [rng.integers(5, 100, size=int(n)) for n in rng.integers(0, 300, size=30)]
    spans = [[(0, len(p))] if len(p) else [] for p in pieces]
    batch = make_windows(pieces, spans, window=62, stride=40, cls_id=2, sep_id=3, pad_id=0, max_batch_pieces=300)
    all_ids = np.concatenate(pieces)
    seen = np.zeros(len(all_ids))
    for chunk in batch.chunks:
        assert chunk.packed and (chunk.input_ids.size <= 300 or len(chunk.cls_rows) == 1)
        np.testing.assert_array_equal(chunk.input_ids[chunk.source], all_ids[chunk.target])
        assert (chunk.input_ids[chunk.cls_rows] == 2).all() and (chunk.position_ids[chunk.cls_rows] == 0).all()
        np.add.at(seen, chunk.target, 1)
        rows = 0
        for gather, mask, scatter in chunk.buckets:  # buckets tile the packed positions in order
            if mask is None:
                first, n, width = gather
                assert first == rows
                rows += n * width
            else:
                np.testing.assert_array_equal(gather.ravel()[scatter], rows + np.arange(len(scatter)))
                rows += len(scatter)
        assert rows == chunk.input_ids.size
    np.testing.assert_array_equal(seen, batch.counts)
    assert (seen >= 1).all()


def test_cpu_buckets_have_one_length_and_need_no_copies():
    rng = np.random.default_rng(2)
    pieces = [rng.integers(5, 100, size=int(n)) for n in rng.integers(1, 60, size=40)]
    spans = [[(0, len(p))] for p in pieces]
    batch = make_windows(pieces, spans, window=62, stride=40, cls_id=2, sep_id=3, pad_id=0, max_batch_pieces=10**6,
                         padding_tolerance=0.0)  # fmt: skip
    (chunk,) = batch.chunks
    assert all(mask is None and scatter is None for _, mask, scatter in chunk.buckets)
    assert len(chunk.buckets) == len({len(p) for p in pieces})
    assert chunk.attention_pairs() == sum((len(p) + 2) ** 2 for p in pieces)


def test_attention_buckets_trade_padding_for_calls():
    assert attention_buckets([100, 100, 100], 4608) == [3]
    assert attention_buckets([512, 500, 30, 29, 10], 4608) == [2, 3]
    assert attention_buckets([512, 500, 100, 30], 4608) == [2, 1, 1]
    assert sum(attention_buckets(list(range(500, 2, -1)), 4608)) == 498


# ---- length-sorted pipe ----------------------------------------------------------------------
def test_length_sorted_pipe_gives_the_same_annotations(albert_checkpoint, texts):
    nlp = ner_nlp(albert_checkpoint, steps=5)
    one_by_one = ents(nlp(t) for t in texts)
    sorted_docs = list(nlp.pipe(texts, batch_size=4))
    assert [d.text for d in sorted_docs] == texts  # original order
    assert ents(sorted_docs) == one_by_one
    encoder = nlp.get_pipe("albert_ner").model.get_ref("tok2vec").layers[0]
    assert encoder.name == "albert_transformer" and encoder.attrs["settings"]["sort_buffer"] == 16
    encoder.attrs["settings"]["sort_buffer"] = 1  # batches as they come
    assert ents(nlp.pipe(texts, batch_size=4)) == one_by_one
    assert any(one_by_one)


def test_length_sorted_pipe_of_the_shared_component(albert_checkpoint, texts):
    nlp = albert_nlp(albert_checkpoint)
    together = states(nlp, texts, batch_size=4)
    alone = [(d._.albert_data.hidden, d._.albert_data.cls) for d in (nlp(t) for t in texts)]
    for (h1, c1), (h2, c2) in zip(together, alone):
        np.testing.assert_allclose(h1, h2, atol=1e-5, rtol=0)
        np.testing.assert_allclose(c1, c2, atol=1e-5, rtol=0)


def test_length_groups_fill_the_budget_with_at_least_a_batch():
    from spacy_albert.pipeline.sorted_pipe import length_groups

    lengths = [300, 30, 3000, 30, 60, 30, 0, 30]
    groups = length_groups(lengths, batch_size=2, max_positions=120)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups[0] == [2, 0]  # longest first; a batch even over the budget
    assert all(len(g) >= 2 for g in groups[:-1])
    assert max(len(g) for g in groups) > 2  # short docs: more than a batch per group
    assert length_groups(lengths, batch_size=2, max_positions=1) == [[2, 0], [4, 1], [3, 5], [7, 6]]


def test_length_sorted_pipe_reports_errors_per_batch(albert_checkpoint):
    nlp = albert_nlp(albert_checkpoint, max_batch_pieces=4)  # groups of exactly batch_size docs
    albert = nlp.get_pipe("albert")
    seen = []
    albert.set_error_handler(lambda name, proc, docs, e: seen.append([d.text for d in docs]))
    original = albert.predict

    def predict(docs):
        if any(d.text == "boom" for d in docs):
            raise ValueError("boom")
        return original(docs)

    albert.predict = predict
    out = [d.text for d in nlp.pipe(["a b c", "boom", "x", "a longer doc here"], batch_size=2)]
    assert "boom" not in out and "a longer doc here" in out and len(seen) == 1 and "boom" in seen[0]


# ---- NER decoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_batched_decoding_equals_viterbi(scheme):
    from spacy.training import biluo_tags_to_spans, iob_to_biluo

    rng = np.random.default_rng(0)
    tags = tag_names(["PER", "LOC"], scheme)
    allowed, start, end = transition_masks(tags, scheme)
    nlp = spacy.blank("en")
    for trial in range(40):
        batch = [rng.normal(size=(int(n), len(tags))) * 3 for n in rng.integers(0, 25, size=5)]
        if trial % 3 == 0:
            batch[0][:, 0] += 6  # mostly "O": the argmax fast path
        log_probs = [x - np.log(np.exp(x).sum(-1, keepdims=True)) for x in batch]
        for lp, best in zip(log_probs, decode_batch(log_probs, allowed, start, end)):
            assert list(best) == viterbi(lp, allowed, start, end)
            doc = nlp.make_doc(" ".join(["w"] * len(lp)))
            names = [tags[i] for i in best]
            spans = biluo_tags_to_spans(doc, iob_to_biluo(names) if scheme == "BIO" else names)
            assert [(s.start, s.end, s.label_) for s in spans] == tag_spans(np.asarray(best), tuple(tags), scheme)


# ---- int8 ------------------------------------------------------------------------------------
def test_int8_is_close_to_float(albert_checkpoint, texts):
    base = states(albert_nlp(albert_checkpoint), texts)
    quantized_nlp = albert_nlp(albert_checkpoint, quantize="int8")
    quantized = states(quantized_nlp, texts)
    from spacy_albert.layers.transformer import get_torch_encoder

    assert get_torch_encoder(quantized_nlp.get_pipe("albert").model).quantized
    for (h1, _), (h2, _) in zip(base, quantized):
        if h1.size:
            cosine = (h1 * h2).sum() / np.linalg.norm(h1) / np.linalg.norm(h2)
            assert cosine > 0.99
            assert not np.array_equal(h1, h2)


def test_int8_pipeline_round_trips_and_cli(albert_checkpoint, texts, tmp_path):
    from typer.testing import CliRunner

    from spacy_albert.cli import app

    nlp = ner_nlp(albert_checkpoint, steps=5)
    nlp.to_disk(tmp_path / "float")
    result = CliRunner().invoke(app, ["quantize", str(tmp_path / "float"), str(tmp_path / "int8")])
    assert result.exit_code == 0, result.output
    loaded = spacy.load(tmp_path / "int8")
    encoder = loaded.get_pipe("albert_ner").model.get_ref("tok2vec").layers[0]
    assert encoder.attrs["settings"]["quantize"] == "int8"
    assert loaded.config["components"]["albert_ner"]["model"]["tok2vec"]["encoder"]["quantize"] == "int8"
    size = lambda d: (d / "albert_ner" / "model").stat().st_size  # noqa: E731
    assert size(tmp_path / "int8") < size(tmp_path / "float")
    scores = lambda n: [n.get_pipe("albert_ner").predict([n.make_doc(t)])[0] for t in texts[:6]]  # noqa: E731
    first = scores(loaded)
    loaded.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    for a, b in zip(first, scores(again)):
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert ents(loaded.pipe(texts)) == ents(again.pipe(texts))
    assert ents(loaded.pipe(texts)) == ents(again.from_bytes(loaded.to_bytes()).pipe(texts))


def test_training_or_exporting_a_quantized_encoder_is_an_error(albert_checkpoint, tmp_path):
    nlp = ner_nlp(albert_checkpoint, quantize="int8")
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in NER_DATA]
    assert len(list(nlp.pipe([t for t, _ in NER_DATA]))) == 4  # inference works
    with pytest.raises(AlbertError, match="int8"):
        nlp.update(examples)
    with pytest.raises(AlbertError, match="int8-quantized"):
        nlp.get_pipe("albert_ner").export(tmp_path / "export")


def test_quantize_pipeline_without_an_encoder_fails(tmp_path):
    from spacy_albert.layers.quantize import quantize_pipeline

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    with pytest.raises(AlbertError, match="no component"):
        quantize_pipeline(nlp)


# ---- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "setting", [{"batching": "ragged"}, {"quantize": "int4"}, {"precision": "float8"}, {"sort_buffer": 0}]
)
def test_bad_speed_settings_are_clear_errors(setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        spacy.blank("en").add_pipe("albert", config={"model": {**ENCODER, **setting}})


def test_speed_settings_parse_from_a_config_and_run_on_cpu(albert_checkpoint, texts):
    config = spacy.util.load_config_from_str(
        f"""
[nlp]
lang = "en"
pipeline = ["albert"]

[components]

[components.albert]
factory = "albert"

[components.albert.model]
@architectures = "spacy-albert.AlbertTransformer.v1"
hidden_size = {TINY_ALBERT['hidden_size']}
num_attention_heads = {TINY_ALBERT['num_attention_heads']}
precision = "bfloat16"
batching = "packed"
sort_buffer = 4
quantize = null
torch_compile = false
"""
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    encoder = nlp.get_pipe("albert").model
    assert encoder.attrs["settings"]["precision"] == "bfloat16" and encoder.attrs["settings"]["sort_buffer"] == 4
    nlp.get_pipe("albert").initialize(lambda: [Example.from_dict(nlp.make_doc("hi"), {})], checkpoint=str(albert_checkpoint))
    low = states(nlp, texts[:10])
    high = states(albert_nlp(albert_checkpoint), texts[:10])
    for (h1, _), (h2, _) in zip(low, high):
        assert h1.dtype == np.float32
        np.testing.assert_allclose(h1, h2, atol=0.15)
    assert max(np.abs(h1 - h2).max() for (h1, _), (h2, _) in zip(low, high) if h1.size) > 1e-4  # bfloat16 acts


@pytest.mark.slow
def test_torch_compile_on_cpu_matches_eager(albert_checkpoint, texts):
    compiled = states(albert_nlp(albert_checkpoint, torch_compile=True), texts[:8])
    eager = states(albert_nlp(albert_checkpoint), texts[:8])
    for (h1, _), (h2, _) in zip(compiled, eager):
        np.testing.assert_allclose(h1, h2, atol=1e-5, rtol=0)


# ---- forked workers ----------------------------------------------------------------------------
def _in_forked_child(check) -> bool:
    """Run `check()` in a forked child (its exit status says whether it held), with a deadline."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        ok = False
        try:
            ok = bool(check())
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise TimeoutError("the forked child did not finish in 120 s (a fork deadlock?)")


def test_forked_children_run_the_encoder_single_threaded_and_nothing_else_changes():
    """A child forked while torch runs several threads keeps them until it first runs the
    encoder, which then runs single-threaded (torch's OpenMP pool is not fork-safe: without
    this the child's first matmul deadlocks), unless the child chose its own thread count;
    the parent keeps its threads."""
    import torch

    from spacy_albert.layers.encoder import WindowedEncoder
    from spacy_albert.models.configuration import AlbertConfig

    encoder = WindowedEncoder(AlbertConfig(vocab_size=100, **{**TINY_ALBERT, "num_hidden_layers": 2})).eval()
    pieces = [np.arange(5, 40), np.arange(5, 12)]
    batch = make_windows(pieces, [[(0, len(p))] for p in pieces], window=62, stride=40, cls_id=2, sep_id=3, pad_id=0,
                         max_batch_pieces=100)  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            expected = encoder(batch)[0]  # the parent's pool has run

        def run_encoder() -> bool:
            untouched = torch.get_num_threads() == 2
            with torch.no_grad():
                same = torch.allclose(encoder(batch)[0], expected, atol=1e-5)
            return untouched and same and torch.get_num_threads() == 1

        def own_choice() -> bool:  # (running torch multi-threaded here would deadlock: only the hook runs)
            from spacy_albert.layers.encoder import _single_thread_after_fork

            torch.set_num_threads(3)
            _single_thread_after_fork()  # what the encoder's forward runs first
            return torch.get_num_threads() == 3

        assert _in_forked_child(run_encoder)
        assert _in_forked_child(own_choice)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
