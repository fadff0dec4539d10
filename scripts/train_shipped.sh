#!/usr/bin/env bash
# The recipe of the shipped checkpoint (src/paindiffusion/assets/model), on 2 CPU cores:
# a 48-subject synthetic cohort (10 min each), a subject-disjoint 34/7/7 split, 8000 steps, then test metrics.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p runs
[ -d runs/cohort48 ] || paindiffusion cohort runs/cohort48 --subjects 48 --minutes 10 --seed 2026
[ -d runs/data48 ] || paindiffusion pack runs/cohort48 -o runs/data48 --seed 0
paindiffusion train runs/data48 --out runs/shipped --steps 8000 --threads 2   # resumes if killed
python scripts/ship_model.py runs/shipped/model runs/data48
