"""Measure the reading model: how MediaPipe reads our rig (run by ``scripts/make_reading_model.py``).

Random, smooth, independent AU and head-pose trajectories (none of the cohort's rules, so the round-trip
tests on cohort sequences are not read with a model fitted to them) are rendered by the renderer the
package ships, encoded as H.264 like any video, and tracked. Each tracked frame is aligned to the rig's
neutral face on the vertices no AU moves; a ridge regression of the aligned landmarks on the known AU
intensities and head poses then gives the tracked neutral face (the shape at rest); per AU, one displacement
field for each segment of a piecewise-linear reading and how that field changes with yaw; and the displacement
the head pose causes by itself. The residual variance per coordinate gives the noise weights.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..biovid import FPS
from ..facespace import FACS, FACS_AUS
from ..render.rig import FaceRig
from ..sequence import FaceSequence
from .fit import N_AUS, POSE_SCALE_DEG, ReadingModel, fit_frames, pose_features, similarity, to_model_frame

POSE_RANGE_DEG = (12.0, 25.0, 10.0)  # pitch, yaw, roll amplitudes of the measurement clips


def random_sequence(frames: int, rng: np.random.Generator, active: float = 0.4, knot_s: float = 0.6) -> np.ndarray:
    """``facs`` frames with every AU an independent piecewise-linear trajectory (knots every ``knot_s``
    seconds, each 0 with probability 1 − ``active``, else uniform on 0-5) and a wandering head pose."""
    step = max(2, int(knot_s * FPS))
    t = np.arange(frames)
    knots = np.arange(0, frames + step, step)
    out = np.zeros((frames, FACS.dim), np.float32)
    for k in range(N_AUS):
        v = np.where(rng.random(len(knots)) < active, rng.uniform(0, 5, len(knots)), 0.0)
        v[0] = 0.0  # each clip starts at rest
        out[:, k] = np.interp(t, knots, v)
    head_knots = np.arange(0, frames + 40, 40)
    for c, amp in enumerate(POSE_RANGE_DEG):
        out[:, N_AUS + c] = np.interp(t, head_knots, rng.uniform(-amp, amp, len(head_knots)))
    return out


def track_rendered(frames: np.ndarray, workdir: str | os.PathLike, size: int = 512) -> np.ndarray:
    """Render ``facs`` frames to an mp4 in ``workdir``, track it: landmarks (T, 468, 3), NaN where lost."""
    from ..render.video import save_video
    from .landmarks import track_video

    path = save_video(Path(workdir) / "measurement.mp4", FaceSequence(FACS, frames), size=size)
    try:
        return track_video(path).points
    finally:
        path.unlink(missing_ok=True)


def regress_model(points: np.ndarray, frames: np.ndarray, knots=(0.0, 2.5, 5.0), ridge: float = 1.0,
                  fit_ridge: float = 0.2, sparsity: float = 0.05, info: dict | None = None) -> ReadingModel:
    """Regression of aligned landmarks on known AUs → a :class:`ReadingModel`.

    The neutral face is the median tracked shape of the frames with no AU at all (so that a face at rest reads
    as AUs 0); the basis is the ridge regression of the displacement from it on each AU's piecewise-linear
    segments (``knots``), on those segments times the yaw (the fields' change with a turn) and on the pose
    features (:func:`~.fit.pose_features`); the weights are the inverse residual variance per coordinate.
    Last, the measurement frames are fitted with the model and the remaining head-pose error is regressed on
    the fitted frame (the pose correction)."""
    rig = FaceRig()
    rigid = np.flatnonzero(np.linalg.norm(rig.linear_basis(), axis=2).max(0) < 1e-3)
    ok = np.isfinite(points[:, 0, 0])
    p, f = points[ok].astype(np.float64), frames[ok].astype(np.float64)
    rest = (f[:, :N_AUS] == 0).all(1)
    if rest.sum() < 10:
        raise ValueError("the measurement needs at least 10 tracked frames with every AU at 0")
    x = to_model_frame(p, *similarity(rig.neutral[rigid], p[:, rigid]))
    neutral = np.median(x[rest], axis=0)
    model = ReadingModel(neutral, np.zeros((0,)), np.ones_like(neutral), rigid, fit_ridge, sparsity, None,
                         tuple(float(k) for k in knots))
    segs = model.segments(f[:, :N_AUS])
    yaw = f[:, N_AUS + 1:N_AUS + 2] / POSE_SCALE_DEG
    # the AU fields, how they change with yaw, and the displacement the head pose causes by itself
    a = np.concatenate([segs, segs * yaw, pose_features(f[:, N_AUS:])], 1)
    d = (x - neutral).reshape(len(x), -1)
    coef = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ d)
    var = (d - a @ coef).var(0).reshape(-1, 3)
    weight = 1.0 / (var + np.median(var))  # the floor keeps a few very still points from dominating
    weight /= weight.mean()
    k = segs.shape[1]
    model = replace(model, basis=coef[:k].reshape(k, -1, 3), yaw_basis=coef[k:2 * k].reshape(k, -1, 3),
                    pose_basis=coef[2 * k:].reshape(len(coef) - 2 * k, -1, 3), weight=weight,
                    info={**(info or {}), "frames": int(ok.sum()), "aus": list(FACS_AUS)})
    fitted, _, _ = fit_frames(p, model)
    design = np.concatenate([np.ones((len(f), 1)), fitted], 1)
    correction = np.linalg.lstsq(design, f[:, N_AUS:] - fitted[:, N_AUS:], rcond=None)[0]
    return replace(model, pose_correction=correction)
