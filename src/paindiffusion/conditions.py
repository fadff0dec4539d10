"""The three conditions of PainDiffusion, defined once and used by training and sampling alike (docs/design.md §1, §2).

* ``stimulus``: temperature (°C) per frame, standardised with training statistics. Each frame sees its own
  value and lagged values up to 3 s back: the face answers heat with a ~0.5–1.5 s delay and slow relief, so
  the frames being generated need stimulus history from before the window. A *calibrated* checkpoint
  (``stimulus_reference`` "calibrated", the shipped recipe) reads the temperature relative to the patient's pain
  threshold and tolerance, (T − threshold) / (tolerance − threshold): 0 at the threshold (BioVid level 1),
  1 at the tolerance (level 4). BioVid measures both for every subject before recording and places its four
  levels evenly between them, so the same 44 °C is one subject's level 1 and another's level 3; a model that
  reads °C alone cannot tell them apart (docs/design.md §5.2). Unknown calibration: the training median.
* ``expressiveness``: one scalar per recording on the PSPI scale, never computed from the window being
  predicted, standardised with training statistics: *reactivity* (mean PSPI while stimulated minus resting
  PSPI, :func:`paindiffusion.dataset.expressiveness_of`; ``ConditionSpec.expressiveness_definition`` names it).
  Values outside the range the model was trained on are clamped to it with a warning: a model asked beyond what
  it saw gives no trustworthy face.
* ``emotion``: one of the 8 AffectNet classes, a category, and with it (``ModelConfig.resting_face``) the
  patient's *resting face*: the face the patient returns to between stimuli (:func:`paindiffusion.dataset.
  resting_face_of`), standardised like the frames. It is a trait of the person (how strongly a sad patient
  shows sadness at rest, their posture), so it is a condition drawn once per patient rather than a memory the
  sliding window must carry: carried only by the window's context, a resting level drifts at every step of a
  long stream (docs/design.md §5.2). Training uses each recording's own; sampling draws one of the training
  recordings' resting faces of the requested emotion (``ConditionSpec.resting_faces``) per patient.

A condition is *dropped* (for classifier-free guidance) or *unknown* (a recording without an emotion label)
in exactly one way: its ``keep`` flag is False, and the model then uses that condition's learned null
embedding — in training and in sampling (the official code zeroed a raw value in one and an embedding in
the other, docs/design.md §2).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .errors import PainDiffusionError, PainDiffusionWarning
from .facespace import EMOTIONS

# A patient's pain threshold and tolerance: both in this range, the tolerance at least MIN_PAIN_SPAN_C above.
PAIN_RANGE_C = (30.0, 55.0)
MIN_PAIN_SPAN_C = 0.5
NAMES = ("emotion", "expressiveness", "stimulus")  # order of the keep flags and of guidance weights
STIMULUS_LAGS = (0, 4, 8, 12, 16, 20, 25, 31, 37, 50, 62, 75)  # frames (0-3 s at 25 fps)
HISTORY = max(STIMULUS_LAGS)


class CondBatch(NamedTuple):
    """Conditions of a batch, ready for the model."""

    stimulus: torch.Tensor  # (B, T, len(STIMULUS_LAGS)) standardised lagged temperatures
    expressiveness: torch.Tensor  # (B,) standardised
    emotion: torch.Tensor  # (B,) long, 0-7
    keep: torch.Tensor  # (B, 3) bool, in NAMES order; False = dropped / unknown → null embedding
    resting: torch.Tensor | None = None  # (B, dim) standardised resting face, part of the emotion condition

    def without(self, k: int) -> "CondBatch":
        """The same batch with condition ``k`` (index into NAMES) dropped: a guidance branch."""
        keep = self.keep.clone()
        keep[:, k] = False
        return self._replace(keep=keep)

    def rows(self, idx) -> "CondBatch":
        """The conditions of some rows of the batch (a slice or index list)."""
        return CondBatch(*(None if v is None else v[idx] for v in self))

    @staticmethod
    def cat(batches: list["CondBatch"]) -> "CondBatch":
        return CondBatch(*(None if ts[0] is None else torch.cat(ts, 0) for ts in zip(*batches)))


def _tensor(v, dtype) -> torch.Tensor:
    return v.to(dtype) if torch.is_tensor(v) else torch.as_tensor(np.asarray(v), dtype=dtype)


@dataclass
class ConditionSpec:
    """Statistics and options of the conditions; saved in every checkpoint's config."""

    stimulus_mean: float = 37.23  # official statistics (docs/design.md §1); replaced by the training data's
    stimulus_std: float = 7.07
    # Defaults: the synthetic cohort's reactivity (300 subjects, seed 2026, training split); a trained model
    # stores its own data's values.
    expressiveness_mean: float = 1.41
    expressiveness_std: float = 1.15
    # Presets for users: 10th/50th/90th percentile of the training recordings' expressiveness.
    presets: dict = field(default_factory=lambda: {"low": 0.1, "medium": 1.26, "high": 3.15})
    # Classifier-free-guidance dropout, per condition (the paper uses 0.1 each).
    drop: tuple = (0.1, 0.1, 0.1)
    lags: tuple = STIMULUS_LAGS
    # What the number means: dataset.EXPRESSIVENESS_DEFINITION (spelled here so the model layer does not import
    # the data layer; a test holds the two equal).
    expressiveness_definition: str = "reactivity"
    # Lowest and highest training value: requests outside are clamped to it with a warning.
    expressiveness_range: tuple = (0.0, 3.86)
    # Training-time value noise (std, standardised units): a recording's expressiveness is an estimate, and
    # noise between the few distinct training values makes the model learn a scale rather than memorise them.
    expressiveness_jitter: float = 0.0
    # "celsius" (standardised °C) or "calibrated" (relative to threshold and tolerance, see above).
    stimulus_reference: str = "celsius"
    # Threshold and tolerance (°C) used when a patient's are not given: the training recordings' medians.
    calibration: tuple = (42.75, 47.25)
    # Requested → fed expressiveness, as (requested, fed) knots measured after training (empty: fed = requested).
    # Sampling only: training conditions on each recording's measured value. See :meth:`fed_expressiveness`.
    expressiveness_map: tuple = ()
    # Resting faces of the training recordings by emotion, in face units (the face space's channels): sampling
    # draws one per patient (:meth:`resting_face`). Empty for models without the resting-face condition.
    resting_faces: dict = field(default_factory=dict)

    @classmethod
    def from_data(cls, data, expressiveness_jitter: float = 0.15, calibrated: bool = False,
                  resting_faces: bool = False) -> "ConditionSpec":
        """Statistics from a packed dataset's training split."""
        train = [r for r in data.recordings if r["split"] == "train"]
        rest: dict = {}
        if resting_faces:
            for i in data.split("train"):
                face, e = data.resting_face(i), data.recordings[i]["emotion"]
                if face is not None and e is not None:
                    rest.setdefault(e, []).append([round(float(v), 3) for v in face])
            if not rest:
                raise PainDiffusionError("the resting-face condition needs training recordings with an emotion label and "
                                         "at least 2 s at rest; train with --no-resting-face")
        xs = [r["expressiveness"] for r in train if r["expressiveness"] is not None]
        s = data.stats
        if not xs:
            xs = [2.0]
        p10, p50, p90 = (float(np.percentile(xs, q)) for q in (10, 50, 90))
        cal = [r["calibration"] for r in train if r.get("calibration") is not None]
        if calibrated and not cal:
            raise PainDiffusionError("a calibrated stimulus needs recordings with pain levels 1-4 in their labels "
                                     "(threshold and tolerance come from them); train with --celsius")
        return cls(stimulus_mean=s["stimulus_mean"], stimulus_std=max(s["stimulus_std"], 1e-3),
                   expressiveness_mean=float(np.mean(xs)), expressiveness_std=max(float(np.std(xs)), 0.1),
                   presets={"low": round(p10, 2), "medium": round(p50, 2), "high": round(p90, 2)},
                   expressiveness_range=(round(float(min(xs)), 3), round(float(max(xs)), 3)),
                   expressiveness_jitter=expressiveness_jitter,
                   stimulus_reference="calibrated" if calibrated else "celsius",
                   calibration=tuple(round(float(v), 2) for v in np.median(cal, axis=0)) if cal else cls.calibration,
                   resting_faces={e: rest[e] for e in EMOTIONS if e in rest})

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("drop", "lags", "expressiveness_range", "calibration"):
            d[k] = list(d[k])
        d["resting_faces"] = {e: [list(f) for f in fs] for e, fs in self.resting_faces.items()}
        d["expressiveness_map"] = [list(p) for p in self.expressiveness_map]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionSpec":
        d = dict(d)
        d["drop"], d["lags"] = tuple(d["drop"]), tuple(d["lags"])
        for k in ("expressiveness_range", "calibration"):
            if k in d:
                d[k] = tuple(d[k])
        if "expressiveness_map" in d:
            d["expressiveness_map"] = tuple(tuple(p) if isinstance(p, (list, tuple)) else p for p in d["expressiveness_map"])
        return cls(**d)

    @property
    def calibrated(self) -> bool:
        return self.stimulus_reference == "calibrated"

    def calibration_value(self, threshold: float | None, tolerance: float | None) -> tuple[float, float]:
        """A patient's (threshold, tolerance) in °C, checked; None for either = the checkpoint's default."""
        thr = self.calibration[0] if threshold is None else threshold
        tol = self.calibration[1] if tolerance is None else tolerance
        for name, v in (("threshold", thr), ("tolerance", tol)):
            lo, hi = PAIN_RANGE_C
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not lo <= float(v) <= hi:
                raise PainDiffusionError(f"pain {name} {v!r:.40} must be a temperature in {lo:g}-{hi:g} °C (BioVid: "
                                         f"threshold ~41-45, tolerance ~44-50.5)")
        if float(tol) - float(thr) < MIN_PAIN_SPAN_C:
            raise PainDiffusionError(f"pain tolerance {tol:g} °C must be at least {MIN_PAIN_SPAN_C:g} °C above the "
                                     f"threshold {thr:g} °C")
        return float(thr), float(tol)

    # ---- values → tensors ------------------------------------------------------------------------------
    def stimulus_features(self, stimulus: np.ndarray | torch.Tensor, length: int, calibration=None) -> torch.Tensor:
        """(..., HISTORY + length) °C → (..., length, n_lags) lagged values: standardised °C, or for a calibrated
        checkpoint (T − threshold) / (tolerance − threshold) with ``calibration`` (..., 2) °C (None: default)."""
        s = _tensor(stimulus, torch.float32)
        if s.shape[-1] != HISTORY + length:
            raise PainDiffusionError(f"stimulus needs {HISTORY} history + {length} frames, got {s.shape[-1]}")
        if self.calibrated:
            cal = _tensor(self.calibration if calibration is None else calibration, torch.float32).to(s.device)
            cal = cal.expand(*s.shape[:-1], 2) if cal.dim() == 1 else cal
            z = (s - cal[..., :1]) / (cal[..., 1:] - cal[..., :1])
        else:
            z = (s - self.stimulus_mean) / self.stimulus_std
        cols = [z[..., HISTORY - lag: HISTORY - lag + length] for lag in self.lags]
        return torch.stack(cols, dim=-1)

    def expressiveness_value(self, value: float | str) -> float:
        """A number on the mean-PSPI scale (0-16), or a preset name (low/medium/high)."""
        if isinstance(value, str):
            key = value.strip().lower()
            if key in self.presets:
                return float(self.presets[key])
            try:
                value = float(key)
            except ValueError:
                raise PainDiffusionError(f"expressiveness {value!r} is neither a number (0-16, PSPI scale) nor one of {', '.join(self.presets)}") from None
        if not np.isfinite(value) or not 0.0 <= value <= 16.0:
            raise PainDiffusionError(f"expressiveness {value} is outside 0-16 (PSPI scale); try low/medium/high")
        lo, hi = self.expressiveness_range
        if not lo <= value <= hi:
            clamped = float(min(max(value, lo), hi))
            warnings.warn(PainDiffusionWarning(f"expressiveness {value:g} is outside the range this model was trained on "
                                               f"({lo:g}-{hi:g}); using {clamped:g}", once="expressiveness clamped"),
                          stacklevel=2)
            return clamped
        return float(value)

    def fed_expressiveness(self, requested) -> np.ndarray:
        """The value given to the model for a requested expressiveness (sampling only; NaN stays unknown).

        Classifier-free guidance on expressiveness pushes a face away from the unconditional one, so a model
        fed value x achieves a convex function of x: too little in the middle of the range, too much at its top
        (measured on a stack-ramp network: fed 1.47 achieved 0.96, fed 3.86 achieved 4.48). ``expressiveness_map`` holds that response
        measured on training recordings after training (scripts/fit_expressiveness_map.py), inverted: the
        value to feed so the face achieves what was requested. Piecewise linear between its knots."""
        x = np.asarray(requested, np.float64)
        if not self.expressiveness_map:
            return x.astype(np.float32)
        req, fed = (np.array(v, np.float64) for v in zip(*self.expressiveness_map))
        return np.where(np.isfinite(x), np.interp(x, req, fed), x).astype(np.float32)

    def resting_face(self, emotion: str, draw: float) -> np.ndarray | None:
        """One training recording's resting face of ``emotion`` (face units), picked by ``draw`` in [0, 1): a
        patient keeps its draw, so it keeps its face whenever it shows the same emotion. None: no such face."""
        faces = self.resting_faces.get(emotion)
        if not faces:
            return None
        return np.asarray(faces[min(int(draw * len(faces)), len(faces) - 1)], np.float32)

    def batch(self, stimulus, expressiveness, emotion, length: int, keep=None, calibration=None,
              resting=None) -> CondBatch:
        """Conditions for B sequences: stimulus (B, HISTORY + length) °C; expressiveness (B,) on the PSPI scale
        (NaN = unknown); emotion (B,) AffectNet indices (-1 = unknown); calibration (B, 2) threshold and
        tolerance °C (None: the default; read by calibrated checkpoints only); resting (B, dim) standardised
        resting faces (NaN or None = unknown → the mean face; read by models with the resting-face condition)."""
        x = _tensor(expressiveness, torch.float32).reshape(-1)
        e = _tensor(emotion, torch.int64).reshape(-1)
        stim = self.stimulus_features(stimulus, length, calibration)
        if stim.dim() == 2:
            stim = stim[None]
        known = torch.stack([e >= 0, torch.isfinite(x), torch.ones_like(e, dtype=torch.bool)], dim=1)
        keep = known if keep is None else known & _tensor(keep, torch.bool).to(known.device)
        r = None if resting is None else torch.nan_to_num(_tensor(resting, torch.float32))
        return CondBatch(stim, torch.nan_to_num((x - self.expressiveness_mean) / self.expressiveness_std), e.clamp(min=0), keep, r)

    def dropout(self, cond: CondBatch, generator: torch.Generator | None = None) -> CondBatch:
        """Training-time CFG dropout: each condition independently with its own probability; and the
        expressiveness value noise (``expressiveness_jitter``)."""
        p = torch.tensor(self.drop, dtype=torch.float32)
        drop = (torch.rand(cond.keep.shape, generator=generator) < p).to(cond.keep.device)
        x = cond.expressiveness
        if self.expressiveness_jitter > 0:
            x = x + self.expressiveness_jitter * torch.randn(x.shape, generator=generator).to(x.device)
        return cond._replace(keep=cond.keep & ~drop, expressiveness=x)


__all__ = ["NAMES", "EMOTIONS", "STIMULUS_LAGS", "HISTORY", "CondBatch", "ConditionSpec"]
