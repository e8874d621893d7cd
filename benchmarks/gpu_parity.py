"""The parity part of benchmarks/gpu_check.py: the torch models on the device against the CPU.

The models, inputs and layouts are the parity tests' (tests/test_modeling_parity.py): the
same random configs, padded batches with token types, and `LAYOUTS`, whose batches assert
which attention path they run (packed buckets of one length, padded buckets, padded batches).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from gpu_compare import FP32_ATOL, LOW_PRECISION_ATOL, max_abs_diff, scaled_diff

# albert-base's head width (64) on a small model: the device's fused attention kernels pick
# their code by head size, which the tests' tiny heads (8) do not reach.
WIDE = dict(embedding_size=64, hidden_size=256, num_attention_heads=4, intermediate_size=512)


LONG_LENGTHS = [300, 300, 257, 130, 64, 64]  # past the kernels' 64/128-position tiles; repeats make buckets


def long_sequences(vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """[CLS] ... [SEP] sequences of LONG_LENGTHS and their token types (as the tests' short ones:
    a second segment of type 1, the last piece of type 2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    seqs = [[2, *rng.integers(5, vocab, size=n - 2).tolist(), 3] for n in LONG_LENGTHS]
    return seqs, [[0] * (n // 2) + [1] * (n - n // 2 - 1) + [2] for n in LONG_LENGTHS]


def long_inputs(config: Any, vocab: int) -> dict[str, Any]:
    """A padded batch of sentence pairs of LONG_LENGTHS."""
    import torch

    seqs, _ = long_sequences(vocab, seed=1)
    width = max(LONG_LENGTHS)
    ids, mask, types = (torch.zeros(len(seqs), width, dtype=torch.long) for _ in range(3))
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
        types[row, len(seq) // 2 : len(seq)] = config.type_vocab_size - 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _perturbed(module: Any, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module.eval()


def albert_model_parity(device: Any, names: list[str], failures: list[str]) -> dict:
    """`AlbertModel` on padded batches with and without sentence pairs: outputs and every
    parameter's gradient, device against CPU."""
    import torch

    import spacy_albert as sa
    import test_modeling_parity as tp

    worst_forward = worst_grad = 0.0
    for name in names:
        sizes = {**tp.CONFIGS["small"], **WIDE} if name == "wide" else tp.CONFIGS[name]
        cpu = _perturbed(sa.AlbertModel(sa.AlbertConfig(vocab_size=tp.VOCAB, **sizes)), seed=len(name))
        dev = copy.deepcopy(cpu).to(device)
        for pair in (False, True, "long") if name == "wide" else (False, True):
            inputs = long_inputs(cpu.config, tp.VOCAB) if pair == "long" else tp.make_inputs(cpu.config, pair=pair)
            weights = torch.randn(*inputs["input_ids"].shape, cpu.config.hidden_size,
                                  generator=torch.Generator().manual_seed(1))  # fmt: skip
            outs = {}
            for label, model in (("cpu", cpu), ("device", dev)):
                model.zero_grad()
                feed = {k: v.to(device if label == "device" else "cpu") for k, v in inputs.items()}
                out = model(**feed)
                mask = feed["attention_mask"][..., None]
                loss = (out.last_hidden_state * mask * weights.to(mask.device)).sum() + out.pooler_output.sum()
                loss.backward()
                outs[label] = (out.last_hidden_state * mask, out.pooler_output,
                               {n: p.grad for n, p in model.named_parameters() if p.grad is not None})  # fmt: skip
            case = f"AlbertModel {name} pair={pair}"
            for what, i in (("hidden", 0), ("pooler", 1)):
                diff = max_abs_diff(outs["device"][i], outs["cpu"][i])
                worst_forward = max(worst_forward, diff)
                if diff > FP32_ATOL:
                    failures.append(f"{case} {what}: max diff {diff:.3g}")
            grads_cpu, grads_dev = outs["cpu"][2], outs["device"][2]
            if set(grads_cpu) != set(grads_dev) or not grads_cpu:
                failures.append(f"{case}: gradients of different parameters")
            for key in grads_cpu:
                diff = scaled_diff(grads_dev.get(key, grads_cpu[key] * float("nan")), grads_cpu[key])
                worst_grad = max(worst_grad, diff)
                if not diff <= FP32_ATOL:
                    failures.append(f"{case} grad {key}: scaled diff {diff:.3g}")
    return {"albert_model_forward_max_diff": worst_forward, "albert_model_grad_max_scaled_diff": worst_grad}


def encoder_path_parity(device: Any, names: list[str], failures: list[str]) -> dict:
    """The spaCy encoder (`WindowedEncoder`) on every layout, with and without token types and
    with the inference buffers on (None, True) and off: device against CPU in fp32 (states and
    gradients), and bf16 / fp16 autocast on the device against the fp32 CPU states."""
    import torch
    from torch.nn import functional as F

    import test_modeling_parity as tp

    figures = {"encoder_max_diff": 0.0, "encoder_grad_max_scaled_diff": 0.0, "encoder_cases": 0,
               "bfloat16_max_diff": 0.0, "float16_max_diff": 0.0, "low_precision_min_cosine": 1.0}  # fmt: skip
    for name in names:
        extra = WIDE if name == "wide" else {}
        cpu, _ = tp.encoder_and_reference("shared_gelu_new" if name == "wide" else name, **extra)
        dev = copy.deepcopy(cpu).to(device)
        # the wide model runs long windows (several chunks of up to 600 pieces)
        seqs, all_types = long_sequences(tp.PACKED_VOCAB) if name == "wide" else tp.sequences()
        for layout in sorted(tp.LAYOUTS):
            for types in (None, all_types):
                # asserts the layout's attention path
                batch = tp.sequence_batch(layout, seqs, types, max_batch_pieces=600 if name == "wide" else 40)
                case = f"encoder {name} {layout} types={types is not None}"
                with torch.no_grad():
                    want, want_cls = cpu(batch)
                    for buffers in (None, True, False):
                        dev.inference_buffers = buffers
                        hidden, cls = dev(batch)
                        diff = max(max_abs_diff(hidden, want), max_abs_diff(cls, want_cls))
                        figures["encoder_max_diff"] = max(figures["encoder_max_diff"], diff)
                        figures["encoder_cases"] += 1
                        if diff > FP32_ATOL:
                            failures.append(f"{case} buffers={buffers}: max diff {diff:.3g}")
                    dev.inference_buffers = None
                    for precision, atol in LOW_PRECISION_ATOL.items():
                        dev.precision = precision
                        hidden, _ = dev(batch)
                        dev.precision = "float32"
                        diff = max_abs_diff(hidden, want)
                        cosine = float(F.cosine_similarity(hidden.float().cpu().flatten(), want.flatten(), dim=0))
                        figures[f"{precision}_max_diff"] = max(figures[f"{precision}_max_diff"], diff)
                        figures["low_precision_min_cosine"] = min(figures["low_precision_min_cosine"], cosine)
                        if diff > atol or cosine < 0.999:
                            failures.append(f"{case} {precision}: max diff {diff:.3g}, cosine {cosine:.5f}")
                grads = []
                weights = torch.randn(*want.shape, generator=torch.Generator().manual_seed(0))
                for model in (cpu, dev):
                    model.zero_grad()
                    hidden, _ = model(batch)
                    (hidden * weights.to(hidden.device)).sum().backward()
                    grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
                for key, grad in grads[0].items():
                    diff = scaled_diff(grads[1][key], grad) if key in grads[1] else float("inf")
                    figures["encoder_grad_max_scaled_diff"] = max(figures["encoder_grad_max_scaled_diff"], diff)
                    if not diff <= FP32_ATOL:
                        failures.append(f"{case} grad {key}: scaled diff {diff:.3g}")
    return figures


def parity(args: argparse.Namespace, work: Path) -> dict:
    import torch

    import test_modeling_parity as tp

    device = torch.device(args.device)
    model_names = ["small", "gelu_types"] if args.quick else ["small", "groups", "gelu_types", "relative_prelu", "wide"]
    encoder_names = ["shared_gelu_new"] if args.quick else [*sorted(tp.PACKED_CONFIGS), "wide"]
    failures: list[str] = []
    result: dict[str, Any] = {
        "tolerance": {"fp32_atol": FP32_ATOL, "fp32_grad": f"{FP32_ATOL} x max(1, max |grad|)",
                      "low_precision_atol": LOW_PRECISION_ATOL, "low_precision_min_cosine": 0.999,
                      "low_precision_against": "fp32 CPU states"},
        "allow_tf32": torch.backends.cuda.matmul.allow_tf32, "long_lengths": LONG_LENGTHS,
        "albert_model_configs": model_names, "encoder_configs": encoder_names, "layouts": sorted(tp.LAYOUTS),
    }  # fmt: skip
    result.update(albert_model_parity(device, model_names, failures))
    result.update(encoder_path_parity(device, encoder_names, failures))
    result.update({"pass": not failures, "failures": failures[:20], "n_failures": len(failures)})
    return result
