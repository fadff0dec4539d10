"""Benchmark of the data path: cohort simulation, packing, and random training-window reads.

    python benchmarks/bench_dataset.py [--subjects 6] [--minutes 3] [--reads 5000]

Prints seconds of simulation per subject-minute, pack throughput, and the time to read one random 64-frame
window from the memory-mapped store (mean and p99, with and without the 75-frame stimulus history), against
the 1 ms target. Windows are materialised (copied out of the memory map), so the pages are really read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from paindiffusion.cohort import write_cohort
from paindiffusion.dataset import PackedData, WindowSampler, pack

TARGET_US = 1000.0


def read_times(data: PackedData, n: int, length: int, history: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    recs = rng.integers(0, len(data.recordings), n)
    starts = [int(rng.integers(0, data.recordings[r]["length"] - length + 1)) for r in recs]
    out = np.empty(n)
    sink = 0.0
    for k, (r, s) in enumerate(zip(recs, starts)):
        t0 = time.perf_counter_ns()
        w = data.window(int(r), s, length, history)
        frames, stim = np.array(w.frames), np.array(w.stimulus)  # materialise: really read the pages
        out[k] = (time.perf_counter_ns() - t0) / 1e3
        sink += frames[0, 0] + stim[0]
    return out


def sampler_times(data: PackedData, n: int, length: int, history: int) -> np.ndarray:
    s = WindowSampler(data, "train", length, history, change_fraction=0.5, seed=0)
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        w = s.sample(i)
        np.array(w.frames), np.array(w.stimulus)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def report(name: str, us: np.ndarray) -> None:
    mean, p99 = us.mean(), np.percentile(us, 99)
    print(f"{name:<44} mean {mean:7.1f} µs   p99 {p99:7.1f} µs   "
          f"(mean {mean / TARGET_US:.3f}×, p99 {p99 / TARGET_US:.3f}× the 1 ms target)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--reads", type=int, default=5000)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--history", type=int, default=75)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "data"
        t0 = time.perf_counter()
        write_cohort(raw, args.subjects, args.minutes, seed=0)
        sim = time.perf_counter() - t0
        sm = args.subjects * args.minutes
        print(f"cohort: {args.subjects} subjects × {args.minutes:g} min in {sim:.2f} s "
              f"= {sim / sm:.3f} s per subject-minute (incl. writing files)")
        t0 = time.perf_counter()
        pack(raw, out)
        dt = time.perf_counter() - t0
        data = PackedData(out)
        n, nbytes = len(data.frames), sum(f.stat().st_size for f in out.iterdir())
        print(f"pack: {n} frames ({n / 25 / 60:.1f} min of video, {nbytes / 1e6:.1f} MB) in {dt:.2f} s = "
              f"{n / dt / 1e3:.0f} k frames/s, {sm / dt:.1f} subject-minutes/s (incl. reading and validating CSVs)")
        read_times(data, 200, args.length, args.history)  # warm the page cache and the code path
        report(f"random {args.length}-frame window", read_times(data, args.reads, args.length, 0, seed=1))
        report(f"random {args.length}-frame window + {args.history} history",
               read_times(data, args.reads, args.length, args.history, seed=2))
        report(f"WindowSampler.sample (50% at changes, +{args.history})",
               sampler_times(data, args.reads, args.length, args.history))
        print(f"({args.reads} reads each; store of {len(data.recordings)} recordings)")


if __name__ == "__main__":
    main()
