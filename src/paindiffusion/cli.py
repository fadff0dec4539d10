"""The ``paindiffusion`` command line (typer). Each subcommand is a thin wrapper over a library function;
user errors print one line and exit with status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .cli_render import render_command
from .cli_track import extract_command, prepare_biovid_command
from .errors import PainDiffusionError
from .facespace import EMOTIONS

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


@app.command()
def train(data: Path = typer.Argument(..., help="packed dataset folder (from 'pack')"),
          out: Path = typer.Option(..., "--out", "-o", help="run folder: checkpoints/, logs/, and the final model/"),
          steps: int = typer.Option(8000, help="optimiser steps"),
          batch: int = typer.Option(64, help="windows per step (per device)"),
          lr: float = typer.Option(5e-4, help="peak learning rate (AdamW, warm-up then cosine)"),
          seed: int = typer.Option(0, help="seed of initialisation, windows and noise"),
          window: int = typer.Option(64, help="frames per training window (a multiple of 4)"),
          change_fraction: float = typer.Option(0.5, help="share of windows placed around stimulus onsets/offsets; the rest at random"),
          checkpoint_every: int = typer.Option(100, help="steps between resumable checkpoints"),
          cond_tokens: bool = typer.Option(False, help="also add the condition embedding to the tokens (stronger unguided stimulus following, weaker expressiveness control in our measurements; see MODEL_CARD.md)"),
          threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: all cores)"),
          accelerator: str = typer.Option("cpu", help="Lightning accelerator: cpu, gpu, auto"),
          devices: str = typer.Option("1", help="devices per node (an int, or 'auto'); >1 uses DDP"),
          strategy: str = typer.Option("auto", help="Lightning strategy, e.g. ddp"),
          num_nodes: int = typer.Option(1, help="nodes for multi-node DDP")):
    """Train (or resume after a kill: RUN/checkpoints/last.ckpt) a model; writes RUN/model (safetensors + JSON)."""
    import torch

    from .dataset import PackedData
    from .model import ModelConfig
    from .train import TrainConfig, train as do_train

    if threads:
        torch.set_num_threads(threads)
    if not 0.0 <= change_fraction <= 1.0 or steps < 1 or batch < 1 or checkpoint_every < 1:
        raise PainDiffusionError("--steps, --batch and --checkpoint-every must be positive and --change-fraction in 0-1")
    model = do_train(data, out, TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, window=window,
                                                  change_fraction=change_fraction, checkpoint_every=checkpoint_every),
                     mcfg=ModelConfig(dim=PackedData(data).space.dim, cond_tokens=cond_tokens), accelerator=accelerator,
                     devices=int(devices) if devices.isdigit() else devices, strategy=strategy, num_nodes=num_nodes)
    typer.echo(f"trained {model.info['trained_steps']} steps; model written to {out / 'model'}")


@app.command()
def generate(out: Path = typer.Option(..., "-o", "--out", help="output: .npz/.csv (frames, PSPI, stimulus), .mp4, "
                                      ".arkit.json/.csv, .facs.json/.csv (chosen by extension)"),
             stimulus: Optional[Path] = typer.Option(None, help="CSV with columns time (s), temperature (°C), any rate"),
             protocol: Optional[str] = typer.Option(None, help="'biovid': a BioVid-like schedule (used when no --stimulus)"),
             seconds: float = typer.Option(60.0, help="length of the --protocol stimulus in seconds (the first heat episode starts after 3-8 s and lasts ~12 s, so use ≥ 20 s)"),
             expressiveness: str = typer.Option("medium", help="mean PSPI while stimulated (0-16), or low/medium/high"),
             emotion: str = typer.Option("Neutral", help="AffectNet class: " + ", ".join(EMOTIONS)),
             seed: int = typer.Option(0, help="random seed (same seed, same face)"),
             checkpoint: Optional[Path] = typer.Option(None, help="checkpoint folder (default: the shipped model)"),
             rule_based: bool = typer.Option(False, "--rule-based", help="use the cohort's hand-written rules instead of the model"),
             levels: Optional[int] = typer.Option(None, help="override the sampler's noise levels"),
             order: Optional[int] = typer.Option(None, help="override the sampler order (1 or 2)"),
             side_by_side: bool = typer.Option(False, "--side-by-side", help="mp4: add stimulus and PSPI curves under the face"),
             size: int = typer.Option(512, help="mp4 frame size in pixels"),
             threads: Optional[int] = typer.Option(None, help="CPU threads for torch")):
    """Generate a face sequence from a stimulus with the shipped model (or --rule-based) and save or render it."""
    import dataclasses

    import torch

    from .generate import generate_sequence, rule_based_sequence
    from .render import check_output, save_output
    from .stimulus import protocol_trace, stimulus_from_csv

    check_output(out, side_by_side)  # refuse a bad output name before any work
    if stimulus is not None and protocol is not None:
        raise PainDiffusionError("give either --stimulus FILE or --protocol biovid, not both")
    if protocol not in (None, "biovid"):
        raise PainDiffusionError(f"unknown protocol {protocol!r}; the only protocol is 'biovid'")
    if threads:
        torch.set_num_threads(threads)
    trace = stimulus_from_csv(stimulus) if stimulus is not None else protocol_trace(seconds, seed)
    if rule_based:
        seq = rule_based_sequence(trace, expressiveness, emotion, seed)
    else:
        from .checkpoint import PainModel

        model = PainModel.load(checkpoint)
        settings = model.sampler
        if levels is not None or order is not None:  # SamplerSettings.validate and PainStream refuse bad values
            settings = dataclasses.replace(settings, **{k: v for k, v in (("levels", levels), ("order", order)) if v is not None}).validate()
        seq = generate_sequence(trace, expressiveness, emotion, seed, model, settings)
    save_output(out, seq, side_by_side=side_by_side, size=size)
    typer.echo(f"wrote {out}: {len(seq)} frames ({seq.seconds:.1f} s), mean PSPI {seq.pspi.mean():.2f}, "
               f"peak {seq.pspi.max():.2f}")


app.command("render")(render_command)
app.command("extract")(extract_command)
app.command("prepare-biovid")(prepare_biovid_command)

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
