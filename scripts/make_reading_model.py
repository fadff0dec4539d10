"""Build src/paindiffusion/assets/reading_model.npz: our rig as MediaPipe reads it (docs/tracking.md).

Renders random AU and head-pose clips with the shipped renderer, tracks them with MediaPipe 0.10.21 and
regresses the tracked landmarks on the known AUs (paindiffusion.tracking.measurement). Deterministic given the
seed and the library versions; takes a few minutes on one core.

    .venv/bin/python scripts/make_reading_model.py [--clips 24] [--seconds 20] [--seed 1234] [--keep-data X.npz]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from paindiffusion.tracking.measurement import random_sequence, regress_model, track_rendered

OUT = Path(__file__).resolve().parents[1] / "src" / "paindiffusion" / "assets" / "reading_model.npz"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep-data", type=Path, help="also save the tracked landmarks and true frames (for experiments)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    points, frames = [], []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.clips + 1):
            f = random_sequence(int(args.seconds * 25), rng)
            if i == args.clips:  # one clip at rest with the head moving: the neutral face as tracked
                f = f[:250].copy()
                f[:, :17] = 0.0
            points.append(track_rendered(f, tmp))
            frames.append(f)
            print(f"clip {i + 1}/{args.clips + 1}: {len(f)} frames, {time.time() - started:.0f} s", flush=True)
    points, frames = np.concatenate(points), np.concatenate(frames)
    if args.keep_data:
        np.savez_compressed(args.keep_data, points=points, frames=frames)
    model = regress_model(points, frames, info={"clips": args.clips, "seconds": args.seconds, "seed": args.seed,
                                                "rest_clip_frames": 250})
    model.save(args.out)
    print(f"wrote {args.out} from {model.info['frames']} tracked frames")


if __name__ == "__main__":
    main()
