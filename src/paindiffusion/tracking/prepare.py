"""BioVid Part C-style tree of videos → the packed dataset ``train`` reads (``paindiffusion prepare-biovid``).

Input, one folder per recording (what BioVid ships, with the face video in place of a face array)::

    ROOT/<rec>/<rec>.mp4          the face video (any rate; read at 25 fps) — or any video named <rec>.*
    ROOT/<rec>/<rec>_temp.csv     32 Hz temperature (°C), columns time, temperature (tab- or comma-separated)
    ROOT/<rec>/<rec>_label.csv    32 Hz stimulus label (0 = baseline, 1-4 = stimulus level), columns time, label
    ROOT/<rec>/<rec>.json         optional: subject, emotion

Steps: check every recording (streams, JSON, video or face array) before writing anything → extract every video
(in parallel, resumable: ``DATA.work/faces/<rec>.npz`` are kept and reused) → a temporary raw tree in the layout
of :mod:`paindiffusion.rawdata` (face arrays, the streams, a JSON with the subject, the emotion and where it came
from), removed afterwards → :func:`paindiffusion.dataset.pack`, which aligns frame f with
stream sample ⌊f/25·32⌋ (:func:`paindiffusion.biovid.stimulus_index`), checks every temperature and splits by
subject. With ``faces_from`` the face arrays come from another tool (EMOCA in the ``flame`` space, an AU
detector in ``facs``) and no video is read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..dataset import TEST_SHARE, VAL_SHARE
from ..errors import PainDiffusionError
from ..files import TMP_PREFIX, check_output_dir
from ..facespace import flame_from_npz_arrays, get_space
from ..progress import progress as progress_bar
from ..rawdata import read_meta, read_streams
from ..sequence import FaceSequence
from .extract import VIDEO_SUFFIXES, extract_many
from .labels import emotion_from_aus


def find_video(d: Path) -> Path:
    name = d.name
    for p in sorted(d.iterdir()):
        if p.stem == name and p.suffix.lower() in VIDEO_SUFFIXES:
            return p
    raise PainDiffusionError(f"no video named {name}.mp4 (or .avi, .mov, ...) next to its streams", d)


def _external_faces(src: Path, name: str, space: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Face array (and PSPI if given) for one recording from a folder of another tool's output."""
    fs = get_space(space)
    for p in (src / f"{name}_face.npy", src / f"{name}.npy", src / name / f"{name}_face.npy"):
        if p.is_file():
            frames = fs.validate(np.load(p, allow_pickle=False), p)
            break
    else:
        for p in (src / f"{name}.npz", src / f"{name}_face.npz", src / name / f"{name}.npz"):
            if p.is_file():
                z = np.load(p, allow_pickle=False)
                frames = flame_from_npz_arrays(z, p) if "expr" in z else fs.validate(z["frames"], p)
                break
        else:
            raise PainDiffusionError(f"no face array for recording {name} (looked for {name}_face.npy, {name}.npy, "
                                     f"{name}.npz with 'frames' or FLAME 'expr'/'jaw_pose')", src)
    pspi_path = src / f"{name}_pspi.npy"
    return frames, (np.load(pspi_path, allow_pickle=False) if pspi_path.is_file() else None)


def find_biovid_recordings(root: Path, videos: bool) -> list[Path]:
    """The recording folders of a BioVid-style tree: every sub-folder holding a video or a CSV. Each must have
    ``<rec>_temp.csv`` and ``<rec>_label.csv`` (and, when faces come from videos, ``<rec>.mp4`` or another
    video): a misnamed stream is refused, naming the folder, instead of the recording being left out."""
    if not root.is_dir():
        raise PainDiffusionError("not a directory; pass the BioVid-style tree (ROOT/<rec>/<rec>_temp.csv, ...)", root)
    recs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [f for f in d.iterdir() if f.is_file()]
        if not any(f.suffix.lower() in (".csv", *VIDEO_SUFFIXES) for f in files):
            continue
        for need in (f"{d.name}_temp.csv", f"{d.name}_label.csv"):
            if not (d / need).is_file():
                found = sorted(f.name for f in files if f.suffix.lower() == ".csv")
                raise PainDiffusionError(f"recording has no {need} (its CSV files: {', '.join(found) or 'none'}); "
                                         "name the streams <folder>_temp.csv and <folder>_label.csv", d)
        if videos:
            find_video(d)
        recs.append(d)
    if not recs:
        raise PainDiffusionError("no recordings found (expected ROOT/<rec>/<rec>_temp.csv, _label.csv and a video)", root)
    return recs


def prepare_biovid(root: str | os.PathLike, out: str | os.PathLike, *, faces_from: str | os.PathLike | None = None,
                   face_space: str = "facs", labels: dict | None = None, workers: int | None = None,
                   val: float = VAL_SHARE, test: float = TEST_SHARE, seed: int = 0, overwrite: bool = False,
                   progress: bool = True) -> tuple[Path, list]:
    """Build the packed dataset ``out`` from a BioVid-style tree; returns (out, extraction outcomes).

    Everything is checked before anything is written: the output, every recording's streams and JSON, and its
    video or face array. Only extracted faces are kept between runs (``OUT.work/faces``, resumable); the raw
    tree handed to :func:`~paindiffusion.dataset.pack` is a temporary that is always removed."""
    from ..dataset import KIND, pack

    root, out = Path(root), Path(out)
    get_space(face_space)
    recs = find_biovid_recordings(root, videos=faces_from is None)
    sources = (root, *recs, *([faces_from] if faces_from is not None else []))
    check_output_dir(out, overwrite, sources, kind=KIND)
    faces = {}
    for d in progress_bar(recs, "prepare-biovid: checking", unit="recording"):
        read_meta(d, face_space)
        read_streams(d)
        if faces_from is not None:
            faces[d.name] = _external_faces(Path(faces_from), d.name, face_space)
    outcomes = []
    work = out.with_name(out.name + ".work")
    if faces_from is None:
        videos = [find_video(d) for d in recs]
        outcomes = extract_many(videos, work / "faces", workers=workers, labels=labels, progress=progress)
        failed = [o for o in outcomes if o.error]
        if failed:
            raise PainDiffusionError(f"{len(failed)} of {len(videos)} videos failed (first: {failed[0].error}); "
                                     "fix or remove them and run again (finished videos are kept)")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}.", suffix=f".{out.name}.raw", dir=out.parent))
    try:
        for d in recs:
            _raw_recording(d, raw / d.name, labels, faces.get(d.name), work / "faces", face_space, faces_from)
        return pack(raw, out, val=val, test=test, seed=seed, default_space=face_space, overwrite=overwrite,
                    source=str(root)), outcomes
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def _raw_recording(d: Path, target: Path, labels: dict | None, external, extracted: Path, face_space: str,
                   faces_from) -> None:
    """One recording in the layout of :mod:`paindiffusion.rawdata`: its streams, its face array and a JSON
    with the subject, the emotion and where the faces came from."""
    name = d.name
    meta, _, _ = read_meta(d, face_space)
    meta.update((labels or {}).get(name, {}))
    target.mkdir(parents=True)
    for stream in ("temp", "label"):
        shutil.copyfile(d / f"{name}_{stream}.csv", target / f"{name}_{stream}.csv")
    if external is None:
        seq = FaceSequence.load(extracted / f"{name}.npz")
        frames, pspi, space = seq.frames, None, seq.space.name
        meta.setdefault("emotion", seq.meta.get("emotion"))
        meta["faces"] = {"from": "paindiffusion extract", "face_found": seq.meta.get("face_found"),
                         "long_gaps": seq.meta.get("long_gaps")}
    else:
        (frames, pspi), space = external, face_space
        if "emotion" not in meta and get_space(space).has_pspi:
            meta["emotion"] = emotion_from_aus(frames)
        meta["faces"] = {"from": str(faces_from)}
    meta["face_space"] = space
    meta.setdefault("subject", name)
    np.save(target / f"{name}_face.npy", frames)
    if pspi is not None:
        np.save(target / f"{name}_pspi.npy", np.asarray(pspi, np.float32))
    (target / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
