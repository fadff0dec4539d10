"""Rendering speed on one CPU core: AU rig + render at 512², and H.264 encoding (target ≥ 100 frames/s).

    python benchmarks/bench_render.py [--frames 250] [--size 512]

The process pins itself to one core (sched_setaffinity) and caps numpy/torch and Mesa's llvmpipe
rasteriser at one thread, so every library's worker threads share that core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa llvmpipe rasteriser threads

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_FPS = 100.0


def pain_ramp(n: int) -> np.ndarray:
    """facs frames sweeping from neutral to a PSPI≈11 grimace with head motion (all regions move)."""
    from paindiffusion.facespace import FACS

    s = (0.5 - 0.5 * np.cos(np.linspace(0, 4 * np.pi, n)))[:, None]
    peak = np.zeros(FACS.dim, np.float32)
    pose = dict(AU4=4, AU6=3.5, AU7=4, AU9=3, AU10=3, AU25=2, AU26=1.5, AU20=2, head_pitch=8, head_yaw=10)
    for name, v in pose.items():
        peak[FACS.index(name)] = v
    return (s * peak).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from paindiffusion.render.renderer import Renderer
    from paindiffusion.render.rig import FaceRig
    from paindiffusion.render.video import write_mp4

    frames = pain_ramp(args.frames)
    rig, renderer = FaceRig(), Renderer(args.size)
    renderer.render(rig.deform(frames[:1])[0])  # warm-up: shader compilation
    gl = renderer.ctx.info["GL_RENDERER"]

    t0 = time.perf_counter()
    vertices = rig.deform(frames)
    t1 = time.perf_counter()
    images = [renderer.render(v).copy() for v in vertices]
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = write_mp4(Path(tmp) / "bench.mp4", images)
        t3 = time.perf_counter()
        mb = out.stat().st_size / 1e6
    renderer.release()

    n = args.frames
    rig_fps, render_fps, enc_fps = n / (t1 - t0), n / (t2 - t1), n / (t3 - t2)
    both = n / (t2 - t0)
    print(f"one core, {n} frames at {args.size}x{args.size} ({gl})")
    print(f"  rig (batched)        {rig_fps:10.0f} frames/s")
    print(f"  render (+readback)   {render_fps:10.0f} frames/s")
    print(f"  rig + render         {both:10.0f} frames/s   = {both / TARGET_FPS:.2f}x the {TARGET_FPS:.0f} fps target")
    print(f"  H.264 mp4 encode     {enc_fps:10.0f} frames/s   = {enc_fps / TARGET_FPS:.2f}x the target ({mb:.2f} MB)")
    total = n / (t3 - t0)
    print(f"  all (rig+render+mp4) {total:10.0f} frames/s   = {total / 25:.1f}x real time at 25 fps")


if __name__ == "__main__":
    main()
