"""What a study shows: held-out recordings, the windows cut from them, and every source's face sequences there.

Held-out recordings are a fresh simulated cohort by default (seed 7500 + study seed: subjects never used for
training, docs/evaluation.md), a packed dataset's test split, or stimulus files (no reference face then).
The model and the baselines are run exactly as ``paindiffusion evaluate`` runs them
(:func:`~paindiffusion.evaluation.generation.generate_model`, :data:`~paindiffusion.evaluation.baselines.BASELINES`),
on each recording from its start, and cut to the window afterwards, so a clip never shows a cold start.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError, PainDiffusionWarning
from ..evaluation.baselines import BASELINES, static_mean_face
from ..evaluation.data import Recordings, fresh_cohort, from_packed, training_pool
from ..evaluation.metrics import episodes
from ..evaluation.generation import MODEL, generate_model, recording_jobs
from ..facespace import FACS
from ..biovid import FPS
from .plan import REFERENCE, STATIC

STUDY_DRAW, OBSERVER_DRAW = 500, 600  # cohort seeds 7500 + seed (the study) and 7600 + seed (the observer's training)
BURN_IN_S = 20.0  # a window starts this far into its recording at the earliest: the generators have settled
ALIASES = {"rules": "rules given the controls", "arx": "ridge ARX", "random-clip": "random clip"}
OFFERED = tuple(b for b in BASELINES if b != "oracle")  # the oracle needs the true subject: not a competitor


@dataclass(frozen=True)
class StudyConfig:
    """The material's size. The defaults give 21 trials per participant (5 windows × 4 blocks + 1 catch)."""

    windows: int = 5
    seconds: float = 10.0  # clip length
    lead: float = 0.3  # share of the clip shown before the heat episode starts (the face at rest, then the reaction)
    tries: int = 3  # per generator, shown side by side in the diversity block
    baselines: tuple[str, ...] = ("rules given the controls", "ridge ARX", "random clip")
    size: int = 320  # pixels per face
    strip: bool = True  # the stimulus under every face (needed by the reaction block)
    catch: bool = True  # one attention trial: the real face against a lifeless one
    seed: int = 0
    minutes: float = 1.5  # simulated recording length the windows are cut from
    pool_subjects: int = 12  # training-pool recordings for the data-driven baselines (random clip, ARX)

    def frames(self) -> int:
        return int(round(self.seconds * FPS))

    def validate(self) -> "StudyConfig":
        if not 1 <= self.windows <= 60:
            raise PainDiffusionError(f"--windows {self.windows} must be 1-60")
        if not 2 <= self.seconds <= 30:
            raise PainDiffusionError(f"--seconds {self.seconds} must be 2-30 (clips of ~5-20 s suit a study)")
        if not 1 <= self.tries <= 4:
            raise PainDiffusionError(f"--tries {self.tries} must be 1-4 (they are shown side by side)")
        if not (64 <= self.size <= 768 and self.size % 2 == 0):
            raise PainDiffusionError(f"--size {self.size} must be an even number of pixels in 64-768")
        if not 0 <= self.lead < 1:
            raise PainDiffusionError(f"the lead-in share {self.lead} must be in 0-1")
        for b in self.baselines:
            if b not in OFFERED:
                raise PainDiffusionError(f"unknown baseline {b!r}; choose from {', '.join(ALIASES)} or "
                                         + ", ".join(repr(o) for o in OFFERED))
        if len(set(self.baselines)) != len(self.baselines):
            raise PainDiffusionError("a baseline is listed twice; list each once")
        return self


def baseline_names(text: str) -> tuple[str, ...]:
    """``rules,arx,random-clip`` (aliases or the evaluation's names, comma-separated) → the evaluation's names."""
    names = tuple(ALIASES.get(t.strip(), t.strip()) for t in text.split(",") if t.strip())
    return names


@dataclass
class Window:
    """``frames`` frames of recording ``rec`` from ``start``; the BioVid stimulus level of the heat episode it shows
    (0: none)."""

    id: str
    rec: int
    start: int
    frames: int
    stimulus_level: int
    catch: bool = False


def held_out(cfg: StudyConfig, model, data=None, stimuli: list[np.ndarray] | None = None, names: list[str] | None = None,
             expressiveness: float = 1.7, emotion: str = "Neutral", draw: int = STUDY_DRAW) -> tuple[Recordings, bool]:
    """The recordings windows are cut from, and whether they have a reference face (stimulus files do not)."""
    needed = cfg.windows + int(cfg.catch)
    if stimuli is not None:
        t = max(map(len, stimuli))
        stim = np.stack([np.pad(s, (0, t - len(s)), mode="edge") for s in stimuli]).astype(np.float32)
        n = len(stimuli)
        # No recorded face: frames are a zero placeholder of the right shape (the baselines read only its shape).
        return Recordings(list(names or [f"stimulus{i + 1}" for i in range(n)]), np.zeros((n, t, FACS.dim), np.float32),
                          stim, np.zeros((n, t), np.int8), np.zeros((n, t), np.float32), np.full(n, expressiveness),
                          [emotion] * n, None, "stimulus files"), False
    if data is not None:
        held = from_packed(data, "test", 10**9)
    else:
        minutes = max(cfg.minutes, (BURN_IN_S + 30 + cfg.seconds) / 60)  # room for a window after the burn-in
        held = fresh_cohort(needed, minutes, draw + cfg.seed)
    return held, True


def choose_windows(held: Recordings, cfg: StudyConfig, reference: bool) -> list[Window]:
    """One window per recording where possible, each starting ``lead`` × its length before a heat episode after the
    burn-in; stimulus levels cycle 4, 3, 2 (level 1 rarely gets a visible reaction). The last is the catch window."""
    n, burn = cfg.frames(), int(BURN_IN_S * FPS)
    lead = int(cfg.lead * n)
    count = cfg.windows + int(cfg.catch and reference)
    t_max = held.stimulus.shape[1]
    if not reference:  # stimulus files: the window starts the lead-in before the first rise of 1 °C
        out = []
        for i, s in enumerate(held.stimulus[:count]):
            rise = np.flatnonzero(s > s[0] + 1.0)
            start = int(np.clip((rise[0] if len(rise) else 0) - lead, 0, max(0, t_max - n)))
            out.append(Window(f"w{i + 1}", i, start, min(n, t_max - start), 0))
        if len(out) < count:
            raise PainDiffusionError(f"{count} windows need {count} stimulus files; {len(out)} given (or use --windows {len(out)})")
        return out
    candidates = []  # (recording, start, level)
    for r in range(len(held)):
        for a, _b, level, _onset in episodes(held.label[r], held.stimulus[r]):
            if a - lead >= burn and a - lead + n <= t_max:
                candidates.append((r, a - lead, level))
    out, used = [], []  # used: (recording, start) of chosen windows
    for k in range(count):
        want = (4, 3, 2)[k % 3]
        free = [c for c in candidates if all(c[0] != u[0] or abs(c[1] - u[1]) >= n for u in used)]
        fresh = [c for c in free if c[0] not in {u[0] for u in used}] or free
        if not fresh:
            raise PainDiffusionError(f"the held-out recordings hold only {len(out)} non-overlapping {cfg.seconds:g} s windows "
                                     f"around heat episodes after {BURN_IN_S:g} s; ask for fewer --windows or shorter --seconds")
        r, start, level = min(fresh, key=lambda c: (abs(c[2] - want), c[0], c[1]))
        used.append((r, start))
        out.append(Window(f"w{k + 1}", r, start, n, level, catch=reference and cfg.catch and k == count - 1))
    return out


def run_sources(model, held: Recordings, windows: list[Window], cfg: StudyConfig, pool: Recordings | None = None,
                reference: bool = True) -> dict[str, np.ndarray]:
    """Every source's frames at every window: ``{source: (windows, tries, frames, D)}`` (the reference and the
    static face have one try). Generators run on each recording from its start up to its last window's end."""
    end = max(w.start + w.frames for w in windows)
    recs = sorted({w.rec for w in windows})
    sub = dataclasses.replace(held.subset(recs), frames=held.frames[recs, :end], stimulus=held.stimulus[recs, :end],
                              label=held.label[recs, :end], pspi=held.pspi[recs, :end])
    row = {r: i for i, r in enumerate(recs)}
    jobs = recording_jobs(sub, cfg.tries)  # each recording's stimulus and controls, as evaluate gives them
    out = {MODEL: generate_model(model, jobs, seed=cfg.seed).reshape(len(sub), cfg.tries, end, -1)}
    if pool is None and (cfg.baselines or cfg.catch):
        pool = training_pool(model, None, cfg.pool_subjects, max(cfg.minutes, 2.0))
    rng = np.random.default_rng([cfg.seed, 11])
    with warnings.catch_warnings():  # a recording's own expressiveness outside the trained range is clamped, as
        warnings.simplefilter("ignore", PainDiffusionWarning)  # evaluate does, without a line per try
        for name in cfg.baselines:
            out[name] = BASELINES[name](sub, pool, cfg.tries, rng, model.spec)
    if reference:
        out[REFERENCE] = sub.frames[:, None]
        if cfg.catch:
            out[STATIC] = static_mean_face(sub, pool, 1, rng, model.spec)
    return {s: np.stack([f[row[w.rec], :, w.start:w.start + w.frames] for w in windows]).astype(np.float32)
            for s, f in out.items()}


def save_material(folder: Path, windows: list[Window], frames: dict[str, np.ndarray], held: Recordings) -> None:
    """``material/<window>.npz``: each source's frames (tries, T, D) and the stimulus, for the machine observer."""
    folder.mkdir()
    for k, w in enumerate(windows):
        arrays = {s: f[k] for s, f in frames.items()}
        np.savez_compressed(folder / f"{w.id}.npz", stimulus=held.stimulus[w.rec, w.start:w.start + w.frames], **arrays)


def load_material(study: Path, window: str) -> dict[str, np.ndarray]:
    path = Path(study) / "material" / f"{window}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise PainDiffusionError(f"cannot read the study's material ({e}); make the study again with 'study make'", path) from None
