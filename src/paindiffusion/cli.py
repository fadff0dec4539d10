"""The ``paindiffusion`` command line (typer). Each subcommand is a thin wrapper over a library function;
user errors print one line and exit with status 2."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .cli_edit import edit_command
from .cli_evaluate import evaluate_command
from .cli_live import demo_command, stream_command
from .cli_render import render_command
from .cli_study import study_app
from .cli_track import extract_command, prepare_biovid_command
from .dataset import TEST_SHARE, VAL_SHARE
from .errors import PainDiffusionError
from .facespace import EMOTIONS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def cohort(out: Path = typer.Argument(..., help="folder to write the BioVid-layout tree into"),
           subjects: int = typer.Option(6, min=1, help="number of simulated subjects (one recording each)"),
           minutes: float = typer.Option(3.0, help="length of each recording in minutes (BioVid: ~25; at most 240)"),
           seed: int = typer.Option(0, min=0, max=2**63 - 1, help="random seed; the same seed gives byte-identical files"),
           overwrite: bool = typer.Option(False, help="replace OUT if it is a cohort written earlier by this tool")):
    """Simulate a synthetic pain cohort laid out like BioVid HeatPain Part C (a simulation, not real data)."""
    from .cohort import write_cohort

    path = write_cohort(out, subjects, minutes, seed, overwrite)
    typer.echo(f"wrote {subjects} simulated recordings of {minutes:g} min to {path}")


@app.command()
def pack(raw: Path = typer.Argument(..., help="BioVid-layout tree (from 'cohort' or real recordings)"),
         out: Path = typer.Option(..., "-o", "--out", help="packed dataset folder to write"),
         val: float = typer.Option(VAL_SHARE, help="share of subjects held out for validation"),
         test: float = typer.Option(TEST_SHARE, help="share of subjects held out for testing"),
         seed: int = typer.Option(0, min=0, max=2**63 - 1, help="seed of the subject split"),
         face_space: str = typer.Option("facs", help="face space of recordings whose JSON does not name one"),
         overwrite: bool = typer.Option(False, help="replace OUT if it is a packed dataset written earlier by this tool")):
    """Validate a raw tree and pack it into one memory-mapped store with a subject-disjoint split."""
    from .dataset import PackedData, pack as do_pack
    from .facespace import get_space

    get_space(face_space)  # an unknown space fails here, before any reading
    path = do_pack(raw, out, val=val, test=test, seed=seed, default_space=face_space, overwrite=overwrite)
    d = PackedData(path)
    counts = {s: len(d.split(s)) for s in ("train", "val", "test")}
    typer.echo(f"packed {len(d.recordings)} recordings ({len(d.frames)} frames) to {path}: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command()
def plot(data: Path = typer.Argument(..., help="packed dataset folder"),
         recording: str = typer.Option(..., "--recording", "-r", help="recording name, e.g. s001"),
         out: Path = typer.Option(..., "-o", "--out", help="figure file (.png/.pdf/.svg)"),
         seconds: Optional[float] = typer.Option(None, help="plot only the first SECONDS"),
         overwrite: bool = typer.Option(False, help="replace OUT if it is a figure written earlier by this tool")):
    """Plot temperature, label and PSPI over time for one recording."""
    from .dataset import PackedData
    from .files import check_output_file
    from .plots import is_our_figure, plot_stimulus_response

    if seconds is not None and not (np.isfinite(seconds) and seconds > 0):
        raise PainDiffusionError(f"--seconds must be a positive number, got {seconds}")
    check_output_file(out, overwrite, (data,), "figure", is_our_figure)
    d = PackedData(data)
    i = d.find(recording)
    r = d.recordings[i]
    n = r["length"] if seconds is None else min(r["length"], max(2, int(seconds * d.meta["fps"])))
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
          steps: Optional[int] = typer.Option(None, min=1, help="optimiser steps [default: TrainConfig.steps]"),
          batch: Optional[int] = typer.Option(None, min=1, help="windows per step (per device) [default: TrainConfig.batch]"),
          lr: Optional[float] = typer.Option(None, help="peak learning rate (AdamW, warm-up then cosine) [default: TrainConfig.lr]"),
          seed: Optional[int] = typer.Option(None, min=0, max=2**63 - 1, help="seed of initialisation, windows and noise [default: 0]"),
          window: Optional[int] = typer.Option(None, min=4, help="frames per training window (a multiple of 4) [default: TrainConfig.window]"),
          change_fraction: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="share of windows placed around stimulus onsets/offsets; the rest at random [default: TrainConfig.change_fraction]"),
          checkpoint_every: Optional[int] = typer.Option(None, min=1, help="steps between resumable checkpoints [default: TrainConfig.checkpoint_every]"),
          balance: Optional[float] = typer.Option(None, min=0.0, max=2.0, help="draw rare-expressiveness subjects more often, weight (1/share of their bin)^BALANCE (1: bins equal) [default: TrainConfig.balance]"),
          calibrated: Optional[bool] = typer.Option(None, "--calibrated/--celsius", help="stimulus relative to each recording's pain threshold and tolerance (from its labels), or °C [default: TrainConfig.calibrated]"),
          floor_imputation: Optional[bool] = typer.Option(None, "--floor-imputation/--no-floor-imputation", help="train AU values at 0 as draws below 0 (the share of zeros) [default: TrainConfig.floor_imputation]"),
          resting_face: Optional[bool] = typer.Option(None, "--resting-face/--no-resting-face", help="condition on each patient's resting face (with the emotion) [default: ModelConfig.resting_face]"),
          threads: Optional[int] = typer.Option(None, min=1, max=1024, help="CPU threads for torch (default: all cores)"),
          accelerator: str = typer.Option("cpu", help="Lightning accelerator: cpu, gpu, auto"),
          devices: str = typer.Option("1", help="devices per node (a positive int, or 'auto'); >1 uses DDP"),
          strategy: str = typer.Option("auto", help="Lightning strategy, e.g. ddp"),
          num_nodes: int = typer.Option(1, min=1, help="nodes for multi-node DDP")):
    """Train (or resume after a kill: RUN/checkpoints/last.ckpt) a model; writes RUN/model (safetensors + JSON)."""
    import torch

    from .dataset import PackedData
    from .model import ModelConfig
    from .progress import enabled as progress_enabled
    from .train import TrainConfig, train as do_train

    given = dict(steps=steps, batch=batch, lr=lr, seed=seed, window=window, change_fraction=change_fraction,
                 checkpoint_every=checkpoint_every, balance=balance, calibrated=calibrated, floor_imputation=floor_imputation)
    tcfg = TrainConfig(**{k: v for k, v in given.items() if v is not None})  # one source of defaults
    if not (math.isfinite(tcfg.lr) and tcfg.lr > 0):
        raise PainDiffusionError(f"--lr must be a positive number, got {tcfg.lr}")
    check_lightning_flags(accelerator, devices, strategy)
    if threads:
        torch.set_num_threads(threads)
    mcfg = ModelConfig(dim=PackedData(data).space.dim, **({} if resting_face is None else {"resting_face": resting_face}))
    model = do_train(data, out, tcfg, mcfg=mcfg,
                     accelerator=accelerator, devices=int(devices) if devices.isdigit() else devices,
                     strategy=strategy, num_nodes=num_nodes, progress=progress_enabled())
    typer.echo(f"trained {model.info['trained_steps']} steps; model written to {out / 'model'}")


@app.command()
def generate(out: Path = typer.Option(..., "-o", "--out", help="output: .npz/.csv (frames, PSPI, stimulus), .mp4, "
                                      ".arkit.json/.csv, .facs.json/.csv (chosen by extension)"),
             stimulus: Optional[Path] = typer.Option(None, help="CSV with columns time (s), temperature (°C), any rate"),
             protocol: Optional[str] = typer.Option(None, help="'biovid': a BioVid-like schedule (used when no --stimulus)"),
             seconds: float = typer.Option(60.0, help="length of the --protocol stimulus in seconds (the first heat episode starts after 3-8 s and lasts ~12 s, so use ≥ 20 s)"),
             expressiveness: str = typer.Option("medium", help="pain reactivity on the PSPI scale (mean PSPI while stimulated "
                                                  "minus at rest), or low/medium/high; values outside the trained "
                                                  "range are clamped with a warning"),
             emotion: str = typer.Option("Neutral", help="AffectNet class: " + ", ".join(EMOTIONS)),
             seed: int = typer.Option(0, min=0, max=2**63 - 1, help="random seed (same seed, same face)"),
             threshold: Optional[float] = typer.Option(None, help="the patient's pain threshold, °C (BioVid stimulus level 1; default: the model's training median); also sets the --protocol's stimulus levels"),
             tolerance: Optional[float] = typer.Option(None, help="the patient's pain tolerance, °C (BioVid stimulus level 4; default: the model's training median)"),
             checkpoint: Optional[Path] = typer.Option(None, help="checkpoint folder (default: the shipped model)"),
             rule_based: bool = typer.Option(False, "--rule-based", help="use the cohort's hand-written rules instead of the model"),
             noise_levels: Optional[int] = typer.Option(None, help="override the sampler's noise levels (σ grid size)"),
             order: Optional[int] = typer.Option(None, help="override the sampler order (1 or 2)"),
             side_by_side: bool = typer.Option(False, "--side-by-side", help="mp4: add stimulus and PSPI curves under the face"),
             size: int = typer.Option(512, min=64, max=4096, help="mp4 frame size in pixels (even)"),
             threads: Optional[int] = typer.Option(None, min=1, max=1024, help="CPU threads for torch"),
             overwrite: bool = typer.Option(False, help="replace OUT if it is an output of the same type written earlier by this tool")):
    """Generate a face sequence from a stimulus with the shipped model (or --rule-based) and save or render it."""
    import dataclasses

    import torch

    from .conditions import ConditionSpec
    from .generate import generate_sequence, rule_based_sequence
    from .render import check_new_output, save_output
    from .stimulus import protocol_trace, stimulus_from_csv

    inputs = tuple(p for p in (stimulus, checkpoint) if p is not None)
    check_new_output(out, side_by_side, overwrite, inputs)  # refuse a bad or taken output before any work
    if stimulus is not None and protocol is not None:
        raise PainDiffusionError("give either --stimulus FILE or --protocol biovid, not both")
    if protocol not in (None, "biovid"):
        raise PainDiffusionError(f"unknown protocol {protocol!r}; the only protocol is 'biovid'")
    if threads:
        torch.set_num_threads(threads)
    from .checkpoint import PainModel, check_sampler_bounds

    model = None if rule_based else PainModel.load(checkpoint)
    spec = ConditionSpec() if model is None else model.spec
    thr, tol = spec.calibration_value(threshold, tolerance)  # refused here, before any work
    trace = stimulus_from_csv(stimulus) if stimulus is not None else protocol_trace(seconds, seed, thr, tol)
    if rule_based:
        seq = rule_based_sequence(trace, expressiveness, emotion, seed, threshold=thr, tolerance=tol)
    else:
        settings = model.sampler
        if noise_levels is not None or order is not None:  # SamplerSettings.validate and PainStream refuse bad values
            given = (("levels", noise_levels), ("order", order))
            settings = dataclasses.replace(settings, **{k: v for k, v in given if v is not None}).validate()
            check_sampler_bounds(settings, model.config)
        seq = generate_sequence(trace, expressiveness, emotion, seed, model, settings, thr, tol)
    check_new_output(out, side_by_side, overwrite, inputs)  # still allowed after the work
    save_output(out, seq, side_by_side=side_by_side, size=size)
    typer.echo(f"wrote {out}: {len(seq)} frames ({seq.seconds:.1f} s), mean PSPI {seq.pspi.mean():.2f}, "
               f"peak {seq.pspi.max():.2f}")


app.command("render")(render_command)
app.command("edit")(edit_command)
app.command("evaluate")(evaluate_command)


LIGHTNING_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def check_lightning_flags(accelerator: str, devices: str, strategy: str) -> None:
    """Refuse flag values Lightning would reject with a traceback (availability is checked by Lightning)."""
    from lightning.pytorch.strategies import StrategyRegistry

    if accelerator not in LIGHTNING_ACCELERATORS:
        raise PainDiffusionError(f"--accelerator {accelerator!r} is not one of {', '.join(LIGHTNING_ACCELERATORS)}")
    if not (devices == "auto" or (devices.isdigit() and int(devices) >= 1)):
        raise PainDiffusionError(f"--devices {devices!r} must be a positive whole number or 'auto'")
    if strategy != "auto" and strategy not in StrategyRegistry.available_strategies():
        raise PainDiffusionError(f"--strategy {strategy!r} is not a Lightning strategy; use auto, ddp, ddp_spawn or fsdp")


_received: list[int] = []  # the signals that interrupted this run


def _on_signal(signum, frame):
    """SIGTERM is handled like Ctrl-C: raised as KeyboardInterrupt, so every writer's cleanup runs and
    nothing half-written stays behind."""
    _received.append(signum)
    raise KeyboardInterrupt()


@app.callback()
def options(quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars")):
    """PainDiffusion: faces that express pain from a heat stimulus."""
    from .progress import set_quiet

    set_quiet(quiet)


_shown: set = set()  # warnings already printed in this run: each text once, each ``once`` kind once


def route_warnings() -> None:
    """Every PainDiffusionWarning of this run reaches :func:`_show_warning` (one ``warning:`` line, each once)."""
    import warnings

    from .errors import PainDiffusionWarning

    _shown.clear()  # a new run: each warning once again
    warnings.simplefilter("always", PainDiffusionWarning)
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    keys = {text, getattr(message, "once", None)} - {None}
    if keys & _shown:
        return
    _shown.update(keys)
    typer.echo(f"warning: {text}", err=True)


app.command("stream")(stream_command)
app.command("demo")(demo_command)
app.command("extract")(extract_command)
app.command("prepare-biovid")(prepare_biovid_command)
app.add_typer(study_app, name="study")


def main() -> None:
    """Entry point: any user error, usage error or OS error is one line and exit status 2; SIGTERM and
    Ctrl-C exit 143 and 130 after the writers have removed their temporaries."""
    try:  # typer ≥ 0.25 vendors click; older releases depend on it
        from typer._click import exceptions as click
    except ImportError:
        from click import exceptions as click

    from .errors import os_error

    # numpy imports numpy.random and numpy.fft on first use. An interrupt that lands inside that import (in
    # abc.register, run by a compiled module's init) is swallowed and the command runs on: 11 of 220 timed
    # signals were lost so. Imported before the handlers, so every interrupt reaches the writers' cleanup.
    import numpy.fft  # noqa: F401
    import numpy.random  # noqa: F401

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    route_warnings()
    returned = False  # the command ended by itself (a live command stops on Ctrl-C and says so)
    try:
        code = app(standalone_mode=False)
        returned = code != 130
    except click.NoArgsIsHelpError as e:  # bare 'paindiffusion': the help, not an error
        typer.echo(e.format_message())
        code = 0
    except click.UsageError as e:
        typer.echo(f"error: {' '.join(e.format_message().split())} (see --help)", err=True)
        sys.exit(2)
    except PainDiffusionError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except SystemExit:  # Lightning exits by itself after its graceful shutdown on an interrupt
        if not _received:
            raise
        code = 130
    except OSError as e:
        typer.echo(f"error: {os_error(e, doing='failed')}", err=True)
        sys.exit(2)
    if _received or code == 130:  # typer turns KeyboardInterrupt into exit code 130
        if not returned:
            typer.echo("interrupted; no partial output was left", err=True)
        sys.exit(128 + (_received[0] if _received else signal.SIGINT))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
