"""Metrics of generated face sequences against held-out ground truth (docs/evaluation.md).

Every function is vectorised over a leading batch axis and documented with its unit. Two families:

* **paper-compatible** (``paper_*``): the PainDiffusion paper's PainDist, PainDivrs, PainVar, PainCorr,
  PainSim and PainAcc with their quirks kept on purpose (maximum r over windows, unnormalised DTW, DTW of
  PSPI against raw °C), on 640-frame windows scored on their last 608 frames. Only for comparison with the
  paper; they reward the wrong things (docs/design.md §2).
* **corrected**: mean r with a bootstrap interval, length-normalised DTW, lagged cross-correlation with the
  stimulus, response rate and latency per stimulus level, expressiveness fidelity, emotion recognisability,
  smoothness and 4-frame seams, diversity between tries, and a Fréchet distance between motion statistics.
"""

from __future__ import annotations

import numpy as np

FPS = 25
PAPER_WINDOW, PAPER_SCORED = 640, 608  # the paper scores 640-frame windows on their last 608 frames


# ---- basics -----------------------------------------------------------------------------------------------
def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (broadcasting); 0 where either side is constant (a static face carries
    no information about the stimulus)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    return np.where(den > 1e-9, (a * b).sum(-1) / np.maximum(den, 1e-300), 0.0)


def smooth(x: np.ndarray, frames: int = 13) -> np.ndarray:
    """Centred moving average along the last axis (13 frames ≈ 0.5 s), edges padded with the edge value:
    PSPI curves are compared as curves, not blink by blink."""
    x = np.asarray(x, np.float64)
    h = frames // 2
    pad = np.concatenate([np.repeat(x[..., :1], h, -1), x, np.repeat(x[..., -1:], h, -1)], -1)
    c = np.cumsum(np.concatenate([np.zeros(x.shape[:-1] + (1,)), pad], -1), -1)
    return (c[..., frames:] - c[..., :-frames]) / frames


def bootstrap_ci(values, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def dtw(a: np.ndarray, b: np.ndarray, normalise: bool = True) -> np.ndarray:
    """Dynamic time warping cost with |a_i − b_j| steps, batched: a (..., n), b (..., m) → (...).

    Computed over anti-diagonals (all pairs of the batch at once). ``normalise`` divides the cost by
    (n + m) / 2, i.e. per frame for equal lengths, so windows of different lengths compare; the paper's
    PainSim is the unnormalised cost.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    n, m = a.shape[-1], b.shape[-1]
    a = np.broadcast_to(a, shape + (n,)).reshape(-1, n)
    b = np.broadcast_to(b, shape + (m,)).reshape(-1, m)
    B = a.shape[0]
    br = np.ascontiguousarray(b[:, ::-1])  # b[k - i] for i = lo..hi is the slice br[m-1-k+lo : m-k+hi]
    # Three rotating diagonals: d[:, i + 1] = D[i, k - i]; column 0 is the i = -1 pad (always inf).
    prev2, prev, cur = (np.full((B, n + 1), np.inf) for _ in range(3))
    for k in range(n + m - 1):
        lo, hi = max(0, k - m + 1), min(n - 1, k)
        cost = np.abs(a[:, lo: hi + 1] - br[:, m - 1 - k + lo: m - k + hi])
        if k == 0:
            cur[:, 1] = cost[:, 0]
        else:
            best = np.minimum(prev[:, lo: hi + 1], prev[:, lo + 1: hi + 2])
            np.minimum(best, prev2[:, lo: hi + 1], out=best)
            cur[:, lo + 1: hi + 2] = cost + best
        # Later diagonals read at most one cell beyond this one's valid range: keep those infinite (the buffer
        # still holds diagonal k − 3 there).
        cur[:, lo] = np.inf
        if hi + 2 <= n:
            cur[:, hi + 2] = np.inf
        prev2, prev, cur = prev, cur, prev2
    out = prev[:, n]
    if normalise:
        out = out / ((n + m) / 2)
    return out.reshape(shape)


def paper_windows(x: np.ndarray) -> np.ndarray:
    """Cut (..., T, ...) → (..., W, 608, ...) : consecutive 640-frame windows along axis -1 of a PSPI-like
    (..., T) array, keeping the scored last 608 frames of each (the first 32 are the paper's context)."""
    x = np.asarray(x)
    w = x.shape[-1] // PAPER_WINDOW
    if w == 0:
        raise ValueError(f"sequences of {x.shape[-1]} frames are shorter than the paper's {PAPER_WINDOW}-frame window")
    x = x[..., : w * PAPER_WINDOW].reshape(x.shape[:-1] + (w, PAPER_WINDOW))
    return x[..., PAPER_WINDOW - PAPER_SCORED:]


# ---- paper-compatible ---------------------------------------------------------------------------------------
def paper_metrics(gen_latents: np.ndarray, true_latents: np.ndarray, gen_pspi: np.ndarray, true_pspi: np.ndarray,
                  stimulus: np.ndarray) -> dict:
    """The paper's six numbers. gen_latents (N, K, T, D) standardised face frames of K tries per recording,
    true_latents (N, T, D); gen_pspi (N, K, T); true_pspi and stimulus (N, T) (°C).

    PainDist: MSE of latents vs truth. PainDivrs: mean pairwise squared distance between tries. PainVar: mean
    temporal variance. PainCorr: the *maximum* Pearson r over all windows and tries (the official code's
    quirk). PainSim: unnormalised DTW(generated PSPI, true PSPI). PainAcc: unnormalised DTW(generated PSPI,
    raw °C) — dominated by the level offset between a 0-16 score and ~32-50 °C (kept as the paper has it).
    """
    gl = np.moveaxis(paper_windows(np.moveaxis(gen_latents, -1, -2)), -1, -2)  # (N, K, W, 608, D)
    tl = np.moveaxis(paper_windows(np.moveaxis(true_latents, -1, -2)), -1, -2)  # (N, W, 608, D)
    gp, tp, st = paper_windows(gen_pspi), paper_windows(true_pspi), paper_windows(stimulus)
    k = gl.shape[1]
    diffs = [((gl[:, i] - gl[:, j]) ** 2).mean() for i in range(k) for j in range(i + 1, k)]
    return {
        "PainDist": float(((gl - tl[:, None]) ** 2).mean()),
        "PainDivrs": float(np.mean(diffs)) if diffs else float("nan"),
        "PainVar": float(gl.var(axis=-2).mean()),
        "PainCorr_max": float(pearson(gp, tp[:, None]).max()),
        "PainSim": float(dtw(gp, tp[:, None], normalise=False).mean()),
        "PainAcc": float(dtw(gp, st[:, None], normalise=False).mean()),
    }


# ---- stimulus following -------------------------------------------------------------------------------------
def lagged_xcorr(response: np.ndarray, stimulus: np.ndarray, max_lag_s: float = 4.0, step: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Time-lagged cross-correlation (REACT's synchrony idea): r(response[t], stimulus[t − lag]) for lags
    0..max_lag_s in ``step``-frame steps. response (..., T), stimulus (..., T) → (lags_s, r (..., L))."""
    lags = np.arange(0, int(max_lag_s * FPS) + 1, step)
    t = response.shape[-1]
    rs = [pearson(response[..., lag:], stimulus[..., : t - lag]) for lag in lags]
    return lags / FPS, np.stack(rs, -1)


# ---- responses to stimulus episodes -------------------------------------------------------------------------
def episodes(label: np.ndarray, stimulus: np.ndarray, plateau_tol_c: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Stimulated episodes of one recording: (start, end, level, plateau_onset) frames, from contiguous runs of
    label > 0. The plateau onset is the first frame whose temperature is within ``plateau_tol_c`` of the
    episode's maximum (the ramp has ended)."""
    lab = np.asarray(label)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (lab > 0).astype(np.int8), [0]])))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        s = stimulus[a:b]
        onset = a + int(np.argmax(s >= s.max() - plateau_tol_c))
        out.append((int(a), int(b), int(lab[a:b].max()), onset))
    return out


def episode_responses(pspi: np.ndarray, label: np.ndarray, stimulus: np.ndarray, threshold: float = 1.0,
                      baseline_s: float = 2.0, after_s: float = 4.0) -> dict:
    """Response of K sequences (K, T) to each episode of one recording (label and stimulus (T,)).

    On 0.5 s-smoothed PSPI: baseline = median over the ``baseline_s`` before the episode; peak = maximum from
    the episode start to ``after_s`` after its end; the sequence *responds* when peak − baseline ≥
    ``threshold`` (PSPI points). Latency (s) = first time the curve reaches baseline + ½(peak − baseline),
    counted from the plateau onset (negative: it rose during the ramp); NaN without a response.
    Returns arrays (K, E): responded, latency_s, peak (above baseline), and level (E,).
    """
    p = smooth(np.atleast_2d(pspi))
    t = p.shape[-1]
    eps = episodes(label, stimulus)
    k = p.shape[0]
    responded = np.zeros((k, len(eps)), bool)
    latency = np.full((k, len(eps)), np.nan)
    peak = np.zeros((k, len(eps)))
    for e, (a, b, _, onset) in enumerate(eps):
        base = np.median(p[:, max(0, a - int(baseline_s * FPS)): max(a, 1)], axis=1)
        seg = p[:, a: min(t, b + int(after_s * FPS))]
        rise = seg.max(1) - base
        peak[:, e] = rise
        responded[:, e] = rise >= threshold
        half = seg >= (base + 0.5 * rise)[:, None]
        first = a + np.argmax(half, axis=1)
        latency[:, e] = np.where(responded[:, e], (first - onset) / FPS, np.nan)
    return {"responded": responded, "latency_s": latency, "peak": peak,
            "level": np.array([lv for _, _, lv, _ in eps], int)}


# ---- controls ------------------------------------------------------------------------------------------------
def calibration_curve(requested: np.ndarray, achieved: np.ndarray, bins: int = 6) -> dict:
    """Requested vs achieved expressiveness in equal-count bins: bin centres and mean achieved."""
    req, ach = np.asarray(requested, float), np.asarray(achieved, float)
    order = np.argsort(req)
    parts = [p for p in np.array_split(order, min(bins, len(req))) if len(p)]
    return {"requested": [float(req[p].mean()) for p in parts], "achieved": [float(ach[p].mean()) for p in parts]}


def strictly_increasing(values) -> bool:
    v = np.asarray(values, float)
    return bool(np.all(np.diff(v) > 0))


def emotion_prototypes(channels: tuple[str, ...], emotion_aus: dict, emotions: tuple[str, ...]) -> np.ndarray:
    """(8, C) prototype AU vectors (EMFACS, as the cohort's EMOTION_AUS) over the face space's AU channels."""
    aus = [c for c in channels if c.startswith("AU")]
    proto = np.zeros((len(emotions), len(aus)))
    for i, e in enumerate(emotions):
        for au, v in emotion_aus[e].items():
            if f"AU{au}" in aus:
                proto[i, aus.index(f"AU{au}")] = v
    return proto


def classify_emotion(rest_au: np.ndarray, prototypes: np.ndarray, neutral: int, scale=(0.5, 1.5)) -> np.ndarray:
    """Nearest prototype: rest_au (N, C) mean AU vector of resting frames, minus the 'Neutral' face (the small
    positive floor of clipped noise) → the class whose prototype, scaled by its best fit within ``scale``,
    is closest (Euclidean). Neutral's prototype is the zero vector. Returns (N,) class indices."""
    x = np.asarray(rest_au, float)
    p = prototypes
    pp = (p * p).sum(1)
    s = np.clip((x @ p.T) / np.maximum(pp, 1e-9), *scale)  # (N, 8) best scale per prototype
    s[:, pp == 0] = 0.0
    d = ((x[:, None, :] - s[..., None] * p[None]) ** 2).sum(-1)
    d[:, neutral] = (x * x).sum(1)
    return d.argmin(1)


# ---- motion quality -----------------------------------------------------------------------------------------
def jerk(frames: np.ndarray) -> float:
    """Mean |third difference| per frame³ of all channels of (..., T, D) frames (in channel units)."""
    return float(np.abs(np.diff(frames, 3, axis=-2)).mean())


def seam_ratio(frames: np.ndarray, group: int = 4) -> float:
    """Mean |frame difference| across ``group``-frame stack boundaries (frame 4k−1 → 4k, the stream's stacks
    start at frame 0) over the mean within stacks; 1.0 for a process without stacks."""
    d = np.abs(np.diff(np.asarray(frames, np.float64), axis=-2))  # d[t] = |x[t+1] − x[t]|
    boundary = (np.arange(1, d.shape[-2] + 1) % group) == 0
    return float(d[..., boundary, :].mean() / max(d[..., ~boundary, :].mean(), 1e-12))


def spectral_peak_ratio(frames: np.ndarray, freq_hz: float = 6.25, segment: int = 64) -> float:
    """Power at ``freq_hz`` over the mean of the bins 2 and 3 away on each side — the nearest bins outside the Hann
    window's main lobe, which a pure tone also fills (Welch: Hann-windowed ``segment``-frame segments, mean over
    segments and channels of per-channel normalised spectra). A 4-frame judder at 25 fps shows at 6.25 Hz
    (bin 16 of 64); a smooth process gives ≈ 1."""
    x = np.asarray(frames, np.float64)
    x = np.moveaxis(x, -1, -2)  # (..., D, T)
    n = x.shape[-1] // segment
    seg = x[..., : n * segment].reshape(x.shape[:-1] + (n, segment))
    seg = seg - seg.mean(-1, keepdims=True)
    p = np.abs(np.fft.rfft(seg * np.hanning(segment), axis=-1)) ** 2
    p = p.mean(-2)  # mean over segments → (..., D, F)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    p = p.reshape(-1, p.shape[-1]).mean(0)
    k = int(round(freq_hz * segment / FPS))
    return float(p[k] / max(np.mean([p[k - 3], p[k - 2], p[k + 2], p[k + 3]]), 1e-12))


def between_try_r(pspi: np.ndarray) -> float:
    """Mean pairwise Pearson r of smoothed PSPI between the K tries of each recording: (N, K, T) → scalar."""
    p = smooth(pspi)
    k = p.shape[1]
    rs = [pearson(p[:, i], p[:, j]) for i in range(k) for j in range(i + 1, k)]
    return float(np.mean(rs)) if rs else float("nan")


def correlation_ceiling(between_try_model: float, between_try_data: float) -> float:
    """The highest mean r a generator can reach with a held-out recording, given how alike its own tries are.

    Write a try as X = S + N (S: what every try of the same controls shares, N: this try's own variation) and
    the recording as Y = S' + N'. Only the shared parts can correlate (N, N' are independent of everything
    else), so r(X, Y) = cov(S, S') / (σ_X σ_Y) ≤ σ_S σ_S' / (σ_X σ_Y) = √(ρ_X ρ_Y) (Cauchy-Schwarz), where
    ρ = σ_S² / σ² is exactly the between-try r. Equality holds when the generator shares the data's S."""
    return float(np.sqrt(max(between_try_model, 0.0) * max(between_try_data, 0.0)))


# ---- realism ---------------------------------------------------------------------------------------------------
def motion_features(latents: np.ndarray, window: int = 32) -> np.ndarray:
    """Per 1.28 s window of standardised frames (..., T, D): each channel's mean and mean |velocity| → (M, 2D)."""
    x = np.asarray(latents, np.float64)
    d = x.shape[-1]
    x = x.reshape(-1, x.shape[-2], d)
    w = x.shape[1] // window
    x = x[:, : w * window].reshape(-1, window, d)
    return np.concatenate([x.mean(1), np.abs(np.diff(x, axis=1)).mean(1)], 1)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows = samples):
    ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), with tr((Σ1Σ2)^½) = Σ √eig(Σ1Σ2) (real, ≥ 0 for PSD Σ)."""
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(ev.real, 0, None)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
