#!/usr/bin/env bash
# The recipe of the shipped checkpoint (src/paindiffusion/assets/model), on 2 CPU cores:
# a 64-subject synthetic cohort (10 min each), a subject-disjoint 44/10/10 split, 8000 steps, then test metrics
# on the held-out subjects; stimulus guidance 2.0 was chosen on the validation subjects.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p runs
[ -d runs/cohort64 ] || paindiffusion cohort runs/cohort64 --subjects 64 --minutes 10 --seed 2026
[ -d runs/data64 ] || paindiffusion pack runs/cohort64 -o runs/data64 --seed 0
paindiffusion train runs/data64 --out runs/shipped --steps 8000 --threads 2   # resumes if killed
python scripts/ship_model.py runs/shipped/model runs/data64 --minutes 4 --seeds 2 --guidance 0.25 0.5 2.0
