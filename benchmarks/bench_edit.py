"""Editing on CPU: wall time of editing a sequence at each strength against generating it.

    python benchmarks/bench_edit.py [--checkpoint RUN/model] [--threads 1] [--minutes 3] [--repeats 3]

Target (the editing feature): editing a 3-minute sequence at strength 0.5 takes no longer than generating it
(by design about half: it re-runs half of the σ levels, two stacks per model call). Generation is
paindiffusion.generate.generate_sequence, editing paindiffusion.edit.edit, both with the checkpoint's sampler
settings and guidance on; the best of ``--repeats`` runs is reported (a shared machine only ever slows a run
down). Prints figures; it never asserts. Torch, OpenMP and BLAS are capped at ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import os


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch / OpenMP / BLAS")
    ap.add_argument("--minutes", type=float, default=3.0, help="length of the sequence")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; the fastest counts")
    return ap.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # cap every library's thread pool before numpy / torch are imported
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import time  # noqa: E402

import torch  # noqa: E402

from paindiffusion.checkpoint import PainModel  # noqa: E402
from paindiffusion.edit import edit  # noqa: E402
from paindiffusion.generate import generate_sequence  # noqa: E402
from paindiffusion.stimulus import protocol_trace  # noqa: E402


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    model = PainModel.load(ARGS.checkpoint)
    trace = protocol_trace(ARGS.minutes * 60, seed=1, threshold=model.spec.calibration[0], tolerance=model.spec.calibration[1])
    seq = generate_sequence(trace, "high", model=model, seed=1)
    calls: list = []
    model.denoiser.register_forward_hook(lambda *_: calls.append(1))
    cases = {"generate": lambda: generate_sequence(trace, "high", model=model, seed=2)}
    for name, kw in (("edit, strength 0.25", dict(strength=0.25)), ("edit, strength 0.5", dict(strength=0.5)),
                     ("edit, strength 0.75", dict(strength=0.75)), ("edit, strength 1", dict(strength=1.0)),
                     ("edit, strength 1, half kept", dict(strength=1.0, keep=f"0-{ARGS.minutes * 30:g}"))):
        cases[name] = lambda kw=kw: edit(seq, expressiveness="low", model=model, desc=None, **kw)
    times: dict = {k: [] for k in cases}
    counts: dict = {}
    for _ in range(ARGS.repeats):  # round robin: a load change on a shared machine hits every case alike
        for name, fn in cases.items():
            calls.clear()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            counts[name] = len(calls)  # counted, so free of the clock
    gen = min(times["generate"])
    print(f"{ARGS.minutes:g}-minute sequence ({len(seq)} frames), {model.sampler.levels} σ levels, {ARGS.threads} "
          f"thread(s), fastest of {ARGS.repeats} round-robin runs")
    for name in cases:
        t = min(times[name])
        verdict = ("PASS" if t <= gen else "FAIL") if name.endswith("0.5") else ""
        print(f"  {name:28s} {t:6.2f} s  {t / gen:5.2f} × generate  {len(seq) / t:6.0f} frames/s  "
              f"{counts[name]:5d} model calls  {verdict}")


if __name__ == "__main__":
    main()
