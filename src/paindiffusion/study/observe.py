"""``paindiffusion study observe``: the machine observer takes a study's realism trials as a participant.

For every source of the realism block, one :class:`~paindiffusion.evaluation.observer.MachineObserver` learns to
tell real from that source's motion on recordings that are **not** in the study (a fresh simulated cohort, seed
7600 + study seed; or the packed dataset's validation split), generated as the study's material was but with the
data-driven baselines learning from other subjects (seed 7650 + study seed).
It then answers each realism trial (and catch trial) by choosing the clip it scores as more real. The answers are
stored as participant ``observer``, flagged as a machine, replacing an earlier run's; ``analyze`` reports it
apart from the people.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..dataset import PackedData
from ..errors import PainDiffusionError
from ..evaluation.data import fresh_cohort, from_packed
from ..evaluation.observer import MachineObserver, ObserverConfig
from ..biovid import FPS
from .material import BURN_IN_S, OBSERVER_DRAW, StudyConfig, Window, load_material, run_sources
from .make import load_manifest
from .plan import REFERENCE, Trial
from .store import Store

OBSERVER_ID = "observer"


def study_config(manifest: dict) -> StudyConfig:
    return StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()})


def observer_training(manifest: dict, model, recordings: int, minutes: float, seed: int) -> tuple[dict, str]:
    """{source: list of (T, D) training sequences} for the reference and every source of the realism block."""
    cfg = dataclasses.replace(study_config(manifest), tries=1)
    data = manifest.get("data")
    if data:
        held = from_packed(PackedData(data), "val", 10**9)
        what = f"the validation split of {data} ({len(held)} recordings)"
    else:
        held = fresh_cohort(recordings, minutes, OBSERVER_DRAW + manifest["seed"] + seed)
        what = f"{held.source}: {recordings} recordings of {minutes:g} min"
    start = int(BURN_IN_S * FPS)
    t = held.frames.shape[1] - start
    if t < 4 * FPS:
        raise PainDiffusionError(f"the observer's training recordings are shorter than {BURN_IN_S + 4:g} s")
    windows = [Window(f"o{i}", i, start, t, 0) for i in range(len(held))]
    # The data-driven baselines learn from (and the random clip copies) other subjects than the study's: an
    # observer must not recognise a clip by the person in it.
    pool = fresh_cohort(cfg.pool_subjects, max(cfg.minutes, 2.0), OBSERVER_DRAW + 50 + manifest["seed"] + seed)
    frames = run_sources(model, held, windows, cfg, pool=pool, reference=True)
    return {s: [f[i, 0] for i in range(len(f))] for s, f in frames.items()}, what


def observe_study(study: str | Path, model, recordings: int = 16, minutes: float = 2.0, seed: int = 0,
                  config: ObserverConfig | None = None) -> dict:
    """Train the observers, answer every realism trial of ``study`` and store the answers; returns a summary."""
    manifest = load_manifest(study)
    trials = [Trial.from_json(t) for t in manifest["trials"] if t["block"] == "realism"]
    if not trials:
        raise PainDiffusionError("this study has no realism trials (it was made from stimulus files, without a "
                                 "reference face): there is nothing for the observer to judge", study)
    if recordings < 4:
        raise PainDiffusionError(f"--recordings {recordings}: the observer needs at least 4 training recordings")
    train, what = observer_training(manifest, model, recordings, minutes, seed)
    # a judgement sees one window of motion; clips shorter than the usual window get a window of their length
    config = dataclasses.replace(config or ObserverConfig(), window_s=min(ObserverConfig.window_s, manifest["config"]["seconds"]))
    observers = {s: MachineObserver.fit(train[REFERENCE], train[s], FPS, seed=seed, config=config)
                 for s in sorted({t.sources[1] for t in trials})}
    material: dict[str, dict] = {}
    rows = []
    for i, t in enumerate(trials):
        mat = material.setdefault(t.window, load_material(study, t.window))
        score = {s: observers[t.sources[1]].realness(mat[s][0]) for s in t.sources}
        flip = i % 2 == 1  # sides alternate, so the machine adds no position bias of its own
        sources, clips = (t.sources[::-1], t.clips[::-1]) if flip else (t.sources, t.clips)
        chosen = max(sources, key=lambda s: score[s])
        rows.append({"participant": OBSERVER_ID, "trial": t.id, "position": i, "block": t.block, "window": t.window,
                     "clips": list(clips), "sources": list(sources), "answer": "left" if chosen == sources[0] else "right",
                     "chosen": chosen, "rt_ms": None})
    note = {"what": "machine observer (paindiffusion.evaluation.observer)", "trained_on": what, "seed": seed,
            "config": dataclasses.asdict(config)}
    store = Store(study)
    try:
        store.set_machine(OBSERVER_ID, json.dumps(note), rows)
    finally:
        store.close()
    summary = {}
    for r, t in zip(rows, trials):
        key = t.sources[1] + (" (catch)" if t.catch else "")
        k, n = summary.get(key, (0, 0))
        summary[key] = (k + (r["chosen"] == t.sources[1]), n + 1)
    return {"trained_on": what, "answers": len(rows), "taken_for_real": summary}
