"""Live figures for the README: control-to-frame latency, the model's learned delay, a soak at 25 fps
(frames produced vs expected, resident memory, largest lag) and the demo server's CPU per extra viewer.

    .venv/bin/python benchmarks/bench_live.py                # 10-minute soak (the README's figures)
    .venv/bin/python benchmarks/bench_live.py --minutes 60   # one hour
    .venv/bin/python benchmarks/bench_live.py --minutes 1 --viewers 1,4,8

Latency is measured in wall time, from a control arriving (Patient.set) to (a) the first frame made with it
(the step that used it has finished) and (b) that frame being handed out at its 25 fps due time. The learned
physiological delay is a property of the model, in face time: after a 32 → 48 °C step, how long until PSPI
has made half of its rise.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

from paindiffusion.checkpoint import PainModel
from paindiffusion.live.generator import LiveGenerator
from paindiffusion.biovid import FPS
from paindiffusion.stream import PainStream


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def latency(model, seconds: float) -> dict:
    """Random control changes every 0.2-0.6 s; both latencies per change."""
    shown: dict[int, float] = {}

    def sink(f):
        if f.control_seq not in shown:
            shown[f.control_seq] = time.monotonic()

    gen = LiveGenerator(model).start()
    p = gen.join(sink)
    time.sleep(1.5)
    sent = {}
    end = time.monotonic() + seconds
    rng = random.Random(0)
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.2, 0.6))
        t = time.monotonic()
        seq = p.set(stimulus=rng.uniform(32, 50), arrived=t)
        sent[seq] = t
    time.sleep(0.5)
    gen.stop()
    made = np.asarray(gen.log.latency[1:])  # the first entry is the join's initial controls
    handed = np.asarray([shown[s] - t for s, t in sent.items() if s in shown]) * 1e3
    return {"changes": len(sent), "made_median": np.median(made), "made_p99": np.percentile(made, 99),
            "shown_median": np.median(handed), "shown_p99": np.percentile(handed, 99)}


def learned_delay(model, seeds=range(8)) -> float:
    """Face-time seconds from a 32 → 48 °C step until PSPI has made half of its rise (median over seeds)."""
    out = []
    for seed in seeds:
        s = PainStream(model, stimulus=32.0, seed=seed)
        base = s.take(100).pspi.mean()
        s.set_controls(stimulus=48.0)
        p = s.take(8 * FPS).pspi
        top = np.median(p[-2 * FPS:])
        out.append(np.argmax(p >= base + 0.5 * (top - base)) / FPS)
    return float(np.median(out))


def soak(model, minutes: float) -> dict:
    gen = LiveGenerator(model).start()
    gen.join(lambda f: None, stimulus=32.0)
    time.sleep(2.0)
    start_frames, start_rss, t0 = gen.frames_out, rss_mb(), time.monotonic()
    rng = random.Random(1)
    p = gen.patients[0]
    while time.monotonic() - t0 < minutes * 60:
        time.sleep(0.5)
        p.set(stimulus=rng.uniform(32, 50))
    produced, elapsed = gen.frames_out - start_frames, time.monotonic() - t0
    gen.stop()
    return {"produced": produced, "expected": elapsed * FPS, "rss_start": start_rss, "rss_end": rss_mb(),
            "max_lag_ms": gen.log.max_lag_ms, "late_frames": gen.log.late_frames}


CLIENTS = """
import asyncio, sys, aiohttp
async def one(url, counts, i):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url) as ws:
            async for m in ws:
                counts[i] += 1
async def main(url, n, seconds):
    counts = [0] * n
    tasks = [asyncio.ensure_future(one(url, counts, i)) for i in range(n)]
    await asyncio.sleep(4)
    first = list(counts)
    await asyncio.sleep(seconds)
    print(min(c - f for c, f in zip(counts, first)) / seconds, flush=True)
    sys.stdout.flush()
    import os; os._exit(0)
asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def demo_cpu(model, viewers: int, seconds: float, size: int) -> dict:
    """The demo server's CPU (this process: generator + render + JPEG + WebSocket) with N tabs' worth of
    WebSocket clients (in a child process, not counted)."""
    from paindiffusion.live.server import DemoServer

    server = DemoServer(model, port=0, size=size, max_viewers=max(viewers, 1))
    url = server.start() + "ws"
    child = subprocess.Popen([sys.executable, "-c", CLIENTS, url, str(viewers), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(4)  # tabs joined, windows built
    c0, t0 = os.times(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = os.times(), time.monotonic()
    fps_min = float(child.communicate(timeout=30)[0].strip())
    server.stop()
    cpu = (c1.user - c0.user + c1.system - c0.system) / (t1 - t0)
    return {"viewers": viewers, "cpu_cores": cpu, "fps_min": fps_min}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10; the README's hour: 60)")
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--viewers", default="1,4,8", help="viewer counts for the CPU figure")
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per viewer count")
    ap.add_argument("--size", type=int, default=320, help="demo face size in pixels (the demo's default)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = PainModel.load()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    lat = latency(model, a.latency_seconds)
    print(f"control → frame made:   median {lat['made_median']:.0f} ms, p99 {lat['made_p99']:.0f} ms "
          f"({lat['changes']} changes at random times)")
    print(f"control → frame out:    median {lat['shown_median']:.0f} ms, p99 {lat['shown_p99']:.0f} ms "
          "(handed out at its 25 fps due time)")
    print(f"learned physiological delay (32 → 48 °C, half the PSPI rise): {learned_delay(model):.2f} s of face time")
    base = None
    for n in [int(x) for x in a.viewers.split(",")]:
        r = demo_cpu(model, n, a.window, a.size)
        base = base or r
        extra = (r["cpu_cores"] - base["cpu_cores"]) / max(n - base["viewers"], 1) if n != base["viewers"] else float("nan")
        print(f"demo, {n} viewer(s), {a.size}² faces: {r['cpu_cores'] * 100:.0f}% of one core, "
              f"slowest viewer {r['fps_min']:.1f} frames/s; per extra viewer {extra * 100:.0f}% of one core")
    s = soak(model, a.minutes)
    print(f"soak {a.minutes:g} min, 1 patient: {s['produced']} frames produced vs {s['expected']:.0f} expected "
          f"({s['produced'] / s['expected']:.4f}); RSS {s['rss_start']:.1f} → {s['rss_end']:.1f} MB; "
          f"max lag {s['max_lag_ms']:.0f} ms; {s['late_frames']} frames > 40 ms late")
    print(f"machine load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
