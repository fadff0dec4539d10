"""The ``paindiffusion`` command line (typer). Each subcommand is a thin wrapper over a library function;
user errors print one line and exit with status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .errors import PainDiffusionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="PainDiffusion: faces that express pain from a heat stimulus.")


@app.command()
def cohort(out: Path = typer.Argument(..., help="folder to write the BioVid-layout tree into"),
           subjects: int = typer.Option(6, help="number of simulated subjects (one recording each)"),
           minutes: float = typer.Option(3.0, help="length of each recording in minutes (BioVid: ~25)"),
           seed: int = typer.Option(0, help="random seed; the same seed gives byte-identical files"),
           overwrite: bool = typer.Option(False, help="replace OUT if it exists")):
    """Simulate a synthetic pain cohort laid out like BioVid HeatPain Part C (a simulation, not real data)."""
    from .cohort import write_cohort

    path = write_cohort(out, subjects, minutes, seed, overwrite)
    typer.echo(f"wrote {subjects} simulated recordings of {minutes:g} min to {path}")


@app.command()
def pack(raw: Path = typer.Argument(..., help="BioVid-layout tree (from 'cohort' or real recordings)"),
         out: Path = typer.Option(..., "-o", "--out", help="packed dataset folder to write"),
         val: float = typer.Option(0.15, help="share of subjects held out for validation"),
         test: float = typer.Option(0.15, help="share of subjects held out for testing"),
         seed: int = typer.Option(0, help="seed of the subject split"),
         face_space: str = typer.Option("facs", help="face space of recordings whose JSON does not name one"),
         overwrite: bool = typer.Option(False, help="replace OUT if it exists")):
    """Validate a raw tree and pack it into one memory-mapped store with a subject-disjoint split."""
    from .dataset import PackedData, pack as do_pack

    path = do_pack(raw, out, val=val, test=test, seed=seed, default_space=face_space, overwrite=overwrite)
    d = PackedData(path)
    counts = {s: len(d.split(s)) for s in ("train", "val", "test")}
    typer.echo(f"packed {len(d.recordings)} recordings ({len(d.frames)} frames) to {path}: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command()
def plot(data: Path = typer.Argument(..., help="packed dataset folder"),
         recording: str = typer.Option(..., "--recording", "-r", help="recording name, e.g. s001"),
         out: Path = typer.Option(..., "-o", "--out", help="figure file (.png/.pdf/.svg)"),
         seconds: Optional[float] = typer.Option(None, help="plot only the first SECONDS")):
    """Plot temperature, label and PSPI over time for one recording."""
    from .dataset import PackedData
    from .plots import plot_stimulus_response

    d = PackedData(data)
    i = d.find(recording)
    r = d.recordings[i]
    n = r["length"] if seconds is None else min(r["length"], int(seconds * d.meta["fps"]))
    w = d.window(i, 0, n)
    if not np.isfinite(w.pspi).all():
        raise PainDiffusionError(f"recording {recording} has no PSPI (its face space has no AUs and no PSPI file was packed)")
    x = "unknown" if r["expressiveness"] is None else f"{r['expressiveness']:.2f}"
    title = f"{r['name']} (subject {r['subject']}, {r['split']}) - emotion {r['emotion'] or 'unknown'}, expressiveness {x}"
    extra = None
    if d.space.name == "facs":
        extra = {c: w.frames[:, d.space.index(c)] for c in ("AU4", "AU7", "AU10", "AU26", "AU43")}
    plot_stimulus_response(out, w.stimulus, w.pspi, d.meta["fps"], w.label, title, extra)
    typer.echo(f"wrote {out}")


def main() -> None:
    try:
        app()
    except PainDiffusionError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
