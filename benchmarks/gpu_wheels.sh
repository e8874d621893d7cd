#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the Python 3.12 manylinux x86_64 wheels that the GPU
# machine of benchmarks/gpu_check.py lacks, pinned to the versions this project is tested
# with, plus a wheel of spacy-albert itself (for its entry points: spaCy finds the factories,
# architectures and readers through its dist-info; the code runs from the checkout, which
# comes first on PYTHONPATH). The GPU image already has torch, cupy, numpy, sentencepiece,
# safetensors, typer, click, rich, requests, jinja2, pyyaml, regex, tqdm, packaging ...
# (see the device tool's KINDS.md); its transformers 5.x, tokenizers 0.23 and
# huggingface-hub 1.x do not fit spacy-transformers 1.4 (transformers < 4.53.3, which needs
# tokenizers < 0.22 and huggingface-hub < 1.0), so those travel too and shadow the image's.
#
#     bash benchmarks/gpu_wheels.sh          # then the run command in gpu_check.py's docstring
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
rm -f .whl/*.whl
PINS=(
  spacy==3.8.18 thinc==8.3.14 spacy-transformers==1.4.0 spacy-alignments==0.9.3
  spacy-legacy==3.0.12 spacy-loggers==1.0.5 blis==1.3.4 cymem==2.0.16 murmurhash==1.0.16 preshed==3.0.15
  srsly==2.5.6 catalogue==2.0.10 confection==1.3.4 wasabi==1.1.3 weasel==1.0.1 cloudpathlib==0.26.0
  smart-open==9.0.2 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
  transformers==4.53.2 tokenizers==0.21.4 huggingface-hub==0.36.2
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${PINS[@]}"
# The compiled wheels ship their debug info (spacy's alone: 113 MB of .so unpacked); stripped
# (dynamic symbols kept) and repacked by `wheel pack` (which rewrites RECORD's hashes), the
# set fits the device tool's 64 MiB working-tree limit.
tmp=$(mktemp -d)
for whl in .whl/*.whl; do
  if python3 -c "import sys, zipfile; sys.exit(not any('.so' in n for n in zipfile.ZipFile(sys.argv[1]).namelist()))" "$whl"; then
    python3 -m wheel unpack -d "$tmp" "$whl" >/dev/null
    find "$tmp" -name '*.so*' -type f -exec strip --strip-unneeded {} +
    rm "$whl"
    python3 -m wheel pack -d .whl "$tmp"/* >/dev/null
    rm -rf "${tmp:?}"/*
  fi
done
rmdir "$tmp"
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl .
rm -rf build
du -sh .whl
ls .whl
