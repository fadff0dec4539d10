"""Figures: stimulus → response of one recording or one generated sequence (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .biovid import true_runs  # noqa: E402
from .errors import PainDiffusionError  # noqa: E402
from .files import atomic_file  # noqa: E402

STIMULUS_LEVEL_COLOURS = ("#ffffff", "#fde0c5", "#facba6", "#f59e72", "#e4572e")  # baseline, stimulus levels 1-4


def plot_stimulus_response(path: str | os.PathLike, stimulus: np.ndarray, pspi: np.ndarray, fps: int,
                           label: np.ndarray | None = None, title: str = "", extra: dict | None = None) -> Path:
    """Temperature (°C) over PSPI over time, stimulated episodes shaded by stimulus level; written atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise PainDiffusionError("figure must be .png, .pdf or .svg", path)
    t = np.arange(len(stimulus)) / fps
    rows = 2 + (1 if extra else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.2 * rows + 0.6), sharex=True, constrained_layout=True)
    ax_t, ax_p = axes[0], axes[1]
    if label is not None:  # shade each stimulated episode by its stimulus level, on every panel
        for a, b in true_runs(np.asarray(label) > 0):
            for ax in axes:
                ax.axvspan(t[a], t[min(b, len(t) - 1)], color=STIMULUS_LEVEL_COLOURS[int(label[a])], lw=0, zorder=0)
    ax_t.plot(t, stimulus, color="#b2182b", lw=1.2)
    ax_t.set_ylabel("temperature (°C)")
    ax_p.plot(t, pspi, color="#2166ac", lw=0.9)
    ax_p.set_ylabel("PSPI (0-16)")
    ax_p.set_ylim(bottom=0)
    if extra:
        for name, v in extra.items():
            axes[2].plot(t, v, lw=0.8, label=name)
        axes[2].legend(loc="upper right", ncol=len(extra), fontsize=8)
        axes[2].set_ylabel("AU intensity (0-5)")
    axes[-1].set_xlabel("time (s)")
    if title:
        ax_t.set_title(title, fontsize=10)
    fmt = path.suffix.lower()[1:]
    try:
        with atomic_file(path) as f:
            fig.savefig(f, dpi=110, format=fmt, metadata={FIGURE_TAG_KEY[fmt]: FIGURE_TAG})
    finally:
        plt.close(fig)
    return path


FIGURE_TAG = "paindiffusion"  # written into every figure's metadata: what --overwrite recognises as ours
FIGURE_TAG_KEY = {"png": "Software", "pdf": "Creator", "svg": "Creator"}
FIGURE_TAG_BYTES = (b"Software\x00paindiffusion", b"/Creator (paindiffusion)", b"<dc:title>paindiffusion</dc:title>")


def is_our_figure(path: str | os.PathLike) -> bool:
    """A figure that :func:`plot_stimulus_response` wrote: its metadata names us (PNG tEXt chunk near the
    start, PDF info dictionary near the end, SVG metadata near the start)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            f.seek(max(0, os.fstat(f.fileno()).st_size - (1 << 16)))
            tail = f.read()
    except OSError:
        return False
    return any(tag in head or tag in tail for tag in FIGURE_TAG_BYTES)
