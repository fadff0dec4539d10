"""``study make`` of the default study (5 windows of 10 s, 3 tries, rules / ridge ARX / random clip, catch trial:
21 trials per participant) with the shipped model on one torch thread: wall time, split into material (cohort,
model, baselines) and rendering + H.264, and the face frames rendered. Target: ≤ 5 min on the project's 2-core
machine.

    .venv/bin/python benchmarks/bench_study.py [--out DIR] [--windows N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from paindiffusion.checkpoint import PainModel
from paindiffusion.study.make import make_study
from paindiffusion.study.material import StudyConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="study folder to write (default: a temporary one)")
    ap.add_argument("--windows", type=int, default=StudyConfig.windows)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or os.path.join(tmp, "study")
        t0 = time.perf_counter()
        m = make_study(out, PainModel.load(), StudyConfig(windows=args.windows), overwrite=bool(args.out))
        wall = time.perf_counter() - t0
    t = m["timing"]
    print(f"study make: {m['plan']['trials_per_participant']} trials per participant, {len(m['clips'])} clips, "
          f"{t['face_frames_rendered']} face frames at {m['size']}²")
    print(f"wall {wall:.1f} s = material {t['material_s']:.1f} s + rendering and encoding {t['render_s']:.1f} s "
          f"({t['face_frames_rendered'] / max(t['render_s'], 1e-9):.0f} face frames/s); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
