"""Rolling diffusion-forcing generation: one code path for live streams and offline sequences.

The window holds ``context`` clean stacks followed by ``levels`` stacks of noisy frames, each at a fixed rank
from the clean end (the u = 1 pyramid, docs/design.md; stack by stack or frame by frame, ``SamplerSettings.ramp``).
Every :meth:`PainStream.step` makes one guided model call that moves every noisy frame one level down; the
stack that reaches σ = 0 is emitted, joins the context, and a fresh stack of noise enters at the far end. So each frame is denoised
exactly once per level as the window rolls, the state is a fixed-size window (bounded memory, no drift from an
ever-growing history), and controls set from another thread take effect at the next step for every frame not
yet emitted.

Small pieces, one job each: :class:`~paindiffusion.controls.Controls` (the controls in force, thread-safe, validated),
:class:`StimulusHistory` (°C per frame for the lagged stimulus features), :class:`~paindiffusion.window.LatentWindow`
(the latents and the roll, window.py), :class:`PatientFaces` (each patient's resting face) and :class:`PainStream`
(puts them together and hands out :class:`Chunk` s).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from .biovid import check_temperature, felt_temperature, heat_notice
from .cohort import HEAD_POSE_P999_DEG
from .conditions import HISTORY
from .controls import Controls
from .errors import PainDiffusionError, warn
from .facespace import EMOTIONS, HEAD_CHANNELS
from .sampling import SamplerSettings, guided
from .sequence import FPS, FaceSequence
from .window import LatentWindow, StackPhaseFilter

__all__ = ["Chunk", "Controls", "LatentWindow", "PainStream", "PatientFaces", "SamplerSettings", "StackPhaseFilter",
           "StimulusHistory"]


@dataclass
class Chunk:
    """Frames emitted by one step: (B, n, dim) face frames with their stimulus (°C applied; the model feels at most
    the patient's tolerance) and PSPI, frame index of the first one, and the controls in force when they were made."""

    frames: np.ndarray
    stimulus: np.ndarray
    pspi: np.ndarray | None
    start: int
    controls: dict = field(default_factory=dict)


def soft_limit(x: np.ndarray, limit: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Identity up to k = knee·L, then a tanh shoulder that approaches L and never reaches it:
    y = sign(x)·(k + (L − k)·tanh((|x| − k) / (L − k))) for |x| > k. Its slope is 1 at the knee, so a motion that
    runs into the limit slows down instead of stopping at a corner."""
    k = knee * limit
    a = np.abs(x)
    shoulder = k + (limit - k) * np.tanh((a - k) / (limit - k))
    return np.where(a > k, np.sign(x) * shoulder, x).astype(x.dtype)


def limit_head_pose(frames: np.ndarray, space) -> np.ndarray:
    """Keep a ``facs`` face's head pose inside the training data's range (:data:`HEAD_POSE_P999_DEG`): outside
    it the model extrapolates, and controls at the edge of their range (the hottest heat, the highest
    expressiveness) turned the head 50° aside."""
    if not set(HEAD_CHANNELS) <= set(space.channels):
        return frames
    idx = [space.index(c) for c in HEAD_CHANNELS]
    frames[..., idx] = soft_limit(frames[..., idx], np.array([HEAD_POSE_P999_DEG[c] for c in HEAD_CHANNELS], np.float32))
    return frames


class StimulusHistory:
    """°C per frame that the lagged stimulus features need: ``past`` holds the HISTORY + context frames before
    the window's first noisy frame, ``window`` the stimulus attached to each window frame at its last step."""

    def __init__(self, first: np.ndarray, n_past: int, window: int):
        first = np.asarray(first, np.float32)[:, None]
        self.past = np.repeat(first, n_past, axis=1)
        self.window = np.repeat(first, window, axis=1)

    def attach(self, future: np.ndarray, n_known: int) -> np.ndarray:
        """Attach ``future`` (B, window − n_known) °C to the window's not-yet-clean frames and return the
        (B, HISTORY + window) input of the conditions: history, the n_known clean frames, then ``future``."""
        stim = np.concatenate([self.past[:, self.past.shape[1] - HISTORY - n_known:], future], axis=1)
        self.window = stim[:, HISTORY:]
        return stim

    def roll(self, group: int) -> None:
        """The window moved by one stack (the new noisy stack keeps the last value until it is conditioned)."""
        self.window = np.concatenate([self.window[:, group:], self.window[:, -group:]], axis=1)

    def emit(self, end: int, n: int) -> np.ndarray:
        """The stimulus of window frames end − n … end − 1 (just made clean), which also become history."""
        stim = self.window[:, end - n: end].copy()
        self.past = np.concatenate([self.past[:, n:], stim], axis=1)
        return stim


class PatientFaces:
    """Each sequence's resting face, for models with the resting-face condition (conditions.py): a patient draws a
    number in [0, 1) once, from its own seed, and shows the training resting face that number picks for whatever
    emotion it is given (``ConditionSpec.resting_face``), unless its resting face was given explicitly (face
    units, (dim,) or (B, dim)). Models without the condition get None and nothing is drawn."""

    def __init__(self, model, batch: int, seed: int, given=None):
        self.model, self.on = model, model.config.resting_face
        self.draws = list(np.random.default_rng([int(seed), 0x7e57]).random(batch)) if self.on else [0.0] * batch
        if given is None:
            self.given = [None] * batch
        else:
            g = model.space.validate(np.broadcast_to(np.asarray(given, np.float32), (batch, model.config.dim)), "resting_face")
            self.given = list(g)

    def latents(self, emotions: list[str]) -> torch.Tensor | None:
        """(B, dim) standardised resting faces for the emotions in force (NaN where unknown), or None."""
        if not self.on:
            return None
        faces = [g if g is not None else self.model.spec.resting_face(e, u)
                 for g, e, u in zip(self.given, emotions, self.draws)]
        rows = [np.full(self.model.config.dim, np.nan, np.float32) if f is None else f for f in faces]
        return self.model.standardizer.encode(torch.from_numpy(np.stack(rows)))

    def join(self, other: "PatientFaces", slot: int | None = None) -> None:
        if slot is None:
            self.draws, self.given = self.draws + other.draws, self.given + other.given
        else:
            self.draws[slot], self.given[slot] = other.draws[0], other.given[0]

    def remove(self, slot: int) -> None:
        del self.draws[slot], self.given[slot]


class PainStream:
    """An endless stream of face frames from a :class:`paindiffusion.checkpoint.PainModel`.

    Live use: set ``stimulus`` / ``expressiveness`` / ``emotion`` at any time (thread-safe) and call
    :meth:`step` (or iterate) to get the next frames. Offline use: pass ``trace`` (°C per frame at 25 fps) and
    the window sees the true future stimulus instead of holding the current value. A live batch can change
    between steps: :meth:`add` a new patient, :meth:`remove` one, :meth:`reset` one to a fresh patient; the
    other sequences go on undisturbed.
    """

    def __init__(self, model, *, stimulus: float = 32.0, expressiveness: float | str = "medium",
                 emotion: str = "Neutral", seed: int = 0, batch: int = 1, settings: SamplerSettings | None = None,
                 trace: np.ndarray | None = None, threshold=None, tolerance=None, resting_face=None):
        self.model = model
        self.s = (settings or model.sampler).validate()
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise PainDiffusionError(f"batch {batch!r} must be a whole number ≥ 1")
        self.group, self.batch = model.config.group, int(batch)
        self.fn = guided(model.denoiser, self.s.guidance, self.s.guidance_max_sigma)
        self.latents = LatentWindow(self.fn, self.s, self.group, model.config.dim)
        self.window = self.latents.size
        if self.window > model.config.max_tokens * self.group:
            raise PainDiffusionError(f"window of {self.window} frames exceeds the model's "
                                     f"{model.config.max_tokens * self.group}; use fewer levels or context")
        self.gen = torch.Generator().manual_seed(int(seed))
        self._gens = [self.gen] * self.batch  # noise source of each slot; the slots made here share one
        self._trace = None
        if trace is not None:  # (T,) for every sequence or (B, T), °C per frame at 25 fps
            tr = check_temperature(trace, "trace")
            self._trace = np.broadcast_to(tr, (batch, tr.shape[-1])) if tr.ndim == 1 else tr
            if self._trace.ndim != 2 or self._trace.shape[0] != batch:
                raise PainDiffusionError(f"trace must have shape (T,) or ({batch}, T), got {tr.shape}")
        self._controls = Controls(model.spec, self.batch)
        self._controls.set(stimulus=stimulus, expressiveness=expressiveness, emotion=emotion, threshold=threshold,
                           tolerance=tolerance)
        self.emitted = 0  # frames handed out so far
        first = self._trace[:, 0] if self._trace is not None else self._controls.snapshot()["stimulus"]
        self.history = StimulusHistory(first, HISTORY + self.latents.n_context, self.window)
        self._heat_noticed = False
        self._warming = False
        self._made_with: dict = {}
        self._filter = StackPhaseFilter(self.s.phase_filter, self.group) if self.s.phase_filter else None
        self._patients = PatientFaces(model, self.batch, seed, resting_face)

    # ---- controls (any thread) --------------------------------------------------------------------------
    def set_controls(self, stimulus=None, expressiveness=None, emotion=None, slot: int | None = None,
                     threshold=None, tolerance=None) -> None:
        """Change any control; each takes one value for the whole batch or one per sequence (or, with
        ``slot``, one value for that sequence). A bad value raises a one-line error and changes nothing."""
        self._controls.set(stimulus, expressiveness, emotion, slot, threshold, tolerance)

    @property
    def controls(self) -> dict:
        """Controls in force (per sequence of the batch)."""
        return self._controls.snapshot()

    @property
    def x(self) -> torch.Tensor | None:
        """The (B, window, dim) latent window (None before the first step)."""
        return self.latents.x

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

    def _conditions(self, n_known: int):
        """Snapshot the controls once (conditions, attached stimulus and reported controls agree), attach the
        stimulus to the window and return this step's conditions."""
        c = self._made_with = self.controls
        future = self._future(self.window - n_known, c["stimulus"])
        tolerance = c["tolerance"][:, None]
        if not self._heat_noticed and (future > tolerance).any():
            b, t = np.unravel_index(np.argmax(future - tolerance), future.shape)
            notice = heat_notice(float(future[b, t]), float(tolerance[b, 0]))
            if notice:
                warn(notice, once="heat above tolerance")
                self._heat_noticed = True
        stim = felt_temperature(self.history.attach(future, n_known), tolerance)  # the frames keep the heat applied
        spec = self.model.spec
        return spec.batch(stim, spec.fed_expressiveness(c["expressiveness"]), [EMOTIONS.index(e) for e in c["emotion"]], self.window,
                          calibration=np.stack([c["threshold"], c["tolerance"]], axis=1),
                          resting=self._patients.latents(c["emotion"]))

    @torch.no_grad()
    def _start(self) -> None:
        """Build the window, then ``warmup`` discarded steps at the first stimulus. The clean context it leaves
        is burn-in history, never emitted: stream frame 0 is the next stack."""
        self._warming = True
        self.latents.build(self.batch, self._conditions(0), self.gen)
        if self._filter is not None:
            self._filter.prime(self.latents.newest_clean(min(2 * self.group, self.latents.n_context)))
        for _ in range(self.s.warmup):
            self._advance()
            if self._filter is not None:  # the filter learns the pattern on the discarded stacks too
                self._filter(self.latents.newest_clean(self.group))
        self._warming = False

    def _noise(self, frames: int) -> torch.Tensor:
        """Unit noise (B, frames, dim) for each slot, drawn from that slot's own generator (slots made together
        at construction draw together), so a patient's frames do not depend on who joins the batch."""
        out = torch.empty(self.batch, frames, self.model.config.dim)
        for gen in {id(g): g for g in self._gens}.values():
            rows = [i for i, g in enumerate(self._gens) if g is gen]
            out[rows] = torch.randn((len(rows), frames, self.model.config.dim), generator=gen)
        return out

    def _advance(self) -> None:
        self.latents.advance(self._conditions(self.latents.n_context), self._noise(self.group))
        self.history.roll(self.group)

    def _emit(self, n: int) -> Chunk:
        """Hand out the newest n clean frames (the end of the context) with their stimulus and PSPI."""
        latents = self.latents.newest_clean(n)
        frames = limit_head_pose(self.model.decode(latents if self._filter is None else self._filter(latents)), self.model.space)
        stim = self.history.emit(self.latents.n_context, n)
        space = self.model.space
        chunk = Chunk(frames, stim, space.pspi(frames) if space.has_pspi else None, self.emitted, self._made_with)
        self.emitted += n
        return chunk

    @torch.no_grad()
    def step(self) -> Chunk:
        """Advance by one stack: ``group`` new frames (the first call also builds the window)."""
        if self.latents.x is None:
            self._start()
        self._advance()
        return self._emit(self.group)

    def __iter__(self):
        while True:
            yield self.step()

    def take(self, n_frames: int, desc: str | None = None) -> FaceSequence | list[FaceSequence]:
        """Generate at least ``n_frames`` and return them as sequence(s), cut to exactly ``n_frames``; ``desc``
        shows a progress bar (on a terminal, unless quiet)."""
        from .progress import progress

        chunks, have = [], 0
        bar = progress(desc=desc, total=n_frames, unit="frame") if desc else None
        while have < n_frames:
            chunks.append(self.step())
            have += chunks[-1].frames.shape[1]
            if bar is not None:
                bar.update(min(chunks[-1].frames.shape[1], n_frames - bar.n))
        if bar is not None:
            bar.close()
        frames = np.concatenate([c.frames for c in chunks], axis=1)[:, :n_frames]
        stim = np.concatenate([c.stimulus for c in chunks], axis=1)[:, :n_frames]
        c = self.controls
        seqs = [FaceSequence(self.model.space, frames[b], stim[b], None, FPS,
                             {"expressiveness": float(c["expressiveness"][b]), "emotion": c["emotion"][b],
                              "threshold": float(c["threshold"][b]), "tolerance": float(c["tolerance"][b]),
                              "source": "paindiffusion", "sampler": self.s.to_dict()}) for b in range(self.batch)]
        return seqs[0] if self.batch == 1 else seqs

    # ---- a live batch: patients join, leave and restart between steps (call from the stepping thread) ----
    def prepare(self, seed: int = 0, stimulus=32.0, expressiveness="medium", emotion="Neutral", threshold=None,
                tolerance=None) -> "PainStream":
        """A new patient, ready to :meth:`add` or put in by :meth:`reset`: a batch-1 stream with its window
        built (pyramid + warm-up, about levels + context + warmup calls). It touches nothing of this stream,
        so another thread may prepare while this one steps."""
        if self._trace is not None:
            raise PainDiffusionError("sequences cannot join or leave a stream that plays a trace")
        one = PainStream(self.model, seed=seed, settings=self.s, stimulus=stimulus, expressiveness=expressiveness,
                         emotion=emotion, threshold=threshold, tolerance=tolerance)
        one._start()
        return one

    def add(self, prepared: "PainStream | None" = None, **patient) -> int:
        """Put a new patient at the end of the batch (``prepared``, or one made now from ``seed`` and controls);
        returns its slot. The others go on undisturbed."""
        one = prepared or self.prepare(**patient)
        if self.latents.x is None:
            self._start()
        self.latents.x = torch.cat([self.latents.x, one.latents.x])
        self.history.past = np.concatenate([self.history.past, one.history.past])
        self.history.window = np.concatenate([self.history.window, one.history.window])
        self._controls.append(one.controls)
        self._gens.append(one.gen)
        self._patients.join(one._patients)
        if self._filter is not None:
            self._filter.join(one._filter)
        self.batch += 1
        return self.batch - 1

    def remove(self, slot: int) -> None:
        """Drop one sequence; later slots move down by one. The last one cannot go (a batch is ≥ 1)."""
        if not 0 <= slot < self.batch or self.batch == 1:
            raise PainDiffusionError(f"cannot remove slot {slot} from a batch of {self.batch}")
        if self.latents.x is not None:
            keep = [i for i in range(self.batch) if i != slot]
            self.latents.x = self.latents.x[keep]
            self.history.past, self.history.window = self.history.past[keep], self.history.window[keep]
            if self._filter is not None:
                self._filter.rows(keep)
        self._controls.delete(slot)
        del self._gens[slot]
        self._patients.remove(slot)
        self.batch -= 1

    def reset(self, slot: int, seed: int = 0, prepared: "PainStream | None" = None) -> None:
        """Replace one sequence by a fresh patient (``prepared``, or made now with ``seed``; the slot's
        controls stay): the "new patient" button."""
        if not 0 <= slot < self.batch:
            raise PainDiffusionError(f"slot {slot} does not exist; the batch has {self.batch} sequences")
        if self.latents.x is None:
            self._start()
        one = prepared or self.prepare(seed, **{k: v[slot] for k, v in self.controls.items()})
        self.latents.x[slot] = one.latents.x[0]
        self.history.past[slot], self.history.window[slot] = one.history.past[0], one.history.window[0]
        self._gens[slot] = one.gen
        self._patients.join(one._patients, slot)
        if self._filter is not None:
            self._filter.join(one._filter, slot)
