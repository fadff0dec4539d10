"""``paindiffusion edit``: re-condition, keep, fill and extend an existing face sequence, or act one out from a
video (:func:`paindiffusion.edit.edit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def edit_command(
    out: Annotated[Path, typer.Option("-o", "--out", help="output: .npz/.csv, .mp4, .arkit.json/.csv, .facs.json/.csv, "
                                      ".flame.npz (chosen by extension, as for 'generate')")],
    source: Annotated[Optional[Path], typer.Argument(help="the sequence to edit: .npz/.csv from generate, extract or edit; "
                                                     "a packed dataset folder (with --recording); or a video")] = None,
    strength: Annotated[float, typer.Option(help="share of the model's noise levels re-run: 0 = unchanged, 1 = generated "
                                            "anew (re-timing a stimulus needs ~0.9, a milder or stronger face 0.5-0.75)")] = 0.5,
    expressiveness: Annotated[Optional[str], typer.Option(help="new pain reactivity (PSPI scale) or low/medium/high "
                                                          "(default: the input's)")] = None,
    emotion: Annotated[Optional[str], typer.Option(help="new AffectNet emotion (default: the input's)")] = None,
    stimulus: Annotated[Optional[Path], typer.Option(help="new stimulus: CSV with columns time (s), temperature (°C), "
                                                     "as for 'generate' (default: the input's)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="the patient's pain threshold, °C (default: the input's, "
                                                       "else the model's training median)")] = None,
    tolerance: Annotated[Optional[float], typer.Option(help="the patient's pain tolerance, °C (default: the input's, "
                                                       "else the model's training median)")] = None,
    keep: Annotated[Optional[str], typer.Option(help="frames kept exactly, START-END seconds, e.g. 0-4.0,12.5-20; the "
                                                "rest is remade and joins them smoothly")] = None,
    extend: Annotated[float, typer.Option(help="seconds generated after the end, under the given conditions")] = 0.0,
    guide_video: Annotated[Optional[Path], typer.Option(help="a video of someone acting pain: tracked, and its motion "
                                                        "edited to the given conditions (instead of SOURCE)")] = None,
    recording: Annotated[Optional[str], typer.Option(help="the recording to edit, when SOURCE is a packed dataset")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="random seed (same seed, same edit)")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint folder (default: the shipped model)")] = None,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="mp4: add stimulus and PSPI curves under the face")] = False,
    size: Annotated[int, typer.Option(min=64, max=4096, help="mp4 frame size in pixels (even)")] = 512,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="CPU threads for torch")] = None,
) -> None:
    """Edit a face sequence: new expressiveness, emotion or stimulus, kept frames, an extension."""
    import torch

    from .checkpoint import PainModel
    from .edit import edit, keep_ranges, load_source, strength_levels
    from .errors import PainDiffusionError
    from .facespace import emotion_index
    from .render import check_output, save_output
    from .stimulus import stimulus_from_csv
    from .tracking.extract import VIDEO_SUFFIXES

    check_output(out, side_by_side)  # every refusal that needs no work comes before any work
    if (source is None) == (guide_video is None):
        raise PainDiffusionError("give the sequence to edit (SOURCE) or --guide-video VIDEO, one of the two")
    if guide_video is not None and guide_video.suffix.lower() not in VIDEO_SUFFIXES:
        raise PainDiffusionError(f"--guide-video takes a video ({', '.join(VIDEO_SUFFIXES)})", guide_video)
    strength_levels(strength, 1)
    keep_ranges(keep)
    if emotion is not None:
        emotion_index(emotion)
    if threads:
        torch.set_num_threads(threads)
    model = PainModel.load(checkpoint)
    trace = stimulus_from_csv(stimulus) if stimulus is not None else None
    seq = load_source(guide_video or source, recording)
    result = edit(seq, strength=strength, expressiveness=expressiveness, emotion=emotion, stimulus=trace,
                  threshold=threshold, tolerance=tolerance, keep=keep, extend=extend, seed=seed, model=model)
    save_output(out, result, side_by_side=side_by_side, size=size)
    pspi = "" if result.pspi is None else (f", mean PSPI {result.pspi.mean():.2f} (input {seq.pspi.mean():.2f}), "
                                            f"peak {result.pspi.max():.2f}")
    typer.echo(f"wrote {out}: {len(result)} frames ({result.seconds:.1f} s), {result.meta['levels_rerun']} of "
               f"{model.sampler.levels} noise levels re-run{pspi}")
