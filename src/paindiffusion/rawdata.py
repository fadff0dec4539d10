"""Reading a BioVid-Part-C-layout tree: the one code path for the synthetic cohort and real recordings.

Layout (one folder per recording, as ``paindiffusion cohort`` writes it)::

    RAW/<rec>/<rec>_temp.csv    tab-separated, columns time (s), temperature (°C), 32 Hz
    RAW/<rec>/<rec>_label.csv   tab-separated, columns time (s), label (0 = baseline, 1-4 = stimulus level), 32 Hz
    RAW/<rec>/<rec>_face.npy    per-video-frame face array at 25 fps, (frames, space.dim) float
                                (or <rec>_face.csv with a header naming the space's channels)
    RAW/<rec>/<rec>.json        optional: subject, emotion (AffectNet class), face_space, ...
    RAW/<rec>/<rec>_pspi.npy    optional: PSPI per frame from an AU detector (for spaces without AUs)

For real BioVid data, the face arrays are extracted elsewhere (EMOCA for ``flame``, an AU detector for ``facs``).
Every problem is reported as one line naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .biovid import FPS, STIMULUS_HZ, check_temperature, stimulus_index
from .errors import PainDiffusionError
from .facespace import EMOTIONS, FaceSpace, emotion_index, get_space
from .tables import Table


@dataclass
class RawRecording:
    name: str
    subject: str
    space: FaceSpace
    frames: np.ndarray  # (T, dim) at 25 fps
    stimulus: np.ndarray  # (T,) °C per frame, aligned by floor(frame / 25 × 32)
    label: np.ndarray  # (T,) int8 per frame
    pspi: np.ndarray | None  # (T,) or None when it cannot be known
    emotion: str | None  # AffectNet class, None when unknown
    meta: dict


def iter_stream(path: Path, column: str, what: str = "") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(time, values) chunks of a table with columns ``time`` (s) and ``column`` (comma, semicolon or tab
    separated), validated as they come: numbers, no NaN/inf, time strictly increasing (also across chunks)."""
    what = what or f"table with columns 'time' (s) and '{column}'"
    last_t = -np.inf
    n = 0
    with Table(path, what) as table:
        it, iv = table.require("time", column)
        for line, a in table.chunks([it, iv]):
            t, v = a[:, 0], a[:, 1]
            bad = ~np.isfinite(v) | ~np.isfinite(t)
            if bad.any():
                raise PainDiffusionError(f"NaN/inf value at line {line + int(np.argmax(bad))}; fill or cut those rows", path)
            step = np.diff(np.concatenate([[last_t], t]))
            if np.any(step <= 0):
                raise PainDiffusionError(f"time is not strictly increasing (line {line + int(np.argmax(step <= 0))})", path)
            last_t = t[-1]
            n += len(t)
            yield t, v
    if n == 0:
        raise PainDiffusionError("no samples after the header", path)


def read_stream(path: Path, column: str, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(time, values) of a whole stream (BioVid's 32 Hz files); see :func:`iter_stream`."""
    if not path.is_file() and not what:
        raise PainDiffusionError(f"missing file; each recording needs {path.name}", path)
    parts = list(iter_stream(path, column, what))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_face(d: Path, name: str, space: FaceSpace) -> np.ndarray:
    npy, csv = d / f"{name}_face.npy", d / f"{name}_face.csv"
    if npy.is_file():
        try:
            a = np.load(npy, allow_pickle=False)
        except Exception as e:
            raise PainDiffusionError(f"unreadable .npy ({e})", npy) from None
        return space.validate(a, npy)
    if csv.is_file():
        with Table(csv, f"face CSV with a header naming the {space.name} channels") as table:
            missing = [c for c in space.channels if c not in table.header]
            if missing:
                raise PainDiffusionError(f"face CSV lacks channels {missing[:4]} of face space {space.name!r}", csv)
            parts = [a for _, a in table.chunks([table.header.index(c) for c in space.channels])]
        if not parts:
            raise PainDiffusionError("face CSV has no frames after the header", csv)
        return space.validate(np.concatenate(parts), csv)
    raise PainDiffusionError(f"missing face array; each recording needs {name}_face.npy or {name}_face.csv", d)


def read_meta(d: Path, default_space: str = "facs") -> tuple[dict, FaceSpace, str | None]:
    """A recording's optional ``<rec>.json``: (meta, face space, emotion or None), checked."""
    name = d.name
    meta_path = d / f"{name}.json"
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise PainDiffusionError(f"invalid JSON ({e.msg} at line {e.lineno})", meta_path) from None
        except (UnicodeDecodeError, RecursionError):
            raise PainDiffusionError("not a readable UTF-8 JSON file", meta_path) from None
        if not isinstance(meta, dict):
            raise PainDiffusionError(f"JSON must be an object (got {type(meta).__name__})", meta_path)
    try:
        space = get_space(meta.get("face_space", default_space))
        emotion = meta.get("emotion")
        emotion = None if emotion is None else EMOTIONS[emotion_index(emotion)]
    except PainDiffusionError as e:  # name the file that holds the bad value
        raise PainDiffusionError(str(e), meta_path if meta_path.is_file() else d) from None
    return meta, space, emotion


def read_streams(d: Path) -> tuple[np.ndarray, np.ndarray]:
    """A recording's 32 Hz temperature (°C) and label (0-4) streams, checked and of equal length."""
    name = d.name
    _, temp = read_stream(d / f"{name}_temp.csv", "temperature")
    _, label = read_stream(d / f"{name}_label.csv", "label")
    check_temperature(temp, "temperature", d / f"{name}_temp.csv")
    if np.any((label < 0) | (label > 4) | (label != np.round(label))):
        bad = label[(label < 0) | (label > 4) | (label != np.round(label))][0]
        raise PainDiffusionError(f"label {bad:g} is not one of 0-4 (0 = baseline, 1-4 = stimulus level)", d / f"{name}_label.csv")
    if len(temp) != len(label):
        raise PainDiffusionError(f"temperature has {len(temp)} samples but label has {len(label)}; both must be the same 32 Hz stream", d)
    return temp, label


def load_recording(d: Path, default_space: str = "facs") -> RawRecording:
    """Read and validate one recording folder."""
    name = d.name
    meta, space, emotion = read_meta(d, default_space)
    temp, label = read_streams(d)
    frames = _read_face(d, name, space)
    # BioVid alignment (docs/design.md §1): frame f reads stream sample floor(f / 25 × 32). Video a little longer than
    # the stream (< 1 s, e.g. a trailing partial second) is cut; a bigger gap means mismatched files.
    idx = stimulus_index(len(frames))
    usable = int(np.searchsorted(idx, len(temp)))
    # A video much shorter than the streams is just as suspicious.
    if len(frames) - usable > FPS or len(temp) / STIMULUS_HZ - len(frames) / FPS > 1.0:
        raise PainDiffusionError(
            f"face array has {len(frames)} frames ({len(frames) / FPS:.1f} s) but the streams cover "
            f"{len(temp) / STIMULUS_HZ:.1f} s; are these files from the same recording?", d)
    frames = frames[:usable]
    pspi = None
    pspi_path = d / f"{name}_pspi.npy"
    if pspi_path.is_file():
        try:
            pspi = np.load(pspi_path, allow_pickle=False)
        except Exception as e:
            raise PainDiffusionError(f"unreadable .npy ({e})", pspi_path) from None
        if pspi.ndim == 2 and pspi.shape[1] == 1:
            pspi = pspi[:, 0]
        if pspi.ndim != 1 or not np.issubdtype(pspi.dtype, np.number):
            raise PainDiffusionError(f"PSPI array must be 1-D numeric, one value per frame (got {pspi.dtype} {pspi.shape})", pspi_path)
        pspi = pspi.astype(np.float32)[:usable]
        if len(pspi) != usable or not np.isfinite(pspi).all():
            raise PainDiffusionError(f"PSPI array must have one finite value per frame ({usable})", pspi_path)
    elif space.has_pspi:
        pspi = space.pspi(frames).astype(np.float32)
    return RawRecording(
        name=name, subject=str(meta.get("subject", name)), space=space, frames=frames,
        stimulus=temp[idx[:usable]].astype(np.float32), label=label[idx[:usable]].astype(np.int8),
        pspi=pspi, emotion=emotion, meta=meta,
    )


def find_recordings(root: Path) -> list[Path]:
    """Recording folders under ``root`` (those holding ``<name>_temp.csv``), sorted by name."""
    if not root.is_dir():
        raise PainDiffusionError("not a directory; pass the folder written by 'paindiffusion cohort' or a BioVid-layout tree", root)
    dirs = sorted(p.parent for p in root.glob("*/*_temp.csv") if p.name == f"{p.parent.name}_temp.csv")
    if not dirs:
        raise PainDiffusionError("no recordings found (expected <rec>/<rec>_temp.csv, _label.csv, _face.npy)", root)
    return dirs
