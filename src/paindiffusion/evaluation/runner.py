"""The evaluation run: held-out draws → model and baselines → metrics → report (docs/evaluation.md).

    from paindiffusion.evaluation import run_evaluation
    report = run_evaluation(model, "reports/eval", quick=True)   # → dict, also report.json / .md / .html

Each draw is a new held-out cohort (new subjects, seed 7000 + draw) with new sampling seeds. The model
generates every recording × try of every draw, plus the expressiveness sweep, in ONE batched PainStream.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..dataset import PackedData, expressiveness_of
from ..errors import PainDiffusionError, PainDiffusionWarning
from ..facespace import FACS
from ..stream import PainStream, SamplerSettings
from . import metrics as M
from .baselines import BASELINES
from .data import SWEEP_CALIBRATION, Recordings, fresh_cohort, from_packed, sweep_protocol, training_pool
from .scoring import SCALARS, event_locked, score

MODEL = "PainDiffusion"


@dataclass
class EvalConfig:
    """Sizes of a run. ``quick`` ≤ 5 min, full ≤ 30 min on a 2-core machine (docs/evaluation.md)."""

    draws: int = 3
    subjects: int = 5  # held-out recordings per draw
    minutes: float = 2.0  # length of each held-out recording
    tries: int = 2  # samples per recording (the paper uses 5)
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
                "pool_minutes": 10.0, "extras": True}
        return cls(**{**base, **kw})


def trained_range(model) -> tuple[tuple[float, float], str]:
    """Numeric expressiveness range the checkpoint was trained on: an explicit config field when it has one,
    else its presets' low..high (the 10th-90th percentile of its training recordings)."""
    for holder in (model.spec, model.info or {}):
        rng = getattr(holder, "expressiveness_range", None) if not isinstance(holder, dict) else holder.get("expressiveness_range")
        if rng is not None:
            return (float(rng[0]), float(rng[1])), "the checkpoint's expressiveness_range"
    p = model.spec.presets
    return (float(p["low"]), float(p["high"])), "the checkpoint's presets low..high (10th-90th percentile of training)"


def requestable(model, value) -> tuple[float | str, bool]:
    """The expressiveness to request for a recording: its own value, or the one the checkpoint uses instead —
    the nearest end of its trained range, where it clamps (its warning is silenced here: the report counts the
    changes once) or, for a checkpoint that refuses such values, the same clamp. Returns (value, changed)."""
    if isinstance(value, str):
        return value, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PainDiffusionWarning)
            used = model.spec.expressiveness_value(value)
    except PainDiffusionError:
        (lo, hi), _ = trained_range(model)
        used = float(np.clip(float(value), lo, hi))
    return (value, False) if used == float(value) else (used, True)


def generate_model(model, jobs: list[dict], seed: int, settings: SamplerSettings | None = None,
                   progress: bool = True, label: str = MODEL) -> np.ndarray:
    """Run every job (stimulus (T,), expressiveness, emotion) in one batched stream → (B, T, D) frames."""
    from tqdm.auto import tqdm

    for j in jobs:
        j["expressiveness"], j["clamped"] = requestable(model, j["expressiveness"])
    t = len(jobs[0]["stimulus"])
    trace = np.stack([j["stimulus"] for j in jobs])
    stream = PainStream(model, trace=trace, batch=len(jobs), seed=seed, settings=settings,
                        expressiveness=[j["expressiveness"] for j in jobs], emotion=[j["emotion"] for j in jobs],
                        threshold=[j.get("threshold") for j in jobs], tolerance=[j.get("tolerance") for j in jobs])
    chunks = []
    for _ in tqdm(range(-(-t // stream.group)), desc=f"{label} ({len(jobs)} sequences × {t} frames)", disable=not progress,
                  leave=False):
        chunks.append(stream.step().frames)
    return np.concatenate(chunks, 1)[:, :t]


def _jobs(held: Recordings, tries: int) -> list[dict]:
    return [{"stimulus": held.stimulus[i], "expressiveness": float(np.clip(held.expressiveness[i], 0, 16)),
             "emotion": held.emotion[i], **dict(zip(("threshold", "tolerance"), held.calibration(i))),
             } for i in range(len(held)) for _ in range(tries)]


def _sweep_jobs(values: list, stim: np.ndarray, tries: int) -> list[dict]:
    thr, tol = SWEEP_CALIBRATION
    return [{"stimulus": stim, "expressiveness": v, "emotion": "Neutral", "threshold": thr, "tolerance": tol}
            for v in values for _ in range(tries)]


def _standardiser(model) -> Callable:
    mean, std = model.standardizer.mean.numpy(), model.standardizer.std.numpy()
    return lambda f: (np.asarray(f, np.float32) - mean) / std


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
    from tqdm.auto import tqdm

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
    standardise = _standardiser(model)
    frames_t = int(cfg.minutes * 60 * 25) // 4 * 4
    pool = training_pool(model, data, cfg.pool_subjects, cfg.pool_minutes)
    definition = model.spec.expressiveness_definition  # requested and achieved on the checkpoint's own scale
    helds = [(from_packed(data, "test", frames_t) if data is not None else fresh_cohort(cfg.subjects, cfg.minutes, d))
             .with_definition(definition) for d in range(cfg.draws)]
    frames_t = helds[0].frames.shape[1]
    (lo, hi), range_source = trained_range(model)
    sweep_values = [float(v) for v in np.linspace(lo, hi, cfg.sweep_values)]
    sweep = [sweep_protocol(frames_t, d) for d in range(cfg.draws)]

    # ---- the model: every draw, recording, try and sweep value in one batched stream ----------------------
    jobs, spans = [], []
    for d, held in enumerate(helds):
        a = len(jobs)
        jobs += _jobs(held, cfg.tries)
        b = len(jobs)
        jobs += _sweep_jobs(sweep_values + ["low"], sweep[d][0], cfg.sweep_tries)
        spans.append((a, b, len(jobs)))
    t_gen = time.time()
    out = generate_model(model, jobs, seed=cfg.seed, progress=progress)
    gen_seconds = time.time() - t_gen
    clamped = sum(j["clamped"] for j in jobs)

    per_draw, plots = [], {"windows": [], "event_locked": {}}
    for d, held in enumerate(tqdm(helds, desc="baselines and metrics", disable=not progress, leave=False)):
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
        sw = out[b:c].reshape(len(sweep_values) + 1, cfg.sweep_tries, frames_t, -1)
        sw_pspi = model.space.pspi(sw)
        achieved = [float(np.mean([expressiveness_of(p, sweep[d][1], definition) for p in sw_pspi[v]])) for v in range(len(sw))]
        draw = {"held_out": held.source, "recordings": held.names, "scores": scores, "notes": notes,
                "data": {"seam_ratio": M.seam_ratio(held.frames), "spectral_peak_6p25": M.spectral_peak_ratio(held.frames),
                         "mean_pspi": float(held.pspi.mean())},
                "sweep": {"requested": sweep_values, "achieved": achieved[:-1], "low_preset_achieved": achieved[-1],
                          "strictly_increasing": M.strictly_increasing(achieved[:-1]),
                          "low_preset_p99_smoothed_pspi": float(np.percentile(M.smooth(sw_pspi[-1]), 99))}}
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
    report["summary"] = summarise(report)
    report["must_show"] = must_show(report)
    if cfg.extras:
        from .extras import run_extras

        report["extras"] = run_extras(model, helds[0], pool, cfg, progress=progress)
    report["timing"]["total_s"] = round(time.time() - t0, 1)
    if out_dir is not None:
        from .report import write_report

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


def model_pspi(frames: np.ndarray) -> np.ndarray:
    return FACS.pspi(frames)


# ---- aggregation ------------------------------------------------------------------------------------------------
def _interval(values) -> dict:
    """Mean over draws with a 95% t-interval (draws are independent cohorts and seeds)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "draws": []}
    t975 = {1: float("nan"), 2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    h = t975.get(len(v), 2.0) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "lo": float(v.mean() - h), "hi": float(v.mean() + h), "draws": [float(x) for x in v]}


def summarise(report: dict) -> dict:
    """Per generator and metric: mean ± 95% interval over draws; PSPI r also with a bootstrap interval over
    all held-out recordings of all draws."""
    names = list(report["draws"][0]["scores"])
    out = {}
    for name in names:
        rows = [d["scores"][name] for d in report["draws"] if name in d["scores"]]
        s = {m: _interval([r[m] for r in rows]) for m in SCALARS}
        per = np.concatenate([r["per_recording"]["pspi_r"] for r in rows])
        lo, hi = M.bootstrap_ci(per, seed=0)
        s["pspi_r"]["bootstrap_lo"], s["pspi_r"]["bootstrap_hi"] = lo, hi
        req = np.concatenate([r["per_recording"]["requested"] for r in rows])
        ach = np.concatenate([r["per_recording"]["achieved"] for r in rows])
        s["expressiveness_r_pooled"] = float(M.pearson(req, ach))
        levels = {}
        for lv in ("1", "2", "3", "4"):
            vals = [r["levels"][lv] for r in rows if lv in r["levels"]]
            if vals:
                levels[lv] = {k: _interval([v[k] for v in vals])["mean"] for k in vals[0]}
        s["levels"] = levels
        out[name] = s
    return out


def model_card_metrics(report: dict) -> dict:
    """The compact numbers a model card quotes: the model's and key baselines' main metrics (mean and 95%
    interval over draws), and the must-show list."""
    keep = ("pspi_r", "dtw_per_frame", "paper_PainDist", "expressiveness_r", "seam_ratio", "spectral_peak_6p25",
            "between_try_r", "frechet_motion")
    s = report["summary"]
    return {"draws": report["config"]["draws"], "held_out": report["held_out"],
            "generators": {n: {m: [round(s[n][m][k], 4) if s[n][m][k] is not None else None for k in ("mean", "lo", "hi")]
                               for m in keep} for n in s},
            "must_show": {k: {"value": v["value"], "pass": v["pass"]} for k, v in report["must_show"].items()}}


def must_show(report: dict) -> dict:
    """The numbers issue 12 judges a model by, with their targets (None where the data cannot tell)."""
    s, draws = report["summary"], report["draws"]
    model = s[MODEL]
    data_try_r = s.get("oracle", {}).get("between_try_r", {}).get("mean")
    rules = s.get("rules given the controls")
    lv = model["levels"]
    # Levels where the data never responds (often level 1) have no latency to match: they are shown, not judged.
    paired = [v["latency_paired_diff_s"] for v in lv.values()
              if v["latency_paired_diff_s"] is not None and np.isfinite(v["latency_paired_diff_s"])]
    items = {
        "expressiveness_r": (model["expressiveness_r_pooled"], "≥ 0.85", model["expressiveness_r_pooled"] >= 0.85),
        "sweep_strictly_increasing_every_draw": ([d["sweep"]["strictly_increasing"] for d in draws], "all true",
                                                 all(d["sweep"]["strictly_increasing"] for d in draws)),
        "low_preset_p99_smoothed_pspi": (float(np.mean([d["sweep"]["low_preset_p99_smoothed_pspi"] for d in draws])), "≤ 5",
                                         max(d["sweep"]["low_preset_p99_smoothed_pspi"] for d in draws) <= 5),
        "median_latency_s_by_level": ({k: [v["latency_s"], v["latency_s_data"], v["latency_paired_diff_s"]] for k, v in lv.items()},
                                      "[model, data, paired diff]; |diff| ≤ 0.3 s at every level where both respond",
                                      bool(paired) and all(abs(x) <= 0.3 for x in paired)),
        "response_rate_by_level": ({k: [v["rate"], v["rate_data"]] for k, v in lv.items()}, "[model, data]; within 0.15",
                                   all(abs(v["rate"] - v["rate_data"]) <= 0.15 for v in lv.values())),
        "seam_ratio": (model["seam_ratio"]["mean"], "≤ 1.15", model["seam_ratio"]["mean"] <= 1.15),
        "spectral_peak_6p25": (model["spectral_peak_6p25"]["mean"], "≤ 1.2", model["spectral_peak_6p25"]["mean"] <= 1.2),
        "pspi_r": (model["pspi_r"]["mean"], "≥ 0.68", model["pspi_r"]["mean"] >= 0.68),
        "between_try_r": ([model["between_try_r"]["mean"], data_try_r], "[model, data process (oracle)]; within 0.1",
                          None if data_try_r is None else abs(model["between_try_r"]["mean"] - data_try_r) <= 0.1),
    }
    if rules is not None:
        for m in ("dtw_per_frame", "paper_PainDist"):
            items[f"{m}_vs_rules_given_controls"] = ([model[m]["mean"], rules[m]["mean"]], "[model, rules]; model lower",
                                                     model[m]["mean"] < rules[m]["mean"])
    return {k: {"value": v, "target": t, "pass": p} for k, (v, t, p) in items.items()}
