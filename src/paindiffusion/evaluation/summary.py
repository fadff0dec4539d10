"""Per-draw scores → the numbers a report states: mean over draws with a 95 % t-interval, PSPI r also with a
bootstrap interval over recordings, and the per-level tables averaged over draws (docs/evaluation.md)."""

from __future__ import annotations

import numpy as np

from . import metrics as M
from .scoring import SCALARS

# Two-sided 95 % Student t quantiles by sample size (draws); 2.0 beyond.
T975 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}


def interval(values) -> dict:
    """Mean over draws with a 95% t-interval (draws are independent cohorts and seeds)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "draws": []}
    h = T975.get(len(v), 2.0) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "lo": float(v.mean() - h), "hi": float(v.mean() + h), "draws": [float(x) for x in v]}


def summarise(report: dict) -> dict:
    """Per generator and metric: mean ± 95% interval over draws; PSPI r also with a bootstrap interval over
    all held-out recordings of all draws."""
    names = list(report["draws"][0]["scores"])
    out = {}
    for name in names:
        rows = [d["scores"][name] for d in report["draws"] if name in d["scores"]]
        s = {m: interval([r.get(m) for r in rows]) for m in SCALARS}
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
                levels[lv] = {k: interval([v[k] for v in vals])["mean"] for k in vals[0]}
        s["levels"] = levels
        out[name] = s
    return out


def model_card_metrics(report: dict) -> dict:
    """The compact numbers a model card quotes: the model's and key baselines' main metrics (mean and 95%
    interval over draws), and the targets."""
    keep = ("pspi_r", "dtw_per_frame", "paper_PainDist", "expressiveness_r", "seam_ratio", "spectral_peak_6p25",
            "between_try_r", "frechet_motion", "frechet_au_frames", "frechet_au_velocity", "zero_share")
    s = report["summary"]
    return {"draws": report["config"]["draws"], "held_out": report["held_out"],
            "generators": {n: {m: [round(s[n][m][k], 4) if s[n][m][k] is not None else None for k in ("mean", "lo", "hi")]
                               for m in keep if m in s[n]} for n in s},
            "targets": {k: {"value": v["value"], "pass": v["pass"]} for k, v in report["targets"].items()}}
