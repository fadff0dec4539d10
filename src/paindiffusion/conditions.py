"""The three conditions of PainDiffusion, defined once and used by training and sampling alike (docs/design.md §1, §2).

* ``stimulus``: temperature (°C) per frame, standardised with training statistics. Each frame sees its own
  value and lagged values up to 3 s back: the face answers heat with a ~0.5–1.5 s delay and slow relief, so
  the frames being generated need stimulus history from before the window.
* ``expressiveness``: one scalar per recording — mean PSPI over its stimulated frames (0–16 scale), never
  computed from the window being predicted. Standardised with training statistics.
* ``emotion``: one of the 8 AffectNet classes, a category.

A condition is *dropped* (for classifier-free guidance) or *unknown* (a recording without an emotion label)
in exactly one way: its ``keep`` flag is False, and the model then uses that condition's learned null
embedding — in training and in sampling (the official code zeroed a raw value in one and an embedding in
the other, docs/design.md §2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .errors import PainDiffusionError
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
    expressiveness_mean: float = 2.0
    expressiveness_std: float = 1.5
    # Presets for users: 10th/50th/90th percentile of the training recordings' expressiveness.
    presets: dict = field(default_factory=lambda: {"low": 0.5, "medium": 2.0, "high": 4.0})
    # Classifier-free-guidance dropout, per condition (the paper uses 0.1 each).
    drop: tuple = (0.1, 0.1, 0.1)
    lags: tuple = STIMULUS_LAGS

    @classmethod
    def from_data(cls, data) -> "ConditionSpec":
        """Statistics from a packed dataset's training split."""
        xs = [r["expressiveness"] for r in data.recordings if r["split"] == "train" and r["expressiveness"] is not None]
        s = data.stats
        if not xs:
            xs = [2.0]
        p10, p50, p90 = (float(np.percentile(xs, q)) for q in (10, 50, 90))
        return cls(stimulus_mean=s["stimulus_mean"], stimulus_std=max(s["stimulus_std"], 1e-3),
                   expressiveness_mean=float(np.mean(xs)), expressiveness_std=max(float(np.std(xs)), 0.1),
                   presets={"low": round(p10, 2), "medium": round(p50, 2), "high": round(p90, 2)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drop"], d["lags"] = list(self.drop), list(self.lags)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionSpec":
        d = dict(d)
        d["drop"], d["lags"] = tuple(d["drop"]), tuple(d["lags"])
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
                raise PainDiffusionError(f"expressiveness {value!r} is neither a number (0-16, mean PSPI) nor one of {', '.join(self.presets)}") from None
        if not np.isfinite(value) or not 0.0 <= value <= 16.0:
            raise PainDiffusionError(f"expressiveness {value} is outside 0-16 (mean PSPI while stimulated); try low/medium/high")
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
        """Training-time CFG dropout: each condition independently with its own probability."""
        p = torch.tensor(self.drop, dtype=torch.float32)
        drop = (torch.rand(cond.keep.shape, generator=generator) < p).to(cond.keep.device)
        return cond._replace(keep=cond.keep & ~drop)


__all__ = ["NAMES", "EMOTIONS", "STIMULUS_LAGS", "HISTORY", "CondBatch", "ConditionSpec"]
