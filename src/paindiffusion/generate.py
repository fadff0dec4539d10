"""Whole sequences from a stimulus trace: the model (default) or the cohort's rules (the baseline).

The library call behind ``paindiffusion generate``; the live demo and the evaluation use the same pieces
(:class:`~paindiffusion.stream.PainStream`, :class:`~paindiffusion.cohort.RuleBasedFace`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .checkpoint import PainModel
from .cohort import RuleBasedFace, SubjectParams
from .conditions import ConditionSpec
from .facespace import EMOTIONS, FACS, emotion_index
from .biovid import check_temperature
from .sequence import FPS, FaceSequence
from .sampling import SamplerSettings
from .stream import PainStream


def generate_sequence(trace: np.ndarray, expressiveness: float | str = "medium", emotion: str = "Neutral",
                      seed: int = 0, model: PainModel | None = None, settings: SamplerSettings | None = None,
                      threshold: float | None = None, tolerance: float | None = None) -> FaceSequence:
    """Generate one face sequence following ``trace`` (°C per frame at 25 fps) with a trained model
    (the shipped one by default); ``threshold``/``tolerance``: the patient's pain threshold and tolerance in °C
    (default: the model's training median)."""
    trace = _check_trace(trace)
    model = model or PainModel.load()
    stream = PainStream(model, trace=trace, expressiveness=expressiveness, emotion=emotion, seed=seed, settings=settings,
                        threshold=threshold, tolerance=tolerance)
    seq = stream.take(len(trace), desc="generating")
    seq.meta.update(seed=seed, checkpoint_info=model.info.get("name", "custom"))
    return seq


def rule_gain(expressiveness: float) -> float:
    """Expressiveness (reactivity: mean PSPI while stimulated minus at rest) → the cohort's gain: on the
    synthetic cohort the two are related by reactivity ≈ −0.29 + 2.27 × gain (r = 0.98 over 300 subjects of
    10 min, seed 2026)."""
    return float(np.clip((expressiveness + 0.294) / 2.266, 0.05, 1.8))


def rule_based_sequence(trace: np.ndarray, expressiveness: float | str = "medium", emotion: str = "Neutral",
                        seed: int = 0, spec: ConditionSpec | None = None, threshold: float | None = None,
                        tolerance: float | None = None) -> FaceSequence:
    """The cohort's hand-written rules driven by ``trace``: what robot simulators do today (our baseline).
    A subject is drawn from ``seed``; its gain and emotion are set from the controls, and its pain threshold
    and tolerance too when given (else they are the drawn subject's)."""
    trace = _check_trace(trace)
    spec = spec or ConditionSpec()
    x = spec.expressiveness_value(expressiveness)
    rng = np.random.default_rng(seed)
    params = dataclasses.replace(SubjectParams.sample("rule-based", rng), expressiveness_gain=rule_gain(x),
                                 emotion=EMOTIONS[emotion_index(emotion)])
    if threshold is not None or tolerance is not None:
        thr, tol = spec.calibration_value(threshold, tolerance)
        params = dataclasses.replace(params, threshold_c=thr, tolerance_c=tol,
                                     levels_c=tuple(float(v) for v in np.linspace(thr, tol, 4)))
    frames = RuleBasedFace(params).generate(trace, rng)
    return FaceSequence(FACS, frames, trace, None, FPS,
                        {"source": "rule-based", "expressiveness": x, "emotion": params.emotion, "seed": seed})


def _check_trace(trace) -> np.ndarray:
    return check_temperature(trace, "the stimulus").reshape(-1)
