"""``paindiffusion study make``: render a study's clips and write its manifest (docs/study.md).

A study folder holds ``manifest.json`` (windows, sources, seeds, clips, trials and the plan), ``clips/*.mp4``
(named by random tokens, so a file name never tells a participant the source), ``material/*.npz`` (every
source's face sequences, for the machine observer) and, once served, ``results/answers.sqlite``.
Every clip is drawn by the project's renderer (:func:`~paindiffusion.render.video.render_frames`) with the same
mesh, camera, size and colours, so clips of one window differ only in motion.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import numpy as np

from ..dataset import PackedData
from ..errors import PainDiffusionError
from ..files import atomic_directory
from ..evaluation.data import training_pool
from ..evaluation.generation import MODEL
from ..facespace import FACS
from ..progress import progress
from ..render.video import render_frames, write_mp4
from ..sequence import FPS, FaceSequence
from .material import StudyConfig, Window, choose_windows, held_out, run_sources, save_material
from .plan import BLOCKS, ORDER, REFERENCE, Design, make_trials, plan_rows

MANIFEST = "manifest.json"
FORMAT = 1  # manifest format version


def study_blocks(reference: bool, cfg: StudyConfig) -> list[str]:
    """The blocks this material supports: realism needs a reference, reaction the stimulus strip, diversity
    two or more tries, overall a baseline beside the model."""
    need = {"realism": reference, "reaction": cfg.strip, "diversity": cfg.tries >= 2, "overall": bool(cfg.baselines)}
    return [b for b in ORDER if need[b]]


def _sequence(frames: np.ndarray, stimulus: np.ndarray) -> FaceSequence:
    return FaceSequence(FACS, FACS.clip(frames), stimulus)


def make_study(out: str | Path, model, config: StudyConfig | None = None, data=None, stimuli: list[np.ndarray] | None = None,
               stimulus_names: list[str] | None = None, expressiveness: float | str = "medium", emotion: str = "Neutral",
               overwrite: bool = False, checkpoint: str | None = None) -> dict:
    """Build a study folder at ``out`` for ``model`` (a PainModel; ``checkpoint``: its folder, None for the
    shipped one, recorded for ``study observe``); ``data``: a packed dataset's path to take the windows from its
    test split instead of a fresh cohort; ``stimuli``: stimulus traces (°C per frame) instead. Returns the manifest."""
    cfg = (config or StudyConfig()).validate()
    out = Path(out)
    if (out / "results").exists():
        raise PainDiffusionError("this study already has results (results/); make the new study in another folder", out)
    t0 = time.time()
    expr = model.spec.expressiveness_value(expressiveness)  # refused here, before any work
    packed = PackedData(data) if data is not None else None
    held, reference = held_out(cfg, model, packed, stimuli, stimulus_names, expr, emotion)
    windows = choose_windows(held, cfg, reference)
    # the data-driven baselines learn from the packed data's training split, else the model's training subjects
    pool = training_pool(model, packed, cfg.pool_subjects, max(cfg.minutes, 2.0)) if cfg.baselines or cfg.catch else None
    frames = run_sources(model, held, windows, cfg, pool=pool, reference=reference)
    t_material = time.time() - t0
    generators = [MODEL, *cfg.baselines]
    blocks = study_blocks(reference, cfg)
    if not blocks:
        raise PainDiffusionError("this material supports no block: add a baseline, --tries 2 or more, or the stimulus strip")
    main = [w for w in windows if not w.catch]
    design = Design([w.id for w in main], generators, reference, blocks, [w.id for w in windows if w.catch], cfg.seed)

    rng = np.random.default_rng([cfg.seed, 5])
    clips: dict[tuple, dict] = {}  # (window, source, composite) → clip record

    def clip_of(block: str, window: str, source: str) -> str:
        key = (window, source, block == "diversity")
        if key not in clips:
            clips[key] = {"id": rng.bytes(8).hex(), "window": window, "source": source,
                          "tries": list(range(cfg.tries)) if key[2] else [0]}
        return clips[key]["id"]

    trials = make_trials(design, clip_of)
    rows = plan_rows(design, trials)
    by_id = {w.id: w for w in windows}
    with atomic_directory(out, kind="study", overwrite=overwrite) as tmp:
        (tmp / "clips").mkdir()
        total = sum(len(c["tries"]) for c in clips.values()) * cfg.frames()
        with progress(desc="study clips", total=total, unit="face frame") as bar:
            for c in clips.values():
                w = by_id[c["window"]]
                k = [x.id for x in windows].index(w.id)
                stim = held.stimulus[w.rec, w.start:w.start + w.frames]
                seqs = [_sequence(frames[c["source"]][k, t], stim) for t in c["tries"]]
                c["file"] = f"clips/{c['id']}.mp4"
                write_mp4(tmp / c["file"], render_frames(seqs[0], cfg.size, cfg.strip, beside=tuple(seqs[1:]), pspi=False))
                bar.update(len(seqs) * w.frames)
        save_material(tmp / "material", windows, frames, held)
        manifest = _manifest(cfg, held, windows, reference, generators, blocks, list(clips.values()), trials, rows,
                             checkpoint, model, expr, emotion)
        manifest["data"] = str(packed.path.resolve()) if packed is not None else None
        manifest["made_in_s"] = round(time.time() - t0, 1)
        manifest["timing"] = {"material_s": round(t_material, 1), "render_s": round(time.time() - t0 - t_material, 1),
                              "face_frames_rendered": total}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _manifest(cfg: StudyConfig, held, windows: list[Window], reference: bool, generators: list[str], blocks: list[str],
              clips: list[dict], trials, rows, checkpoint: str | None, model, expr: float, emotion: str) -> dict:
    win = []
    for w in windows:
        stim = held.stimulus[w.rec, w.start:w.start + w.frames]
        thr, tol = held.calibration(w.rec) if reference else (None, None)
        win.append({"id": w.id, "recording": held.names[w.rec], "start_s": w.start / FPS, "seconds": w.frames / FPS,
                    "stimulus_level": w.stimulus_level, "peak_c": round(float(stim.max()), 2), "expressiveness": round(float(held.expressiveness[w.rec]), 3),
                    "emotion": held.emotion[w.rec], "threshold": thr, "tolerance": tol, "catch": w.catch})
    sources = {MODEL: {"kind": "model", "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()), "name": (model.info or {}).get("name", "custom"),
                       "tries": cfg.tries, "sampling_seed": cfg.seed, "sampler": model.sampler.to_dict()}}
    for b in cfg.baselines:
        sources[b] = {"kind": "baseline", "tries": cfg.tries, "seed": [cfg.seed, 11]}
    if reference:
        sources[REFERENCE] = {"kind": "reference", "tries": 1, "what": "the recording's own face sequence"}
    return {
        "format": FORMAT, "study_id": secrets.token_hex(6), "seed": cfg.seed,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "held_out": held.source, "reference": reference, "controls": None if reference else {"expressiveness": expr, "emotion": emotion},
        "fps": FPS, "size": cfg.size, "strip": cfg.strip,
        "generators": generators, "sources": sources, "windows": win,
        "blocks": [{"name": b, "kind": BLOCKS[b].kind, "question": BLOCKS[b].question, "intro": BLOCKS[b].intro,
                    "labels": list(BLOCKS[b].labels)} for b in blocks],
        "clips": clips, "trials": [t.to_json() for t in trials],
        "plan": {"cycle": len(rows), "trials_per_participant": len(rows[0]), "rows": rows},
    }


def load_manifest(study: str | Path) -> dict:
    """A study folder's manifest, checked enough that serving and analysis can trust its structure."""
    path = Path(study) / MANIFEST
    if not path.is_file():
        raise PainDiffusionError(f"not a study folder (no {MANIFEST}); make one with 'paindiffusion study make'", study)
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PainDiffusionError(f"unreadable manifest ({e}); make the study again", path) from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not all(k in m for k in ("trials", "clips", "plan", "blocks")):
        raise PainDiffusionError(f"manifest is not a study manifest of format {FORMAT}; make the study again", path)
    return m
