"""``paindiffusion extract`` and ``paindiffusion prepare-biovid``: real video → face sequences → training data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .dataset import TEST_SHARE, VAL_SHARE


def extract_command(
    inputs: Annotated[list[Path], typer.Argument(help="videos (any rate; also photos) or folders searched recursively")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for one OUT/<name>.npz face sequence per video")],
    shard: Annotated[Optional[str], typer.Option(help="K/N: process only every N-th video starting at K (0-based), "
                                                 "e.g. $SLURM_ARRAY_TASK_ID/16 in a Slurm job array")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=1024, help="parallel worker processes (default: one per core)")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV with columns name (or video) and emotion (optional subject); "
                                                   "without it the emotion comes from the AU rule")] = None,
) -> None:
    """Track faces in videos and fit our rig: facs frames (AUs 0-5, head pose) at 25 fps with PSPI, resumable."""
    from .tracking.extract import extract_many
    from .tracking.labels import read_labels

    outcomes = extract_many(inputs, out, shard=shard, workers=workers, labels=read_labels(labels) if labels else None)
    failed = [o for o in outcomes if o.error]
    for o in failed:
        typer.echo(f"error: {o.error}", err=True)
    for o in outcomes:
        if o.long_gaps:
            typer.echo(f"warning: {o.name}: {o.long_gaps} stretch(es) longer than 0.5 s without a face were "
                       "interpolated (listed in its meta 'long_gaps')", err=True)
    done = [o for o in outcomes if o.path and not o.skipped]
    skipped = sum(o.skipped for o in outcomes)
    typer.echo(f"extracted {len(done)} videos ({sum(o.frames for o in done)} frames) to {out}; "
               f"{skipped} already done, {len(failed)} failed")
    if failed:
        sys.exit(1)


def prepare_biovid_command(
    root: Annotated[Path, typer.Argument(help="BioVid Part C-style tree: ROOT/<rec>/<rec>.mp4, <rec>_temp.csv, <rec>_label.csv")],
    out: Annotated[Path, typer.Option("-o", "--out", help="packed dataset folder to write (extractions are kept in OUT.work)")],
    faces_from: Annotated[Optional[Path], typer.Option(help="folder of face arrays from another tool (<rec>_face.npy "
                                                       "or a FLAME <rec>.npz with expr/jaw_pose) instead of tracking")] = None,
    face_space: Annotated[str, typer.Option(help="face space of --faces-from arrays: facs or flame")] = "facs",
    labels: Annotated[Optional[Path], typer.Option(help="CSV with name and emotion (optional subject) per recording")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=1024, help="parallel extraction processes (default: one per core)")] = None,
    val: Annotated[float, typer.Option(help="share of subjects held out for validation")] = VAL_SHARE,
    test: Annotated[float, typer.Option(help="share of subjects held out for testing")] = TEST_SHARE,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="seed of the subject split")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace OUT if it is a packed dataset written earlier by this tool")] = False,
) -> None:
    """Turn a BioVid-style tree of videos and 32 Hz streams into a packed dataset for 'paindiffusion train'."""
    from .dataset import PackedData
    from .tracking.labels import read_labels
    from .tracking.prepare import prepare_biovid

    path, _ = prepare_biovid(root, out, faces_from=faces_from, face_space=face_space,
                             labels=read_labels(labels) if labels else None, workers=workers, val=val, test=test,
                             seed=seed, overwrite=overwrite)
    d = PackedData(path)
    counts = {s: len(d.split(s)) for s in ("train", "val", "test")}
    typer.echo(f"prepared {len(d.recordings)} recordings ({len(d.frames)} frames, {d.space.name}) in {path}: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()))
