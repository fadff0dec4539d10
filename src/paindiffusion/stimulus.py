"""Stimulus sources for generation: a user's temperature file, or a BioVid-like protocol.

Everything becomes °C per video frame at 25 fps, the rate the model runs at. A file is read in chunks and
resampled as it is read, so a 10-hour recording at 1 kHz needs no more memory than its 25 fps result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .biovid import FPS, check_temperature, stimulus_index
from .cohort import biovid_protocol
from .errors import PainDiffusionError, warn
from .rawdata import iter_stream

STIMULUS_FILE = "stimulus CSV with columns 'time' (s) and 'temperature' (°C)"
MAX_HOURS = 24.0  # the trace (°C per frame) is held in memory: 24 h is 2.2 M frames, ~9 MB
PLAUSIBLE_HZ = (1.0, 100_000.0)  # thermode logs run at ~10 Hz-1 kHz; outside this, time is likely not in seconds
PLAUSIBLE_HOURS = 6.0  # longer than any heat protocol: a time column in ms makes a 16-hour "recording"


def stimulus_from_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a CSV with columns ``time`` (s) and ``temperature`` (°C) at any rate (comma, semicolon or tab
    separated) and resample it linearly to 25 fps, from its first to its last time stamp."""
    path = Path(path)
    out: list[np.ndarray] = []
    t0 = None
    prev_t = prev_v = None  # the last sample of the previous chunk, to interpolate across the boundary
    next_frame, n = 0, 0
    for t, v in iter_stream(path, "temperature", STIMULUS_FILE):
        check_temperature(v, "temperature", path)
        if t0 is None:
            t0 = t[0]
        if prev_t is not None:
            t, v = np.concatenate([[prev_t], t]), np.concatenate([[prev_v], v])
        n += len(t) - (prev_t is not None)
        if (t[-1] - t0) > MAX_HOURS * 3600:
            raise PainDiffusionError(f"covers more than {MAX_HOURS:g} hours; is its time column in seconds? "
                                     "split long sessions into several files", path)
        last = int(np.floor((t[-1] - t0) * FPS))  # frames whose time lies within this chunk
        if last >= next_frame:
            grid = t0 + np.arange(next_frame, last + 1) / FPS
            out.append(np.interp(grid, t, v).astype(np.float32))
            next_frame = last + 1
        prev_t, prev_v = t[-1], v[-1]
    if n < 2:
        raise PainDiffusionError("needs at least two samples to define a stimulus over time", path)
    seconds = prev_t - t0
    rate = (n - 1) / seconds
    if not PLAUSIBLE_HZ[0] <= rate <= PLAUSIBLE_HZ[1] or seconds > PLAUSIBLE_HOURS * 3600:
        warn(f"{n} samples over {seconds:g} time units imply {rate:.3g} Hz and {seconds / 3600:.3g} hours; "
             "the 'time' column must be in seconds (milliseconds? divide by 1000)", path)
    return np.concatenate(out)


def protocol_trace(seconds: float, seed: int = 0, threshold: float = 43.0, tolerance: float = 48.0) -> np.ndarray:
    """A BioVid-like schedule (°C per frame) for a typical subject (threshold 43 °C, tolerance 48 °C):
    4 levels in random order, 4 s plateaus, 8-12 s pauses."""
    if not np.isfinite(seconds) or seconds <= 0 or seconds > MAX_HOURS * 3600:
        raise PainDiffusionError(f"--seconds must be positive and at most {MAX_HOURS * 3600:g}, got {seconds}")
    temp, _ = biovid_protocol(tuple(np.linspace(threshold, tolerance, 4)), seconds, np.random.default_rng(seed))
    n = int(round(seconds * FPS))
    return temp[np.minimum(stimulus_index(n), len(temp) - 1)].astype(np.float32)
