"""The machine observer's realism figures for a checkpoint (the shipped one by default): its 2AFC preference rate for
the model, the rules given the controls, ridge ARX and a random clip against held-out recordings, with 95 %
bootstrap intervals (docs/evaluation.md, "Machine observer"). Prints a Markdown table and writes the numbers as JSON.

    .venv/bin/python scripts/observer_shipped.py [--checkpoint DIR] [--recordings 32] [--minutes 2] -o docs/evaluation/observer_v5.json

Held-out recordings: a fresh simulated cohort, seed 7700 (subjects never used for training). Every generator gets
each recording's stimulus, expressiveness, emotion, threshold and tolerance, as in ``paindiffusion evaluate``; the
data-driven baselines learn from the checkpoint's training subjects re-simulated (12 × 4 min). The random clip of
recording i is recording i of a second fresh cohort (seed 7710) at a random circular offset: real motion at the
wrong time, each from its own subject, so no person appears in both of the observer's folds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from paindiffusion.checkpoint import PainModel
from paindiffusion.files import atomic_file
from paindiffusion.evaluation.baselines import BASELINES
from paindiffusion.evaluation.data import fresh_cohort, training_pool
from paindiffusion.evaluation.observer import ObserverConfig, realism_two_sample_test
from paindiffusion.evaluation.generation import MODEL, generate_model, recording_jobs

HELD_DRAW, CLIP_DRAW = 700, 710  # cohort seeds 7700 and 7710


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--recordings", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", default="both", help="what the observer sees: both, levels or differences")
    ap.add_argument("--only", help="one generator (e.g. PainDiffusion) instead of all four")
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    model = PainModel.load(args.checkpoint)
    held = fresh_cohort(args.recordings, args.minutes, HELD_DRAW).with_definition(model.spec.expressiveness_definition)
    pool = training_pool(model, None, 12, 4.0)
    rng = np.random.default_rng([args.seed, 11])
    clips = fresh_cohort(args.recordings, args.minutes + 1, CLIP_DRAW).frames
    t = held.frames.shape[1]
    generated = {
        MODEL: generate_model(model, recording_jobs(held, 1), seed=args.seed, show=False),
        "rules given the controls": BASELINES["rules given the controls"](held, pool, 1, rng, model.spec)[:, 0],
        "ridge ARX": BASELINES["ridge ARX"](held, pool, 1, rng, model.spec)[:, 0],
        "random clip": np.stack([np.roll(c, -int(rng.integers(len(c))), 0)[:t] for c in clips]),
    }
    rows = {}
    config = ObserverConfig(features=args.features)
    for name, frames in generated.items():
        if args.only in (None, name):
            rows[name] = realism_two_sample_test(list(held.frames), list(frames), seed=args.seed, config=config)
    out = {"checkpoint": (model.info or {}).get("name", "custom"), "held_out": held.source, "recordings": args.recordings,
           "minutes": args.minutes, "seed": args.seed, "random_clip_source": f"fresh cohort, seed {7000 + CLIP_DRAW}",
           "pool": pool.source, "features": args.features, "results": rows, "seconds": round(time.time() - t0, 1)}
    print(f"held-out: {held.source}, {args.recordings} recordings × {args.minutes:g} min; observer seed {args.seed}, "
          f"features {args.features}")
    print("| generator | taken for real (2AFC) [95 % CI] | observer accuracy | trials (window pairs) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['preference']:.1f} % [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] | "
              f"{100 * r['accuracy']:.1f} % | {r['trials']} |")
    print(f"{out['seconds']:.0f} s")
    if args.out:
        with atomic_file(args.out, text=True) as f:
            f.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
