"""Measure a trained model's expressiveness response and store its inverse in the checkpoint.

    python scripts/calibrate_expressiveness.py runs/shipped/model runs/data300 -o runs/shipped/model_mapped

Feeds 9 values over the trained range to 16 training recordings' protocols (3 minutes each), measures the
achieved expressiveness, and writes ``conditions.expressiveness_map`` so that a request achieves itself
(paindiffusion.evaluation.expressiveness_map). Uses training recordings only: evaluate afterwards on held-out
subjects. About 4 minutes on 2 CPU cores. See scripts/train_shipped.sh for the whole recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from paindiffusion.checkpoint import PainModel
from paindiffusion.dataset import PackedData
from paindiffusion.evaluation.expressiveness_map import invert_response, measure_response


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_model", type=Path)
    ap.add_argument("data", type=Path, help="the packed dataset the model was trained on (its train split is used)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="where to save the checkpoint with its map")
    ap.add_argument("--recordings", type=int, default=16)
    ap.add_argument("--points", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=180.0, help="protocol length per run")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = PainModel.load(a.run_model)
    resp = measure_response(model, PackedData(a.data), a.recordings, a.points, a.seconds, progress=True)
    se = resp.achieved.std(1, ddof=1) / resp.achieved.shape[1] ** 0.5
    print("fed → achieved expressiveness (mean ± s.e. over recordings)")
    for g, m, s in zip(resp.grid, resp.mean, se):
        print(f"  {g:5.2f} → {m:5.2f} ± {s:.2f}")
    knots = invert_response(resp.grid, resp.mean)
    model.spec = dataclasses.replace(model.spec, expressiveness_map=knots)
    model.save(a.out)
    print("requested → fed:", ", ".join(f"{r:.2f}→{f:.2f}" for r, f in knots))
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
