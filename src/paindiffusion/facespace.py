"""Face spaces: what the channels of one face frame mean (docs/design.md §3).

The generator is space-agnostic: its width is ``space.dim``. A space knows its channel names, their
valid ranges, how to check an array of frames, and how to compute PSPI when its channels allow it.

* ``facs`` (default): FACS action-unit intensities on the 0–5 scale (A=1 … E=5 mapped to 1–5) plus head
  pitch/yaw/roll in degrees. PSPI is exact from its channels.
* ``flame``: FLAME 2020 jaw pose (3, axis-angle, radians) + expression (100), the layout that EMOCA/EMICA
  produce and the official PainDiffusion code trains on. PSPI is not computable from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PainDiffusionError

# Action units of the facs space: PSPI's AUs (4, 6, 7, 9, 10, 43) plus what pain, emotions and robot
# faces need (docs/design.md §3). Order is part of the packed-data and checkpoint format: append, never reorder.
FACS_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 43)
HEAD_CHANNELS = ("head_pitch", "head_yaw", "head_roll")

# AffectNet's 8 expression classes (the paper's emotion condition), in AffectNet's alphabetical order.
EMOTIONS = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")


def emotion_index(name: str) -> int:
    """Index of an AffectNet class name, case-insensitive; a one-line error lists the valid names."""
    for i, e in enumerate(EMOTIONS):
        if e.lower() == str(name).strip().lower():
            return i
    raise PainDiffusionError(f"unknown emotion {name!r}; use one of {', '.join(EMOTIONS)}")


def pspi_from_aus(au4, au6, au7, au9, au10, au43=None):
    """Prkachin & Solomon Pain Intensity: AU4 + max(AU6, AU7) + max(AU9, AU10) [+ AU43].

    With AU43 the range is 0–16 (the definition); without it 0–15 (what the official code computes).
    In the definition AU43 (eyes closed) scores 0 or 1, not 0–5: on our 0–5 scale it counts as intensity / 5,
    so closed eyes add 1 and a half-closed lid 0.5.
    """
    p = np.asarray(au4) + np.maximum(au6, au7) + np.maximum(au9, au10)
    return p if au43 is None else p + np.clip(np.asarray(au43) / 5.0, 0.0, 1.0)


@dataclass(frozen=True)
class FaceSpace:
    """Names and valid ranges of the channels of one face frame."""

    name: str
    channels: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.channels)

    def index(self, channel: str) -> int:
        try:
            return self.channels.index(channel)
        except ValueError:
            raise PainDiffusionError(f"face space {self.name!r} has no channel {channel!r}") from None

    @property
    def has_pspi(self) -> bool:
        return all(f"AU{k}" in self.channels for k in (4, 6, 7, 9, 10, 43))

    def pspi(self, frames: np.ndarray, with_au43: bool = True) -> np.ndarray:
        """PSPI per frame (0–16 with AU43, 0–15 without, as the official code)."""
        if not self.has_pspi:
            raise PainDiffusionError(
                f"face space {self.name!r} has no action-unit channels, so PSPI cannot be computed from it; "
                "supply PSPI from an AU detector instead"
            )
        f = np.asarray(frames)
        au = {k: f[..., self.index(f"AU{k}")] for k in (4, 6, 7, 9, 10, 43)}
        return pspi_from_aus(au[4], au[6], au[7], au[9], au[10], au[43] if with_au43 else None)

    def validate(self, frames, where: object = "face frames", clip_tolerance: float = 1e-3) -> np.ndarray:
        """Return ``frames`` as float32 (T, dim) or raise a one-line error naming the problem.

        Checks the shape, finiteness and the channel ranges (with a small tolerance for float noise).
        """
        a = np.asarray(frames)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise PainDiffusionError(
                f"face array has shape {tuple(a.shape)} but face space {self.name!r} needs (frames, {self.dim}); "
                "check that the array was extracted for this face space",
                where,
            )
        if a.shape[0] == 0:
            raise PainDiffusionError("face array has no frames", where)
        if not np.issubdtype(a.dtype, np.number):
            raise PainDiffusionError(f"face array has non-numeric dtype {a.dtype}", where)
        a = a.astype(np.float32, copy=False)
        bad = ~np.isfinite(a)
        if bad.any():
            t, c = np.argwhere(bad)[0]
            raise PainDiffusionError(
                f"face array has {int(bad.sum())} NaN/inf values (first at frame {t}, channel "
                f"{self.channels[c]}); fill or drop those frames",
                where,
            )
        low = np.asarray(self.low, np.float32) - clip_tolerance
        high = np.asarray(self.high, np.float32) + clip_tolerance
        out = (a < low) | (a > high)
        if out.any():
            t, c = np.argwhere(out)[0]
            raise PainDiffusionError(
                f"face channel {self.channels[c]} = {a[t, c]:.3g} at frame {t} is outside its range "
                f"[{self.low[c]}, {self.high[c]}]",
                where,
            )
        return a

    def clip(self, frames: np.ndarray) -> np.ndarray:
        """Clamp generated frames into the valid ranges (generation can overshoot slightly)."""
        return np.clip(frames, np.asarray(self.low, np.float32), np.asarray(self.high, np.float32))

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": list(self.channels)}


FACS = FaceSpace(
    name="facs",
    channels=tuple(f"AU{k}" for k in FACS_AUS) + HEAD_CHANNELS,
    low=(0.0,) * len(FACS_AUS) + (-90.0, -90.0, -90.0),
    high=(5.0,) * len(FACS_AUS) + (90.0, 90.0, 90.0),
)  # FACS action units (0-5) + head pitch/yaw/roll in degrees: pitch > 0 looks down,
#   yaw > 0 turns to the subject's left, roll > 0 tilts toward the left shoulder

FLAME = FaceSpace(
    name="flame",
    channels=("jaw_x", "jaw_y", "jaw_z") + tuple(f"expr{i:03d}" for i in range(100)),
    # Axis-angle jaw rotation stays well inside ±π; FLAME expression coefficients are unit-variance
    # PCA weights (EMOCA outputs rarely exceed ±5), so ±20 only rejects garbage.
    low=(-np.pi,) * 3 + (-20.0,) * 100,
    high=(np.pi,) * 3 + (20.0,) * 100,
)  # FLAME 2020 jaw pose (3, axis-angle radians) + expression coefficients (100), EMOCA/EMICA layout

SPACES = {s.name: s for s in (FACS, FLAME)}


def get_space(name: str) -> FaceSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise PainDiffusionError(f"unknown face space {name!r}; use one of {', '.join(SPACES)}") from None


def flame_to_npz_arrays(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Split flame-space frames into the arrays FLAME-driven avatars read: ``jaw_pose`` (T,3), ``expr`` (T,100)."""
    f = FLAME.validate(frames)
    return {"jaw_pose": f[:, :3].copy(), "expr": f[:, 3:].copy()}


def flame_from_npz_arrays(arrays, where: object = "npz") -> np.ndarray:
    """Inverse of :func:`flame_to_npz_arrays` (an npz with ``expr`` and ``jaw_pose``)."""
    for key in ("expr", "jaw_pose"):
        if key not in arrays:
            raise PainDiffusionError(f"FLAME npz needs arrays 'expr' (T,100) and 'jaw_pose' (T,3); '{key}' is missing", where)
    expr, jaw = np.asarray(arrays["expr"]), np.asarray(arrays["jaw_pose"])
    if expr.ndim != 2 or jaw.ndim != 2 or expr.shape[1] != 100 or jaw.shape[1] != 3 or len(expr) != len(jaw):
        raise PainDiffusionError(
            f"FLAME npz has expr {expr.shape} and jaw_pose {jaw.shape}; need (T,100) and (T,3) with the same T", where
        )
    return FLAME.validate(np.concatenate([jaw, expr], axis=1), where)
