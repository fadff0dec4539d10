#!/usr/bin/env bash
# The recipe of the shipped checkpoint paindiffusion-synthetic-v6 (src/paindiffusion/assets/model) on 2 CPU
# cores: a 300-subject synthetic cohort (10 min each), a subject-disjoint 210/45/45 split, then 'paindiffusion
# train' with no recipe flag (its defaults are the shipped architecture, training and sampler: docs/design.md §6;
# 45 min here) and the quick evaluation that ships it. The full report: scripts/evaluate_shipped.sh.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p runs
[ -d runs/cohort300 ] || paindiffusion cohort runs/cohort300 --subjects 300 --minutes 10 --seed 2026
[ -d runs/data300 ] || paindiffusion pack runs/cohort300 -o runs/data300 --seed 0
paindiffusion train runs/data300 --out runs/v6 --threads 2   # resumes if killed
python scripts/ship_model.py runs/v6/model runs/data300 --minutes 2 --seeds 1 --name paindiffusion-synthetic-v6
