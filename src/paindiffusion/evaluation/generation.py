"""The model's side of an evaluation: which sequences it generates (jobs) and how, in one batched stream.

A *job* is one sequence to generate: a stimulus trace (°C per frame), an expressiveness, an emotion and the
patient's threshold and tolerance. Every job of a run goes through ONE :class:`~paindiffusion.stream.PainStream`
with the checkpoint's own sampler settings (docs/evaluation.md).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..errors import PainDiffusionError, PainDiffusionWarning
from ..facespace import FACS
from ..progress import progress
from ..stream import PainStream, SamplerSettings
from .data import SWEEP_CALIBRATION, Recordings

MODEL = "PainDiffusion"  # the model's name in every table of a report


def trained_range(model) -> tuple[tuple[float, float], str]:
    """The numeric expressiveness range the checkpoint was trained on, and where that comes from."""
    lo, hi = model.spec.expressiveness_range
    return (float(lo), float(hi)), "the checkpoint's expressiveness_range"


def requestable(model, value) -> tuple[float | str, bool]:
    """The expressiveness to request for a recording: its own value, or the nearest end of the checkpoint's trained
    range, where the checkpoint clamps (its warning is silenced here: the report counts the changes once).
    Returns (value, changed)."""
    if isinstance(value, str):
        return value, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PainDiffusionWarning)
        used = model.spec.expressiveness_value(value)
    return (value, False) if used == float(value) else (used, True)


def recording_jobs(held: Recordings, tries: int) -> list[dict]:
    """Every held-out recording ``tries`` times, with its own stimulus, expressiveness, emotion and calibration."""
    return [{"stimulus": held.stimulus[i], "expressiveness": float(np.clip(held.expressiveness[i], 0, 16)),
             "emotion": held.emotion[i], **dict(zip(("threshold", "tolerance"), held.calibration(i)))}
            for i in range(len(held)) for _ in range(tries)]


def sweep_jobs(values: list, stim: np.ndarray, tries: int) -> list[dict]:
    """The expressiveness sweep: one protocol (a typical subject, Neutral) at each value, ``tries`` times."""
    thr, tol = SWEEP_CALIBRATION
    return [{"stimulus": stim, "expressiveness": v, "emotion": "Neutral", "threshold": thr, "tolerance": tol}
            for v in values for _ in range(tries)]


def resting_jobs(emotions: tuple[str, ...], frames: int, tries: int, baseline_c: float) -> list[dict]:
    """The resting faces: each emotion at the baseline temperature for ``frames`` frames, ``tries`` patients each."""
    stim = np.full(frames, baseline_c, np.float32)
    return [{"stimulus": stim, "expressiveness": "medium", "emotion": e} for e in emotions for _ in range(tries)]


def generate_model(model, jobs: list[dict], seed: int, settings: SamplerSettings | None = None,
                   show: bool = True, label: str = MODEL) -> np.ndarray:
    """Run every job (stimulus (T,), expressiveness, emotion, optional threshold and tolerance) in one batched
    stream → (B, T, D) frames. Jobs may have different lengths: shorter ones are padded with their last value."""
    if not jobs:
        raise PainDiffusionError("nothing to generate: no jobs")
    for j in jobs:
        j["expressiveness"], j["clamped"] = requestable(model, j["expressiveness"])
    t = max(len(j["stimulus"]) for j in jobs)
    trace = np.stack([np.pad(j["stimulus"], (0, t - len(j["stimulus"])), mode="edge") for j in jobs])
    stream = PainStream(model, trace=trace, batch=len(jobs), seed=seed, settings=settings,
                        expressiveness=[j["expressiveness"] for j in jobs], emotion=[j["emotion"] for j in jobs],
                        threshold=[j.get("threshold") for j in jobs], tolerance=[j.get("tolerance") for j in jobs])
    chunks = []
    bar = progress(desc=f"{label} ({len(jobs)} sequences × {t} frames)", total=-(-t // stream.group), unit="step",
                   show=show)
    for _ in range(-(-t // stream.group)):
        chunks.append(stream.step().frames)
        bar.update(1)
    bar.close()
    return np.concatenate(chunks, 1)[:, :t]


def latent_standardiser(model) -> Callable[[np.ndarray], np.ndarray]:
    """Face frames → the model's standardised latents (where PainDist and the motion Fréchet distance are computed)."""
    mean, std = model.standardizer.mean.numpy(), model.standardizer.std.numpy()
    return lambda f: (np.asarray(f, np.float32) - mean) / std


def model_pspi(frames: np.ndarray) -> np.ndarray:
    return FACS.pspi(frames)
