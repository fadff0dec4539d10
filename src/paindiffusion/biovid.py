"""BioVid HeatPain Part C constants and the one rule for a plausible heat stimulus.

Every place that accepts a temperature (stimulus files, raw recordings, live controls, offline traces,
generation) checks it with :func:`check_temperature`, so the accepted range is defined once.
Facts (Walter et al. 2013, the BioVid database): video at 25 fps; temperature and label streams at 32 Hz;
video frame f reads stream sample floor(f / 25 × 32); baseline 32 °C; the highest level stays ≤ 50.5 °C.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import PainDiffusionError

FPS = 25  # video frames per second
STIMULUS_HZ = 32  # temperature/label samples per second
BASELINE_C = 32.0
MAX_LEVEL_C = 50.5
# A thermode stays far inside this range; a value outside it is a unit or parsing error (°F, m°C, a time column).
TEMPERATURE_RANGE_C = (20.0, 55.0)


def stimulus_index(frames: np.ndarray | int) -> np.ndarray:
    """BioVid alignment: the 32 Hz sample of video frame f is floor(f / 25 × 32)."""
    f = np.arange(frames) if np.isscalar(frames) else np.asarray(frames)
    return (f * STIMULUS_HZ) // FPS


def true_runs(mask) -> list[tuple[int, int]]:
    """[start, end) of every run of True in ``mask``: the stimulated episodes of a label stream (``label > 0``), the
    stretches of a face track without a face. The one place where a run's edges are found."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, bool).astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def resting_mask(label: np.ndarray, after_s: float = 6.0) -> np.ndarray:
    """Frames at rest: label 0 and at least ``after_s`` since the last stimulated frame, so a response has decayed
    (the cohort's slowest relief and BioVid's 8-12 s pauses leave most of each pause at rest)."""
    lab = np.asarray(label) > 0
    idx = np.where(lab, np.arange(len(lab)), -10**9)
    last = np.maximum.accumulate(idx)
    return ~lab & (np.arange(len(lab)) - last >= after_s * FPS)


def check_temperature(values, what: str = "stimulus", path: str | os.PathLike | None = None) -> np.ndarray:
    """Return ``values`` as a float32 array of °C, or raise a one-line error: non-numeric, empty, NaN/inf or
    outside :data:`TEMPERATURE_RANGE_C`."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PainDiffusionError(f"{what} must be numbers in °C, got {values!r:.60}", path) from None
    if v.size == 0:
        raise PainDiffusionError(f"{what} is empty; give at least one temperature in °C", path)
    if not np.isfinite(v).all():
        raise PainDiffusionError(f"{what} has NaN/inf values; give finite temperatures in °C", path)
    lo, hi = TEMPERATURE_RANGE_C
    if v.min() < lo or v.max() > hi:
        bad = v.flat[int(np.argmax((v < lo) | (v > hi)))]
        raise PainDiffusionError(f"{what} {bad:g} °C is outside {lo:g}-{hi:g} °C; is it in °C?", path)
    return v.astype(np.float32)


def felt_temperature(celsius, tolerance):
    """Heat as the patient feels it: min(T, tolerance). BioVid heats a subject up to their pain tolerance and
    never above it (level 4 is the tolerance), so the data holds no face for hotter heat; a model fed more
    extrapolates (50 °C at a 47.5 °C tolerance turned the head 48-90° aside and pinned every AU at 5)."""
    return np.minimum(celsius, tolerance)


# A thermode's readings scatter by a few hundredths of a degree around its set point, and a tolerance read off a
# recording's plateaus (dataset.calibration_of) is their median: heat this little above it is not worth a notice.
HEAT_NOTICE_SLACK_C = 0.1


def heat_notice(celsius: float, tolerance: float) -> str | None:
    """The one-line notice for heat above the patient's tolerance (None when it is not above by more than the
    thermode's scatter, :data:`HEAT_NOTICE_SLACK_C`)."""
    if not celsius > tolerance + HEAT_NOTICE_SLACK_C:
        return None
    return (f"heat {celsius:g} °C is above the patient's pain tolerance {tolerance:g} °C and is felt as "
            f"{tolerance:g} °C (BioVid never heats above the tolerance); set a higher tolerance for a tougher patient")
