"""Held-out recordings and the training reference pool of an evaluation, as plain arrays.

Default held-out data is a freshly simulated cohort whose subjects were never in training (seed 7000 + draw;
the shipped model was trained on cohort seed 2026). With a packed dataset its test split is used instead.
The *pool* stands for the model's training data: the checkpoint's own training subjects re-simulated from
the cohort seed in its config when that is possible, else the packed data's training split, else a fresh
cohort of the same simulation (said in the report).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..biovid import stimulus_index
from ..biovid import BASELINE_C
from ..cohort import RuleBasedFace, SubjectParams, biovid_protocol, simulate_recording
from ..dataset import PackedData, calibration_of, expressiveness_of, split_subjects
from ..errors import PainDiffusionError
from ..facespace import EMOTIONS, FACS
from ..sequence import FPS

HELDOUT_SEED = 7000  # + draw: never used for training (docs/evaluation.md)
POOL_FALLBACK_SEED = 9000


@dataclass
class Recordings:
    """N recordings cut to a common length T, per video frame."""

    names: list[str]
    frames: np.ndarray  # (N, T, D)
    stimulus: np.ndarray  # (N, T) °C
    label: np.ndarray  # (N, T) 0-4
    pspi: np.ndarray  # (N, T)
    expressiveness: np.ndarray  # (N,) the project's definition (dataset.expressiveness_of)
    emotion: list[str]
    params: list[SubjectParams] | None  # true subjects (synthetic data only): the oracle needs them
    source: str

    def __len__(self) -> int:
        return len(self.names)

    def calibration(self, i: int) -> tuple[float | None, float | None]:
        """Recording i's pain threshold and tolerance (°C) from its stimulus and labels; (None, None) unknown."""
        return calibration_of(self.stimulus[i], self.label[i]) or (None, None)

    def subset(self, idx) -> "Recordings":
        idx = list(idx)
        return dataclasses.replace(
            self, names=[self.names[i] for i in idx], frames=self.frames[idx], stimulus=self.stimulus[idx],
            label=self.label[idx], pspi=self.pspi[idx], expressiveness=self.expressiveness[idx],
            emotion=[self.emotion[i] for i in idx], params=None if self.params is None else [self.params[i] for i in idx])


def _per_frame(rec, seconds: float):
    n = int(seconds * FPS)
    idx = np.minimum(stimulus_index(n), len(rec.temperature) - 1)
    return rec.frames[:n], rec.temperature[idx].astype(np.float32), rec.label[idx].astype(np.int8)


def simulate(names: list[str], seeds: list, minutes: float, source: str) -> Recordings:
    """Simulate recordings ``names[i]`` with generator seeds ``seeds[i]`` (as write_cohort: [cohort seed, i])."""
    frames, stim, lab, params = [], [], [], []
    for name, s in zip(names, seeds):
        rec = simulate_recording(name, minutes, np.random.default_rng(s))
        f, t, lb = _per_frame(rec, minutes * 60)
        frames.append(f)
        stim.append(t)
        lab.append(lb)
        params.append(rec.params)
    frames = np.stack(frames).astype(np.float32)
    label = np.stack(lab)
    pspi = FACS.pspi(frames).astype(np.float32)
    expr = np.array([expressiveness_of(p, lb) for p, lb in zip(pspi, label)], np.float64)
    return Recordings(list(names), frames, np.stack(stim), label, pspi, expr, [p.emotion for p in params], params, source)


def fresh_cohort(subjects: int, minutes: float, draw: int) -> Recordings:
    seed = HELDOUT_SEED + draw
    return simulate([f"h{draw}-{i + 1:03d}" for i in range(subjects)], [[seed, i] for i in range(subjects)], minutes,
                    f"fresh simulated cohort, seed {seed}")


def from_packed(data: PackedData, split: str, max_frames: int, limit: int | None = None) -> Recordings:
    """Recordings of a split of a packed dataset, cut to their common length (at most ``max_frames``). The
    true subject parameters come from the raw JSON next to each recording when the source tree is reachable."""
    recs = data.split(split)[:limit] if limit else data.split(split)
    if not recs:
        raise PainDiffusionError(f"the packed dataset has no {split!r} recordings to evaluate on", data.path)
    if not data.space.has_pspi:
        raise PainDiffusionError(f"face space {data.space.name!r} has no AUs; the evaluation needs PSPI from a facs dataset", data.path)
    n = min(max_frames, min(data.recordings[i]["length"] for i in recs))
    n -= n % 4
    wins = [data.window(i, 0, n) for i in recs]
    frames = np.stack([w.frames for w in wins]).astype(np.float32)
    label = np.stack([w.label for w in wins])
    pspi = np.stack([w.pspi for w in wins]).astype(np.float32)
    expr = np.array([np.nan if not np.isfinite(w.expressiveness) else w.expressiveness for w in wins])
    # The conditioning value is the whole recording's (as in training); fall back to the window's.
    expr = np.where(np.isfinite(expr), expr, [expressiveness_of(p, lb) for p, lb in zip(pspi, label)])
    names = [data.recordings[i]["name"] for i in recs]
    params = _raw_params(data, names)
    return Recordings(names, frames, np.stack([w.stimulus for w in wins]).astype(np.float32), label, pspi, expr,
                      [EMOTIONS[w.emotion] if w.emotion >= 0 else "Neutral" for w in wins], params,
                      f"packed dataset {data.path} ({split} split)")


def _raw_params(data: PackedData, names: list[str]) -> list[SubjectParams] | None:
    src = Path(str(data.meta.get("source", "")))
    fields = {f.name for f in dataclasses.fields(SubjectParams)}
    out = []
    for name in names:
        p = src / name / f"{name}.json"
        try:
            meta = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if not fields <= set(meta):
            return None
        kw = {k: meta[k] for k in fields}
        kw["levels_c"] = tuple(kw["levels_c"])
        out.append(SubjectParams(**kw))
    return out


def training_pool(model, data: PackedData | None, subjects: int, minutes: float) -> Recordings:
    """The reference the data-driven baselines (nearest neighbour, copier fit, ARX) learn from."""
    if data is not None:
        return from_packed(data, "train", int(minutes * 60 * FPS), limit=subjects)
    info = model.info or {}
    cohort, d = info.get("cohort", {}), info.get("data", {})
    if "seed" in cohort and "subjects" in cohort and d.get("test_recordings"):
        names = [f"s{i + 1:03d}" for i in range(int(cohort["subjects"]))]
        split = split_subjects(names, 0, 0.15, 0.15)  # pack's defaults: the split the shipped recipe used
        if sorted(n for n, s in split.items() if s == "test") == sorted(d["test_recordings"]):
            train = [n for n in names if split[n] == "train"][:subjects]
            return simulate(train, [[int(cohort["seed"]), int(n[1:]) - 1] for n in train], minutes,
                            f"the checkpoint's training subjects re-simulated (cohort seed {cohort['seed']}, {minutes:g} min)")
    return simulate([f"p{i + 1:03d}" for i in range(subjects)], [[POOL_FALLBACK_SEED, i] for i in range(subjects)], minutes,
                    f"a fresh cohort of the same simulation (seed {POOL_FALLBACK_SEED}): the checkpoint names no reproducible training cohort")


SWEEP_CALIBRATION = (43.0, 48.0)  # threshold, tolerance (°C) of the sweep's typical subject


def sweep_protocol(frames: int, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """(stimulus °C, label) per frame of the expressiveness sweep: a typical subject (SWEEP_CALIBRATION)."""
    temp, label = biovid_protocol(tuple(np.linspace(*SWEEP_CALIBRATION, 4)), frames / FPS + 1, np.random.default_rng([HELDOUT_SEED, 999, draw]))
    idx = np.minimum(stimulus_index(frames), len(temp) - 1)
    return temp[idx].astype(np.float32), label[idx].astype(np.int8)


def resting_cohort(emotion: str, subjects: int, frames: int, seed) -> np.ndarray:
    """(subjects, frames, D) faces of the cohort's subjects of ``emotion`` at the baseline temperature throughout:
    each a random subject (its own emotion intensity, blinks and posture) with its own noise."""
    rng = np.random.default_rng(seed)
    temp = np.full(frames, BASELINE_C)
    return np.stack([RuleBasedFace(dataclasses.replace(SubjectParams.sample(f"rest{i}", rng), emotion=emotion))
                     .generate(temp, rng) for i in range(subjects)]).astype(np.float32)
