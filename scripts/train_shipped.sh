#!/usr/bin/env bash
# The recipe of the shipped checkpoint paindiffusion-synthetic-v4 (src/paindiffusion/assets/model), on 2 CPU cores:
# a 300-subject synthetic cohort (10 min each), a subject-disjoint 210/45/45 split, 16,000 steps with condition
# tokens, interpolated overlapping patches, expressiveness-balanced windows and the calibrated stimulus (~38 min
# of wall time here beside another run; ~30 alone), guidance (emotion 0.25, expressiveness 2.0, stimulus 0.75)
# chosen on freshly simulated validation subjects (cohort seed 999, see MODEL_CARD.md), then the evaluation
# report (scripts/evaluate_shipped.sh).
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p runs
[ -d runs/cohort300 ] || paindiffusion cohort runs/cohort300 --subjects 300 --minutes 10 --seed 2026
[ -d runs/data300 ] || paindiffusion pack runs/cohort300 -o runs/data300 --seed 0
paindiffusion train runs/data300 --out runs/v4 --steps 16000 --threads 2 --cond-tokens --patches interp \
  --balance 1 --calibrated   # resumes if killed
python scripts/ship_model.py runs/v4/model runs/data300 --minutes 2 --seeds 1 --guidance 0.25 2.0 0.75 \
  --name paindiffusion-synthetic-v4
