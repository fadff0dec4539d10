"""Memory of long inputs: a stimulus CSV read and resampled to 25 fps, and a sequence exported, for growing
lengths. Memory should stay flat: what grows is only the 25 fps result (4 bytes per frame).

    python benchmarks/bench_inputs.py [--hours 10] [--rate 1000] [--export-hours 1]

Each measurement runs in a fresh child process and reports the process's peak resident memory (ru_maxrss,
which includes the libraries, ~50 MB) and, for exports, the peak allocated by the writer (tracemalloc). The 10-hour, 1 kHz file is
36 M rows (~0.6 GB of text) and takes a few minutes to write and read.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_stimulus(path: Path, hours: float, rate: float) -> None:
    """A slowly varying heat trace (32-46 °C) at ``rate`` Hz, written in blocks."""
    n = int(hours * 3600 * rate)
    block = 1_000_000
    with open(path, "w") as f:
        f.write("time,temperature\n")
        for a in range(0, n, block):
            t = np.arange(a, min(a + block, n)) / rate
            v = 39.0 + 7.0 * np.sin(t / 30.0)
            np.savetxt(f, np.stack([t, v], 1), fmt=("%.3f", "%.2f"), delimiter=",")


def child(kind: str, path: str) -> None:
    import paindiffusion.stimulus as stimulus
    from paindiffusion.facespace import FACS
    from paindiffusion.render import save_output
    from paindiffusion.sequence import FaceSequence

    import tracemalloc

    t0 = time.perf_counter()
    if kind != "stimulus":  # tracemalloc slows a 36 M-row read tenfold: the stimulus reports RSS only
        tracemalloc.start()
    if kind == "stimulus":
        trace = stimulus.stimulus_from_csv(path)
        frames = len(trace)
    else:  # export: a long sequence written as .facs.csv and .arkit.json
        n = int(float(path.split("|")[1]) * 3600 * 25)
        seq = FaceSequence(FACS, np.full((n, FACS.dim), 0.5, np.float32), np.full(n, 40.0, np.float32))
        tracemalloc.reset_peak()  # the sequence itself is not the writer's
        out = Path(path.split("|")[0])
        save_output(out / "x.facs.csv", seq)
        save_output(out / "x.arkit.json", seq)
        frames = n
    peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{frames} {peak / 1e6:.1f} {time.perf_counter() - t0:.1f} {rss / 1024:.0f}")


def measure(kind: str, arg: str) -> tuple[int, float, float, float]:
    r = subprocess.run([sys.executable, __file__, "--child", kind, arg], capture_output=True, text=True, check=True)
    frames, mb, s, rss = r.stdout.split()
    return int(frames), float(mb), float(s), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--export-hours", type=float, default=1.0)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"stimulus CSV at {a.rate:g} Hz → 25 fps (process peak RSS, libraries included)")
        print(f"{'hours':>7} {'rows':>12} {'file MB':>9} {'frames':>9} {'RSS MB':>7} {'s':>7}")
        rows = []
        for hours in (a.hours / 10, a.hours):
            f = Path(tmp) / f"stim_{hours:g}h.csv"
            write_stimulus(f, hours, a.rate)
            frames, mb, s, rss = measure("stimulus", str(f))
            rows.append(rss)
            print(f"{hours:7.2f} {int(hours * 3600 * a.rate):12d} {f.stat().st_size / 1e6:9.0f} {frames:9d} "
                  f"{rss:7.0f} {s:7.1f}")
            f.unlink()
        print(f"ratio of peak RSS (10× longer input): {rows[1] / max(rows[0], 0.1):.2f}"
              " (the 25 fps result itself grows by 3.6 MB per 10 h)")
        print("\nexports (.facs.csv + .arkit.json) of a sequence (peak allocated beyond the sequence itself)")
        peaks = []
        for hours in (a.export_hours / 10, a.export_hours):
            frames, mb, s, rss = measure("export", f"{tmp}|{hours}")
            peaks.append(mb)
            print(f"{hours:7.2f} h {frames:9d} frames  peak {mb:7.1f} MB  RSS {rss:5.0f} MB  {s:6.1f} s")
        print(f"ratio of peaks (10× longer sequence): {peaks[1] / max(peaks[0], 0.1):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
