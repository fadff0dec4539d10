"""The three conditions of PainDiffusion, defined once and used by training and sampling alike (docs/design.md §1, §2).

* ``stimulus``: temperature (°C) per frame, standardised with training statistics. Each frame sees its own
  value and lagged values up to 3 s back: the face answers heat with a ~0.5–1.5 s delay and slow relief, so
  the frames being generated need stimulus history from before the window.
* ``expressiveness``: one scalar per recording on the PSPI scale, never computed from the window being
  predicted, standardised with training statistics. Since model v2 it is *reactivity* (mean PSPI while
  stimulated minus resting PSPI, :func:`paindiffusion.dataset.expressiveness_of`); v1 checkpoints used mean PSPI
  while stimulated and keep that meaning (``ConditionSpec.expressiveness_definition``). Values outside the range
  the model was trained on are clamped to it with a warning: a model asked beyond what it saw gives no
  trustworthy face (v1 silently gave weaker ones).
* ``emotion``: one of the 8 AffectNet classes, a category.

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

NAMES = ("emotion", "expressiveness", "stimulus")  # order of the keep flags and of guidance weights
STIMULUS_LAGS = (0, 4, 8, 12, 16, 20, 25, 31, 37, 50, 62, 75)  # frames (0-3 s at 25 fps)
HISTORY = max(STIMULUS_LAGS)


class CondBatch(NamedTuple):
    """Conditions of a batch, ready for the model."""

    stimulus: torch.Tensor  # (B, T, len(STIMULUS_LAGS)) standardised lagged temperatures
    expressiveness: torch.Tensor  # (B,) standardised
    emotion: torch.Tensor  # (B,) long, 0-7
    keep: torch.Tensor  # (B, 3) bool, in NAMES order; False = dropped / unknown → null embedding

    def without(self, k: int) -> "CondBatch":
        """The same batch with condition ``k`` (index into NAMES) dropped: a guidance branch."""
        keep = self.keep.clone()
        keep[:, k] = False
        return self._replace(keep=keep)

    @staticmethod
    def cat(batches: list["CondBatch"]) -> "CondBatch":
        return CondBatch(*(torch.cat(ts, 0) for ts in zip(*batches)))


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
    # What the number means (paindiffusion.dataset.expressiveness_of); configs without the field are v1's.
    expressiveness_definition: str = "reactivity"
    # Lowest and highest training value: requests outside are clamped to it with a warning.
    expressiveness_range: tuple = (0.0, 3.86)
    # Training-time value noise (std, standardised units): a recording's expressiveness is an estimate, and
    # noise between the few distinct training values makes the model learn a scale rather than memorise them.
    expressiveness_jitter: float = 0.0

    @classmethod
    def from_data(cls, data, expressiveness_jitter: float = 0.15) -> "ConditionSpec":
        """Statistics from a packed dataset's training split."""
        xs = [r["expressiveness"] for r in data.recordings if r["split"] == "train" and r["expressiveness"] is not None]
        s = data.stats
        if not xs:
            xs = [2.0]
        p10, p50, p90 = (float(np.percentile(xs, q)) for q in (10, 50, 90))
        return cls(stimulus_mean=s["stimulus_mean"], stimulus_std=max(s["stimulus_std"], 1e-3),
                   expressiveness_mean=float(np.mean(xs)), expressiveness_std=max(float(np.std(xs)), 0.1),
                   presets={"low": round(p10, 2), "medium": round(p50, 2), "high": round(p90, 2)},
                   expressiveness_definition=data.meta.get("expressiveness_definition", "mean_pspi"),
                   expressiveness_range=(round(float(min(xs)), 3), round(float(max(xs)), 3)),
                   expressiveness_jitter=expressiveness_jitter)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drop"], d["lags"], d["expressiveness_range"] = list(self.drop), list(self.lags), list(self.expressiveness_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionSpec":
        d = dict(d)
        d["drop"], d["lags"] = tuple(d["drop"]), tuple(d["lags"])
        if "expressiveness_range" in d:
            d["expressiveness_range"] = tuple(d["expressiveness_range"])
        return cls(**d)

    # ---- values → tensors ------------------------------------------------------------------------------
    def stimulus_features(self, stimulus: np.ndarray | torch.Tensor, length: int) -> torch.Tensor:
        """(..., HISTORY + length) °C → (..., length, n_lags) standardised lagged values."""
        s = _tensor(stimulus, torch.float32)
        if s.shape[-1] != HISTORY + length:
            raise PainDiffusionError(f"stimulus needs {HISTORY} history + {length} frames, got {s.shape[-1]}")
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
            warnings.warn(f"expressiveness {value:g} is outside the range this model was trained on ({lo:g}-{hi:g}); "
                          f"using {clamped:g}", PainDiffusionWarning, stacklevel=2)
            return clamped
        return float(value)

    def batch(self, stimulus, expressiveness, emotion, length: int, keep=None) -> CondBatch:
        """Conditions for B sequences: stimulus (B, HISTORY + length) °C; expressiveness (B,) on the PSPI scale
        (NaN = unknown); emotion (B,) AffectNet indices (-1 = unknown)."""
        x = _tensor(expressiveness, torch.float32).reshape(-1)
        e = _tensor(emotion, torch.int64).reshape(-1)
        stim = self.stimulus_features(stimulus, length)
        if stim.dim() == 2:
            stim = stim[None]
        known = torch.stack([e >= 0, torch.isfinite(x), torch.ones_like(e, dtype=torch.bool)], dim=1)
        keep = known if keep is None else known & _tensor(keep, torch.bool).to(known.device)
        return CondBatch(stim, torch.nan_to_num((x - self.expressiveness_mean) / self.expressiveness_std), e.clamp(min=0), keep)

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
