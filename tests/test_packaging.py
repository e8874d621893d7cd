"""Packaging end to end: a trained albert + ner pipeline goes through `spacy package`, is
installed into a fresh virtual environment and, loaded there with `spacy.load` (offline, with
the original checkpoint deleted), predicts the same entities as the pipeline it was built from."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

NAME, VERSION, LANG = "albert_tiny", "0.0.1", "en"
PACKAGE = f"{LANG}_{NAME}"  # spacy package prefixes the name with the language
TRAIN = [
    ("Alice lives in Paris with Bob.", {"entities": [(0, 5, "PER"), (15, 20, "LOC"), (26, 29, "PER")]}),
    ("Bob visited Berlin yesterday.", {"entities": [(0, 3, "PER"), (12, 18, "LOC")]}),
    ("Carol flew from London to Paris.", {"entities": [(0, 5, "PER"), (16, 22, "LOC"), (26, 31, "LOC")]}),
]
TEXTS = [
    "Alice lives in Paris with Bob.",
    "Bob visited Berlin yesterday.",
    "Carol and Alice met in London.",
    "nothing to see here",
]
N_STEPS = 40
# Runs in the fresh environment: load the installed package, print its entities as JSON.
LOAD_SCRIPT = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
texts = json.loads(sys.argv[2])
ents = [[[e.text, e.label_, e.start_char, e.end_char] for e in doc.ents] for doc in nlp.pipe(texts)]
module = sys.modules[nlp.meta["lang"] + "_" + nlp.meta["name"]]
print(json.dumps({"ents": ents, "package_file": module.__file__, "pipe_names": nlp.pipe_names}))
"""


def _entities(nlp, texts: list[str]) -> list[list[list]]:
    return [[[e.text, e.label_, e.start_char, e.end_char] for e in doc.ents] for doc in nlp.pipe(texts)]


def _run(args: list, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def _offline_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_NO_INDEX="1")
    env.pop("PYTHONPATH", None)  # spacy_albert must come from its installed distribution
    return env


def _site_dirs() -> list[str]:
    """The site-packages directories of the interpreter running the tests, in its order: its
    user site (when enabled) and its environment's (a virtual environment's own, plus the base
    interpreter's when that environment was made with --system-site-packages)."""
    dirs = []
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs.extend(site.getsitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _fresh_venv(venv: Path) -> Path:
    """A new, empty virtual environment whose interpreter also sees the packages this one sees.

    `python -m venv --system-site-packages` is not that: run from inside a virtual environment,
    it exposes the *base* interpreter's site-packages, not the outer environment's (where torch,
    spacy and spacy-albert are installed). Instead, a .pth file in the new environment's
    site-packages adds this interpreter's site directories after the new environment's own, with
    `site.addsitedir` so that their .pth files (editable installs) are processed too. The wheel
    installed into the new environment therefore comes first on sys.path."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60)
    venv_site = Path(purelib.stdout.strip())
    assert venv_site.resolve().is_relative_to(venv.resolve()), venv_site
    lines = [f"import site; site.addsitedir({d!r})" for d in _site_dirs()]
    (venv_site / "_outer_site_packages.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return venv


def _train_pipeline(spm_dir: Path, ckpt: Path):
    import spacy
    import torch
    import transformers
    from spacy.training import Example
    from thinc.api import Adam

    from spacy_albert import AlbertTokenizerFast

    vocab_size = len(AlbertTokenizerFast(vocab_file=str(spm_dir / "spiece.model")))
    torch.manual_seed(0)
    config = transformers.AlbertConfig(
        vocab_size=vocab_size, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    transformers.AlbertModel(config).save_pretrained(ckpt)
    shutil.copy(spm_dir / "spiece.model", ckpt / "spiece.model")

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank(LANG)
    albert_model = {
        "@architectures": "spacy-albert.AlbertTransformer.v1", "vocab_size": vocab_size, "embedding_size": 16,
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
        "max_position_embeddings": 64, "window": 20, "stride": 15,
    }  # fmt: skip
    nlp.add_pipe("albert", config={"model": albert_model})
    listener = {"@architectures": "spacy-albert.AlbertListener.v1", "width": 32, "pooling": "mean"}
    ner_model = {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "hidden_width": 32,
        "maxout_pieces": 2, "use_upper": True, "extra_state_tokens": False, "tok2vec": listener,
    }  # fmt: skip
    nlp.add_pipe("ner", config={"model": ner_model})
    examples = [Example.from_dict(nlp.make_doc(text), annots) for text, annots in TRAIN]
    nlp.config["initialize"]["components"]["albert"] = {"checkpoint": str(ckpt)}
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))  # 0.001 is too slow for 40 steps
    losses: dict[str, float] = {}
    for _ in range(N_STEPS):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    return nlp, losses


@pytest.mark.slow
def test_spacy_package_wheel_installs_and_loads_in_fresh_venv(spm_dir: Path, tmp_path: Path) -> None:
    import spacy

    # 1. train a tiny albert + ner pipeline, record its predictions, save it, drop the checkpoint
    ckpt = tmp_path / "checkpoint"
    nlp, losses = _train_pipeline(spm_dir, ckpt)
    expected = _entities(nlp, TEXTS)
    assert any(expected), f"the trained pipeline predicts no entities (losses after {N_STEPS} steps: {losses})"
    nlp.meta["name"], nlp.meta["version"] = NAME, VERSION
    pipeline_dir = tmp_path / "pipeline"
    nlp.to_disk(pipeline_dir)
    shutil.rmtree(ckpt)
    assert not ckpt.exists()
    # the saved pipeline alone reproduces the predictions (separates serialization from packaging)
    assert _entities(spacy.load(pipeline_dir), TEXTS) == expected

    # 2. spacy package -> wheel, which must declare spacy-albert as a requirement
    env = _offline_env()
    out_dir = tmp_path / "packages"
    out_dir.mkdir()
    # `--build wheel` runs `python -m build` (whose isolated build environment cannot be set up
    # offline) and falls back to `setup.py bdist_wheel`, which needs `wheel` (or setuptools
    # >= 70.1) -- and spaCy refuses `--build wheel` outright unless `build` or `wheel` is
    # installed. Without `wheel`, write the package with `--build none` and build the same
    # wheel with pip (no build isolation, no index).
    can_build = importlib.util.find_spec("wheel") is not None
    package_args = [sys.executable, "-m", "spacy", "package", pipeline_dir, out_dir, "--build",
                    "wheel" if can_build else "none", "--name", NAME, "--version", VERSION, "--force"]  # fmt: skip
    packaged = _run(package_args, timeout=240, env=env, cwd=tmp_path)
    main_path = out_dir / f"{PACKAGE}-{VERSION}"
    dist = main_path / "dist"
    if not can_build:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
              "--wheel-dir", dist, main_path], timeout=240, env=env, cwd=tmp_path)  # fmt: skip
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {wheels}\n{packaged.stdout}\n{packaged.stderr}"
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in zf.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist:")]  # fmt: skip
    assert any(r.replace("_", "-").lower().startswith("spacy-albert") for r in requires), (
        f"the wheel does not require spacy-albert: Requires-Dist = {requires}\n{packaged.stdout}"
    )
    assert any(r.lower().startswith("spacy") and not r.lower().startswith("spacy-") for r in requires), requires

    # 3. fresh venv that sees this interpreter's packages (torch/spacy/spacy-albert), install the
    #    wheel offline, load it
    venv = _fresh_venv(tmp_path / "venv")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # this environment's pip, run by the venv's interpreter, installs into the venv
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], timeout=240, env=env)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert not ckpt.exists(), "the original checkpoint must be gone before loading the package"
    loaded = _run([python, "-c", LOAD_SCRIPT, PACKAGE, json.dumps(TEXTS)], timeout=240, env=env, cwd=workdir)
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert Path(result["package_file"]).resolve().is_relative_to(venv.resolve()), result["package_file"]
    assert result["pipe_names"] == ["albert", "ner"]
    assert result["ents"] == expected, f"{result['ents']} != {expected}\n--- stderr ---\n{loaded.stderr[-4000:]}"
