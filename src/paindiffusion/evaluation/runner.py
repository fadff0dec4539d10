"""The evaluation run: held-out draws → model and baselines → metrics → report (docs/evaluation.md).

    from paindiffusion.evaluation import run_evaluation
    report = run_evaluation(model, "reports/eval", quick=True)   # → dict, also report.json / .md / .html

Each draw is a new held-out cohort (new subjects, seed 7000 + draw) with new sampling seeds. The model
generates every recording × try of every draw, plus the expressiveness sweep, in ONE batched PainStream.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..biovid import BASELINE_C
from ..dataset import PackedData, expressiveness_of
from ..errors import PainDiffusionError
from ..facespace import EMOTIONS
from ..generate import rule_based_sequence
from ..progress import progress as progress_bar
from . import metrics as M
from .baselines import BASELINES
from .data import SWEEP_CALIBRATION, Recordings, fresh_cohort, from_packed, resting_cohort, sweep_protocol, training_pool
from .extras import run_extras
from .generation import (MODEL, generate_model, latent_standardiser, model_pspi, recording_jobs, resting_jobs,
                         sweep_jobs, trained_range)
from .observer import realism_two_sample_test
from .report import write_report
from .scoring import event_locked, resting_table, score
from .summary import summarise
from .targets import judge


# Generators the machine observer judges against the held-out recordings (evaluation/observer.py): the model and
# the two references that move like the data by construction.
OBSERVED = (MODEL, "rules given the controls", "oracle")


@dataclass
class EvalConfig:
    """Sizes of a run. ``quick`` ≤ 5 min, full ≤ 30 min on a 2-core machine (docs/evaluation.md)."""

    draws: int = 3
    subjects: int = 5  # held-out recordings per draw
    minutes: float = 2.0  # length of each held-out recording
    tries: int = 2  # samples per recording (the paper uses 5)
    resting_tries: int = 2  # patients per emotion at rest (the resting faces table)
    sweep_values: int = 5  # numeric expressiveness values across the trained range
    sweep_tries: int = 1
    pool_subjects: int = 12  # training subjects the data-driven baselines learn from
    pool_minutes: float = 4.0
    baselines: tuple = tuple(BASELINES)  # all of them: they cost seconds; the model dominates the run time
    seed: int = 0
    extras: bool = False  # ablations, full-sequence sampling and the long-rollout drift (full run only)
    drift_minutes: float = 20.0  # long rollout of the full run (60: the one-hour check)

    @classmethod
    def quick(cls, **kw) -> "EvalConfig":
        return cls(**kw)

    @classmethod
    def full(cls, **kw) -> "EvalConfig":
        # 3 sweep tries: the sweep judges the model's mean response at each value; one 3-minute try moved by up
        # to ±0.5 PSPI at the top of the range, enough to reorder neighbouring values. 16 recordings per draw: with 8, each level had ~17 episodes per draw and the data's own response rate
        # moved by ±0.13 (95 %) from sampling alone, as much as the ±0.15 it is judged by (docs/evaluation.md).
        base = {"subjects": 16, "minutes": 3.0, "tries": 2, "sweep_values": 6, "sweep_tries": 3, "pool_subjects": 44,
                "pool_minutes": 10.0, "extras": True, "resting_tries": 6}
        return cls(**{**base, **kw})


def run_evaluation(model, out_dir=None, data: PackedData | str | None = None, quick: bool = True, draws: int | None = None,
                   seed: int = 0, config: EvalConfig | None = None, progress: bool = True,
                   pspi_as_seen: Callable[[np.ndarray], np.ndarray] | None = None, threads: int | None = 1,
                   conclusions: str = "") -> dict:
    """Evaluate ``model`` (a PainModel) on held-out data; write report.json/.md/.html and figures to ``out_dir``
    (if given) and return the report dict.

    ``data``: a packed dataset (its test split) instead of fresh simulated cohorts. ``pspi_as_seen``: optional
    hook, frames (N, T, D) → PSPI (N, T) measured on the *rendered* face (render → track → PSPI); when given,
    the model's PSPI correlation is also reported as seen.
    """
    t0 = time.time()
    if threads:
        torch.set_num_threads(threads)
    cfg = config or (EvalConfig.quick() if quick else EvalConfig.full())
    cfg = dataclasses.replace(cfg, seed=seed, **({"draws": draws} if draws else {}))
    if cfg.draws < 1 or cfg.subjects < 1 or cfg.tries < 1:
        raise PainDiffusionError("draws, subjects and tries must be at least 1")
    if isinstance(data, (str, Path)):
        data = PackedData(data)
    if not model.space.has_pspi:
        raise PainDiffusionError(f"face space {model.space.name!r} has no AUs: the evaluation scores PSPI (facs models only)")
    model.eval()
    standardise = latent_standardiser(model)
    frames_t = int(cfg.minutes * 60 * 25) // 4 * 4
    pool = training_pool(model, data, cfg.pool_subjects, cfg.pool_minutes)
    helds = [from_packed(data, "test", frames_t) if data is not None else fresh_cohort(cfg.subjects, cfg.minutes, d)
             for d in range(cfg.draws)]
    frames_t = helds[0].frames.shape[1]
    (lo, hi), range_source = trained_range(model)
    sweep_values = [float(v) for v in np.linspace(lo, hi, cfg.sweep_values)]
    sweep = [sweep_protocol(frames_t, d) for d in range(cfg.draws)]

    # ---- the model: every draw, recording, try, sweep value and resting patient in one batched stream -------
    jobs, spans = [], []
    for d, held in enumerate(helds):
        a = len(jobs)
        jobs += recording_jobs(held, cfg.tries)
        b = len(jobs)
        jobs += sweep_jobs(sweep_values + ["low", "medium"], sweep[d][0], cfg.sweep_tries)
        spans.append((a, b, len(jobs)))
    rest_at = len(jobs)
    simulated = data is None
    if simulated:
        jobs += resting_jobs(EMOTIONS, frames_t, cfg.resting_tries, BASELINE_C)
    t_gen = time.time()
    out = generate_model(model, jobs, seed=cfg.seed, show=progress)
    gen_seconds = time.time() - t_gen
    clamped = sum(j["clamped"] for j in jobs)

    per_draw, plots, medium = [], {"windows": [], "event_locked": {}}, []
    for d, held in enumerate(progress_bar(helds, desc="baselines and metrics", show=progress)):
        a, b, c = spans[d]
        n = len(held)
        gens = {MODEL: out[a:b].reshape(n, cfg.tries, frames_t, -1)}
        rng = np.random.default_rng([cfg.seed, 100 + d])
        notes = {}
        if clamped:
            notes["clamped"] = (f"{clamped} requested expressiveness values (all draws) were refused by the checkpoint and "
                                "requested at the nearest end of its trained range instead")
        for name in cfg.baselines:
            if name == "oracle" and held.params is None:
                notes["oracle"] = "skipped: the recordings' true subject parameters are not reachable"
                continue
            gens[name] = BASELINES[name](held, pool, cfg.tries, rng, model.spec)
        scores = {name: score(f, held, standardise, model.config.group) for name, f in gens.items()}
        for name in OBSERVED:  # the machine observer's 2AFC: would this try pass for the real recording?
            if name in gens:
                scores[name]["observer_preference"] = realism_two_sample_test(
                    list(held.frames), list(gens[name][:, 0]), seed=cfg.seed + d)["preference"]
        sw = out[b:c].reshape(len(sweep_values) + 2, cfg.sweep_tries, frames_t, -1)
        sw_pspi = model.space.pspi(sw)
        achieved = [float(np.mean([expressiveness_of(p, sweep[d][1]) for p in sw_pspi[v]])) for v in range(len(sw))]
        medium.append(_medium_vs_rules(model, sw_pspi[-1], sweep[d], cfg.sweep_tries, cfg.seed + d))
        draw = {"held_out": held.source, "recordings": held.names, "scores": scores, "notes": notes,
                "data": {"seam_ratio": M.seam_ratio(held.frames), "spectral_peak_6p25": M.spectral_peak_ratio(held.frames),
                         "mean_pspi": float(held.pspi.mean()), "zero_share": float((held.frames[..., :17] == 0).mean())},
                "sweep": {"requested": sweep_values, "achieved": achieved[:-2], "low_preset_achieved": achieved[-2],
                          "strictly_increasing": M.strictly_increasing(achieved[:-2]),
                          "low_preset_p99_smoothed_pspi": float(np.percentile(M.smooth(sw_pspi[-2]), 99))}}
        if pspi_as_seen is not None:
            seen = pspi_as_seen(gens[MODEL].reshape(n * cfg.tries, frames_t, -1)).reshape(n, cfg.tries, frames_t)
            draw["pspi_r_as_seen"] = float(M.pearson(M.smooth(seen), M.smooth(held.pspi)[:, None]).mean())
        per_draw.append(draw)
        _collect_plots(plots, d, held, gens, cfg)

    report = {
        "checkpoint": (model.info or {}).get("name", "custom"),
        "config": {**dataclasses.asdict(cfg), "baselines": list(cfg.baselines), "frames": frames_t},
        "sampler": model.sampler.to_dict(),
        "pool": pool.source,
        "held_out": [d["held_out"] for d in per_draw],
        "expressiveness_range": [lo, hi], "expressiveness_range_source": range_source,
        "draws": per_draw,
        "timing": {"generation_s": round(gen_seconds, 1), "frames_generated": int(out.shape[0] * out.shape[1]),
                   "threads": torch.get_num_threads()},
    }
    report["sweep_medium"] = {k: float(np.mean([m[k] for m in medium])) for k in ("model", "rules")}
    if simulated:
        report["resting"] = _resting(out[rest_at:], frames_t, cfg)
    report["summary"] = summarise(report)
    report["targets"] = judge(report)
    if cfg.extras:
        report["extras"] = run_extras(model, helds[0], pool, cfg, progress=progress)
    report["timing"]["total_s"] = round(time.time() - t0, 1)
    if out_dir is not None:
        plots["event_locked"] = {k: {lv: np.mean(v[lv], 0).tolist() for lv in v} for k, v in plots["event_locked"].items()}
        write_report(report, Path(out_dir), plots, conclusions)
    return report


def _collect_plots(plots: dict, d: int, held: Recordings, gens: dict, cfg: EvalConfig) -> None:
    """Figure data: the first recordings' PSPI curves (draw 0) and event-locked averages (all draws)."""
    if d == 0:
        for i in range(min(2, len(held))):
            item = {"title": f"{held.names[i]} ({held.emotion[i]}, expressiveness {held.expressiveness[i]:.2f})",
                    "stimulus": held.stimulus[i].tolist(), "data": M.smooth(held.pspi[i]).tolist()}
            for name in (MODEL, "oracle", "rules given the controls"):
                if name in gens:
                    item[name] = M.smooth(model_pspi(gens[name][i, 0])).tolist()
            plots["windows"].append(item)
    for name in (MODEL, "oracle", "rules given the controls", "stimulus copier"):
        if name in gens:
            ev = event_locked(model_pspi(gens[name]), held)
            store = plots["event_locked"].setdefault(name, {})
            for lv, curves in ev.items():
                store.setdefault(lv, []).append(np.array(curves))


def _medium_vs_rules(model, pspi: np.ndarray, protocol: tuple, tries: int, seed: int) -> dict:
    """The 'medium' preset's mean PSPI while stimulated on the sweep protocol, against the rules given the same
    value (the cohort's subject of median reactivity, its own noise), ``tries`` each."""
    stim, label = protocol
    thr, tol = SWEEP_CALIBRATION
    rules = [rule_based_sequence(stim, "medium", "Neutral", seed * 100 + k, model.spec, thr, tol).pspi for k in range(tries)]
    stimulated = label > 0
    return {"model": float(np.mean(pspi[:, stimulated])), "rules": float(np.mean(np.stack(rules)[:, stimulated]))}


def _resting(frames: np.ndarray, frames_t: int, cfg: EvalConfig) -> dict:
    """Each emotion's resting face (32 °C throughout), the model's patients against the cohort's subjects of that
    emotion (random intensities, their own noise); the first 5 s are left out (the stream's start)."""
    k = cfg.resting_tries
    gen = {e: frames[i * k:(i + 1) * k] for i, e in enumerate(EMOTIONS)}
    data = {e: resting_cohort(e, k, frames_t, [cfg.seed, 300 + i]) for i, e in enumerate(EMOTIONS)}
    return {"note": f"{k} patients per emotion, {frames_t / 25:.0f} s at {BASELINE_C:g} °C each (the first 5 s left out); "
                    "data: the cohort's subjects of that emotion at random intensities.",
            "emotions": resting_table(gen, data, settle=125)}
