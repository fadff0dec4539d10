"""The synthetic pain cohort: a *simulation* that stands in for BioVid HeatPain Part C (docs/design.md §4).

Nothing here is measured data. Each rule follows a published fact, cited where it is applied:

* Protocol (Walter et al. 2013, BioVid): per subject a pain threshold and tolerance; 4 levels spaced evenly
  between them (max 50.5 °C); each level applied equally often in random order; 4 s plateaus; 8–12 s pauses;
  baseline 32 °C. Temperature and label streams at 32 Hz, video at 25 fps.
* Facial responses are rare at the lowest level, reliable at the highest, and a share of subjects barely react
  at all (Werner et al., ACIIW 2017): a per-episode reaction probability that grows with level × expressiveness,
  and a stoic minority with a low expressiveness gain.
* Response delay ~0.5–1.5 s with rise/decay dynamics; upper-face AUs (4, 6/7, 43) move before lower-face ones
  (9/10, 25/26) and the jaw drops last (MorphFace, Sci. Rep. 2022).
* Pain brings head movements downward and toward the stimulated side and a larger, faster range of movement
  (Werner et al., PLOS ONE 2018).
* Emotions change the resting face through their prototypical AUs (Ekman & Friesen's EMFACS prototypes).
* Spontaneous blinks, ~15–20 per minute (AU43 pulses of ~250 ms).

The same rules are the **rule-based generator** (:class:`RuleBasedFace`): what robot simulators do today,
and our baseline.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import PainDiffusionError
from .files import atomic_directory
from .progress import progress
from .facespace import EMOTIONS, FACS, FACS_AUS

from .biovid import BASELINE_C, FPS, MAX_LEVEL_C, STIMULUS_HZ, stimulus_index, true_runs

# |head angle| at the 99.9th percentile of all frames (degrees), measured on the shipped model's training cohort
# (300 subjects × 10 min, seed 2026; max 29.2 / 38.9 / 18.6); tests/test_heat_limits.py re-measures a sample.
# Generated faces stay inside it whatever the controls (stream.limit_head_pose).
HEAD_POSE_P999_DEG = {"head_pitch": 15.7, "head_yaw": 20.6, "head_roll": 9.0}
MAX_MINUTES = 240.0  # per recording: a recording is simulated in memory (~0.5 MB per minute)
MAX_SUBJECTS = 10_000
PLATEAU_S = 4.0
PAUSE_S = (8.0, 12.0)
RAMP_C_PER_S = 4.0  # assumption: the thermode's ramp rate is not given in the BioVid papers; 4 °C/s reaches 48 °C in 4 s

# Peak AU intensity at full pain (p = 1) for a subject of gain 1, and the extra delay (s) and activation
# threshold (in p) of each AU: upper face first, lower face ~0.3 s later, the jaw last and only for strong pain.
PAIN_AUS = {  # AU: (peak, extra delay s, threshold)
    4: (3.0, 0.0, 0.05),
    6: (2.5, 0.1, 0.10),
    7: (3.0, 0.0, 0.05),
    43: (1.2, 0.1, 0.15),
    9: (2.0, 0.3, 0.20),
    10: (2.5, 0.3, 0.20),
    20: (1.0, 0.35, 0.30),
    25: (1.5, 0.4, 0.30),
    26: (1.2, 0.7, 0.45),
}

# Prototypical resting AUs of each AffectNet class (EMFACS), at intensity ~1-1.5 on the 0-5 scale.
EMOTION_AUS = {
    "Anger": {4: 1.5, 5: 0.8, 7: 1.2, 23: 1.2},
    "Contempt": {14: 1.5, 12: 0.4},
    "Disgust": {9: 1.5, 15: 1.0, 10: 0.8},
    "Fear": {1: 1.2, 2: 1.0, 4: 0.8, 5: 1.2, 20: 1.0, 26: 0.6},
    "Happiness": {6: 1.2, 12: 1.8, 25: 0.6},
    "Neutral": {},
    "Sadness": {1: 1.4, 4: 1.0, 15: 1.2, 17: 0.6},
    "Surprise": {1: 1.5, 2: 1.4, 5: 1.2, 26: 1.2},
}


@dataclass
class SubjectParams:
    """Ground truth of one simulated subject (written next to the recording as JSON)."""

    subject: str
    threshold_c: float
    tolerance_c: float
    levels_c: tuple[float, float, float, float]
    expressiveness_gain: float  # scales every pain AU; < 0.3 is "stoic"
    emotion: str
    emotion_intensity: float
    delay_s: float
    rise_s: float
    decay_s: float
    blinks_per_min: float
    head_gain: float
    stimulated_side: int  # +1: head turns to its left (yaw > 0) under pain, -1: to its right

    @classmethod
    def sample(cls, subject: str, rng: np.random.Generator) -> "SubjectParams":
        threshold = rng.uniform(41.0, 44.5)
        tolerance = min(threshold + rng.uniform(3.0, 6.0), MAX_LEVEL_C)
        levels = tuple(float(round(v, 2)) for v in np.linspace(threshold, tolerance, 4))
        # A stoic minority (~25%) barely reacts (Werner et al. 2017); the rest spread log-normally.
        gain = rng.uniform(0.05, 0.3) if rng.random() < 0.25 else float(np.clip(rng.lognormal(0.0, 0.35), 0.4, 1.8))
        # Uniform over the 8 classes: every emotion condition needs training subjects (with 40% Neutral, a
        # 48-subject cohort left Happiness and Surprise out of the training split entirely).
        emotion = str(rng.choice(EMOTIONS))
        return cls(
            subject=subject, threshold_c=round(threshold, 2), tolerance_c=round(tolerance, 2), levels_c=levels,
            expressiveness_gain=round(float(gain), 3), emotion=emotion,
            emotion_intensity=round(rng.uniform(0.6, 1.2), 3), delay_s=round(rng.uniform(0.5, 1.5), 3),
            rise_s=round(rng.uniform(0.3, 0.7), 3), decay_s=round(rng.uniform(1.0, 2.5), 3),
            blinks_per_min=round(rng.uniform(15.0, 20.0), 2), head_gain=round(rng.uniform(0.3, 1.2), 3),
            stimulated_side=int(rng.choice([-1, 1])),
        )


def biovid_protocol(levels_c, seconds: float, rng: np.random.Generator):
    """Temperature (°C) and label (0-4) at 32 Hz for a BioVid-like schedule of ``seconds``.

    Levels are drawn in shuffled blocks of four so each is applied equally often in random order.
    The label marks the stimulated episode (ramp up, 4 s plateau, ramp down) with its level.
    """
    n = int(round(seconds * STIMULUS_HZ))
    temp = np.full(n, BASELINE_C)
    label = np.zeros(n, np.int8)
    t = rng.uniform(3.0, 8.0)  # initial baseline before the first stimulus
    block: list[int] = []
    while True:
        if not block:
            block = list(rng.permutation(4) + 1)
        level = block.pop()
        peak = levels_c[level - 1]
        ramp = (peak - BASELINE_C) / RAMP_C_PER_S
        end = t + 2 * ramp + PLATEAU_S
        if end > seconds:
            break
        i0, i1 = int(t * STIMULUS_HZ), int(np.ceil(end * STIMULUS_HZ))
        ts = np.arange(i0, i1) / STIMULUS_HZ - t
        shape = np.minimum.reduce([ts * RAMP_C_PER_S, np.full_like(ts, peak - BASELINE_C), (end - t - ts) * RAMP_C_PER_S])
        temp[i0:i1] = BASELINE_C + np.clip(shape, 0.0, None)
        label[i0:i1] = level
        t = end + rng.uniform(*PAUSE_S)
    return temp, label


def _ou(n: int, tau_s: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Ornstein-Uhlenbeck noise at 25 fps with stationary std ``sigma`` and time constant ``tau_s``."""
    a = np.exp(-1.0 / (tau_s * FPS))
    e = rng.normal(0.0, sigma * np.sqrt(1 - a * a), n)
    out = np.empty(n)
    x = rng.normal(0.0, sigma)
    for i in range(n):
        x = a * x + e[i]
        out[i] = x
    return out


def _delay(x: np.ndarray, seconds: float) -> np.ndarray:
    k = min(int(round(seconds * FPS)), len(x))  # a trace shorter than the delay is all "before"
    return np.concatenate([np.full(k, x[0]), x[: len(x) - k]]) if k > 0 else x


class RuleBasedFace:
    """Stimulus (°C per frame at 25 fps) → ``facs`` frames by the cohort's rules; the rule-based baseline."""

    def __init__(self, params: SubjectParams):
        self.p = params

    def pain_intensity(self, temp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Latent pain p(t) ≥ 0 (≈1 at tolerance): drive above threshold, per-episode reaction, delay, dynamics."""
        p = self.p
        span = p.tolerance_c - p.threshold_c + 0.5
        drive = np.clip((temp - (p.threshold_c - 0.5)) / span, 0.0, 1.2)
        # Episodes: contiguous stretches of heat near or above threshold. Each one reacts or not, with a
        # probability that grows with its peak drive × expressiveness (rare at level 1, reliable at level 4).
        target = np.zeros_like(drive)
        for a, b in true_runs(drive > 0):
            peak = drive[a:b].max()
            react = rng.random() < 1.0 / (1.0 + np.exp(-6.0 * (min(p.expressiveness_gain, 1.2) * peak - 0.35)))
            factor = rng.lognormal(0.0, 0.25) if react else rng.uniform(0.0, 0.15)
            target[a:b] = drive[a:b] * factor
        target = _delay(target, p.delay_s)
        out = np.empty_like(target)
        x = 0.0
        up, down = 1.0 - np.exp(-1.0 / (p.rise_s * FPS)), 1.0 - np.exp(-1.0 / (p.decay_s * FPS))
        for i, y in enumerate(target):  # asymmetric first-order response: fast rise, slow relief
            x += (y - x) * (up if y > x else down)
            out[i] = x
        return out

    def generate(self, temp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``facs`` frames (T, FACS.dim) for a temperature trace sampled per video frame."""
        p, n = self.p, len(temp)
        pain = self.pain_intensity(np.asarray(temp, np.float64), rng)
        frames = np.zeros((n, FACS.dim))
        col = {f"AU{k}": FACS.index(f"AU{k}") for k in (4, 6, 7, 43, 9, 10, 20, 25, 26)}
        for au, (peak, lag, thr) in PAIN_AUS.items():
            pa = _delay(pain, lag)
            frames[:, col[f"AU{au}"]] += p.expressiveness_gain * peak * np.clip(pa - thr, 0.0, None) / (1.0 - thr)
        mood = 1.0 + _ou(n, 20.0, 0.15, rng)  # resting expression drifts slowly
        for au, v in EMOTION_AUS[p.emotion].items():
            frames[:, FACS.index(f"AU{au}")] += p.emotion_intensity * v * mood
        aus = len(FACS_AUS)
        for c in range(aus):  # small AU noise (tracker jitter + micro-movements)
            frames[:, c] += _ou(n, 0.3, 0.06, rng) + rng.normal(0.0, 0.03, n)
        blink = self._blinks(n, rng)
        i43 = col["AU43"]
        frames[:, i43] = np.maximum(frames[:, i43], blink)
        frames[:, :aus] = np.clip(frames[:, :aus], 0.0, 5.0)
        # Head: wandering posture; pain turns it down and toward the stimulated side, with a wider, faster
        # range of movement (Werner et al. 2018).
        move = 1.0 + 1.5 * np.clip(pain, 0.0, 1.5)
        hp = FACS.index("head_pitch")
        frames[:, hp] = _ou(n, 3.0, 2.0, rng) * move + 6.0 * p.head_gain * pain
        frames[:, hp + 1] = _ou(n, 4.0, 3.0, rng) * move + 5.0 * p.head_gain * p.stimulated_side * pain
        frames[:, hp + 2] = _ou(n, 3.0, 1.5, rng) * move
        return FACS.clip(frames.astype(np.float32))

    def _blinks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Spontaneous blinks: Poisson onsets, each a ~0.25 s closing-opening pulse reaching AU43 = 5."""
        out = np.zeros(n)
        rate = self.p.blinks_per_min / 60.0 / FPS
        shape = 5.0 * np.sin(np.linspace(0, np.pi, 8)[1:-1])
        for i in np.flatnonzero(rng.random(n) < rate):
            seg = out[i: i + len(shape)]
            out[i: i + len(shape)] = np.maximum(seg, shape[: len(seg)])
        return out


@dataclass
class Recording:
    """One simulated recording, in BioVid's units: 32 Hz streams and 25 fps face frames."""

    name: str
    params: SubjectParams
    temperature: np.ndarray  # (S,) °C at 32 Hz
    label: np.ndarray  # (S,) 0-4 at 32 Hz
    frames: np.ndarray  # (T, FACS.dim) facs at 25 fps


def simulate_recording(name: str, minutes: float, rng: np.random.Generator) -> Recording:
    params = SubjectParams.sample(name, rng)
    seconds = minutes * 60.0
    temp, label = biovid_protocol(params.levels_c, seconds, rng)
    temp = np.round(temp + rng.normal(0.0, 0.02, len(temp)), 2)  # thermode sensor noise, 0.01 °C resolution
    n_frames = int(seconds * FPS)
    per_frame = temp[np.minimum(stimulus_index(n_frames), len(temp) - 1)]
    frames = RuleBasedFace(params).generate(per_frame, rng)
    return Recording(name, params, temp, label, frames)


def _write_stream(path: Path, column: str, values: np.ndarray, fmt: str) -> None:
    lines = [f"time\t{column}"] + [f"{i / STIMULUS_HZ:.5f}\t{v:{fmt}}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def write_recording(rec: Recording, root: Path) -> None:
    """Lay one recording out like BioVid Part C: ``<name>/<name>_temp.csv``, ``_label.csv``, ``_face.npy``, ``.json``."""
    d = root / rec.name
    d.mkdir(parents=True)
    _write_stream(d / f"{rec.name}_temp.csv", "temperature", rec.temperature, ".2f")
    _write_stream(d / f"{rec.name}_label.csv", "label", rec.label, "d")
    np.save(d / f"{rec.name}_face.npy", rec.frames)
    meta = {"recording": rec.name, "face_space": FACS.name, "fps": FPS, "simulated": True, **asdict(rec.params)}
    (d / f"{rec.name}.json").write_text(json.dumps(meta, indent=1) + "\n")


def write_cohort(out: str | os.PathLike, subjects: int, minutes: float, seed: int, overwrite: bool = False,
                 only: list[int] | None = None) -> Path:
    """Simulate ``subjects`` recordings of ``minutes`` each into ``out`` (all or nothing: built in a temp dir).
    ``only`` keeps just those subject numbers (1-based, as in their names): new recordings of chosen subjects,
    e.g. a model's held-out test subjects."""
    out = Path(out)
    if isinstance(subjects, bool) or not 1 <= subjects <= MAX_SUBJECTS:
        raise PainDiffusionError(f"--subjects must be 1-{MAX_SUBJECTS} (got {subjects})")
    if not 0 < minutes <= MAX_MINUTES:  # also refuses NaN; each recording is built in memory
        raise PainDiffusionError(f"--minutes must be positive and at most {MAX_MINUTES:g} per recording "
                                 f"(got {minutes}); BioVid recordings last ~25 min")
    if minutes * 60 < 2 * (PLATEAU_S + PAUSE_S[1] + 10):
        raise PainDiffusionError(f"{minutes} min is too short for the protocol; use at least 1 minute")
    if not 0 <= seed < 2**63:
        raise PainDiffusionError(f"seed must be an integer in 0 to 2^63-1 (got {seed})")
    with atomic_directory(out, "cohort", overwrite) as tmp:
        for i in progress(range(subjects), "cohort", unit="subject"):
            if only is not None and i + 1 not in only:
                continue
            rng = np.random.default_rng([seed, i])  # per subject, so subject i is the same whatever N is
            write_recording(simulate_recording(f"s{i + 1:03d}", minutes, rng), tmp)
        info = {"dataset": "paindiffusion synthetic pain cohort (a simulation, not measured data)", "subjects": subjects,
                "minutes": minutes, "seed": seed, "face_space": FACS.name, "fps": FPS, "stimulus_hz": STIMULUS_HZ}
        (tmp / "cohort.json").write_text(json.dumps(info, indent=1) + "\n")
    return out
