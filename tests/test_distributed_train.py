"""`python -m spacy_albert train` data-parallel under torchrun (2 gloo processes on CPU) equals
the same training in one process, and its failures (configs or batches the ranks cannot
share, a rank that dies, a rank that never comes) end with a message instead of a hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import DocBin

from conftest import TINY_ALBERT

ROOT = Path(__file__).resolve().parents[1]
# albert_ner: each global batch is the whole corpus (8 docs) in 2 sub-batches
# (accumulate_gradient), each split over the ranks; the listener config: batches of 3-5 docs.
SETTINGS = {
    "configs/albert_ner.cfg": {"training.accumulate_gradient": 2, "training.batcher.size": 1000},
    "configs/ner_albert_listener.cfg": {},
}
ENCODER_SECTION = {
    "configs/albert_ner.cfg": "components.albert_ner.model.tok2vec.encoder",
    "configs/ner_albert_listener.cfg": "components.albert.model",
}
SENTENCES = [
    ("Alice lives in Paris with Bob.", [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]),
    ("Bob visited Berlin yesterday.", [(0, 3, "PER"), (12, 18, "LOC")]),
    ("Yesterday Alice flew to Berlin.", [(10, 15, "PER"), (24, 30, "LOC")]),
    ("Carol and Dave moved to Rome last spring.", [(0, 5, "PER"), (10, 14, "PER"), (24, 28, "LOC")]),
    ("Paris is far from Rome.", [(0, 5, "LOC"), (18, 22, "LOC")]),
    ("Dave called Alice from Madrid.", [(0, 4, "PER"), (12, 17, "PER"), (23, 29, "LOC")]),
    ("Nobody was there.", []),
    ("Eve met Carol in Berlin and then in Paris.", [(0, 3, "PER"), (8, 13, "PER"), (17, 23, "LOC"), (36, 41, "LOC")]),
]
# Every text ends with the same words, and the listener config's encoder sees windows of 4
# pieces: the last token of every doc then has one vector. spaCy's TransitionBasedParser.v2
# (the listener config's `ner`) takes the batch's last token vector for the features of a
# state that fall outside the doc (`_precomputable_affine` backward: `X[ids]` with ids -1),
# so its weight gradient depends on which doc ends the batch, and otherwise on the split.
SUFFIX = " In the end."
DEV_TEXTS = ["Alice lives in Rome with Dave.", "Eve visited Madrid yesterday.", "Bob and Carol flew to Paris."]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dist_corpus")
    nlp = spacy.blank("en")
    docs = []
    for text, entities in SENTENCES:
        doc = nlp.make_doc(text + SUFFIX)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in entities]
        docs.append(doc)
    DocBin(docs=docs).to_disk(directory / "train.spacy")
    DocBin(docs=docs[:3]).to_disk(directory / "dev.spacy")
    return directory / "train.spacy", directory / "dev.spacy"


def overrides(config: str, checkpoint, train, dev, log=None, **extra) -> list[str]:
    """Tiny encoder, no dropout anywhere, 20 steps; batches of 3-6 docs."""
    section = ENCODER_SECTION[config]
    values = {f"{section}.{k}": v for k, v in TINY_ALBERT.items()}
    values.update({
        f"{section}.hidden_dropout_prob": 0.0, "training.dropout": 0.0, "training.max_steps": 20,
        "training.eval_frequency": 10, "training.optimizer.learn_rate.warmup_steps": 2,
        "training.optimizer.learn_rate.initial_rate": 0.003, "training.batcher.size": 60,
        "paths.train": train, "paths.dev": dev, "paths.checkpoint": checkpoint,
    })  # fmt: skip
    if "albert_ner.cfg" in config:
        values["components.albert_ner.model.dropout"] = 0.0
    else:  # see SUFFIX
        values.update({f"{section}.window": 4, f"{section}.stride": 2})
    if log is not None:
        values.update({"training.logger.@loggers": "spacy.ConsoleLogger.v3", "training.logger.output_file": log,
                       "training.logger.progress_bar": "null"})  # fmt: skip
    values.update(extra)
    return [f"--{key}={value}" for key, value in values.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(args: list[str], nproc: int = 1) -> list[str]:
    """`python -m spacy_albert train ...` in one process, or under torchrun with `nproc`."""
    train = ["-m", "spacy_albert", "train", *args, "--threads", "1"]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *train]  # fmt: skip
    return [sys.executable, *train]


def launch(args: list[str], nproc: int = 1, timeout: int = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command(args, nproc), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def parameters(nlp) -> list[np.ndarray]:
    from spacy_albert.training.distributed import pipeline_parameters

    return [p.value().detach().cpu().numpy().copy() for p in pipeline_parameters(nlp)]


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(ENCODER_SECTION))
def test_two_gloo_ranks_train_as_one_process(albert_checkpoint, corpus, tmp_path, config):
    runs, procs = {}, {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for nproc in (1, 2):  # side by side: the two runs share nothing but the inputs
        out, log = tmp_path / f"out{nproc}", tmp_path / f"log{nproc}.jsonl"
        args = [config, "--output", str(out), *overrides(config, albert_checkpoint, *corpus, log, **SETTINGS[config])]
        procs[nproc] = subprocess.Popen(command(args, nproc), cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    for nproc, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        log = tmp_path / f"log{nproc}.jsonl"
        runs[nproc] = (tmp_path / f"out{nproc}", [json.loads(line) for line in log.read_text().splitlines()], stdout)
    (out1, log1, _), (out2, log2, result2) = runs[1], runs[2]
    # One table, from rank 0: the same evaluations, scores and (summed) losses.
    assert result2.count("Pipeline:") == 1 and result2.count("Saved pipeline") == 1
    assert [e["step"] for e in log2] == [e["step"] for e in log1] == [0, 10, 20]
    for one, two in zip(log1, log2):
        assert two["score"] == pytest.approx(one["score"], abs=1e-6)
        assert two["epoch"] == one["epoch"] and two["scores"] == pytest.approx(one["scores"], abs=1e-6)
        assert two["losses"] == pytest.approx(one["losses"], rel=1e-4, abs=1e-5)
    assert log1[-1]["score"] > log1[0]["score"]  # it learns: the comparison is not of two untouched models
    nlp1, nlp2 = spacy.load(out1 / "model-last"), spacy.load(out2 / "model-last")
    params1, params2 = parameters(nlp1), parameters(nlp2)
    assert len(params1) == len(params2) > 10
    for a, b in zip(params1, params2):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    for text in DEV_TEXTS:
        ents = lambda nlp: [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]  # noqa: E731
        assert ents(nlp1) == ents(nlp2)
    assert (out2 / "model-best" / "meta.json").exists()


CONFIG = "configs/albert_ner.cfg"


def test_a_batch_smaller_than_the_world_is_refused():
    from spacy_albert.training.distributed import Context, DistributedTrainingError, shard

    batch = ["a", "b", "c", "d", "e"]
    assert [shard(Context(rank=r, world=2), batch, 0) for r in (0, 1)] == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(DistributedTrainingError, match=r"step 7: a batch of 1 example\(s\) cannot be split over 2 ranks"
                       r".*larger \[training.batcher\] size, a smaller accumulate_gradient, or fewer processes"):  # fmt: skip
        shard(Context(rank=1, world=2), ["a"], 7)


def test_components_not_known_to_be_exact_are_named():
    from types import SimpleNamespace

    from spacy.pipeline import EntityRecognizer, TextCategorizer

    from spacy_albert.pipeline.fill_mask import AlbertFillMask
    from spacy_albert.pipeline.multiple_choice import AlbertMultipleChoice
    from spacy_albert.pipeline.ner import AlbertNER
    from spacy_albert.pipeline.qa.component import AlbertQuestionAnswering
    from spacy_albert.training.distributed import inexact_components

    classes = {"albert_ner": AlbertNER, "ner": EntityRecognizer, "textcat": TextCategorizer,
               "albert_qa": AlbertQuestionAnswering, "albert_multiple_choice": AlbertMultipleChoice,
               "albert_fill_mask": AlbertFillMask}  # fmt: skip
    nlp = SimpleNamespace(pipeline=[(name, cls.__new__(cls)) for name, cls in classes.items()])  # no models needed
    # albert_fill_mask draws its masks per rank: equal to one process in expectation only
    assert inexact_components(nlp, []) == ["'albert_fill_mask' (AlbertFillMask)"]
    assert inexact_components(nlp, ["albert_fill_mask"]) == []


@pytest.mark.slow
def test_ranks_with_different_configs_are_refused(albert_checkpoint, corpus, tmp_path):
    # Two machines' worth of ranks started by hand, one with another max_steps: every rank stops.
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "LOCAL_RANK": "0"}
    procs = []
    for rank, steps in enumerate((20, 30)):
        args = overrides(CONFIG, albert_checkpoint, *corpus, **{"training.max_steps": steps})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "spacy_albert", "train", CONFIG, *args, "--dist-timeout", "60"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **env, "RANK": str(rank), "OMP_NUM_THREADS": "1"},
        ))  # fmt: skip
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 1, err[-2000:]
        assert "train: the config (with its overrides) of rank(s) [1] differs from rank 0's" in err
        assert "same --section.key overrides" in err


DIE = '''
import os
import spacy

@spacy.registry.callbacks("test.die_on_rank_1.v1")
def die_on_rank_1():
    def before_update(nlp, info):
        if info["step"] == 3 and os.environ.get("RANK") == "1":
            os._exit(3)
    return before_update
'''


@pytest.mark.slow
def test_a_dying_rank_stops_the_others(albert_checkpoint, corpus, tmp_path):
    code = tmp_path / "die.py"
    code.write_text(DIE)
    args = overrides(CONFIG, albert_checkpoint, *corpus, **{"training.before_update": '{"@callbacks":"test.die_on_rank_1.v1"}'})
    start = time.perf_counter()
    result = launch([CONFIG, "--code", str(code), *args, "--dist-timeout", "60"], nproc=2, timeout=120)
    assert result.returncode != 0
    assert time.perf_counter() - start < 60  # stopped by torchrun, not by the 60 s timeout
    assert "exitcode  : 3" in result.stderr and "rank      : 1" in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_a_rank_whose_peers_never_come_fails_with_a_message(tmp_path):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    (tmp_path / "c.cfg").write_text((ROOT / CONFIG).read_text())
    start = time.perf_counter()
    result = launch([str(tmp_path / "c.cfg"), "--dist-timeout", "3"], env=env, timeout=120)
    assert result.returncode == 1
    assert time.perf_counter() - start < 60
    assert "train: rank 0 of 2 could not join the process group" in result.stderr
    assert "raise --dist-timeout" in result.stderr
