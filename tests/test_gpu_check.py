"""benchmarks/gpu_check.py, the GPU check of issue 14: its dry run on the CPU runs every part
(so the harness does not rot between GPU runs) and never appends to gpu.jsonl, and the logic
that decides a part's pass or failure is right."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_compare import compare_leaves, leaves, max_abs_diff, scaled_diff, within  # noqa: E402
from gpu_pipelines import _per_step, encoder_sections  # noqa: E402
from gpu_speed import summarize  # noqa: E402
from pipeline import EncoderMeter  # noqa: E402

SPEED_FIGURES = ("spacy_albert_bf16_words_per_s", "spacy_transformers_words_per_s",
                 "spacy_transformers_mixed_precision_words_per_s", "transformers_sorted_words_per_s",
                 "ratio_vs_best_spacy_transformers", "encoder_tflops", "bf16_matmul_peak_tflops")  # fmt: skip


def test_tolerances():
    want = np.array([1.0, -2.0, 100.0])
    assert within(want + 0.9e-4, want, atol=1e-4) and not within(want + 1.1e-4, want, atol=1e-4)
    assert within(want * (1 + 1e-4), want, atol=1e-6, rtol=2e-4) and not within(want * 1.01, want, 1e-6, 2e-4)
    assert not within(want[:2], want, atol=1.0) and max_abs_diff(want[:2], want) == float("inf")
    assert max_abs_diff(torch.tensor([1.0, 2.5]), np.array([1.0, 2.0])) == 0.5
    # a gradient's error is measured against its size, never below an absolute scale of 1
    assert scaled_diff(np.array([1000.5]), np.array([1000.0])) == pytest.approx(0.5 / 1000)
    assert scaled_diff(np.array([0.5]), np.array([0.0])) == 0.5


@dataclasses.dataclass
class Fill:
    token: str
    score: float


def test_leaves_and_their_comparison():
    got = leaves({"fills": [[Fill("river", 0.5)]], "logits": torch.tensor([[1.0, 2.0]]), "ok": None})
    assert set(got) == {"fills.0.0.token", "fills.0.0.score", "logits", "ok"}
    assert got["fills.0.0.token"] == "river" and got["logits"].shape == (1, 2)
    same = compare_leaves(got, dict(got), atol=1e-4)
    assert same["mismatches"] == 0 and same["leaves"] == 4
    other = {**got, "fills.0.0.token": "road", "logits": got["logits"] + 1e-3}
    other.pop("ok")
    other["extra"] = np.zeros(1)
    diff = compare_leaves(other, got, atol=1e-4)
    assert diff["mismatches"] == 4 and diff["max_abs_diff"] == pytest.approx(1e-3)
    assert (diff["missing"], diff["numeric_mismatches"], diff["string_mismatches"]) == (2, 1, 1)
    assert any("'road' != 'river'" in m for m in diff["first_mismatches"])
    assert compare_leaves({"a": "1"}, {"a": np.ones(1)}, atol=1.0)["mismatches"] == 1  # a string is no number


def test_a_part_that_crashes_or_runs_out_of_time_fails_with_its_error():
    traceback = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA error: an illegal memory access"
    crashed = gpu_check.part_result(1, "log line\n", traceback, 3.0, 60)
    assert crashed["pass"] is False and crashed["error"].endswith("an illegal memory access")
    partial = gpu_check.MARK + json.dumps({"pass": False, "spacy_albert_bf16_words_per_s": 5.0})
    timed_out = gpu_check.part_result(None, f"{partial}\n", "", 60.0, 60)
    assert timed_out["pass"] is False and timed_out["error"] == "timed out after 60 s"
    assert timed_out["spacy_albert_bf16_words_per_s"] == 5.0  # the figures it printed survive
    silent = gpu_check.part_result(0, "no result here", "", 1.0, 60)
    assert silent["pass"] is False and "exit status 0" in silent["error"]
    ok = gpu_check.part_result(0, gpu_check.MARK + json.dumps({"pass": True, "x": 1}), "", 2.0, 60)
    assert ok == {"pass": True, "x": 1, "seconds": 2.0}


def test_only_real_gpu_runs_are_appended():
    assert gpu_check.should_append({"dry_run": False, "cuda": "13.0"})
    assert not gpu_check.should_append({"dry_run": True, "cuda": "13.0"})
    assert not gpu_check.should_append({"dry_run": True, "cuda": None})


def test_encoder_flops_are_the_hand_count():
    """One layer, H 4, FFN 6, E 2: per position the q, k, v and output projections (4 H^2
    multiply-adds), the FFN (2 H I) and the embedding projection (E H), 2 FLOPs each; per
    (query, key) pair QK^T and PV (H multiply-adds each over all heads)."""
    config = type("Config", (), dict(hidden_size=4, intermediate_size=6, embedding_size=2, num_hidden_layers=1))
    meter = EncoderMeter(config, sync=lambda: None)
    assert meter.per_position == 2 * (4 * 16 + 2 * 4 * 6) + 2 * 2 * 4 == 240
    assert meter.per_pair == 2 * 2 * 4 == 16
    meter.add(seconds=2.0, positions=10, pairs=30, real_positions=8, real_pairs=20)
    assert meter.figures()["encoder_gflops"] == pytest.approx((10 * 240 + 30 * 16) / 2.0 / 1e9)


def test_speed_summary():
    results = {"spacy_albert_bf16": {"words_per_s": 900.0, "encoder_gflops": 400e3, "encoder_useful_gflops": 300e3},
               "spacy_transformers": {"words_per_s": 300.0},
               "spacy_transformers_mixed_precision": {"words_per_s": 450.0},
               "transformers_sorted": {"words_per_s": 600.0},
               "train_spacy_albert_bf16": {"words_per_s": 100.0}, "train_spacy_transformers": {"words_per_s": 50.0}}  # fmt: skip
    out = summarize(results, peak_tflops=800.0)
    assert out["ratio_vs_best_spacy_transformers"] == 2.0 and out["encoder_tflops"] == 400.0
    assert out["encoder_fraction_of_peak"] == 0.5 and out["pass"]
    assert out["targets"] == {"ratio_vs_best_spacy_transformers >= 2": True, "encoder_fraction_of_peak >= 0.5": True}
    del results["transformers_sorted"]
    missing = summarize(results, peak_tflops=800.0)
    assert not missing["pass"] and missing["transformers_sorted_words_per_s"] is None


def test_every_config_has_its_encoder_found():
    from spacy.util import load_config

    from test_train_cli import CONFIGS

    for name in ("albert_fill_mask", "albert_multiple_choice", "albert_qa"):
        sections = encoder_sections(load_config(ROOT / "configs" / f"{name}.cfg", interpolate=False))
        assert sections == [f"components.{name}.model.encoder"]
    for path, (section, _) in CONFIGS.items():
        assert encoder_sections(load_config(ROOT / path, interpolate=False)) == [section]


def test_losses_per_step_between_evaluations():
    # step 0 is one update; later evaluations sum the updates since the previous one
    assert _per_step([(0, 4.0), (6, 12.0), (12, 3.0)]) == [4.0, 2.0, 0.5]


@pytest.mark.slow
def test_cpu_dry_run_passes_every_part_and_appends_nothing(tmp_path):
    results = ROOT / "benchmarks" / "results" / "gpu.jsonl"
    before = results.read_bytes() if results.exists() else None
    out = tmp_path / "gpu.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"device", "torch", "cuda", "dry_run", "time", "parts", "pass"} <= set(record)
    assert record["dry_run"] is True and record["pass"] is True and record["torch"] == torch.__version__
    assert set(record["parts"]) == {"parity", "spacy_train_gpu", "components", "pretrain", "speed"}
    for name, part in record["parts"].items():
        assert part["pass"] is True, (name, part)
    parity = record["parts"]["parity"]
    assert parity["encoder_cases"] == 18 and parity["tolerance"]["fp32_atol"] == 1e-4
    runs = record["parts"]["spacy_train_gpu"]["runs"]
    assert {(r["config"], r["precision"], r["accumulate_gradient"]) for r in runs} >= {
        ("albert_ner", "float16", 2), ("albert_ner", "bfloat16", 1), ("albert_qa", "float32", 1)}
    assert len(record["parts"]["components"]["pipelines"]) == 6
    assert record["parts"]["pretrain"]["resumed_losses_equal"] is True
    speed = record["parts"]["speed"]
    assert all(speed[key] > 0 for key in SPEED_FIGURES), speed
    assert not out.exists()  # a dry run never appends
    assert (results.read_bytes() if results.exists() else None) == before
