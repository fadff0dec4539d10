"""Face sequences → H.264 mp4 at 25 fps, optionally with the stimulus and PSPI curves under the face.

Writing is atomic: frames go to a hidden temporary file next to the target, renamed into place only
after the encoder has flushed; on any error nothing (not even a partial file) is left behind.
The curve panel is drawn by matplotlib once; per frame only a cursor line is painted with numpy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError
from ..files import atomic_file
from ..progress import progress
from ..sequence import FPS, FaceSequence

CURSOR = np.array([200, 30, 30], np.uint8)
VIDEO_TAG = "written by paindiffusion"  # the mp4's comment: what --overwrite recognises as our video
MAX_SIZE = 4096  # pixels; one frame is size² × 3 bytes in several buffers
BLOCK = 256  # frames deformed at once (256 × 468 vertices × 3 × 4 bytes ≈ 1.4 MB)


def write_mp4(path: str | os.PathLike, images: Iterable[np.ndarray], fps: int = FPS, crf: int = 18) -> Path:
    """Encode uint8 RGB images (all the same even width and height) as H.264 (yuv420p) mp4; atomic."""
    import av

    path = Path(path)
    with atomic_file(path) as f, av.open(f, mode="w", format="mp4") as container:
        container.metadata["comment"] = VIDEO_TAG
        stream = None
        for img in images:
            if stream is None:
                h, w = img.shape[:2]
                if h % 2 or w % 2:
                    raise PainDiffusionError(f"video frames must have even width and height for H.264, got {w}x{h}")
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                # crf 18 is visually lossless; "veryfast" keeps encoding well above real time on one core
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise PainDiffusionError("no frames to write", path)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return path


def is_our_video(path: str | os.PathLike) -> bool:
    """An mp4 that :func:`write_mp4` wrote (its container comment is :data:`VIDEO_TAG`)."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.metadata.get("comment") == VIDEO_TAG
    except (OSError, ValueError, av.FFmpegError):
        return False


class CurvePanel:
    """Stimulus (°C) and PSPI over time, drawn once; :meth:`frame` adds a cursor at one frame's time. With
    ``pspi=False`` only the stimulus is drawn (a perceptual study shows the heat, not the face's score)."""

    def __init__(self, seq: FaceSequence, width: int, height: int, pspi: bool = True):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        t = np.arange(len(seq)) / seq.fps
        # a bare Figure on an Agg canvas: no pyplot, no global backend switch in the user's process
        fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        # margins for the tick labels, "°C" and "time (s)" however small the panel
        side, bottom = min(0.3, max(0.1, 44 / width)), min(0.6, max(0.22, 38 / height))
        ax = fig.add_axes((side, bottom, 1 - 2 * side, 0.9 - bottom))
        handles = []
        if seq.stimulus is not None:
            handles += ax.plot(t, seq.stimulus, color="tab:orange", lw=1.5, label="stimulus (°C)")
            ax.set_ylabel("°C", fontsize=8)
        ax.set_xlim(t[0], max(t[-1], t[0] + 1 / seq.fps))
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        if pspi and seq.pspi is not None:
            ax2 = ax.twinx()
            handles += ax2.plot(t, seq.pspi, color="tab:blue", lw=1.5, label="PSPI")
            ax2.set_ylim(0, 16)
            ax2.set_ylabel("PSPI", fontsize=8)
            ax2.tick_params(labelsize=7)
        if handles:
            ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, ncol=2)
        canvas.draw()
        self.background = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        # Pixel columns of each frame's time, and the plot's rows (matplotlib's origin is bottom-left).
        self.columns = np.round(ax.transData.transform(np.stack([t, np.zeros_like(t)], 1))[:, 0]).astype(int)
        (x0, y0), (x1, y1) = ax.bbox.get_points()
        self.rows = slice(int(round(height - y1)), int(round(height - y0)))

    def frame(self, i: int) -> np.ndarray:
        img = self.background.copy()
        c = self.columns[i]
        img[self.rows, max(c - 1, 0) : c + 1] = CURSOR
        return img


def render_frames(seq: FaceSequence, size: int = 512, side_by_side: bool = False, beside: tuple = (),
                  pspi: bool = True) -> Iterator[np.ndarray]:
    """Rendered images of a ``facs`` sequence (face on top, curve panel under it when ``side_by_side``).
    ``beside``: more sequences of the same length, drawn to the right of the first by the same renderer and
    camera (tries side by side); the panel then spans them all and shows ``seq``'s curves (PSPI if ``pspi``)."""
    from .renderer import Renderer
    from .rig import FaceRig

    seqs = (seq, *beside)
    for s in seqs:
        if s.space.name != "facs":
            raise PainDiffusionError(
                f"only facs-space sequences can be rendered (this one is {s.space.name!r}: rendering FLAME needs "
                "the licensed FLAME model); export it with -o out.flame.npz for a FLAME-driven avatar"
            )
        if len(s) != len(seq):
            raise PainDiffusionError(f"sequences shown side by side must have the same length ({len(s)} vs {len(seq)} frames)")
    rig = FaceRig()
    panel = CurvePanel(seq, size * len(seqs), (size * 3 // 8) // 2 * 2, pspi) if side_by_side else None
    renderer = Renderer(size)
    try:
        with progress(desc="render", total=len(seq), unit="frame") as bar:
            for a in range(0, len(seq), BLOCK):  # deformed meshes in blocks: memory does not grow with length
                faces = [renderer.render_many(rig.deform(s.frames[a:a + BLOCK])) for s in seqs]
                for i, imgs in enumerate(zip(*faces), start=a):
                    row = imgs[0] if len(imgs) == 1 else np.concatenate(imgs, 1)
                    yield np.concatenate([row, panel.frame(i)], 0) if panel else row
                bar.update(min(BLOCK, len(seq) - a))
    finally:
        renderer.release()


def save_video(path: str | os.PathLike, seq: FaceSequence, side_by_side: bool = False, size: int = 512) -> Path:
    """Render a sequence to an H.264 mp4 at the sequence's frame rate (25 fps)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 64 or size > MAX_SIZE or size % 2:
        raise PainDiffusionError(f"video size must be an even number of pixels in 64-{MAX_SIZE}, got {size}")
    return write_mp4(path, render_frames(seq, size, side_by_side), fps=seq.fps)
