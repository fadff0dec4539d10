"""Rolling diffusion-forcing generation: one code path for live streams and offline sequences.

The window holds ``context`` clean stacks followed by ``levels`` noisy stacks, stack j at the j-th noise
level counted from the clean end (the u = 1 pyramid, docs/design.md §1). Every :meth:`PainStream.step` makes one
guided model call that moves every noisy stack one level down the σ grid; the stack that reaches σ = 0 is
emitted, joins the context, and a fresh stack of pure noise enters at the far end. So each frame is denoised
exactly once per level as the window rolls (docs/design.md §5), the state is a fixed-size window (bounded memory,
no drift from an ever-growing history), and controls set from another thread take effect at the next step
for every frame not yet emitted.
"""

from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from .biovid import check_temperature
from .conditions import HISTORY
from .errors import PainDiffusionError
from .facespace import EMOTIONS, emotion_index
from .sampling import guided, initial_noise, karras_sigmas, pyramid_levels, sample_levels, step
from .sequence import FPS, FaceSequence


@dataclass
class SamplerSettings:
    """Sampler defaults, saved in the checkpoint config; every field can be overridden per run."""

    levels: int = 8  # σ levels per frame; each costs one model call per emitted stack
    sigma_min: float = 0.004
    sigma_max: float = 40.0
    rho: float = 7.0
    context: int = 4  # clean stacks the window keeps (4 × 4 frames = 0.64 s)
    guidance: tuple = (0.25, 0.5, 1.0)  # emotion, expressiveness, stimulus (the official demo's weights)
    order: int = 1  # 1 = DDIM/DPM-Solver++(1), the paper's; 2 = Heun (twice the calls)
    # Stacks generated and discarded before the first emitted frame, at the first stimulus value: the start
    # from pure noise has no context, and its first frames are off the data (a grimace that fades).
    warmup: int = 12

    def to_dict(self) -> dict:
        return {**self.__dict__, "guidance": list(self.guidance)}

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerSettings":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "guidance" in d:
            d["guidance"] = tuple(d["guidance"])
        return cls(**d)

    def validate(self) -> "SamplerSettings":
        """Return self, or raise a one-line error naming the first unusable setting."""
        def num(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))

        def whole(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1

        problems = [
            ("levels", whole(self.levels), "a whole number ≥ 1"),
            ("context", whole(self.context), "a whole number ≥ 1 (emitted stacks pass through the context)"),
            ("order", self.order in (1, 2) and not isinstance(self.order, bool), "1 or 2"),
            ("warmup", isinstance(self.warmup, numbers.Integral) and not isinstance(self.warmup, bool) and self.warmup >= 0,
             "a whole number ≥ 0"),
            ("sigma_min", num(self.sigma_min) and self.sigma_min > 0, "a positive number"),
            ("sigma_max", num(self.sigma_max) and num(self.sigma_min) and self.sigma_max > self.sigma_min, "a number above sigma_min"),
            ("rho", num(self.rho) and self.rho > 0, "a positive number"),
            ("guidance", isinstance(self.guidance, (tuple, list)) and len(self.guidance) == 3 and all(num(w) for w in self.guidance),
             "3 numbers (emotion, expressiveness, stimulus)"),
        ]
        for name, ok, need in problems:
            if not ok:
                raise PainDiffusionError(f"sampler setting {name} = {getattr(self, name)!r} must be {need}")
        return self


@dataclass
class Chunk:
    """Frames emitted by one step: (B, n, dim) face frames with their stimulus (°C) and PSPI, frame index of
    the first one, and the controls in force when they were made."""

    frames: np.ndarray
    stimulus: np.ndarray
    pspi: np.ndarray | None
    start: int
    controls: dict = field(default_factory=dict)


class PainStream:
    """An endless stream of face frames from a :class:`paindiffusion.checkpoint.PainModel`.

    Live use: set ``stimulus`` / ``expressiveness`` / ``emotion`` at any time (thread-safe) and call
    :meth:`step` (or iterate) to get the next frames. Offline use: pass ``trace`` (°C per frame at 25 fps) and
    the window sees the true future stimulus instead of holding the current value.
    """

    def __init__(self, model, *, stimulus: float = 32.0, expressiveness: float | str = "medium",
                 emotion: str = "Neutral", seed: int = 0, batch: int = 1, settings: SamplerSettings | None = None,
                 trace: np.ndarray | None = None):
        self.model = model
        self.s = (settings or model.sampler).validate()
        g = model.config.group
        self.group, self.batch = g, batch
        self.sigmas = karras_sigmas(self.s.levels, self.s.sigma_min, self.s.sigma_max, self.s.rho)
        self.window = (self.s.context + self.s.levels) * g
        if self.window > model.config.max_tokens * g:
            raise PainDiffusionError(f"window of {self.window} frames exceeds the model's {model.config.max_tokens * g}; use fewer levels or context")
        self.fn = guided(model.denoiser, self.s.guidance)
        self.gen = torch.Generator().manual_seed(int(seed))
        self._lock = threading.Lock()
        self._trace = None
        if trace is not None:  # (T,) for every sequence or (B, T), °C per frame at 25 fps
            tr = np.asarray(trace, np.float32)
            self._trace = np.broadcast_to(tr, (batch, tr.shape[-1])) if tr.ndim == 1 else tr
            if self._trace.shape[0] != batch:
                raise PainDiffusionError(f"trace must have shape (T,) or ({batch}, T), got {tr.shape}")
            check_temperature(self._trace, "trace")
        self.set_controls(stimulus=stimulus, expressiveness=expressiveness, emotion=emotion)
        self.emitted = 0  # frames handed out so far
        self.x: torch.Tensor | None = None  # (B, window, dim) latent window, built on the first step
        self._warming = False
        # Stimulus of frames before the window's first noisy frame: history for the lag features.
        first = self._trace[:, 0] if self._trace is not None else self.stimulus
        self._past = np.repeat(first[:, None], HISTORY + self.s.context * g, axis=1).astype(np.float32)

    # ---- controls (any thread) --------------------------------------------------------------------------
    def set_controls(self, stimulus=None, expressiveness=None, emotion=None) -> None:
        """Change any control; each takes one value for the whole batch or one per sequence."""
        spec, b = self.model.spec, self.batch

        def per_item(v, name):
            vs = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] * b
            if len(vs) != b:
                raise PainDiffusionError(f"{name} has {len(vs)} values for a batch of {b}")
            return vs

        # Check everything first, then change all at once: a bad value changes nothing.
        new = {}
        if stimulus is not None:
            new["stimulus"] = check_temperature(per_item(stimulus, "stimulus"), "stimulus")
        if expressiveness is not None:
            new["expressiveness"] = np.array([spec.expressiveness_value(x) for x in per_item(expressiveness, "expressiveness")], np.float32)
        if emotion is not None:
            new["emotion"] = [EMOTIONS[emotion_index(e)] for e in per_item(emotion, "emotion")]
        with self._lock:
            for k, v in new.items():
                setattr(self, k, v)

    @property
    def controls(self) -> dict:
        """Controls in force (per sequence of the batch)."""
        with self._lock:
            return {"stimulus": self.stimulus.copy(), "expressiveness": self.expressiveness.copy(), "emotion": list(self.emotion)}

    # ---- generation -------------------------------------------------------------------------------------
    def _future(self, n: int, held: np.ndarray) -> np.ndarray:
        """Stimulus of the window's n not-yet-emitted frames: the known trace offline, else the held control."""
        if self._trace is None or self._warming:
            return np.repeat((held if self._trace is None else self._trace[:, 0])[:, None], n, axis=1)
        i = self.emitted  # the first noisy frame follows the last emitted one
        seg = self._trace[:, i: i + n]
        if seg.shape[1] < n:  # past the end of the trace: hold its last value
            seg = np.concatenate([seg, np.repeat(self._trace[:, -1:], n - seg.shape[1], axis=1)], axis=1)
        return seg

    def _cond(self, n_known_context: int):
        c = self._made_with = self.controls  # one snapshot: conditions, attached stimulus and reported controls agree
        w = self.window
        future = self._future(w - n_known_context, c["stimulus"])
        past = self._past[:, self._past.shape[1] - HISTORY - n_known_context:]
        stim = np.concatenate([past, future], axis=1)
        self._window_stimulus = stim[:, HISTORY:]
        return self.model.spec.batch(stim, c["expressiveness"], [EMOTIONS.index(e) for e in c["emotion"]], w)

    @torch.no_grad()
    def _start(self) -> None:
        """Build the window: the u = 1 pyramid from pure noise, stopped when the context stacks are clean and
        the rest sit exactly at the rolling levels, then ``warmup`` discarded steps at the first stimulus.
        The clean context it leaves is burn-in history, never emitted: stream frame 0 is the next stack."""
        g, k, c = self.group, self.s.levels, self.s.context
        levels = pyramid_levels(self.window, k, g, 1.0)[: k + c]  # rows 0 .. k+c-1
        self._warming = True
        cond = self._cond(0)
        x = initial_noise((self.batch, self.window, self.model.config.dim), self.sigmas, levels[0], generator=self.gen)
        self.x = sample_levels(self.fn, x, self.sigmas, levels, cond, self.s.order)
        self._levels = levels[-1]
        for _ in range(self.s.warmup):
            self._advance()
        self._warming = False

    def _emit(self, n: int) -> Chunk:
        """Hand out the newest n clean frames (the end of the context) with their stimulus and PSPI."""
        n_ctx = self.s.context * self.group
        frames = self.model.decode(self.x[:, n_ctx - n: n_ctx])
        stim = self._window_stimulus[:, n_ctx - n: n_ctx].copy()
        self._past = np.concatenate([self._past[:, n:], stim], axis=1)
        space = self.model.space
        chunk = Chunk(frames, stim, space.pspi(frames) if space.has_pspi else None, self.emitted, self._made_with)
        self.emitted += n
        return chunk

    @torch.no_grad()
    def step(self) -> Chunk:
        """Advance by one stack: ``group`` new frames (the first call also builds the window)."""
        if self.x is None:
            self._start()
        self._advance()
        return self._emit(self.group)

    def _advance(self) -> None:
        """One guided call: every noisy stack moves one level down; the window rolls by one stack."""
        g, n_ctx = self.group, self.s.context * self.group
        cond = self._cond(n_ctx)
        lv = self._levels
        sig = self.sigmas[lv][None].expand(self.batch, -1)
        sig_next = self.sigmas[(lv + (lv < self.s.levels).long()).clamp(max=self.s.levels)][None].expand(self.batch, -1)
        x = step(self.fn, self.x, sig, sig_next, cond, self.s.order)
        # Roll: the stack that became clean joins the context; a stack of pure noise enters at the end.
        fresh = torch.randn((self.batch, g, x.shape[-1]), generator=self.gen) * self.sigmas[0]
        self.x = torch.cat([x[:, g:], fresh], dim=1)
        self._window_stimulus = np.concatenate([self._window_stimulus[:, g:], self._window_stimulus[:, -g:]], axis=1)

    def __iter__(self):
        while True:
            yield self.step()

    def take(self, n_frames: int) -> FaceSequence | list[FaceSequence]:
        """Generate at least ``n_frames`` and return them as sequence(s), cut to exactly ``n_frames``."""
        chunks = []
        while sum(c.frames.shape[1] for c in chunks) < n_frames:
            chunks.append(self.step())
        frames = np.concatenate([c.frames for c in chunks], axis=1)[:, :n_frames]
        stim = np.concatenate([c.stimulus for c in chunks], axis=1)[:, :n_frames]
        c = self.controls
        seqs = [FaceSequence(self.model.space, frames[b], stim[b], None, FPS,
                             {"expressiveness": float(c["expressiveness"][b]), "emotion": c["emotion"][b],
                              "source": "paindiffusion", "sampler": self.s.to_dict()}) for b in range(self.batch)]
        return seqs[0] if self.batch == 1 else seqs
