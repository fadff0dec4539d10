#!/usr/bin/env bash
# The recipe of the shipped checkpoint paindiffusion-synthetic-v3 (src/paindiffusion/assets/model), on 2 CPU cores:
# a 300-subject synthetic cohort (10 min each), a subject-disjoint 210/45/45 split, 16,000 steps with condition
# tokens and overlapping 8-frame patches (the default; ~31 min of wall time here), guidance (emotion 0.25,
# expressiveness 2.0, stimulus 1.0) chosen on freshly simulated validation subjects (cohort seed 999, see
# MODEL_CARD.md), then the evaluation report (scripts/evaluate_shipped.sh).
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p runs
[ -d runs/cohort300 ] || paindiffusion cohort runs/cohort300 --subjects 300 --minutes 10 --seed 2026
[ -d runs/data300 ] || paindiffusion pack runs/cohort300 -o runs/data300 --seed 0
paindiffusion train runs/data300 --out runs/v3 --steps 16000 --threads 2 --cond-tokens   # resumes if killed
python scripts/ship_model.py runs/v3/model runs/data300 --minutes 2 --seeds 1 --guidance 0.25 2.0 1.0 \
  --name paindiffusion-synthetic-v3
