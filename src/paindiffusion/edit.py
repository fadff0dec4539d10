"""Editing existing face sequences: re-condition, keep, fill and extend them (docs/design.md §8).

The sampler that makes sequences also edits them. SDEdit (Meng et al., ICLR 2022) noises an input to a level
and denoises it under new conditions: the coarse shape (timing, character) survives the noise, the detail is
made anew. Diffusion forcing gives every frame its own level, so one pass does several edits at once:

* a frame to re-condition enters the stream's rolling pyramid at the level that ``strength`` picks,
  L − round(strength · L) of the L σ levels, from the input noised to that level (strength 0: unchanged,
  1: pure noise, generated anew);
* a kept frame is clean throughout: it is never stepped (its bits are the input's) and serves as context,
  behind the frames after it and ahead of the frames before it; the frames next to it re-run fewer levels
  the nearer they are (a soft edge), so each join is the input's own and the edit eases in;
* an appended frame (``extend``) starts from pure noise, as in generation.

:class:`~paindiffusion.sampling.RollingSchedule` sweeps the pyramid over the whole sequence and
:func:`~paindiffusion.sampling.sample_rolling` runs it in the stream's window, one model call per row. A
sweep from level L − n needs only n rows per frame, so ``per_row`` = L // n stacks share a row: at strength 0.5
a row moves two stacks in the stream's window size, and editing costs about half of generating.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

import numpy as np
import torch

from .biovid import BASELINE_C, check_temperature
from .checkpoint import PainModel
from .dataset import resting_face_of
from .conditions import HISTORY
from .errors import PainDiffusionError, warn
from .facespace import EMOTIONS, emotion_index
from .sampling import RollingSchedule, SamplerSettings, guided, karras_sigmas, sample_rolling
from .sequence import FPS, FaceSequence
from .stimulus import MAX_HOURS
from .stream import PatientFaces, StackPhaseFilter

__all__ = ["edit", "keep_ranges", "load_source", "parse_keep", "start_levels", "strength_levels"]

FEATHER_PER_LEVEL = 2  # frames per σ level of the soft edge next to kept frames (measured: docs/design.md §8)
KEEP_FORMAT = "START-END seconds, comma-separated, e.g. 0-4.0,12.5-20"


# ---- inputs ---------------------------------------------------------------------------------------------------
def load_source(path: str | os.PathLike, recording: str | None = None) -> FaceSequence:
    """A sequence to edit: a saved sequence (.npz/.csv from generate, extract or edit), a recording of a packed
    dataset folder (``recording``: its name), or a video tracked by :mod:`paindiffusion.tracking`."""
    from .tracking.extract import VIDEO_SUFFIXES

    path = Path(path)
    if path.is_dir():
        seq = packed_recording(path, recording)
    elif recording is not None:
        raise PainDiffusionError("--recording names a recording of a packed dataset folder; this is a file", path)
    else:
        seq = tracked_video(path) if path.suffix.lower() in VIDEO_SUFFIXES else FaceSequence.load(path)
    seq.meta["loaded_from"] = str(path) if recording is None else f"{path}:{recording}"
    return seq


def packed_recording(path: Path, name: str | None) -> FaceSequence:
    """One recording of a packed dataset, with its stimulus and its conditions (expressiveness, emotion, pain
    threshold and tolerance) in ``meta``."""
    from .dataset import PackedData

    data = PackedData(path)
    if name is None and len(data.recordings) > 1:
        names = ", ".join(r["name"] for r in data.recordings[:8])
        raise PainDiffusionError(f"holds {len(data.recordings)} recordings; pass --recording NAME ({names} ...)", path)
    i = 0 if name is None else data.find(name)
    r = data.recordings[i]
    w = data.window(i, 0, r["length"])
    cal = r.get("calibration") or (None, None)
    meta = {"source": "packed recording", "expressiveness": r["expressiveness"], "emotion": r["emotion"],
            "threshold": cal[0], "tolerance": cal[1]}
    return FaceSequence(data.space, w.frames, w.stimulus, w.pspi if np.isfinite(w.pspi).all() else None,
                        data.meta.get("fps", FPS), meta)


def tracked_video(path: Path) -> FaceSequence:
    """A video of a face (someone acting pain, a recording) as a ``facs`` sequence, emotion read from its AUs
    as ``paindiffusion extract`` reads it; no stimulus is known."""
    from .tracking import emotion_from_aus, extract_video
    from .tracking.landmarks import quiet_native_stderr as _quiet_native_stderr

    with _quiet_native_stderr():  # MediaPipe's native threads log notices to fd 2; errors come as ours
        seq = extract_video(path)
    seq.meta["emotion"] = emotion_from_aus(seq.frames, seq.pspi)
    return seq


def keep_ranges(keep) -> list[tuple[float, float]]:
    """(start, end) seconds of the frames to keep: ``keep`` is a text such as "0-4.0,12.5-20", or pairs."""
    if keep is None or (isinstance(keep, str) and not keep.strip()):
        return []
    if isinstance(keep, str):
        pairs = []
        for part in keep.split(","):
            m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*-\s*(\d+(?:\.\d*)?|\.\d+)\s*", part)
            if m is None:
                raise PainDiffusionError(f"--keep {keep!r:.60}: write {KEEP_FORMAT}")
            pairs.append((m[1], m[2]))
    else:
        pairs = list(keep)
    out = []
    for pair in pairs:
        try:
            a, b = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise PainDiffusionError(f"--keep range {pair!r:.40} is not two numbers; write {KEEP_FORMAT}") from None
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b <= a:
            raise PainDiffusionError(f"--keep range {a:g}-{b:g} s must start at 0 or later and end after it starts")
        out.append((a, b))
    return out


def parse_keep(keep, seconds: float, fps: int = FPS) -> np.ndarray:
    """Frames to keep exactly, as a (T,) bool mask of a ``seconds``-long sequence; each range (see
    :func:`keep_ranges`) keeps frames round(start·fps) … round(end·fps) − 1."""
    mask = np.zeros(int(round(seconds * fps)), bool)
    for a, b in keep_ranges(keep):
        if b > seconds + 0.5 / fps:
            raise PainDiffusionError(f"--keep range {a:g}-{b:g} s reaches past the end of the sequence "
                                     f"(0-{seconds:.2f} s); keep only frames it has")
        mask[int(round(a * fps)): int(round(b * fps))] = True
    return mask


def levels_rerun(kept: np.ndarray, depth: int) -> np.ndarray:
    """(T,) σ levels each input frame re-runs: 0 on kept frames, one more every FEATHER_PER_LEVEL frames away
    from the nearest kept frame, up to ``depth``. A soft edge (as Differential Diffusion's per-pixel strength,
    Levin & Fried 2023): the frames nearest a kept range keep most of the input, which already joins it."""
    idx = np.arange(len(kept))
    far = 2 * len(kept) + 1
    last = np.maximum.accumulate(np.where(kept, idx, -far))  # the nearest kept frame behind …
    nxt = np.minimum.accumulate(np.where(kept, idx, 2 * far)[::-1])[::-1]  # … and ahead
    d = np.minimum(idx - last, nxt - idx)
    return np.minimum(depth, -(-d // FEATHER_PER_LEVEL))


def strength_levels(strength, n_levels: int) -> int:
    """How many of the ``n_levels`` σ levels an edit of ``strength`` (0-1) re-runs: round(strength · L)."""
    ok = isinstance(strength, numbers.Real) and not isinstance(strength, bool) and math.isfinite(strength)
    if not ok or not 0.0 <= strength <= 1.0:
        raise PainDiffusionError(f"strength {strength!r:.40} must be a number from 0 (unchanged) to 1 (generated anew)")
    return int(math.floor(strength * n_levels + 0.5))


def _fit_trace(trace, n: int) -> np.ndarray:
    """A new stimulus (°C per frame) for an output of n frames: cut, or held at its last value (with a warning
    when they differ by more than a second)."""
    trace = check_temperature(trace, "the stimulus").reshape(-1)
    if abs(len(trace) - n) > FPS:
        what = "only its first" if len(trace) > n else "its last value is held to reach"
        warn(f"the stimulus lasts {len(trace) / FPS:.1f} s and the edited sequence {n / FPS:.1f} s: {what} "
             f"{n / FPS:.1f} s are used (--extend makes the sequence longer)")
    return np.concatenate([trace[:n], np.repeat(trace[-1:], max(0, n - len(trace)))])


def _conditions(seq: FaceSequence, spec, n: int, expressiveness, emotion, stimulus, threshold, tolerance) -> dict:
    """The conditions of the edit: each one given, else the input's own (its ``meta``, its stimulus held over an
    extension), else unknown — the learned null embedding, as for a condition dropped in training."""
    def known(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    meta = seq.meta
    if expressiveness is not None:
        x = spec.expressiveness_value(expressiveness)
    else:  # the input's own, within the range the model knows (what it was made with, or measured on it)
        x = float(np.clip(meta["expressiveness"], *spec.expressiveness_range)) if known(meta.get("expressiveness")) else float("nan")
    if emotion is not None:
        e = EMOTIONS[emotion_index(emotion)]
    else:
        e = meta.get("emotion") if meta.get("emotion") in EMOTIONS else None
    thr = threshold if threshold is not None else (meta.get("threshold") if known(meta.get("threshold")) else None)
    tol = tolerance if tolerance is not None else (meta.get("tolerance") if known(meta.get("tolerance")) else None)
    thr, tol = spec.calibration_value(thr, tol)
    if stimulus is not None:
        trace = _fit_trace(stimulus, n)
    elif seq.stimulus is not None:
        trace = np.concatenate([seq.stimulus, np.repeat(seq.stimulus[-1:], n - len(seq))])
    else:
        trace = None
    same_patient = emotion is None or e == meta.get("emotion")
    return {"expressiveness": x, "emotion": e, "threshold": thr, "tolerance": tol, "stimulus": trace,
            "resting_face": _own_resting_face(seq) if same_patient else None}


def _own_resting_face(seq: FaceSequence) -> np.ndarray:
    """The input patient's resting face (dataset.resting_face_of): its frames at rest, where its stimulus says so
    (at least 1 °C above the baseline counts as heat), else its median frame."""
    if seq.stimulus is not None:
        face = resting_face_of(seq.frames, (seq.stimulus > BASELINE_C + 1.0).astype(np.int8))
        if face is not None:
            return face
    return np.median(seq.frames, axis=0).astype(np.float32)


# ---- the edit -------------------------------------------------------------------------------------------------
def start_levels(kept: np.ndarray, depth: int, n_levels: int, lead: int, n_out: int, group: int) -> np.ndarray:
    """Each sweep frame's first σ level (index into the L + 1 grid values, L = clean): the lead-in takes the first
    input frame's; input frame f starts at L − min(depth, ⌈d_f / FEATHER_PER_LEVEL⌉), d_f its distance to the
    nearest kept frame (kept: L, never moved); appended frames and padding to whole stacks start at 0."""
    n_in = len(kept)
    start = np.zeros(-(-(lead + n_out) // group) * group, np.int64)
    start[lead: lead + n_in] = n_levels - levels_rerun(kept, depth)
    start[:lead] = start[lead]
    return start


def edit(source, *, strength: float = 0.5, expressiveness=None, emotion: str | None = None, stimulus=None,
         threshold: float | None = None, tolerance: float | None = None, keep=None, extend: float = 0.0,
         seed: int = 0, model: PainModel | None = None, settings: SamplerSettings | None = None,
         desc: str | None = "editing") -> FaceSequence:
    """Edit a face sequence (a :class:`FaceSequence` or anything :func:`load_source` reads) with a trained model
    (the shipped one by default) and return the edited sequence.

    ``strength`` 0-1: the share of the model's σ levels re-run (0: unchanged, 1: generated anew);
    ``expressiveness``, ``emotion``, ``stimulus`` (°C per frame at 25 fps), ``threshold``/``tolerance``: the new
    conditions (None: the input's own); ``keep``: frames kept exactly ("0-4,12.5-20" or (start, end) pairs, in
    seconds); ``extend``: seconds generated after the end. ``desc`` shows a progress bar (on a terminal, unless
    quiet)."""
    seq = source if isinstance(source, FaceSequence) else load_source(source)
    model = model or PainModel.load()
    s = (settings or model.sampler).validate()
    if seq.space.name != model.space.name:
        raise PainDiffusionError(f"the sequence is in face space {seq.space.name!r} and the model in {model.space.name!r}; "
                                 f"edit it with a {seq.space.name} checkpoint (--checkpoint)")
    if seq.fps != FPS:
        raise PainDiffusionError(f"the sequence runs at {seq.fps} fps and the model at {FPS}; resample it to {FPS} fps")
    if not (isinstance(extend, numbers.Real) and math.isfinite(extend) and 0 <= extend <= MAX_HOURS * 3600):
        raise PainDiffusionError(f"--extend {extend!r:.40} must be seconds from 0 to {MAX_HOURS * 3600:g}")
    n_levels, g = s.levels, model.config.group
    depth = strength_levels(strength, n_levels)
    kept = parse_keep(keep, seq.seconds)
    n_in, n_out = len(seq), len(seq) + int(round(extend * FPS))
    c = {**_conditions(seq, model.spec, n_out, expressiveness, emotion, stimulus, threshold, tolerance), "seed": seed}
    meta = _meta(seq, c, strength, depth, kept, extend, seed, s, model)
    # A lead-in of ``warmup`` stacks (the first frame held) comes first, as the stream's warm-up does: a stack
    # made without context is off the data. Its length puts the input's end on a stack boundary, so an
    # extension starts with a whole stack.
    lead = s.warmup * g + (-n_in) % g
    start = start_levels(kept, depth, n_levels, lead, n_out, g)
    if (start == n_levels).all():
        return FaceSequence(seq.space, seq.frames.copy(), c["stimulus"], None, FPS, meta)
    rows = n_levels - int(start.min())  # L // rows stacks share a row: the window stays the stream's
    unit = g if s.ramp == "frame" else 1  # the frame ramp's grid has levels × group values (window.LatentWindow)
    schedule = RollingSchedule(torch.as_tensor(start) * unit, n_levels * unit, g, per_row=max(1, n_levels // rows),
                               ramp=s.ramp)
    if s.context + (rows + 1) * schedule.per_row > model.config.max_tokens:
        raise PainDiffusionError(f"an edit's window of {s.context + (rows + 1) * schedule.per_row} stacks exceeds the "
                                 f"model's {model.config.max_tokens}; use fewer levels or context")

    # x_f = clean_f + σ_start(f)·ε: the input frame each sweep frame starts from, noised to its level; level 0 is
    # made anew (pure noise around the data's mean), as appended frames are.
    sigmas = karras_sigmas(n_levels * unit, s.sigma_min, s.sigma_max, s.rho)
    gen = torch.Generator().manual_seed(int(seed))
    clean = model.encode(seq.frames[np.clip(np.arange(len(start)) - lead, 0, n_in - 1)])[None]
    clean[:, torch.as_tensor(start == 0)] = 0.0
    x = clean + torch.randn(clean.shape, generator=gen) * sigmas[schedule.start][None, :, None]
    cond, weights = _cond_batch(model, c, lead, len(start), s.guidance)
    x = _sweep(guided(model.denoiser, weights, s.guidance_max_sigma), x, sigmas, schedule, cond, s, desc)
    if s.phase_filter:
        x = _phase_filtered(x, s.phase_filter, g)
    made = model.decode(x[0, lead: lead + n_out])
    moved = start[lead: lead + n_out] < n_levels
    frames = np.concatenate([seq.frames, made[n_in:]])
    frames[moved] = made[moved]  # kept frames stay the input's own bits
    return FaceSequence(seq.space, frames, c["stimulus"], None, FPS, meta)


def _sweep(fn, x, sigmas, schedule, cond, s: SamplerSettings, desc):
    """:func:`sample_rolling` with the conditions sliced per window, and a progress bar when ``desc`` is given."""
    from .progress import progress

    bar = progress(desc=desc, total=x.shape[1], unit="frame") if desc else None
    try:
        return sample_rolling(fn, x, sigmas, schedule, lambda a, b: cond._replace(stimulus=cond.stimulus[:, a:b]),
                              s.context, s.order,
                              (lambda info: bar.update(info["frames"] - bar.n)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _cond_batch(model: PainModel, c: dict, lead: int, n_all: int, guidance: tuple):
    """The conditions of every sweep frame as one CondBatch (windows take slices of its stimulus), and the
    guidance weights with those of unknown conditions set to 0 (their guidance term is zero anyway)."""
    spec = model.spec
    trace = c["stimulus"] if c["stimulus"] is not None else np.array([BASELINE_C], np.float32)
    past = np.repeat(trace[:1], HISTORY + lead)  # the stream's history: the first value, held
    stim = np.concatenate([past, trace, np.repeat(trace[-1:], n_all - lead - len(trace))])[None]
    x, e = c["expressiveness"], c["emotion"]
    known = [e is not None, math.isfinite(x), c["stimulus"] is not None]  # conditions.NAMES order
    # The resting face: the input patient's own, or (a new emotion) one the model draws for this seed
    resting = PatientFaces(model, 1, c.get("seed", 0), c["resting_face"]).latents([e or "Neutral"])
    cond = spec.batch(stim, spec.fed_expressiveness([x]), [EMOTIONS.index(e) if e else -1], n_all,
                      keep=[known], calibration=np.array([[c["threshold"], c["tolerance"]]], np.float32), resting=resting)
    return cond, tuple(w if k else 0.0 for w, k in zip(guidance, known))


def _phase_filtered(x: torch.Tensor, tau: float, group: int) -> torch.Tensor:
    """The stream's :class:`StackPhaseFilter` over the swept latents, stack by stack in order (it is causal, so
    this is what it does to a stream's emitted stacks)."""
    f = StackPhaseFilter(tau, group)
    f.prime(x[:, : 2 * group])
    return torch.cat([f(x[:, a: a + group]) for a in range(0, x.shape[1], group)], dim=1)


def _meta(seq: FaceSequence, c: dict, strength, depth: int, kept: np.ndarray, extend, seed, s, model) -> dict:
    """What the edit was: written into the output's ``meta`` (an npz keeps it)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], kept.astype(np.int8), [0]])))
    x = c["expressiveness"]
    return {"source": "paindiffusion edit",
            "edited": str(seq.meta.get("loaded_from", seq.meta.get("source", "a sequence"))),
            "strength": float(strength), "levels_rerun": depth, "seed": int(seed), "extend_s": float(extend),
            "keep_s": [[a / FPS, b / FPS] for a, b in zip(edges[::2].tolist(), edges[1::2].tolist())],
            "expressiveness": x if math.isfinite(x) else None, "emotion": c["emotion"], "threshold": c["threshold"],
            "tolerance": c["tolerance"], "stimulus_known": c["stimulus"] is not None, "sampler": s.to_dict(),
            "checkpoint_info": model.info.get("name", "custom")}
