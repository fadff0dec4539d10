"""The controls of a stream, one value per sequence, set from any thread: validated at once (a bad value raises a
one-line error and changes nothing), read by the stream once per step (:class:`paindiffusion.stream.PainStream`)."""

from __future__ import annotations

import numbers
import threading

import numpy as np

from .biovid import BASELINE_C, check_temperature
from .errors import PainDiffusionError
from .facespace import EMOTIONS, emotion_index

__all__ = ["Controls", "CONTROLS", "NUMERIC"]


def _per_item(value, name: str, batch: int) -> list:
    """One value for the whole batch, or exactly ``batch`` values (list, tuple or 1-d array); each a scalar."""
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise PainDiffusionError(f"{name} must be one value or {batch} values (one per sequence), "
                                     f"got an array of shape {value.shape}")
        value = value.item() if value.ndim == 0 else value.tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value] * batch
    if len(values) != batch:
        raise PainDiffusionError(f"{name} has {len(values)} values for a batch of {batch}; give one value or {batch}")
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray, dict, set)):
            raise PainDiffusionError(f"{name} must be one value or {batch} values (one per sequence), got {value!r:.60}")
    return values


CONTROLS = ("stimulus", "expressiveness", "emotion", "threshold", "tolerance")  # every control, by its keyword
NUMERIC = ("stimulus", "expressiveness", "threshold", "tolerance")  # per-sequence float controls


class Controls:
    """The controls in force, one value per sequence: stimulus (°C), expressiveness (pain reactivity on the PSPI
    scale, :func:`paindiffusion.dataset.expressiveness_of`), emotion, and the patient's pain threshold and
    tolerance (°C; read by checkpoints whose stimulus is relative to them, conditions.py).

    Any thread may set them; a bad value raises a one-line :class:`PainDiffusionError` and changes nothing."""

    def __init__(self, spec, batch: int):
        self._spec, self._lock = spec, threading.Lock()
        self._values = {"stimulus": np.full(batch, BASELINE_C, np.float32),  # replaced by the first set()
                        "expressiveness": np.full(batch, np.nan, np.float32),
                        "emotion": ["Neutral"] * batch,
                        "threshold": np.full(batch, spec.calibration[0], np.float32),
                        "tolerance": np.full(batch, spec.calibration[1], np.float32)}

    def __len__(self) -> int:
        return len(self._values["emotion"])

    def parse(self, batch: int, current: dict, stimulus=None, expressiveness=None, emotion=None, threshold=None,
              tolerance=None) -> dict:
        """Checked values for ``batch`` sequences, only for the controls given (None = unchanged); a new
        threshold or tolerance is checked against the other one in force (``current``)."""
        new = {}
        if threshold is not None or tolerance is not None:
            thr = _per_item(threshold, "threshold", batch) if threshold is not None else list(current["threshold"])
            tol = _per_item(tolerance, "tolerance", batch) if tolerance is not None else list(current["tolerance"])
            pairs = [self._spec.calibration_value(a, b) for a, b in zip(thr, tol)]
            new["threshold"] = np.asarray([a for a, _ in pairs], np.float32)
            new["tolerance"] = np.asarray([b for _, b in pairs], np.float32)
        if stimulus is not None:
            new["stimulus"] = check_temperature(_per_item(stimulus, "stimulus", batch), "stimulus")
        if expressiveness is not None:
            vals = []
            for x in _per_item(expressiveness, "expressiveness", batch):
                if isinstance(x, bool) or not isinstance(x, (str, numbers.Real)):
                    raise PainDiffusionError(f"expressiveness {x!r:.40} is neither a number (0-16) nor low/medium/high")
                vals.append(self._spec.expressiveness_value(x))
            new["expressiveness"] = np.asarray(vals, np.float32)
        if emotion is not None:
            names = []
            for e in _per_item(emotion, "emotion", batch):
                if not isinstance(e, str):
                    raise PainDiffusionError(f"emotion {e!r:.40} is not a name; use one of {', '.join(EMOTIONS)}")
                names.append(EMOTIONS[emotion_index(e)])
            new["emotion"] = names
        return new

    def set(self, stimulus=None, expressiveness=None, emotion=None, slot: int | None = None,
            threshold=None, tolerance=None) -> None:
        """Change the controls given, for every sequence (``slot`` None) or for one; all or nothing."""
        with self._lock:
            n = 1 if slot is not None else len(self)
            if slot is not None and not 0 <= slot < len(self):
                raise PainDiffusionError(f"slot {slot} does not exist; the batch has {len(self)} sequences")
            sel = slice(None) if slot is None else slice(slot, slot + 1)
            current = {k: self._values[k][sel] for k in ("threshold", "tolerance")}
            new = self.parse(n, current, stimulus, expressiveness, emotion, threshold, tolerance)
            for k, v in new.items():
                if slot is None:
                    self._values[k] = v
                elif k == "emotion":
                    self._values[k] = [*self._values[k][:slot], v[0], *self._values[k][slot + 1:]]
                else:
                    self._values[k] = np.concatenate([self._values[k][:slot], v, self._values[k][slot + 1:]])

    def snapshot(self) -> dict:
        """A consistent copy of all controls (one lock)."""
        with self._lock:
            v = self._values
            return {**{k: v[k].copy() for k in NUMERIC}, "emotion": list(v["emotion"])}

    def append(self, other: dict) -> None:
        with self._lock:
            v = self._values
            for k in NUMERIC:
                v[k] = np.concatenate([v[k], other[k]])
            v["emotion"] = v["emotion"] + list(other["emotion"])

    def delete(self, slot: int) -> None:
        with self._lock:
            v = self._values
            for k in NUMERIC:
                v[k] = np.delete(v[k], slot)
            v["emotion"] = v["emotion"][:slot] + v["emotion"][slot + 1:]
