"""``paindiffusion render``: turn a saved face sequence into a video or an avatar/robot export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def render_command(
    frames: Annotated[Path, typer.Argument(help="a sequence written by 'paindiffusion generate' (.npz or .csv)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output: .mp4, .arkit.json, .facs.json/.csv, "
                                      ".flame.npz, .npz or .csv (chosen by extension)")] = Path("face.mp4"),
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="add the stimulus and PSPI curves "
                                               "under the face (mp4 only)")] = False,
    size: Annotated[int, typer.Option("--size", min=64, max=4096, help="video frame width and height in pixels (even); "
                                      "the face fills about 3/4 of the height")] = 512,
    overwrite: Annotated[bool, typer.Option(help="replace OUT if it is an output of the same type written "
                                            "earlier by this tool")] = False,
) -> None:
    """Render a saved face sequence to an mp4 (25 fps, H.264), or export it for avatars and robots."""
    from .render import check_new_output, save_output
    from .sequence import FaceSequence

    check_new_output(out, side_by_side, overwrite, (frames,))
    seq = FaceSequence.load(frames)
    path = save_output(out, seq, side_by_side=side_by_side, size=size)
    typer.echo(f"wrote {path} ({len(seq)} frames, {seq.seconds:.1f} s)")
