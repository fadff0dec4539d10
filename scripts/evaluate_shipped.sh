#!/usr/bin/env bash
# Regenerate the evaluation report of the shipped checkpoint (docs/evaluation/v6/: report.md, report.html,
# report.json, images/). Deterministic: seed 0, fresh held-out cohorts (seed 7000 + draw). ~30 min on 2 cores.
# Usage: scripts/evaluate_shipped.sh [extra 'paindiffusion evaluate' options, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
exec python -m paindiffusion.cli evaluate --full --seed 0 --threads 1 -o docs/evaluation/v6 "$@"  # one folder per shipped version
