"""Measure how much expressiveness a trained model achieves for each value it is fed, and invert that into the
checkpoint's ``conditions.expressiveness_map`` (docs/evaluation.md, "Expressiveness map").

Guidance on expressiveness makes the achieved value a convex function of the fed one, so a model asked for a
middling patient gives too little and one asked for the top of the range too much. The map is measured on
TRAINING recordings' protocols (their stimulus, emotion, threshold and tolerance; never held-out subjects) by
feeding each of a grid of values over the trained range, and inverted by linear interpolation: the value to
feed so that the achieved mean equals the request.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..dataset import PackedData, expressiveness_of
from .data import from_packed
from .generation import generate_model, model_pspi


@dataclasses.dataclass
class Response:
    """Achieved expressiveness (recordings × grid) for each fed value of ``grid``."""

    grid: np.ndarray  # (G,) fed values
    achieved: np.ndarray  # (G, N) per recording

    @property
    def mean(self) -> np.ndarray:
        return self.achieved.mean(1)


def measure_response(model, data: PackedData, recordings: int = 16, points: int = 9, seconds: float = 180.0,
                     seed: int = 11, progress: bool = False) -> Response:
    """Feed ``points`` values evenly over the trained range to ``recordings`` training recordings' protocols
    (chosen at random with ``seed``) and measure the achieved expressiveness of each run. The model is fed the
    grid values directly: any map the checkpoint already has is bypassed."""
    train = from_packed(data, "train", int(seconds * 25))
    idx = np.random.default_rng(seed).choice(len(train), min(recordings, len(train)), replace=False)
    lo, hi = model.spec.expressiveness_range
    grid = np.linspace(lo, hi, points)
    spec = model.spec
    model.spec = dataclasses.replace(spec, expressiveness_map=())
    try:
        jobs = [{"stimulus": train.stimulus[i], "expressiveness": float(g), "emotion": train.emotion[i],
                 **dict(zip(("threshold", "tolerance"), train.calibration(i)))} for g in grid for i in idx]
        pspi = model_pspi(generate_model(model, jobs, seed=seed, show=progress, label="expressiveness map"))
    finally:
        model.spec = spec
    pairs = [i for _ in grid for i in idx]
    achieved = np.array([expressiveness_of(p, train.label[i], spec.expressiveness_definition) for p, i in zip(pspi, pairs)])
    return Response(grid, achieved.reshape(len(grid), len(idx)))


def invert_response(grid: np.ndarray, achieved_mean: np.ndarray, knots: int = 17) -> tuple:
    """(requested, fed) knots over the fed range: fed = f⁻¹(requested), where f is the achieved mean made
    non-decreasing (a running maximum: measurement noise must not make a higher request feed less). Requests
    below what the lowest fed value achieves feed that value; above the highest, the highest."""
    grid = np.asarray(grid, np.float64)
    f = np.maximum.accumulate(np.asarray(achieved_mean, np.float64))
    f = f + 1e-9 * np.arange(len(f))  # strictly increasing, as np.interp needs
    requested = np.linspace(grid[0], grid[-1], knots)
    fed = np.interp(requested, f, grid)
    return tuple((round(float(r), 4), round(float(x), 4)) for r, x in zip(requested, fed))


__all__ = ["Response", "measure_response", "invert_response"]
