"""Videos → face sequences (``facs``, 25 fps, PSPI included): one file, a folder, or a cluster shard of a corpus.

``extract_video`` tracks and fits one video. ``extract_many`` runs over many, one worker process per core,
each file written atomically to ``OUT/<name>.npz`` — a file already there is finished and skipped, so a killed
run resumes where it stopped — and one failure (a truncated or unreadable file) is reported on one line
while the other files go on.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..biovid import true_runs
from ..errors import PainDiffusionError
from ..files import claim_folder
from ..facespace import FACS
from ..progress import progress as progress_bar
from ..sequence import FPS, FaceSequence
from .fit import fit_frames
from .landmarks import IMAGE_SUFFIXES, Landmarks, quiet_native_stderr, track_video

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
KIND = "extracted faces"  # the kind its folder's marker records (files.MARKER)
MAX_GAP_S = 0.5  # gaps without a face up to this long are interpolated silently; longer ones are reported


def fill_gaps(frames: np.ndarray, found: np.ndarray, max_gap: int) -> tuple[np.ndarray, list[list[int]]]:
    """Linearly interpolate frames without a face (held constant before the first and after the last face).
    Returns the filled frames and the [start, end) frame ranges of gaps longer than ``max_gap``."""
    t = np.arange(len(frames))
    out = frames.copy()
    for c in range(frames.shape[1]):
        out[:, c] = np.interp(t, t[found], frames[found, c])
    long_gaps = [[a, b] for a, b in true_runs(~found) if b - a > max_gap]
    return out, long_gaps


def landmarks_to_sequence(lm: Landmarks, neutral: np.ndarray | None = None, max_gap_s: float = MAX_GAP_S) -> FaceSequence:
    """Fit tracked landmarks: ``facs`` frames at 25 fps, gaps filled, their extent in ``meta``."""
    found = lm.found
    where = lm.meta.get("source")
    if not found.any():
        raise PainDiffusionError(f"no face found in any of its {len(lm)} frames", where)
    fitted, _, _ = fit_frames(lm.points[found], neutral=neutral)
    frames = np.full((len(lm), FACS.dim), np.nan, np.float32)
    frames[found] = fitted
    frames, gaps = fill_gaps(frames, found, int(round(max_gap_s * FPS)))
    meta = {"source": where, "tracker": "mediapipe 0.10.21 face_mesh (refined)", "face_found": float(found.mean()),
            "long_gaps": gaps, "image_size": list(lm.image_size)}
    return FaceSequence(FACS, frames, meta=meta)


def extract_video(path: str | os.PathLike, neutral: np.ndarray | None = None, max_gap_s: float = MAX_GAP_S) -> FaceSequence:
    """A video (or a photo) → its ``facs`` face sequence at 25 fps (PSPI in ``.pspi``)."""
    return landmarks_to_sequence(track_video(path), neutral, max_gap_s)


def pspi_as_seen(path: str | os.PathLike) -> np.ndarray:
    """PSPI per frame of a rendered (or any) face video as a viewer's tracker reads it: extract → PSPI.

    Set beside the PSPI a model generated, it says how much of the generated pain a viewer can actually see."""
    return extract_video(path).pspi


# ---- many files ---------------------------------------------------------------------------------------------
def find_videos(inputs: list[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(video, output name) pairs: files as given, folders searched recursively; names keep sub-folders."""
    out: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES and not p.name.startswith("."):
                    out.append((p, str(p.relative_to(item).with_suffix(""))))
        elif item.is_file():
            out.append((item, item.stem))
        else:
            raise PainDiffusionError("no such file or folder", item)
    names = [n for _, n in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise PainDiffusionError(f"two inputs would both be written as {dup}.npz; extract them into separate folders")
    return out


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'K/N' (0 ≤ K < N) → (K, N); None → (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise PainDiffusionError(f"--shard must be K/N with integers, e.g. 3/16 (got {shard!r})") from None
    if not 0 <= k < n:
        raise PainDiffusionError(f"--shard K/N needs 0 <= K < N (got {shard}); with Slurm use $SLURM_ARRAY_TASK_ID/N and --array=0-(N-1)")
    return k, n


@dataclass
class Outcome:
    name: str
    path: str | None = None  # written file, None when skipped or failed
    frames: int = 0
    error: str | None = None
    skipped: bool = False
    long_gaps: int = 0


def _extract_one(video: str, target: str, labels: dict | None) -> Outcome:
    """Worker: extract one video and write its sequence (runs in a child process)."""
    from .labels import emotion_from_aus

    name = Path(target).stem
    try:
        with quiet_native_stderr():  # MediaPipe's threads log notices to fd 2; our errors are returned, not printed
            seq = extract_video(video)
        label = (labels or {}).get(Path(video).stem, {})
        seq.meta["emotion"] = label.get("emotion") or emotion_from_aus(seq.frames, seq.pspi)
        seq.meta["emotion_from"] = "labels file" if label.get("emotion") else "AU rule"
        if "subject" in label:
            seq.meta["subject"] = label["subject"]
        seq.save(target)
        return Outcome(name, target, len(seq), long_gaps=len(seq.meta["long_gaps"]))
    except PainDiffusionError as e:
        return Outcome(name, error=str(e))
    except Exception as e:  # a worker must not take the whole run down; report the file and go on
        return Outcome(name, error=f"{video}: {type(e).__name__}: {str(e).strip()[:160]}")


def extract_many(inputs, out: str | os.PathLike, shard: str | None = None, workers: int | None = None,
                 labels: dict | None = None, progress: bool = True) -> list[Outcome]:
    """Extract every video under ``inputs`` (this shard's share) into ``out``; finished files are skipped. ``out`` is
    claimed as the overwrite policy claims a training run's folder (:func:`~paindiffusion.files.claim_folder`):
    new, empty or extracted faces of ours, never an input or a folder of something else."""
    out = Path(out)
    k, n = parse_shard(shard)
    todo = find_videos(inputs)[k::n]
    claim_folder(out, KIND, inputs=tuple(v for v, _ in todo))
    outcomes, jobs = [], []
    for video, name in todo:
        target = out / f"{name}.npz"
        if target.is_file():
            outcomes.append(Outcome(name, str(target), skipped=True))
        else:
            jobs.append((str(video), str(target)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    with progress_bar(desc="extracting", total=len(jobs), unit="video", show=progress) as bar:
        if workers == 1:
            for video, target in jobs:
                outcomes.append(_extract_one(video, target, labels))
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn: a fresh interpreter per worker (MediaPipe and GL state must not be forked)
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(_extract_one, v, t, labels) for v, t in jobs]
                for f in as_completed(futures):
                    outcomes.append(f.result())
                    bar.update(1)
    return outcomes
