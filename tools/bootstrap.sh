#!/usr/bin/env bash
# Creates .venv with everything the tests and benchmarks need, on a fresh machine, offline from all but PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, from the exact CPU wheel: a bare "torch" requirement elsewhere would resolve to a CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements-dev.txt
# ldm's UNetModel, the reference implementation the hook is tested on; its declared deps would pull CUDA torch.
.venv/bin/pip install -q --no-deps stable-diffusion-sdkit==2.1.5
# peft: diffusers' Control-LoRA oracle (load_lora_adapter); its declared deps would pull torch/transformers upgrades.
.venv/bin/pip install -q --no-deps peft==0.17.1 accelerate==1.10.1 psutil==7.2.2
.venv/bin/python -c "import torch; assert torch.__version__.endswith('+cpu'), torch.__version__"
# The standalone host's pipeline: transformers (CLIP text encoder), diffusers (schedulers), and open_clip for
# nothing but the CLIP BPE vocabulary file it ships (--no-deps: its dependencies would pull torchvision).
.venv/bin/pip install -q -r requirements-standalone.txt
.venv/bin/pip install -q --no-deps open_clip_torch==3.3.0
# BAAI's EVA-CLIP vision tower (the code the reference's PuLID runs), a test oracle only: --no-deps (it declares
# timm, insightface, facexlib, which would pull torchvision); tests/annotators_nn/eva_oracle.py imports its
# vision modules alone.
.venv/bin/pip install -q --no-deps consisid_eva_clip==1.0.2
.venv/bin/python -c "import torch; assert torch.__version__.endswith('+cpu'), torch.__version__"
# The panel's browser test (tests/ui): Debian's chromium, driven by Playwright (never `playwright install`).
command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
  || echo "WARNING: chromium not installed; tests/ui/test_panel_browser.py will skip" >&2
