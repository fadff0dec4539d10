"""One generator's face frames on the held-out recordings → every metric of the report (one draw).

``score`` returns plain numbers (JSON-ready): scalars under their metric names, per-level tables, per-recording
values (for bootstrap intervals pooled over draws), a calibration curve and an emotion confusion matrix.
"""

from __future__ import annotations

import numpy as np

from ..biovid import resting_mask
from ..cohort import EMOTION_AUS
from ..dataset import expressiveness_of
from ..facespace import EMOTIONS, FACS
from . import metrics as M
from .data import Recordings

LEVELS = (1, 2, 3, 4)
# Channel groups that move differently (docs/evaluation.md): the head moves ~10x more per frame, in degrees, than
# the AUs, so a judder or a mismatch in one group hides in an all-channel average.
PSPI_AUS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
CHANNEL_GROUPS = {
    "pain_aus": [FACS.index(c) for c in PSPI_AUS],
    "other_aus": [i for i, c in enumerate(FACS.channels) if c.startswith("AU") and c not in PSPI_AUS],
    "head": [i for i, c in enumerate(FACS.channels) if c.startswith("head")],
}
AU_CHANNELS = [i for i, c in enumerate(FACS.channels) if c.startswith("AU")]


def realism(frames: np.ndarray, truth: np.ndarray, standardise) -> dict:
    """Where generated motion differs from the data's. The motion Fréchet distance (``metrics.motion_features``:
    per 32-frame window each channel's level and mean |velocity|) restricted to each channel group and feature;
    the Fréchet distance of per-frame AU vectors and of their first differences (AU units, every frame a sample);
    the share of AU values exactly at 0 (the floor of the scale). frames (..., T, D), truth (N, T, D)."""
    fg, ft = M.motion_features(standardise(frames)), M.motion_features(standardise(truth))
    d = frames.shape[-1]
    out = {}
    for name, idx in CHANNEL_GROUPS.items():
        for feature, cols in (("level", idx), ("velocity", [d + i for i in idx])):
            out[f"frechet_{name}_{feature}"] = M.frechet_distance(fg[:, cols], ft[:, cols])
    g_au, t_au = frames[..., AU_CHANNELS], truth[..., AU_CHANNELS]
    out["frechet_au_frames"] = M.frechet_distance(g_au.reshape(-1, len(AU_CHANNELS)), t_au.reshape(-1, len(AU_CHANNELS)))
    out["frechet_au_velocity"] = M.frechet_distance(np.diff(g_au, axis=-2).reshape(-1, len(AU_CHANNELS)),
                                                    np.diff(t_au, axis=-2).reshape(-1, len(AU_CHANNELS)))
    out["zero_share"] = float((g_au == 0).mean())
    for name, idx in CHANNEL_GROUPS.items():
        out[f"seam_ratio_{name}"] = M.seam_ratio(frames[..., idx])
        out[f"spectral_peak_6p25_{name}"] = M.spectral_peak_ratio(frames[..., idx])
    return out


def achieved_expressiveness(pspi: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(N, K, T) generated PSPI → (N,) the project's expressiveness (dataset.expressiveness_of), mean over tries."""
    return np.array([np.mean([expressiveness_of(p, label[i]) for p in pspi[i]]) for i in range(len(pspi))])


def rest_emotion(frames: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(N, K, T, D) → (N, K) emotion index by the nearest-prototype rule on resting frames (metrics.classify_emotion)."""
    aus = [i for i, c in enumerate(FACS.channels) if c.startswith("AU")]
    proto = M.emotion_prototypes(FACS.channels, EMOTION_AUS, EMOTIONS)
    n, k = frames.shape[:2]
    rest = np.empty((n, k, len(aus)))
    for i in range(n):
        mask = resting_mask(label[i])
        if mask.sum() < 25:  # no long rest: use every unstimulated frame
            mask = label[i] == 0
        rest[i] = frames[i][:, mask][..., aus].mean(1)
    pred = M.classify_emotion(rest.reshape(n * k, -1), proto, EMOTIONS.index("Neutral"))
    return pred.reshape(n, k)


def resting_table(generated: dict, data: dict, settle: int = 125) -> dict:
    """Per emotion: mean resting PSPI and the mean of each of its prototype AUs (the cohort's EMOTION_AUS),
    generated vs data. ``generated`` and ``data``: {emotion: (K, T, D) faces at rest}; the first ``settle``
    frames are left out."""
    out = {}
    for e in EMOTIONS:
        g, d = generated[e][:, settle:], data[e][:, settle:]
        out[e] = {"pspi": float(FACS.pspi(g).mean()), "pspi_data": float(FACS.pspi(d).mean()),
                  "aus": {f"AU{au}": [float(g[..., FACS.index(f"AU{au}")].mean()), float(d[..., FACS.index(f"AU{au}")].mean())]
                          for au in EMOTION_AUS[e]}}
    return out


def _responses(pspi: np.ndarray, held: Recordings):
    """Per recording: episode_responses of the K tries and of the truth."""
    out = []
    for i in range(len(held)):
        g = M.episode_responses(pspi[i], held.label[i], held.stimulus[i])
        t = M.episode_responses(held.pspi[i][None], held.label[i], held.stimulus[i])
        out.append((g, t))
    return out


def level_table(pspi: np.ndarray, held: Recordings) -> dict:
    """Per stimulus level: response rate (generated, data), median latency (generated, data) and the median
    paired latency difference (generated − data, same episodes where both responded)."""
    rows = {}
    res = _responses(pspi, held)
    for lv in LEVELS:
        g_resp, t_resp, g_lat, t_lat, diff, g_peak, t_peak = [], [], [], [], [], [], []
        for g, t in res:
            sel = g["level"] == lv
            if not sel.any():
                continue
            g_resp.append(g["responded"][:, sel].ravel())
            t_resp.append(t["responded"][0, sel])
            g_lat.append(g["latency_s"][:, sel].ravel())
            t_lat.append(t["latency_s"][0, sel])
            diff.append((g["latency_s"][:, sel] - t["latency_s"][0, sel][None]).ravel())
            g_peak.append(g["peak"][:, sel].ravel())
            t_peak.append(t["peak"][0, sel])
        if not g_resp:
            continue

        def med(v):
            v = np.concatenate(v)
            v = v[np.isfinite(v)]
            return float(np.median(v)) if len(v) else float("nan")

        rows[str(lv)] = {"episodes": int(sum(len(x) for x in t_resp)),
                         "rate": float(np.concatenate(g_resp).mean()), "rate_data": float(np.concatenate(t_resp).mean()),
                         "latency_s": med(g_lat), "latency_s_data": med(t_lat), "latency_paired_diff_s": med(diff),
                         "peak": float(np.concatenate(g_peak).mean()), "peak_data": float(np.concatenate(t_peak).mean())}
    return rows


def event_locked(pspi: np.ndarray, held: Recordings, before_s: float = 2.0, after_s: float = 14.0) -> dict:
    """Mean smoothed PSPI around episode starts, by level: {level: (generated curve, data curve)}."""
    a, b = int(before_s * M.FPS), int(after_s * M.FPS)
    g = {lv: [] for lv in LEVELS}
    t = {lv: [] for lv in LEVELS}
    sp, st = M.smooth(pspi), M.smooth(held.pspi)
    for i in range(len(held)):
        for s, _, lv, _ in M.episodes(held.label[i], held.stimulus[i]):
            if s - a >= 0 and s + b <= pspi.shape[-1]:
                g[lv].append(sp[i, :, s - a: s + b].mean(0))
                t[lv].append(st[i, s - a: s + b])
    return {str(lv): ([float(x) for x in np.mean(g[lv], 0)], [float(x) for x in np.mean(t[lv], 0)])
            for lv in LEVELS if g[lv]}


def score(frames: np.ndarray, held: Recordings, standardise, group: int = 4) -> dict:
    """Every metric of one generator on one draw. frames (N, K, T, D); ``standardise`` maps face frames to the
    model's latents (PainDist and the Fréchet distance are computed there)."""
    frames = np.asarray(frames, np.float32)
    n, k = frames.shape[:2]
    pspi = FACS.pspi(frames)  # (N, K, T)
    truth_s = M.smooth(held.pspi)
    r_per = M.pearson(M.smooth(pspi), truth_s[:, None]).mean(1)  # (N,) mean over tries
    gl, tl = standardise(frames), standardise(held.frames)
    paper = M.paper_metrics(gl, tl, pspi, held.pspi, held.stimulus)
    lags, xc = M.lagged_xcorr(M.smooth(pspi), held.stimulus[:, None])
    mean_xc = xc.reshape(-1, xc.shape[-1]).mean(0)
    achieved = achieved_expressiveness(pspi, held.label)
    emo_pred = rest_emotion(frames, held.label)
    emo_true = np.array([EMOTIONS.index(e) for e in held.emotion])
    confusion = np.zeros((len(EMOTIONS), len(EMOTIONS)), int)
    np.add.at(confusion, (np.repeat(emo_true, k), emo_pred.ravel()), 1)
    fd = M.frechet_distance(M.motion_features(gl), M.motion_features(tl))
    levels = level_table(pspi, held)
    return {
        "pspi_r": float(r_per.mean()),
        "dtw_per_frame": paper["PainSim"] / M.PAPER_SCORED,
        "frechet_motion": fd,
        "xcorr_best_r": float(mean_xc.max()), "xcorr_best_lag_s": float(lags[int(mean_xc.argmax())]),
        "expressiveness_r": float(M.pearson(held.expressiveness, achieved)) if n > 2 else float("nan"),
        "expressiveness_mean_abs_error": float(np.abs(achieved - held.expressiveness).mean()),
        "emotion_accuracy": float((emo_pred == emo_true[:, None]).mean()),
        "jerk_ratio": M.jerk(frames[..., :17]) / max(M.jerk(held.frames[..., :17]), 1e-12),
        "seam_ratio": M.seam_ratio(frames, group),
        "spectral_peak_6p25": M.spectral_peak_ratio(frames),
        "between_try_r": M.between_try_r(pspi),
        "mean_pspi": float(pspi.mean()),
        "response_rate_max_abs_error": max((abs(v["rate"] - v["rate_data"]) for v in levels.values()), default=float("nan")),
        "latency_max_abs_paired_diff_s": max((abs(v["latency_paired_diff_s"]) for v in levels.values()
                                              if np.isfinite(v["latency_paired_diff_s"])), default=float("nan")),
        **{f"paper_{key}": v for key, v in paper.items()},
        **realism(frames, held.frames, standardise),
        # ---- tables and per-recording values (not averaged as scalars) ----
        "levels": levels,
        "per_recording": {"pspi_r": [float(x) for x in r_per], "requested": [float(x) for x in held.expressiveness],
                          "achieved": [float(x) for x in achieved]},
        "calibration": M.calibration_curve(held.expressiveness, achieved),
        "confusion": confusion.tolist(),
        "xcorr_curve": {"lag_s": [float(x) for x in lags], "r": [float(x) for x in mean_xc]},
    }


# Which direction is better, for the "who beats whom" table (None: no better direction, shown for reference).
HIGHER_IS_BETTER = {"pspi_r": True, "dtw_per_frame": False, "frechet_motion": False, "xcorr_best_r": True,
                    "expressiveness_r": True, "expressiveness_mean_abs_error": False, "emotion_accuracy": True,
                    "response_rate_max_abs_error": False, "latency_max_abs_paired_diff_s": False,
                    "paper_PainDist": False, "paper_PainCorr_max": True, "paper_PainSim": False}
REALISM = tuple(f"frechet_{g}_{f}" for g in CHANNEL_GROUPS for f in ("level", "velocity")) + (
    "frechet_au_frames", "frechet_au_velocity", "zero_share", "observer_preference") + tuple(
    f"{m}_{g}" for m in ("seam_ratio", "spectral_peak_6p25") for g in CHANNEL_GROUPS)
SCALARS = ("pspi_r", "dtw_per_frame", "frechet_motion", "xcorr_best_r", "xcorr_best_lag_s", "expressiveness_r",
           "expressiveness_mean_abs_error", "emotion_accuracy", "jerk_ratio", "seam_ratio", "spectral_peak_6p25",
           "between_try_r", "mean_pspi", "response_rate_max_abs_error", "latency_max_abs_paired_diff_s",
           "paper_PainDist", "paper_PainDivrs", "paper_PainVar", "paper_PainCorr_max", "paper_PainSim", "paper_PainAcc") + REALISM

