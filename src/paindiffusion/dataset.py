"""The packed dataset: one memory-mapped store of every frame, and training windows drawn from it.

``pack`` turns a BioVid-layout tree (synthetic or real, see :mod:`rawdata`) into::

    DATA/frames.npy     (N, dim) float32   face vectors of all recordings, concatenated
    DATA/stimulus.npy   (N,) float32       °C per frame
    DATA/label.npy      (N,) int8          0-4 per frame
    DATA/pspi.npy       (N,) float32       PSPI per frame (NaN where unknown)
    DATA/index.json     recordings (offset, length, subject, split, emotion, expressiveness), face space, stats

Splits are subject-disjoint (docs/design.md §2: test ≠ validation). *Expressiveness* is a per-recording value,
its pain reactivity (:func:`expressiveness_of`), so it never comes from the window being predicted.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .biovid import FPS, resting_mask, true_runs
from .errors import PainDiffusionError
from .files import atomic_directory, check_output_dir
from .progress import progress
from .facespace import EMOTIONS, get_space
from .rawdata import find_recordings, load_recording

FORMAT = "paindiffusion-packed"
VERSION = 1
KIND = "packed dataset"  # the kind its folder's marker records (files.MARKER)
VAL_SHARE, TEST_SHARE = 0.15, 0.15  # shares of subjects held out for validation and testing (the shipped recipe's)


EXPRESSIVENESS_DEFINITION = "reactivity"  # the name checkpoints and packed stores record


def expressiveness_of(pspi: np.ndarray | None, label: np.ndarray) -> float | None:
    """A recording's pain expressiveness on the PSPI scale, from its PSPI and stimulus labels (0 = baseline).

    Its *reactivity*: mean PSPI over the stimulated frames (label > 0) minus the
    recording's resting PSPI (median over baseline frames), floored at 0. Resting AUs of an emotion (anger's
    AU4/AU7 count toward PSPI) and blinks are not pain, so they do not count: an angry stoic subject and a neutral
    stoic subject both score ≈ 0.
    Without stimulated frames the whole recording counts as stimulated (and reactivity is 0)."""
    if pspi is None or not np.isfinite(pspi).all():
        return None
    pspi, sel = np.asarray(pspi, np.float64), np.asarray(label) > 0
    stimulated = float(pspi[sel].mean() if sel.any() else pspi.mean())
    rest = float(np.median(pspi[~sel])) if (~sel).any() else stimulated
    return max(0.0, stimulated - rest)


def calibration_of(stimulus: np.ndarray, label: np.ndarray) -> tuple[float, float] | None:
    """A recording's pain threshold and tolerance (°C), read from its stimulus and labels: BioVid places stimulus
    levels 1-4 evenly from the subject's threshold to its tolerance, so a line through (level, median plateau
    temperature of that level's episodes) gives both, from any two levels present. None with fewer."""
    lab, stim = np.asarray(label), np.asarray(stimulus, np.float64)
    peaks: dict[int, list[float]] = {}
    for a, b in true_runs(lab > 0):
        peaks.setdefault(int(lab[a:b].max()), []).append(float(stim[a:b].max()))
    levels = sorted(lv for lv in peaks if 1 <= lv <= 4)
    if len(levels) < 2:
        return None
    slope, icept = np.polyfit([(lv - 1) / 3 for lv in levels], [np.median(peaks[lv]) for lv in levels], 1)
    if slope < 0.5:  # levels not hotter than each other: not placed between a threshold and a tolerance
        return None
    return round(float(icept), 2), round(float(icept + slope), 2)


def resting_face_of(frames: np.ndarray, label: np.ndarray, min_s: float = 2.0) -> np.ndarray | None:
    """A recording's resting face: the per-channel median of its frames at rest (:func:`biovid.resting_mask`), the
    face a patient returns to between stimuli (an emotion's prototype AUs at the subject's own intensity, its
    posture). None with less than ``min_s`` seconds at rest. The median, not the mean: blinks are brief."""
    rest = resting_mask(label)
    if rest.sum() < min_s * FPS:
        return None
    return np.median(np.asarray(frames)[rest], axis=0).astype(np.float32)


def floor_mirror_quantiles(data: "PackedData", split: str = "train", n: int = 64, max_frames: int = 200_000,
                           seed: int = 0) -> np.ndarray:
    """(dim, n) quantiles of how far below its floor a censored value lies, per channel (0 where nothing is).

    AU intensities are censored at the bottom of their scale: trackers and the cohort clip at 0, so a share of
    frames (38 % in the cohort) read exactly 0 where the underlying intensity, with its noise, was below. For noise
    symmetric around a level near the floor, the part below the floor mirrors the part just above it, so the
    depth of a censored value is drawn from the channel's ``k`` smallest excesses above the floor, ``k`` = the
    number of censored values. Channels with fewer than 1 % censored frames get zeros."""
    recs = data.split(split)
    rng = np.random.default_rng(seed)
    total = sum(data.recordings[i]["length"] for i in recs)
    take = min(1.0, max_frames / max(total, 1))
    rows = []
    for i in recs:
        r = data.recordings[i]
        f = np.asarray(data.frames[r["offset"]: r["offset"] + r["length"]])
        rows.append(f[rng.random(len(f)) < take])
    frames = np.concatenate(rows) if rows else np.zeros((0, data.space.dim), np.float32)
    out = np.zeros((data.space.dim, n), np.float32)
    low = np.asarray(data.space.low, np.float32)
    for c in range(data.space.dim):
        v = frames[:, c]
        censored = int((v == low[c]).sum())
        excess = np.sort(v[v > low[c]] - low[c])[:censored]
        if censored >= 0.01 * max(len(v), 1) and len(excess) >= 16:
            out[c] = np.quantile(excess, (np.arange(n) + 0.5) / n)
    return out


def split_subjects(subjects: list[str], seed: int, val: float, test: float) -> dict[str, str]:
    """Deterministic subject-disjoint split; with ≥ 3 subjects every split gets at least one."""
    order = sorted(set(subjects), key=lambda s: zlib.crc32(f"{seed}:{s}".encode()))
    n = len(order)
    n_test = max(1, round(n * test)) if n >= 3 and test > 0 else 0
    n_val = max(1, round(n * val)) if n >= 3 and val > 0 else 0
    return {s: ("test" if i < n_test else "val" if i < n_test + n_val else "train") for i, s in enumerate(order)}


def write_npy(path: Path, parts, dtype, shape: tuple) -> None:
    """Write an .npy of ``shape`` from ``parts`` (arrays whose rows concatenate to it) with plain sequential
    writes. A memory-mapped file would fault (SIGBUS, no error, no clean-up) when a full disk or tmpfs cannot
    back a page; a write raises ENOSPC, which the atomic writer reports in one line after removing its folder."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
        for a in parts:
            f.write(np.ascontiguousarray(a, dtype=dtype).tobytes())


def input_files(dirs: list[Path]) -> list[Path]:
    """Every recording folder and every file in it: what ``pack`` reads, so that an output reached through a
    symlink among them counts as overlapping the input."""
    return [*dirs, *(f for d in dirs for f in d.iterdir())]


def pack(raw: str | os.PathLike, out: str | os.PathLike, *, val: float = VAL_SHARE, test: float = TEST_SHARE,
         seed: int = 0, default_space: str = "facs", overwrite: bool = False, source: str | None = None) -> Path:
    """Validate every recording under ``raw`` and write the packed store ``out`` (all or nothing); ``source``
    is what the store records as its origin (default: ``raw``)."""
    raw, out = Path(raw), Path(out)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise PainDiffusionError(f"split shares must be in [0, 1) and leave room for training (got val {val}, test {test})")
    check_output_dir(out, overwrite, inputs=(raw,), kind=KIND)  # before reading every recording
    dirs = find_recordings(raw)
    inputs = (raw, *input_files(dirs))
    check_output_dir(out, overwrite, inputs=inputs, kind=KIND)
    recs = [load_recording(d, default_space) for d in progress(dirs, "pack: reading", unit="recording")]  # validates everything before writing anything
    spaces = {r.space.name for r in recs}
    if len(spaces) > 1:
        raise PainDiffusionError(f"recordings mix face spaces {sorted(spaces)}; pack each space separately", raw)
    split = split_subjects([r.subject for r in recs], seed, val, test)
    with atomic_directory(out, KIND, overwrite, inputs=inputs) as tmp:
        n = sum(len(r.frames) for r in recs)
        write_npy(tmp / "frames.npy", (r.frames for r in recs), np.float32, (n, recs[0].space.dim))
        write_npy(tmp / "stimulus.npy", (r.stimulus for r in recs), np.float32, (n,))
        write_npy(tmp / "label.npy", (r.label for r in recs), np.int8, (n,))
        write_npy(tmp / "pspi.npy", (r.pspi if r.pspi is not None else np.full(len(r.frames), np.nan) for r in recs),
                  np.float32, (n,))
        index, offset = [], 0
        for r in recs:
            index.append({"name": r.name, "subject": r.subject, "offset": offset, "length": len(r.frames),
                          "split": split[r.subject], "emotion": r.emotion,
                          "expressiveness": expressiveness_of(r.pspi, r.label)})
            offset += len(r.frames)
        train = [r for r in recs if split[r.subject] == "train"] or recs
        f = np.concatenate([np.asarray(r.frames, np.float32) for r in train])
        st = np.concatenate([np.asarray(r.stimulus, np.float32) for r in train])
        meta = {
            "format": FORMAT, "version": VERSION, "face_space": recs[0].space.name,
            "channels": list(recs[0].space.channels), "fps": FPS, "source": source or str(raw), "split_seed": seed,
            "expressiveness_definition": EXPRESSIVENESS_DEFINITION,
            # Per-channel statistics of the training split: the model standardises latents with them (docs/design.md §2).
            "stats": {"frames_mean": f.mean(0).tolist(), "frames_std": f.std(0).tolist(),
                      "stimulus_mean": float(st.mean()), "stimulus_std": float(st.std())},
            "recordings": index,
        }
        (tmp / "index.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


@dataclass
class Window:
    """A stretch of one recording: what training and evaluation read."""

    frames: np.ndarray  # (W, dim)
    stimulus: np.ndarray  # (history + W,) °C, the ``history`` frames before the window first
    pspi: np.ndarray  # (W,)
    label: np.ndarray  # (W,)
    emotion: int  # AffectNet index, -1 when unknown
    expressiveness: float  # NaN when unknown
    recording: int
    start: int
    calibration: tuple | None = None  # the recording's (threshold, tolerance) °C, None when unknown
    resting_face: np.ndarray | None = None  # (dim,) the recording's resting face (resting_face_of), None when unknown


class PackedData:
    """Read-only, memory-mapped view of a packed store."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "index.json"
        if not meta_path.is_file():
            raise PainDiffusionError("not a packed dataset (no index.json); create one with 'paindiffusion pack RAW -o DATA'", self.path)
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise PainDiffusionError(f"index.json is not valid JSON ({type(e).__name__}); re-pack the raw data", meta_path) from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise PainDiffusionError(f"index.json is not a {FORMAT} v{VERSION} store; re-pack the raw data", meta_path)
        try:
            self.space = get_space(self.meta["face_space"])
            self.frames, self.stimulus, self.label, self.pspi = (
                np.load(self.path / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in ("frames", "stimulus", "label", "pspi"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PainDiffusionError(f"packed arrays are missing or corrupt ({type(e).__name__}: {str(e)[:100]}); re-pack the raw data", self.path) from None
        self.recordings = self.meta.get("recordings")
        self._check(meta_path)

    def _check(self, meta_path: Path) -> None:
        """Everything later code indexes by: a corrupt store fails here in one line, not in a slice later."""
        n = len(self.frames)
        recs = self.recordings
        ok = isinstance(recs, list) and all(
            isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("offset"), int)
            and isinstance(r.get("length"), int) and r.get("split") in ("train", "val", "test")
            and (r.get("expressiveness") is None or isinstance(r.get("expressiveness"), (int, float)))
            and (r.get("emotion") is None or r.get("emotion") in EMOTIONS) for r in recs)
        if not ok:
            raise PainDiffusionError("index.json has malformed recordings; re-pack the raw data", meta_path)
        offset = 0
        for r in recs:
            if r["offset"] != offset or r["length"] < 1:
                raise PainDiffusionError(f"recording {r['name']!r} has a bad offset or length; re-pack the raw data", meta_path)
            offset += r["length"]
        if self.frames.shape != (offset, self.space.dim) or any(a.shape != (n,) for a in (self.stimulus, self.label, self.pspi)):
            raise PainDiffusionError("the .npy arrays do not match index.json (truncated or replaced?); re-pack the raw data", self.path)
        if self.frames.dtype != np.float32 or self.stimulus.dtype != np.float32 or self.label.dtype != np.int8:
            raise PainDiffusionError("the .npy arrays have unexpected types; re-pack the raw data", self.path)
        st = self.meta.get("stats")
        dim = self.space.dim
        ok = isinstance(st, dict) and all(isinstance(st.get(k), list) and len(st[k]) == dim for k in ("frames_mean", "frames_std")) \
            and all(isinstance(st.get(k), (int, float)) for k in ("stimulus_mean", "stimulus_std"))
        if not ok or not np.isfinite(np.asarray(st["frames_mean"] + st["frames_std"], dtype=float)).all():
            raise PainDiffusionError("index.json has missing or non-finite statistics; re-pack the raw data", meta_path)
        self._migrate_expressiveness()
        for r in self.recordings:  # derived, not stored: packs of every version get it
            s = slice(r["offset"], r["offset"] + r["length"])
            r["calibration"] = calibration_of(self.stimulus[s], self.label[s])
        self._resting: dict[int, np.ndarray | None] = {}

    def _migrate_expressiveness(self) -> None:
        """The one migration of a packed store: an index without ``expressiveness_definition`` holds the mean PSPI
        while stimulated; reactivity is recomputed from its PSPI and label arrays, in memory (the store stays
        read-only)."""
        if self.meta.get("expressiveness_definition") == EXPRESSIVENESS_DEFINITION:
            return
        for r in self.recordings:
            s = slice(r["offset"], r["offset"] + r["length"])
            r["expressiveness"] = expressiveness_of(np.asarray(self.pspi[s]), np.asarray(self.label[s]))
        self.meta["expressiveness_definition"] = EXPRESSIVENESS_DEFINITION

    @property
    def stats(self) -> dict:
        return self.meta["stats"]

    def split(self, name: str) -> list[int]:
        return [i for i, r in enumerate(self.recordings) if r["split"] == name]

    def resting_face(self, rec: int) -> np.ndarray | None:
        """Recording ``rec``'s resting face (:func:`resting_face_of`), read on first use: it reads all its frames."""
        if rec not in self._resting:
            r = self.recordings[rec]
            s = slice(r["offset"], r["offset"] + r["length"])
            self._resting[rec] = resting_face_of(self.frames[s], self.label[s])
        return self._resting[rec]

    def find(self, name: str) -> int:
        for i, r in enumerate(self.recordings):
            if r["name"] == name:
                return i
        raise PainDiffusionError(f"no recording {name!r}; known: {', '.join(r['name'] for r in self.recordings[:8])} ...", self.path)

    def window(self, rec: int, start: int, length: int, history: int = 0) -> Window:
        """Frames ``start:start+length`` of recording ``rec``; the stimulus also covers ``history`` frames before
        (repeating the first value where the recording has none)."""
        r = self.recordings[rec]
        if start < 0 or start + length > r["length"]:
            raise PainDiffusionError(f"window {start}:{start + length} is outside recording {r['name']} ({r['length']} frames)")
        a, b = r["offset"] + start, r["offset"] + start + length
        h0 = max(r["offset"], a - history)
        stim = np.asarray(self.stimulus[h0:b])
        if len(stim) < history + length:
            stim = np.concatenate([np.full(history + length - len(stim), stim[0], np.float32), stim])
        e = r["emotion"]
        x = r["expressiveness"]
        return Window(np.asarray(self.frames[a:b]), stim, np.asarray(self.pspi[a:b]), np.asarray(self.label[a:b]),
                      EMOTIONS.index(e) if e else -1, float("nan") if x is None else float(x), rec, start,
                      r.get("calibration"), self.resting_face(rec))

    def change_points(self, recs: list[int]) -> np.ndarray:
        """(rec, frame) pairs where the label changes: stimulus onsets and offsets."""
        out = []
        for i in recs:
            r = self.recordings[i]
            lab = self.label[r["offset"]: r["offset"] + r["length"]]
            for f in np.flatnonzero(np.diff(lab) != 0) + 1:
                out.append((i, int(f)))
        return np.array(out, dtype=np.int64).reshape(-1, 2)


def balance_weights(values: list[float | None], power: float, bins: int = 8) -> np.ndarray:
    """Per-recording weight (1 / share of recordings in its expressiveness bin) ** power, mean 1: with power 1,
    every bin of the trained range is drawn equally often, so the few very expressive subjects at the top of the
    range are seen as often as the many stoic ones (an uneven cohort otherwise leaves the top barely learned).
    Recordings of unknown expressiveness keep weight 1."""
    x = np.array([np.nan if v is None else float(v) for v in values], np.float64)
    w = np.ones(len(x))
    known = np.isfinite(x)
    if power == 0 or known.sum() < 2 or np.ptp(x[known]) == 0:
        return w
    edges = np.linspace(x[known].min(), x[known].max(), bins + 1)[1:-1]
    b = np.digitize(x[known], edges)
    share = np.bincount(b, minlength=bins)[b] / known.sum()
    w[known] = share ** -power
    return w / w.mean()


class WindowSampler:
    """Training windows: a share placed around stimulus changes (so onsets and offsets are seen often), the
    rest uniformly at random; ``balance`` > 0 draws subjects of rare expressiveness more often
    (:func:`balance_weights`). Window ``i`` of epoch ``e`` is a pure function of (seed, e, i): reproducible."""

    def __init__(self, data: PackedData, split: str, length: int, history: int = 0,
                 change_fraction: float = 0.5, seed: int = 0, balance: float = 0.0):
        self.data, self.length, self.history = data, length, history
        self.change_fraction, self.seed = change_fraction, seed
        self.recs = [i for i in data.split(split) if data.recordings[i]["length"] >= length]
        if not self.recs:
            raise PainDiffusionError(f"split {split!r} has no recording of at least {length} frames", data.path)
        lengths = np.array([data.recordings[i]["length"] - length + 1 for i in self.recs], np.float64)
        rec_weight = balance_weights([data.recordings[i]["expressiveness"] for i in self.recs], balance)
        self.weights = lengths * rec_weight / (lengths * rec_weight).sum()  # uniform over window starts when balance = 0
        self.changes = data.change_points(self.recs)
        by_rec = dict(zip(self.recs, rec_weight))
        cw = np.array([by_rec[int(r)] for r in self.changes[:, 0]], np.float64)
        self.change_weights = cw / cw.sum() if balance and len(cw) else None  # None: uniform over change points

    def sample(self, i: int, epoch: int = 0) -> Window:
        rng = np.random.default_rng([self.seed, epoch, i])
        if len(self.changes) and rng.random() < self.change_fraction:
            k = rng.integers(len(self.changes)) if self.change_weights is None else rng.choice(len(self.changes), p=self.change_weights)
            rec, f = self.changes[k]
            n = self.data.recordings[rec]["length"]
            start = int(np.clip(f - rng.integers(0, self.length), 0, n - self.length))
        else:
            rec = self.recs[rng.choice(len(self.recs), p=self.weights)]
            start = int(rng.integers(0, self.data.recordings[rec]["length"] - self.length + 1))
        return self.data.window(int(rec), start, self.length, self.history)
