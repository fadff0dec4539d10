"""Two quick checks of a model on held-out data, for ``scripts/ship_model.py`` and the shipped-model tests: does
generated PSPI follow the stimulus on a packed dataset's recordings, and do the expressiveness presets order the
faces? The full evaluation (metrics, baselines, controls, report) is :mod:`paindiffusion.evaluation`
(``paindiffusion evaluate``).

Correlations are the *mean* Pearson r over recordings (the official code reported the maximum, docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cohort import RuleBasedFace, SubjectParams
from .dataset import PackedData
from .evaluation.metrics import pearson, smooth
from .facespace import EMOTIONS
from .sampling import SamplerSettings
from .stimulus import protocol_trace
from .stream import PainStream


@dataclass
class FollowResult:
    model_r: float  # mean r(generated PSPI, ground-truth PSPI) over held-out recordings
    random_clip_r: float
    rule_based_r: float  # the cohort's own rules with a random subject: what simulators do today
    per_recording: dict


def pspi_following(model, data: PackedData, split: str | list[int] = "test", seconds: float = 120.0, seed: int = 0,
                   settings: SamplerSettings | None = None) -> FollowResult:
    """Generate each held-out recording's first ``seconds`` from its true stimulus, expressiveness and emotion
    (all recordings in one batch) and correlate smoothed PSPI with the ground truth. Baselines alongside: a
    random clip of another recording and the cohort's rules with a random subject (a static face scores 0)."""
    recs = data.split(split) if isinstance(split, str) else list(split)
    n = int(seconds * data.meta["fps"])
    wins = [data.window(i, 0, min(n, data.recordings[i]["length"])) for i in recs]
    n = min(len(w.frames) for w in wins)
    trace = np.stack([w.stimulus[-n:] for w in wins])  # window.stimulus has no history here
    stream = PainStream(model, trace=trace, batch=len(recs), seed=seed, settings=settings,
                        expressiveness=[w.expressiveness if np.isfinite(w.expressiveness) else "medium" for w in wins],
                        emotion=[EMOTIONS[w.emotion] if w.emotion >= 0 else "Neutral" for w in wins],
                        threshold=[(w.calibration or (None, None))[0] for w in wins],
                        tolerance=[(w.calibration or (None, None))[1] for w in wins])
    seqs = stream.take(n)
    seqs = seqs if isinstance(seqs, list) else [seqs]
    rng = np.random.default_rng(seed)
    per, base_clip, base_rule = {}, [], []
    for k, (w, seq, i) in enumerate(zip(wins, seqs, recs)):
        truth = smooth(w.pspi[:n])
        per[data.recordings[i]["name"]] = float(pearson(smooth(seq.pspi), truth))
        others = [j for j in range(len(data.recordings)) if j != i and data.recordings[j]["length"] >= n]
        j = others[rng.integers(len(others))]
        start = rng.integers(0, data.recordings[j]["length"] - n + 1)
        base_clip.append(float(pearson(smooth(data.window(j, int(start), n).pspi), truth)))
        rule = RuleBasedFace(SubjectParams.sample("baseline", rng)).generate(trace[k], rng)
        base_rule.append(float(pearson(smooth(data.space.pspi(rule)), truth)))
    return FollowResult(float(np.mean(list(per.values()))), float(np.mean(base_clip)), float(np.mean(base_rule)), per)


def expressiveness_response(model, seconds: float = 90.0, seed: int = 0, levels=("low", "medium", "high"),
                            settings: SamplerSettings | None = None) -> dict:
    """Mean generated PSPI under the same protocol for each expressiveness preset (higher should be higher)."""
    thr, tol = model.spec.calibration  # a typical patient: the protocol's levels and the calibration agree
    trace = protocol_trace(seconds, seed, thr, tol)
    stream = PainStream(model, trace=trace, batch=len(levels), seed=seed, expressiveness=list(levels), settings=settings,
                        threshold=thr, tolerance=tol)
    seqs = stream.take(len(trace))
    return {lvl: float(s.pspi.mean()) for lvl, s in zip(levels, seqs)}
