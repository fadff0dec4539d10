"""The targets a checkpoint is judged by, defined once as data: the runner attaches the verdicts to every report,
the report prints them and the conclusions count them (docs/evaluation.md).

On the synthetic cohort, *the rules given the controls* are the data's own process fed what the model is told
(the recording's expressiveness, emotion, threshold and tolerance): the best a generator that knows only the
controls can do. A faithful generator ties them; beating them would need tries more alike than the data's. So
the realism and fidelity targets are ratios to that reference in the same run, and PSPI r is judged against its
own ceiling √(between-try r × the data's) (``metrics.correlation_ceiling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import metrics as M
from .generation import MODEL

RULES, ORACLE = "rules given the controls", "oracle"


@dataclass(frozen=True)
class Target:
    key: str
    text: str  # what passes, as the report states it
    measure: Callable[[dict], object]  # report → the value shown
    judge: Callable[[dict], bool | None]  # report → pass; None where the run cannot tell (a reference is missing)


def _mean(report: dict, name: str, metric: str):
    s = report["summary"].get(name)
    return None if s is None else s[metric]["mean"]


def _vs_rules(metric: str, factor: float) -> Target:
    def measure(r):
        return [_mean(r, MODEL, metric), _mean(r, RULES, metric)]

    def judge(r):
        m, ref = measure(r)
        return None if ref is None else bool(m <= factor * ref)

    return Target(f"{metric}_vs_rules", f"[model, rules given the controls]; model ≤ {factor:g} × rules", measure, judge)


def _levels(r: dict) -> dict:
    return r["summary"][MODEL]["levels"]


def _paired(r: dict) -> list[float]:
    """Median paired latency differences at the levels where both the model and the data respond."""
    return [v["latency_paired_diff_s"] for v in _levels(r).values()
            if v["latency_paired_diff_s"] is not None and np.isfinite(v["latency_paired_diff_s"])]


def _ceiling(r: dict):
    m, o = _mean(r, MODEL, "between_try_r"), _mean(r, ORACLE, "between_try_r")
    return None if o is None else M.correlation_ceiling(m, o)


def _resting(r: dict) -> dict:
    return r.get("resting", {}).get("emotions", {})


def _resting_ratios(r: dict) -> list[float]:
    """Model / data for each emotion's resting PSPI and prototype AUs (quantities the data shows at ≥ 0.2)."""
    out = []
    for e in _resting(r).values():
        for g, d in [(e["pspi"], e["pspi_data"])] + [(v[0], v[1]) for v in e["aus"].values()]:
            if d >= 0.2:
                out.append(g / d)
    return out


def _data_zero_share(r: dict) -> float:
    return float(np.mean([d["data"]["zero_share"] for d in r["draws"]]))


TARGETS: tuple[Target, ...] = (
    _vs_rules("frechet_motion", 2.0),
    _vs_rules("frechet_au_frames", 2.0),
    _vs_rules("frechet_au_velocity", 2.0),
    Target("jerk_ratio", "model / data within 10 %", lambda r: _mean(r, MODEL, "jerk_ratio"),
           lambda r: bool(abs(_mean(r, MODEL, "jerk_ratio") - 1) <= 0.10)),
    _vs_rules("dtw_per_frame", 1.05),
    _vs_rules("paper_PainDist", 1.05),
    Target("pspi_r_vs_ceiling", "[model, ceiling √(between-try r × the data's)]; ≥ 0.95 × ceiling",
           lambda r: [_mean(r, MODEL, "pspi_r"), _ceiling(r)],
           lambda r: None if _ceiling(r) is None else bool(_mean(r, MODEL, "pspi_r") >= 0.95 * _ceiling(r))),
    Target("between_try_r", "[model, data process (oracle)]; within 0.1",
           lambda r: [_mean(r, MODEL, "between_try_r"), _mean(r, ORACLE, "between_try_r")],
           lambda r: None if _mean(r, ORACLE, "between_try_r") is None
           else bool(abs(_mean(r, MODEL, "between_try_r") - _mean(r, ORACLE, "between_try_r")) <= 0.1)),
    Target("response_rate_by_level", "[model, data]; within 0.10 at every level",
           lambda r: {k: [v["rate"], v["rate_data"]] for k, v in _levels(r).items()},
           lambda r: all(abs(v["rate"] - v["rate_data"]) <= 0.10 for v in _levels(r).values())),
    Target("median_latency_s_by_level", "[model, data, paired diff]; |diff| ≤ 0.3 s at every level where both respond",
           lambda r: {k: [v["latency_s"], v["latency_s_data"], v["latency_paired_diff_s"]] for k, v in _levels(r).items()},
           lambda r: bool(_paired(r)) and all(abs(x) <= 0.3 for x in _paired(r))),
    Target("medium_preset_vs_median_subject", "[model, rules at the same value] mean PSPI while stimulated; within 15 %",
           lambda r: [r["sweep_medium"]["model"], r["sweep_medium"]["rules"]] if "sweep_medium" in r else None,
           lambda r: None if "sweep_medium" not in r
           else bool(abs(r["sweep_medium"]["model"] - r["sweep_medium"]["rules"]) <= 0.15 * r["sweep_medium"]["rules"])),
    Target("resting_faces", "model / data of each emotion's resting PSPI and prototype AUs; all within 20 %",
           lambda r: [min(_resting_ratios(r)), max(_resting_ratios(r))] if _resting_ratios(r) else None,
           lambda r: None if not _resting_ratios(r) else all(0.8 <= x <= 1.2 for x in _resting_ratios(r))),
    Target("spectral_peak_6p25_by_group", "pain AUs, other AUs, head; each ≤ 1.2",
           lambda r: [_mean(r, MODEL, f"spectral_peak_6p25_{g}") for g in ("pain_aus", "other_aus", "head")],
           lambda r: all(_mean(r, MODEL, f"spectral_peak_6p25_{g}") <= 1.2 for g in ("pain_aus", "other_aus", "head"))),
    Target("seam_ratio_by_group", "pain AUs, other AUs, head; each ≤ 1.05",
           lambda r: [_mean(r, MODEL, f"seam_ratio_{g}") for g in ("pain_aus", "other_aus", "head")],
           lambda r: all(_mean(r, MODEL, f"seam_ratio_{g}") <= 1.05 for g in ("pain_aus", "other_aus", "head"))),
    _vs_rules("expressiveness_mean_abs_error", 1.5),
    Target("expressiveness_r", "≥ 0.85", lambda r: r["summary"][MODEL]["expressiveness_r_pooled"],
           lambda r: bool(r["summary"][MODEL]["expressiveness_r_pooled"] >= 0.85)),
    Target("sweep_strictly_increasing_every_draw", "all true",
           lambda r: [d["sweep"]["strictly_increasing"] for d in r["draws"]],
           lambda r: all(d["sweep"]["strictly_increasing"] for d in r["draws"])),
    Target("stoic_request", "a request ≤ 0.1 achieves ≤ 0.15 in every draw",
           lambda r: [d["sweep"]["achieved"][0] for d in r["draws"]] if r["draws"][0]["sweep"]["requested"][0] <= 0.1 else None,
           lambda r: None if r["draws"][0]["sweep"]["requested"][0] > 0.1
           else all(d["sweep"]["achieved"][0] <= 0.15 for d in r["draws"])),
    Target("low_preset_p99_smoothed_pspi", "≤ 5 in every draw",
           lambda r: float(np.mean([d["sweep"]["low_preset_p99_smoothed_pspi"] for d in r["draws"]])),
           lambda r: max(d["sweep"]["low_preset_p99_smoothed_pspi"] for d in r["draws"]) <= 5),
    Target("zero_share", "[model, data] share of AU values at exactly 0; within 0.05",
           lambda r: [_mean(r, MODEL, "zero_share"), _data_zero_share(r)],
           lambda r: bool(abs(_mean(r, MODEL, "zero_share") - _data_zero_share(r)) <= 0.05)),
)


def judge(report: dict) -> dict:
    """Every target's value, text and verdict for a report (with its ``summary``)."""
    return {t.key: {"value": t.measure(report), "target": t.text, "pass": t.judge(report)} for t in TARGETS}
