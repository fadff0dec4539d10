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
import math
import os
from pathlib import Path

import numpy as np

from ..dataset import PackedData, expressiveness_of
from ..errors import PainDiffusionError
from ..files import check_not_input
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
    achieved = np.array([expressiveness_of(p, train.label[i]) for p, i in zip(pspi, pairs)],
                        np.float64)  # None (nothing measurable) becomes NaN
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


def check_map_request(out: Path, inputs: tuple, recordings: int, points: int, seconds: float) -> None:
    """Everything :func:`fit_expressiveness_map` can refuse without measuring, so a bad request costs no minutes."""
    if isinstance(recordings, bool) or not isinstance(recordings, int) or not 1 <= recordings <= 10_000:
        raise PainDiffusionError(f"--recordings {recordings!r} must be a whole number in 1-10000")
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= 101:
        raise PainDiffusionError(f"--points {points!r} must be a whole number in 2-101 (the map needs two ends)")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 20 <= seconds <= 3600):
        raise PainDiffusionError(f"--seconds {seconds!r} must be 20-3600 (a protocol's first heat episode ends after ~20 s)")
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise PainDiffusionError("exists; the calibrated checkpoint is written to a new folder: choose another -o", out)
    check_not_input(out, inputs)


def fit_expressiveness_map(model_dir: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike,
                         recordings: int = 16, points: int = 9, seconds: float = 180.0, seed: int = 11,
                         progress: bool = False) -> tuple[Response, tuple]:
    """Measure ``model_dir``'s response on ``data_dir``'s training recordings, store its inverse as the
    expressiveness map and write the result to the NEW folder ``out`` (loaded back before it appears, so a
    checkpoint its loader would refuse is never written). Returns (response, knots)."""
    from ..checkpoint import PainModel

    check_map_request(out, (model_dir, data_dir), recordings, points, seconds)
    model = PainModel.load(model_dir)
    data = PackedData(data_dir)
    if not model.space.has_pspi:
        raise PainDiffusionError(f"face space {model.space.name!r} has no AUs: the map is measured on PSPI (facs models only)", model_dir)
    resp = measure_response(model, data, recordings, points, seconds, seed, progress)
    if not np.isfinite(resp.achieved.astype(np.float64)).all():
        raise PainDiffusionError("some runs have no measurable expressiveness (no stimulated frames within --seconds); "
                                 "use a longer --seconds", data_dir)
    knots = invert_response(resp.grid, resp.mean)
    model.spec = dataclasses.replace(model.spec, expressiveness_map=knots)
    check_map_request(out, (model_dir, data_dir), recordings, points, seconds)  # still free after minutes
    model.save(out)
    return resp, knots


__all__ = ["Response", "measure_response", "invert_response", "fit_expressiveness_map", "check_map_request"]
