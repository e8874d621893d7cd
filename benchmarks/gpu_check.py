"""The GPU check of issue 14: one command that proves spacy-albert on a CUDA device and prints
one JSON record (appended to benchmarks/results/gpu.jsonl for a real GPU run).

Parts, each in its own process (a crash or a CUDA error fails that part alone; each has a
time box, all together under 8 minutes on an H200), each `{"pass": bool, ...figures}`:

* parity: `AlbertModel` fp32 on the device against the CPU on padded batches and sentence
  pairs, forward and gradients; every attention path of the spaCy encoder (packed buckets of
  one length, padded buckets, padded batches; inference buffers on and off) and its
  gradients, fp32 within 1e-4; bf16 and fp16 autocast against the fp32 CPU states.
* spacy_train_gpu: `spacy train` (`use_gpu=0`, i.e. `--gpu-id 0`) of every config in
  configs/ on generated data with a tiny checkpoint, 50 steps: the loss falls, model-best
  predicts on the CPU what it predicts on the device; albert_ner also in fp16 with
  accumulate_gradient = 2, and in bf16.
* components: every component's predict (and annotations) on the device equal the CPU's.
* pretrain: `python -m spacy_albert pretrain --device cuda`, 20 steps, and a run stopped
  after its first step and resumed gives the same losses.
* speed: `nlp.pipe` words/s of albert_ner in bf16 at batch 128 against spacy-transformers
  (default and mixed precision) and transformers (length-sorted) on the same docs and
  albert-base-sized random weights (benchmarks/pipeline.py's variants), training words/s, and
  the encoder's TFLOP/s against a bf16 matmul peak measured in the same run.

`--device cpu --quick` is the dry run of the same code (tiny models, few steps and docs, about
two minutes on 2 cores; tests/test_gpu_check.py runs it): it prints its record and never
appends. Exit status 1 if a part failed.

On the GPU machine (the device tool: nothing can be installed there but carried wheels, made
here first by `bash benchmarks/gpu_wheels.sh`; the checkout's code runs, the wheel of
spacy-albert only supplies its entry points), run with carry [".whl"] and timeout_s 540:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --device cuda --out $OUT/gpu.jsonl

then here: `cat FILES_AT/gpu.jsonl >> benchmarks/results/gpu.jsonl` (FILES_AT: the reply's
files_at folder; the record is also the last line of the output). To rerun only the parts
that failed, within the same lease: add `--parts NAME ...`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu.jsonl"
PARTS = ("parity", "spacy_train_gpu", "components", "pretrain", "speed")
# Seconds per part on CUDA (their sum stays under 8 minutes even if every part runs out of time)
# and in the CPU dry run.
BUDGET_CUDA = {"parity": 60, "spacy_train_gpu": 155, "components": 60, "pretrain": 45, "speed": 150}
BUDGET_CPU = {"parity": 300, "spacy_train_gpu": 600, "components": 300, "pretrain": 300, "speed": 600}
MARK = "GPU_CHECK_PART "
for _path in (ROOT, ROOT / "benchmarks", ROOT / "tests"):  # the checkout's code and the tests' data writers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from data import append_record  # noqa: E402  (benchmarks/data.py)


def part_result(returncode: int | None, stdout: str, stderr: str, seconds: float, timeout: float) -> dict:
    """A part's record from its process: the JSON line it printed last, or pass=false with
    the error (the end of its traceback) when it crashed, printed nothing or ran out of time."""
    lines = [line[len(MARK) :] for line in stdout.splitlines() if line.startswith(MARK)]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"pass": False}
    if returncode is None:
        result.update({"pass": False, "error": f"timed out after {timeout:.0f} s"})
    elif returncode != 0 or not lines:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        result.update({"pass": False, "error": f"exit status {returncode}: {tail}"[-3000:]})
    result["seconds"] = round(seconds, 1)
    return result


def run_part(name: str, args: argparse.Namespace, work: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--part", name, "--device", args.device, "--workdir", str(work), "--budget",
           str(timeout)]  # fmt: skip
    cmd += ["--quick"] if args.quick else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.device == "cpu":  # one thread: a shared CPU runs small models many times faster so
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:
        returncode = None
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
    return part_result(returncode, stdout, stderr, time.perf_counter() - start, timeout)


def device_info(device: str) -> dict:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    spec = importlib.util.find_spec("spacy_albert")  # which code runs (the checkout), without importing it
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "spacy_albert": str(Path(spec.origin).parent) if spec and spec.origin else None}  # fmt: skip


def should_append(record: dict) -> bool:
    """gpu.jsonl holds real GPU runs only: no dry run, no failed device query."""
    return not record["dry_run"] and record.get("cuda") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps and docs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON lines file a GPU run appends to")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:  # a child: run one part, print its result
        module, function = PART_FUNCTIONS[args.part]
        result = getattr(importlib.import_module(module), function)(args, args.workdir)
        print(MARK + json.dumps(result), flush=True)
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device (use --device cpu for the dry run)")
    started = time.perf_counter()
    budget = BUDGET_CUDA if args.device == "cuda" else BUDGET_CPU
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **device_info(args.device),
        "dry_run": args.device != "cuda" or args.quick, "quick": args.quick, "parts": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name in args.parts:
            result = run_part(name, args, Path(tmp), budget[name])
            record["parts"][name] = result
            print(f"{name}: {'pass' if result['pass'] else 'FAIL'} ({result['seconds']} s)", file=sys.stderr, flush=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["pass"] = all(part["pass"] for part in record["parts"].values())
    line = json.dumps(record)
    print(line)
    if should_append(record):
        append_record(args.out, record)
    return 0 if record["pass"] else 1


# Each part's (module, function), imported only in the part's own process.
PART_FUNCTIONS = {
    "parity": ("gpu_parity", "parity"),
    "spacy_train_gpu": ("gpu_pipelines", "spacy_train_gpu"),
    "components": ("gpu_pipelines", "components"),
    "pretrain": ("gpu_pipelines", "pretrain"),
    "speed": ("gpu_speed", "speed"),
}

if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a child's traceback goes to stderr, whose tail the parent records
        traceback.print_exc()
        sys.exit(2)
