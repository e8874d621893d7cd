"""Encoder throughput: spacy-albert's `AlbertModel` vs transformers' (eager and sdpa).

All variants get the same albert-base-sized random weights (vocab 30000, E 128, H 768,
12 layers, 12 heads, intermediate 3072), the same padded batches (realistic lengths, right
padding, attention masks) and the same torch thread count. Each variant runs in its own
process so that its peak resident memory is its own. Prints pieces/second (real, unpadded
pieces), achieved GFLOP/s, peak memory, and ratios against the best reference, and appends
a JSON line to benchmarks/results/encoder.jsonl.

    python benchmarks/encoder.py                      # float32 on CPU
    python benchmarks/encoder.py --device cuda --dtype bfloat16 --batches 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data import append_record  # benchmarks/data.py (benchmarks/ is on sys.path when run as a script)

CONFIG = dict(
    vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12,
    num_attention_heads=12, intermediate_size=3072,
)  # fmt: skip
VARIANTS = ("spacy-albert", "transformers-sdpa", "transformers-eager")
RESULTS = Path(__file__).parent / "results" / "encoder.jsonl"


def make_batches(n: int, batch_size: int, seq_len: int, seed: int = 0):
    """Batches of random ids whose lengths follow a clipped normal around 55% of seq_len."""
    import torch

    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        lengths = (torch.randn(batch_size, generator=g) * seq_len * 0.25 + seq_len * 0.55).long()
        lengths = lengths.clamp(8, seq_len)
        lengths[0] = seq_len  # the batch is padded to its longest row
        mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
        ids = torch.randint(5, CONFIG["vocab_size"], (batch_size, seq_len), generator=g) * mask
        batches.append((ids, mask))
    return batches


def flops_per_batch(mask) -> float:
    """Forward FLOPs over all padded positions (matmuls only, as is customary)."""
    batch, seq = mask.shape
    h, e, i, n = CONFIG["hidden_size"], CONFIG["embedding_size"], CONFIG["intermediate_size"], CONFIG["num_hidden_layers"]
    per_token_layer = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * seq * h  # projections, FFN, QK^T and PV
    return batch * seq * (n * per_token_layer + 2 * e * h)


def run_variant(args: argparse.Namespace) -> dict:
    """Measure one variant in this process; returns its figures."""
    import torch

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    path = args.checkpoint
    if args.variant == "spacy-albert":
        import spacy_albert

        model = spacy_albert.AlbertModel.from_pretrained(path, dtype=dtype, device=args.device)
    else:
        import transformers

        impl = args.variant.split("-", 1)[1]
        model = transformers.AlbertModel.from_pretrained(path, torch_dtype=dtype, attn_implementation=impl)
        model.to(args.device).eval()
    batches = [(i.to(args.device), m.to(args.device)) for i, m in make_batches(args.batches, args.batch_size, args.seq_len)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for ids, mask in batches[: args.warmup]:
            model(ids, attention_mask=mask)
        for _ in range(args.repeats):
            sync()
            start = time.perf_counter()
            for ids, mask in batches:
                model(ids, attention_mask=mask)
            sync()
            times.append(time.perf_counter() - start)
    best = min(times)
    pieces = sum(int(m.sum()) for _, m in batches)
    flops = sum(flops_per_batch(m) for _, m in batches)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return {
        "variant": args.variant,
        "seconds": best,
        "pieces_per_s": pieces / best,
        "padded_positions_per_s": sum(m.numel() for _, m in batches) / best,
        "gflops": flops / best / 1e9,
        "peak_memory_mb": peak_mb,
    }


def matmul_peak_gflops(threads: int, dtype: str, device: str, n: int = 2048) -> float:
    """The float matmul rate this machine reaches (an n^3 GEMM, best of 5 after a warm-up;
    a GPU such as the H200 needs n = 8192 to be busy)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    b = torch.randn_like(a)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = float("inf")
    for _ in range(6):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process
        print(json.dumps(run_variant(args)))
        return

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        transformers.AlbertModel(transformers.AlbertConfig(**CONFIG)).save_pretrained(tmp)
        results = []
        for variant in args.variants:
            cmd = [sys.executable, __file__, "--variant", variant, "--checkpoint", tmp] + [
                f"--{k.replace('_', '-')}={getattr(args, k)}"
                for k in ("device", "dtype", "batch_size", "seq_len", "batches", "warmup", "repeats", "threads")
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    peak = matmul_peak_gflops(args.threads, args.dtype, args.device)

    print(f"ALBERT-base encoder, {args.device} {args.dtype}, {args.threads} threads, "
          f"{args.batches} batches of {args.batch_size} x {args.seq_len} (right-padded)")  # fmt: skip
    print(f"matmul peak: {peak:.0f} GFLOP/s")
    print(f"{'variant':<20}{'pieces/s':>10}{'GFLOP/s':>9}{'% peak':>8}{'peak MB':>9}")
    for r in results:
        r["percent_of_matmul_peak"] = 100 * r["gflops"] / peak
        print(f"{r['variant']:<20}{r['pieces_per_s']:>10.0f}{r['gflops']:>9.1f}"
              f"{r['percent_of_matmul_peak']:>7.0f}%{r['peak_memory_mb']:>9.0f}")  # fmt: skip
    ours = next((r for r in results if r["variant"] == "spacy-albert"), None)
    refs = [r for r in results if r["variant"] != "spacy-albert"]
    if ours and refs:
        best = max(refs, key=lambda r: r["pieces_per_s"])
        for r in refs:
            print(f"ratio spacy-albert / {r['variant']}: {ours['pieces_per_s'] / r['pieces_per_s']:.2f}x")
        print(f"ratio spacy-albert / best reference ({best['variant']}): {ours['pieces_per_s'] / best['pieces_per_s']:.2f}x")
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(), "args": vars(args),
              "matmul_peak_gflops": peak, "results": results}  # fmt: skip
    append_record(RESULTS, record)


if __name__ == "__main__":
    main()
