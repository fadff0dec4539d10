"""Exports of face sequences for avatars and robots, and :func:`save_output`, the one entry point that
picks a writer from the output file name.

=====================  ===============================================================================
``face.mp4``           rendered video, H.264, 25 fps (``side_by_side`` adds the stimulus/PSPI panel)
``face.npz``/``.csv``  the sequence itself (:meth:`FaceSequence.save`; header names every channel)
``face.arkit.json``    ARKit-52 blendshape weights per frame (0–1) + head pose (degrees)
``face.arkit.csv``     the same as a table
``face.facs.json``     FACS-AU robot frames: AU intensities / 5 (0–1) + head pose (degrees)
``face.facs.csv``      the same as a table
``face.flame.npz``     ``expr`` (T, 100) and ``jaw_pose`` (T, 3) for FLAME-driven avatars (flame space)
=====================  ===============================================================================
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError
from ..files import atomic_file, check_output_file
from ..facespace import FACS_AUS, HEAD_CHANNELS, flame_to_npz_arrays
from ..sequence import BLOCK, FaceSequence

# Apple ARKit's 52 face blendshapes (ARFaceAnchor.BlendShapeLocation), in Apple's documented order.
# "Left"/"Right" are the subject's own sides.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

# FACS AU → ARKit blendshapes: weight = Σ gain × AU/5, clipped to [0, 1]. Most ARKit shapes are
# defined after one AU (Apple's descriptions match the FACS manual's; see also M. Ozel's widely used
# "ARKit to FACS" cheat sheet). The facs space is bilateral, so both sides get the same value.
# ARKit shapes with no facs channel stay 0: gaze (eyeLook*), jawForward/Left/Right, mouthClose,
# mouthFunnel (AU22), mouthPucker (AU18), mouthLeft/Right, mouthRoll* (AU28), cheekPuff (AU33), tongueOut (AU19).
AU_TO_ARKIT: dict[int, tuple[tuple[str, float], ...]] = {
    1: (("browInnerUp", 1.0),),  # inner brow raiser = browInnerUp
    2: (("browOuterUpLeft", 1.0), ("browOuterUpRight", 1.0)),  # outer brow raiser
    4: (("browDownLeft", 1.0), ("browDownRight", 1.0)),  # brow lowerer
    5: (("eyeWideLeft", 1.0), ("eyeWideRight", 1.0)),  # upper lid raiser widens the eye
    6: (("cheekSquintLeft", 1.0), ("cheekSquintRight", 1.0)),  # cheek raiser (orbicularis oculi, outer part)
    7: (("eyeSquintLeft", 1.0), ("eyeSquintRight", 1.0)),  # lid tightener raises the lower lid
    9: (("noseSneerLeft", 1.0), ("noseSneerRight", 1.0)),  # nose wrinkler
    10: (("mouthUpperUpLeft", 1.0), ("mouthUpperUpRight", 1.0)),  # upper lip raiser
    12: (("mouthSmileLeft", 1.0), ("mouthSmileRight", 1.0)),  # lip corner puller
    14: (("mouthDimpleLeft", 1.0), ("mouthDimpleRight", 1.0)),  # dimpler
    15: (("mouthFrownLeft", 1.0), ("mouthFrownRight", 1.0)),  # lip corner depressor
    # chin raiser pushes the lower lip up (shrugLower) and, through it, the upper lip a little
    17: (("mouthShrugLower", 1.0), ("mouthShrugUpper", 0.3)),
    20: (("mouthStretchLeft", 1.0), ("mouthStretchRight", 1.0)),  # lip stretcher
    # ARKit has no lip tightener; mouthPress (AU24 lip presser) is the nearest: both thin and tense the lips
    23: (("mouthPressLeft", 1.0), ("mouthPressRight", 1.0)),
    # lips part without the jaw: mostly the lower lip drops (as in our rig), plus a small jaw opening
    25: (("mouthLowerDownLeft", 0.6), ("mouthLowerDownRight", 0.6), ("jawOpen", 0.1)),
    # jaw drop; ARKit's full jawOpen is closer to AU27 (mouth stretch), so AU26 at 5 gives 0.7
    26: (("jawOpen", 0.7),),
    43: (("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)),  # eyes closed
}


def _mapping_matrix() -> np.ndarray:
    m = np.zeros((len(FACS_AUS), len(ARKIT_NAMES)), np.float32)
    for au, targets in AU_TO_ARKIT.items():
        for name, gain in targets:
            m[FACS_AUS.index(au), ARKIT_NAMES.index(name)] += gain
    return m


def _need_facs(seq: FaceSequence, what: str):
    if seq.space.name != "facs":
        raise PainDiffusionError(f"{what} export needs a facs-space sequence, this one is {seq.space.name!r}; "
                                 "use .flame.npz, .npz or .csv")


def arkit_weights(seq: FaceSequence) -> np.ndarray:
    """(T, 52) ARKit blendshape weights in [0, 1] (order :data:`ARKIT_NAMES`)."""
    _need_facs(seq, "ARKit")
    return arkit_from_facs(seq.frames)


def arkit_from_facs(frames: np.ndarray) -> np.ndarray:
    """facs-space frames (..., 20) → ARKit weights (..., 52): the one AU → ARKit mapping (files and live OSC)."""
    return np.clip(np.asarray(frames)[..., : len(FACS_AUS)] / 5.0 @ _mapping_matrix(), 0.0, 1.0)


def robot_frames(seq: FaceSequence) -> tuple[list[str], np.ndarray]:
    """FACS-AU robot frames (PyLips / FACSvatar style): AU intensities on 0–1 (AU/5), head pose in degrees."""
    _need_facs(seq, "FACS-AU")
    return ROBOT_NAMES, _robot_rows(seq.frames)


ROBOT_NAMES = [f"AU{k}" for k in FACS_AUS] + [f"{h}_deg" for h in HEAD_CHANNELS]


def _robot_rows(frames: np.ndarray) -> np.ndarray:
    return np.concatenate([np.clip(frames[:, : len(FACS_AUS)] / 5.0, 0.0, 1.0), frames[:, len(FACS_AUS):]], 1)


class LazyRows:
    """Rows derived from face frames block by block, so an export of hours of frames never holds a derived
    whole-sequence array (e.g. 52 ARKit weights per frame) in memory: ``rows[a:b]`` = ``fn(frames[a:b])``."""

    def __init__(self, frames: np.ndarray, fn):
        self.frames, self.fn = frames, fn

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, block: slice) -> np.ndarray:
        return self.fn(self.frames[block])


def _atomic(path: Path, write, binary: bool = False) -> Path:
    """Write through :func:`~paindiffusion.files.atomic_file`: no half-written file is ever left."""
    with atomic_file(path, text=not binary) as f:
        write(f)
    return path


def _write_table(path: Path, seq: FaceSequence, fmt: str, names: list[str], values: np.ndarray, extra: dict) -> Path:
    """JSON ({format, fps, channels, frames, ...}) or CSV (header: frame, time, every channel)."""
    def rows_json(f, a: np.ndarray, decimals: int):
        """A JSON list of rows written block by block (no whole-sequence Python list)."""
        f.write("[")
        for i in range(0, len(a), BLOCK):
            f.write(("," if i else "") + json.dumps(np.round(a[i:i + BLOCK].astype(np.float64), decimals).tolist(),
                                                     separators=(",", ":"))[1:-1])
        f.write("]")

    def text(f):
        if path.name.lower().endswith(".json"):
            plain = {k: v for k, v in extra.items() if not isinstance(v, dict)}
            head = {"format": fmt, "fps": seq.fps, "channels": names, **plain}
            f.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"frames":')
            rows_json(f, values, 4)
            for k, v in extra.items():  # nested blocks ({"channels": [...], "frames": rows}): rows streamed too
                if isinstance(v, dict):
                    f.write(f',"{k}":{{"channels":{json.dumps(v["channels"])},"frames":')
                    rows_json(f, v["frames"], 3)
                    f.write("}")
            for k in ("stimulus", "pspi"):
                v = getattr(seq, k)
                if v is not None:
                    f.write(f',"{k}":')
                    rows_json(f, v, 3)
            f.write("}")
        else:
            w = csv.writer(f)
            w.writerow(["frame", "time", *names])
            for a in range(0, len(values), BLOCK):
                block = values[a:a + BLOCK]
                w.writerows([a + j, f"{(a + j) / seq.fps:.2f}", *(f"{x:.4f}" for x in row)] for j, row in enumerate(block))
    return _atomic(path, text)


def save_flame_npz(path: Path, seq: FaceSequence) -> Path:
    if seq.space.name != "flame":
        raise PainDiffusionError(f"a .flame.npz needs a flame-space sequence (this one is {seq.space.name!r}); "
                                 "facs sequences export as .arkit.json or .facs.json for avatars")

    def write(f):
        np.savez(f, fps=np.int32(seq.fps), **flame_to_npz_arrays(seq.frames))
    return _atomic(path, write, binary=True)


OUTPUT_SUFFIXES = (".mp4", ".npz", ".csv", ".arkit.json", ".arkit.csv", ".facs.json", ".facs.csv", ".flame.npz")


def check_output(path: str | os.PathLike, side_by_side: bool = False) -> Path:
    """Refuse an output name before any work is done: unknown type, or --side-by-side without video."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(OUTPUT_SUFFIXES):
        raise PainDiffusionError(f"unknown output type; use {', '.join(OUTPUT_SUFFIXES)}", path)
    if side_by_side and not name.endswith(".mp4"):
        raise PainDiffusionError("--side-by-side only applies to .mp4 output", path)
    return path


def check_new_output(path: str | os.PathLike, side_by_side: bool = False, overwrite: bool = False,
                     inputs: tuple = ()) -> Path:
    """:func:`check_output`, and the overwrite policy (:func:`~paindiffusion.files.check_output_file`): never an
    input; an existing file only with ``overwrite`` and only if it is an output of ours of the same type."""
    path = check_output(path, side_by_side)
    suffix = next(s for s in sorted(OUTPUT_SUFFIXES, key=len, reverse=True) if path.name.lower().endswith(s))
    check_output_file(path, overwrite, inputs, f"{suffix} output", written_by_us)
    return path


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _zip_names(path: Path) -> set[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return set(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return set()


def written_by_us(path: str | os.PathLike) -> bool:
    """Whether an existing file is an output of ours of the type its name says: an mp4 with our tag, a JSON or
    CSV export with our header, an npz with our arrays."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".mp4"):
        from .video import is_our_video
        return is_our_video(path)
    if name.endswith(".json"):
        return _head(path, 32).startswith((b'{"format":"arkit-52"', b'{"format":"facs-au"'))
    if name.endswith((".arkit.csv", ".facs.csv")):
        names = list(ARKIT_NAMES) + ROBOT_NAMES[-3:] if name.endswith(".arkit.csv") else ROBOT_NAMES
        return _head(path, 4096).split(b"\r\n")[0].decode("utf-8", "replace") == ",".join(["frame", "time", *names])
    if name.endswith(".flame.npz"):
        return _zip_names(path) == {"fps.npy", "jaw_pose.npy", "expr.npy"}
    if name.endswith(".npz"):
        return {"meta.npy", "frames.npy", "channels.npy"} <= _zip_names(path)
    if name.endswith(".csv"):
        return _head(path, 64).startswith(b"frame,time,stimulus,pspi,")
    return False


def save_output(path: str | os.PathLike, seq: FaceSequence, side_by_side: bool = False, size: int = 512) -> Path:
    """Write ``seq`` in the format named by ``path``'s extension (see the module docstring)."""
    path = check_output(path, side_by_side)
    name = path.name.lower()
    if name.endswith(".mp4"):
        from .video import save_video
        return save_video(path, seq, side_by_side=side_by_side, size=size)
    if name.endswith((".arkit.json", ".arkit.csv")):
        _need_facs(seq, "ARKit")
        head = {"head_pose": {"channels": [f"{h}_deg" for h in HEAD_CHANNELS],
                              "frames": LazyRows(seq.frames, lambda f: f[:, len(FACS_AUS):])}}
        if name.endswith(".csv"):
            rows = LazyRows(seq.frames, lambda f: np.concatenate([arkit_from_facs(f), f[:, len(FACS_AUS):]], 1))
            return _write_table(path, seq, "arkit-52", list(ARKIT_NAMES) + ROBOT_NAMES[-3:], rows, {})
        return _write_table(path, seq, "arkit-52", list(ARKIT_NAMES), LazyRows(seq.frames, arkit_from_facs), head)
    if name.endswith((".facs.json", ".facs.csv")):
        _need_facs(seq, "FACS-AU")
        return _write_table(path, seq, "facs-au", ROBOT_NAMES, LazyRows(seq.frames, _robot_rows),
                            {"units": "AU intensity / 5 (0-1); head pose in degrees"})
    if name.endswith(".flame.npz"):
        return save_flame_npz(path, seq)
    if name.endswith((".npz", ".csv")):
        return seq.save(path)
    raise AssertionError(f"unhandled output type {name}")  # check_output admits only the names handled above
