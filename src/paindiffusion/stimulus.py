"""Stimulus sources for generation: a user's temperature file, or a BioVid-like protocol.

Everything becomes °C per video frame at 25 fps, the rate the model runs at.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cohort import biovid_protocol, stimulus_index
from .errors import PainDiffusionError
from .biovid import check_temperature
from .rawdata import read_stream
from .sequence import FPS


def stimulus_from_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a CSV with columns ``time`` (s) and ``temperature`` (°C) at any rate (comma or tab separated) and
    resample it linearly to 25 fps, from its first to its last time stamp."""
    path = Path(path)
    t, v = read_stream(path, "temperature")  # header, numbers, NaN/inf, increasing time
    if len(t) < 2:
        raise PainDiffusionError("needs at least two samples to define a stimulus over time", path)
    check_temperature(v, "temperature", path)
    n = int(np.floor((t[-1] - t[0]) * FPS)) + 1
    return np.interp(t[0] + np.arange(n) / FPS, t, v).astype(np.float32)


def protocol_trace(seconds: float, seed: int = 0, threshold: float = 43.0, tolerance: float = 48.0) -> np.ndarray:
    """A BioVid-like schedule (°C per frame) for a typical subject (threshold 43 °C, tolerance 48 °C):
    4 levels in random order, 4 s plateaus, 8-12 s pauses."""
    if not np.isfinite(seconds) or seconds <= 0:
        raise PainDiffusionError(f"--seconds must be positive, got {seconds}")
    temp, _ = biovid_protocol(tuple(np.linspace(threshold, tolerance, 4)), seconds, np.random.default_rng(seed))
    n = int(round(seconds * FPS))
    return temp[np.minimum(stimulus_index(n), len(temp) - 1)].astype(np.float32)
