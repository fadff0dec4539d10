"""Render → track → fit round trip: does a face we render read back as the AUs it was rendered with?

Used by the tests, ``benchmarks/bench_tracking.py`` and the table in docs/tracking.md. Sequences come from the
cohort's rules (pain episodes of expressive simulated subjects) and by hand (each pain AU alone up to 5, fast
onsets and slow offsets, blinks, pain with head turns) so that no AU only ever moves together with its PSPI twin.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError
from ..facespace import FACS, FACS_AUS
from ..sequence import FaceSequence

PAIN_TARGETS = ("AU4", "AU6/7", "AU9/10", "AU43", "AU26")


def _ramp(n: int, up: int, hold: int, down: int, peak: float) -> np.ndarray:
    shape = np.concatenate([np.linspace(0, peak, up), np.full(hold, peak), np.linspace(peak, 0, down)])
    return np.pad(shape, (0, max(0, n - len(shape))))[:n]


def handmade_sequences() -> list[FaceSequence]:
    """Hand-made sequences: single pain AUs to the extreme, unbalanced pairs, asymmetric timing, head pose."""
    seqs = []
    # 1. each pain AU alone, 0 → 5 → 0 (AU6 without AU7, AU9 without AU10 ...), neutral between
    solo = (4, 6, 7, 9, 10, 43, 26)
    n = 40
    f = np.zeros((n * len(solo) + 10, FACS.dim), np.float32)
    for i, au in enumerate(solo):
        f[10 + i * n: 10 + (i + 1) * n, FACS_AUS.index(au)] = _ramp(n, 10, 10, 10, 5.0)
    seqs.append(FaceSequence(FACS, f, meta={"name": "solo"}))
    # 2. a grimace with asymmetric timing (fast onset, slow relief), blinks, and one extreme frame of everything
    t = 300
    f = np.zeros((t, FACS.dim), np.float32)
    for au, peak, lag in ((4, 4.5, 0), (7, 4.0, 2), (6, 3.0, 6), (10, 3.5, 8), (9, 2.0, 10), (26, 3.0, 20), (25, 2.0, 12)):
        f[:, FACS_AUS.index(au)] = np.roll(_ramp(t, 6, 40, 90, peak), 30 + lag)
    f[200:230, [FACS_AUS.index(a) for a in (4, 6, 7, 9, 10, 26, 43)]] = 5.0
    for b in (20, 150, 260):
        f[b: b + 6, FACS_AUS.index(43)] = np.maximum(f[b: b + 6, FACS_AUS.index(43)], [2, 4.5, 5, 5, 4, 1.5])
    seqs.append(FaceSequence(FACS, f, meta={"name": "grimace"}))
    # 3. pain while the head turns down and sideways (pose known to the degree)
    g = f.copy()
    tt = np.arange(t) / 25
    g[:, FACS.index("head_pitch")] = 10 * np.sin(2 * np.pi * tt / 7)
    g[:, FACS.index("head_yaw")] = 20 * np.sin(2 * np.pi * tt / 9)
    g[:, FACS.index("head_roll")] = 8 * np.sin(2 * np.pi * tt / 5)
    seqs.append(FaceSequence(FACS, g, meta={"name": "grimace_turning"}))
    return seqs


def cohort_sequences(subjects: int = 2, seconds: float = 40.0, seed: int = 7) -> list[FaceSequence]:
    """Sequences by the cohort's rules for expressive simulated subjects whose recording shows pain (gain ≥ 1 and
    PSPI standard deviation ≥ 1; a stoic subject's PSPI curve is blinks and noise, nothing to correlate with)."""
    from ..cohort import RuleBasedFace, SubjectParams, biovid_protocol
    from ..biovid import stimulus_index

    out, i = [], 0
    rng = np.random.default_rng(seed)
    while len(out) < subjects:
        p = SubjectParams.sample(f"rt{i}", rng)
        i += 1
        if p.expressiveness_gain < 1.0:
            continue
        temp, _ = biovid_protocol(p.levels_c, seconds, rng)
        per_frame = temp[np.minimum(stimulus_index(int(seconds * 25)), len(temp) - 1)]
        frames = RuleBasedFace(p).generate(per_frame, rng)
        if FACS.pspi(frames).std() < 1.0:
            continue
        out.append(FaceSequence(FACS, frames, per_frame, meta={"name": f"cohort_{p.subject}", "emotion": p.emotion}))
    return out


def pair_max(frames: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.maximum(frames[:, FACS_AUS.index(a)], frames[:, FACS_AUS.index(b)])


def compare(true: np.ndarray, read: np.ndarray) -> dict:
    """Pearson r per AU, per PSPI pair (max), of PSPI; head pose mean absolute error (degrees)."""
    def r(x, y):
        return float(np.corrcoef(x, y)[0, 1]) if x.std() > 1e-6 and y.std() > 1e-6 else float("nan")

    out = {f"AU{au}": r(true[:, i], read[:, i]) for i, au in enumerate(FACS_AUS)}
    out["AU6/7"] = r(pair_max(true, 6, 7), pair_max(read, 6, 7))
    out["AU9/10"] = r(pair_max(true, 9, 10), pair_max(read, 9, 10))
    out["PSPI"] = r(FACS.pspi(true), FACS.pspi(read))
    err = np.abs(true[:, -3:] - read[:, -3:])
    out.update({f"{k}_mae": float(e) for k, e in zip(("pitch", "yaw", "roll"), err.mean(0))})
    out.update({f"{k}_p95": float(e) for k, e in zip(("pitch", "yaw", "roll"), np.percentile(err, 95, axis=0))})
    return out


def roundtrip(seqs: list[FaceSequence], workdir: str | os.PathLike, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Render each sequence to a real mp4, extract it; returns (true frames, read frames) concatenated."""
    from ..render.video import save_video
    from .extract import extract_video

    true, read = [], []
    for k, s in enumerate(seqs):
        path = save_video(Path(workdir) / f"roundtrip_{k}.mp4", s, size=size)
        got = extract_video(path)
        if len(got) != len(s):
            raise PainDiffusionError(f"read {len(got)} frames back from a {len(s)}-frame render", path)
        true.append(s.frames)
        read.append(got.frames)
    return np.concatenate(true), np.concatenate(read)
