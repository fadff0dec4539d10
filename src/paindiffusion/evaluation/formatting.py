"""How a report writes numbers and tables (Markdown), shared by the report and its conclusions."""

from __future__ import annotations

import numpy as np

from .generation import MODEL
from .scoring import HIGHER_IS_BETTER

METRIC_NAMES = {
    "pspi_r": "PSPI r (mean over recordings)", "dtw_per_frame": "DTW per frame (PSPI)", "frechet_motion": "Fréchet (motion)",
    "xcorr_best_r": "lagged r with stimulus", "xcorr_best_lag_s": "best lag (s)", "expressiveness_r": "expressiveness r",
    "expressiveness_mean_abs_error": "expressiveness |error|", "emotion_accuracy": "emotion accuracy",
    "jerk_ratio": "jerk / data", "seam_ratio": "seam ratio", "spectral_peak_6p25": "6.25 Hz peak ratio",
    "between_try_r": "between-try r", "mean_pspi": "mean PSPI",
    "response_rate_max_abs_error": "max |response rate − data|", "latency_max_abs_paired_diff_s": "max |latency − data| (s)",
    "paper_PainDist": "PainDist", "paper_PainDivrs": "PainDivrs", "paper_PainVar": "PainVar",
    "paper_PainCorr_max": "PainCorr (max r)", "paper_PainSim": "PainSim (DTW)", "paper_PainAcc": "PainAcc (DTW vs °C)",
    "frames_per_cpu_s": "frames per CPU-second", "frames_per_s": "frames/s (wall clock, busy machine: not a speed)",
    "frechet_au_frames": "Fréchet (AU frames)", "frechet_au_velocity": "Fréchet (AU velocity)",
    "zero_share": "AU values at 0", "observer_preference": "machine observer: taken for real",
}
CORRECTED = ("pspi_r", "dtw_per_frame", "frechet_motion", "xcorr_best_r", "xcorr_best_lag_s", "expressiveness_r",
             "expressiveness_mean_abs_error", "emotion_accuracy", "response_rate_max_abs_error",
             "latency_max_abs_paired_diff_s", "jerk_ratio", "seam_ratio", "spectral_peak_6p25", "between_try_r", "mean_pspi")
PAPER = ("paper_PainDist", "paper_PainDivrs", "paper_PainVar", "paper_PainCorr_max", "paper_PainSim", "paper_PainAcc")


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{v}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {fmt(x, digits)}" for k, x in v.items())
    return str(v)


def cell(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    if s["lo"] is None or not np.isfinite(s["lo"]):
        return fmt(s["mean"])
    return f"{fmt(s['mean'])} ± {fmt((s['hi'] - s['lo']) / 2)}"


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def beats_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Rows: baselines; columns: metrics with a better direction; cell: ✓ model better, ✗ baseline better."""
    metrics = [m for m in HIGHER_IS_BETTER if summary[MODEL][m]["mean"] is not None]
    rows = []
    for name, s in summary.items():
        if name == MODEL:
            continue
        row = [name]
        for m in metrics:
            a, b = summary[MODEL][m]["mean"], s[m]["mean"]
            if a is None or b is None:
                row.append("–")
            else:
                better = a > b if HIGHER_IS_BETTER[m] else a < b
                row.append("✓" if better else "✗")
        rows.append(row)
    return ["baseline"] + [METRIC_NAMES[m] for m in metrics], rows
