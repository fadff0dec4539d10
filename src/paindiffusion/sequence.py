"""A face sequence with what produced it: the unit every output (file, video, live output) consumes.

Frames carry their stimulus and PSPI so that outputs (plots, side-by-side videos, live outputs, metrics)
never have to recompute or guess them.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PainDiffusionError
from .biovid import FPS, check_temperature
from .files import atomic_file
from .facespace import FACS, FLAME, FaceSpace, flame_from_npz_arrays, get_space
from .tables import Table

MAX_FPS = 240  # a video rate; above it (or not a whole number) a stored fps is a unit or parsing error
PSPI_MAX = 16.0
BLOCK = 1024  # frames per block when writing


def check_fps(fps) -> int:
    """A frame rate as a whole number of frames per second in 1-240 (12.7 must not become 12 silently)."""
    ok = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
    if not ok or not np.isfinite(fps) or fps != int(fps) or not 1 <= fps <= MAX_FPS:
        raise PainDiffusionError(f"sequence fps {fps!r} must be a whole number of frames per second in 1-{MAX_FPS} "
                                 f"(paindiffusion writes {FPS})")
    return int(fps)


@dataclass
class FaceSequence:
    space: FaceSpace
    frames: np.ndarray  # (T, space.dim) float32
    stimulus: np.ndarray | None = None  # (T,) °C
    pspi: np.ndarray | None = None  # (T,) PSPI with AU43 (0-16)
    fps: int = FPS
    meta: dict = field(default_factory=dict)  # conditions (expressiveness, emotion), seed, source …

    def __post_init__(self):
        self.frames = self.space.validate(self.frames, "sequence")
        self.fps = check_fps(self.fps)
        n = len(self.frames)
        for name in ("stimulus", "pspi"):
            v = getattr(self, name)
            if v is not None:
                try:
                    v = np.asarray(v, np.float32).reshape(-1)
                except (TypeError, ValueError):
                    raise PainDiffusionError(f"sequence {name} must be numbers, one per frame") from None
                if len(v) != n:
                    raise PainDiffusionError(f"sequence {name} has {len(v)} values for {n} frames")
                if name == "stimulus":
                    check_temperature(v, "sequence stimulus")
                elif not (np.isfinite(v).all() and v.min(initial=0) >= 0 and v.max(initial=0) <= PSPI_MAX + 1e-3):
                    raise PainDiffusionError(f"sequence PSPI must be finite values in 0-{PSPI_MAX} (PSPI with AU43)")
                setattr(self, name, v)
        if self.pspi is None and self.space.has_pspi:
            self.pspi = self.space.pspi(self.frames).astype(np.float32)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        return len(self) / self.fps

    # ---- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` (arrays + JSON meta) or ``.csv`` (header names every channel); atomic."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".csv"):
            raise PainDiffusionError(f"cannot save a sequence as {suffix or 'a file without extension'}; use .npz or .csv", path)
        if suffix == ".npz":
            arrays = {"frames": self.frames, "channels": np.array(self.space.channels)}
            if self.stimulus is not None:
                arrays["stimulus"] = self.stimulus
            if self.pspi is not None:
                arrays["pspi"] = self.pspi
            meta = {"space": self.space.name, "fps": self.fps, **self.meta}
            with atomic_file(path) as f:
                np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        else:
            with atomic_file(path, text=True) as f:
                w = csv.writer(f)
                w.writerow(["frame", "time", "stimulus", "pspi", *self.space.channels])
                for a in range(0, len(self), BLOCK):  # in blocks: no whole-sequence list of strings
                    b = min(a + BLOCK, len(self))
                    t = np.arange(a, b) / self.fps
                    stim = self.stimulus[a:b] if self.stimulus is not None else np.full(b - a, np.nan)
                    pspi = self.pspi[a:b] if self.pspi is not None else np.full(b - a, np.nan)
                    w.writerows([i, f"{t[k]:.2f}", f"{stim[k]:.3f}", f"{pspi[k]:.4f}", *(f"{v:.5f}" for v in self.frames[i])]
                                for k, i in enumerate(range(a, b)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceSequence":
        """Read a sequence written by :meth:`save` (``.npz`` or ``.csv``)."""
        path = Path(path)
        if not path.is_file():
            raise PainDiffusionError("file not found; pass a .npz or .csv written by 'paindiffusion generate'", path)
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    if "frames" not in z and "expr" in z:  # a FLAME npz (ours or an avatar tool's)
                        fps = int(z["fps"]) if "fps" in z and z["fps"].ndim == 0 else FPS
                        return cls(FLAME, flame_from_npz_arrays(z, path), fps=fps, meta={"source": "flame npz"})
                    if "frames" not in z:
                        raise PainDiffusionError("npz has no 'frames' array (nor FLAME 'expr'/'jaw_pose'); pass a "
                                                 "sequence written by 'paindiffusion generate'", path)
                    meta = json.loads(str(z["meta"])) if "meta" in z else {}
                    if not isinstance(meta, dict):
                        raise PainDiffusionError("npz 'meta' is not a JSON object", path)
                    space = get_space(meta.pop("space", FACS.name))
                    return cls(space, z["frames"], z["stimulus"] if "stimulus" in z else None,
                               z["pspi"] if "pspi" in z else None, meta.pop("fps", FPS), meta)
            except PainDiffusionError as e:
                raise e if str(path) in str(e) else PainDiffusionError(str(e), path) from None
            except Exception as e:  # zip/format/JSON errors from numpy and json
                raise PainDiffusionError(f"not a readable sequence npz ({type(e).__name__}: {str(e)[:120]})", path) from None
        if path.suffix.lower() == ".csv":
            with Table(path, "sequence CSV written by 'paindiffusion generate'") as table:
                header, chans = table.header, table.header[4:]
                space = next((s for s in (get_space("facs"), get_space("flame")) if list(s.channels) == chans), None)
                if header[:4] != ["frame", "time", "stimulus", "pspi"] or space is None:
                    raise PainDiffusionError("CSV header does not match a sequence written by paindiffusion", path)
                parts = [a for _, a in table.chunks()]
            if not parts:
                raise PainDiffusionError("CSV has no frames", path)
            a = np.concatenate(parts)
            t = a[:, 1]
            fps = FPS
            if len(t) > 1:  # the time column gives the rate; a sequence written by us is at 25 fps
                step = np.diff(t)
                if not np.isfinite(t).all() or np.any(step <= 0):
                    raise PainDiffusionError("the time column is not finite and strictly increasing", path)
                est = (len(t) - 1) / (t[-1] - t[0])  # times are written to 0.01 s: allow their rounding
                fps = round(est) if abs(est - round(est)) <= 0.02 * est else round(est, 2)
            stim = a[:, 2] if np.isfinite(a[:, 2]).all() else None
            pspi = a[:, 3] if np.isfinite(a[:, 3]).all() else None
            if stim is None and not np.isnan(a[:, 2]).all() or pspi is None and not np.isnan(a[:, 3]).all():
                raise PainDiffusionError("the stimulus or pspi column is partly empty or NaN; fill it or leave it all empty", path)
            try:
                return cls(space, a[:, 4:].astype(np.float32), stim, pspi, fps)
            except PainDiffusionError as e:
                raise PainDiffusionError(str(e), path) from None
        raise PainDiffusionError("unknown sequence format; use .npz or .csv", path)
