"""Baselines, all on the same held-out inputs as the model (docs/evaluation.md).

Each baseline is ``fn(held, pool, tries, rng, spec) -> (N, tries, T, D)`` face frames for the held-out
recordings ``held`` (a :class:`~.data.Recordings`), using only what a generator may know: the stimulus, the
requested expressiveness and emotion (the controls), and the training pool. The oracle alone also reads the
recording's true subject parameters: it is the ceiling on synthetic data, not a competitor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..cohort import RuleBasedFace, SubjectParams
from ..conditions import STIMULUS_LAGS
from ..facespace import EMOTIONS, FACS
from ..generate import rule_based_sequence
from .data import Recordings

COPIER_THRESHOLD_C, COPIER_DELAY_S = 42.0, 1.0


def static_mean_face(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """The training pool's mean face, every frame (the paper's 'mean static face')."""
    mean = pool.frames.reshape(-1, pool.frames.shape[-1]).mean(0)
    return np.broadcast_to(mean, (len(held), tries) + held.frames.shape[1:]).astype(np.float32)


def random_clip(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """Another recording's frames (a random training-pool recording at a random circular offset)."""
    n, t = held.frames.shape[:2]
    out = np.empty((n, tries) + held.frames.shape[1:], np.float32)
    pt = pool.frames.shape[1]
    for i in range(n):
        for k in range(tries):
            src = pool.frames[rng.integers(len(pool))]
            reps = int(np.ceil((t + pt) / pt))
            start = int(rng.integers(pt))
            out[i, k] = np.tile(src, (reps, 1))[start: start + t]
    return out


def _stim_chunks(stim: np.ndarray, chunk: int, hist: int, stride: int):
    """(M, hist + chunk) stimulus segments of each row starting every ``stride`` frames, with their (row, start)."""
    segs, where = [], []
    for r, s in enumerate(stim):
        padded = np.concatenate([np.full(hist, s[0]), s])
        for a in range(0, len(s) - chunk + 1, stride):
            segs.append(padded[a: a + hist + chunk])
            where.append((r, a))
    return np.array(segs), where


def nearest_neighbour(held: Recordings, pool: Recordings, tries: int, rng, spec, chunk: int = 100, hist: int = 25) -> np.ndarray:
    """Chunked nearest neighbour by stimulus (the paper's baseline, chunked): each 4 s chunk of the held-out
    stimulus (with 1 s of history) takes the frames of the training-pool chunk whose stimulus is closest (L2).
    Deterministic: every try is the same."""
    pool_segs, where = _stim_chunks(pool.stimulus, chunk, hist, chunk // 4)
    n, t = held.stimulus.shape
    out = np.empty(held.frames.shape, np.float32)
    q_segs, q_where = _stim_chunks(held.stimulus, chunk, hist, chunk)
    d = (q_segs**2).sum(1)[:, None] - 2 * q_segs @ pool_segs.T + (pool_segs**2).sum(1)[None]
    best = d.argmin(1)
    for (r, a), b in zip(q_where, best):
        pr, pa = where[b]
        out[r, a: a + chunk] = pool.frames[pr, pa: pa + chunk]
    tail = t - (t // chunk) * chunk  # a last partial chunk copies its nearest full chunk's beginning
    if tail:
        segs, _ = _stim_chunks(held.stimulus[:, t - chunk:], chunk, hist, chunk)
        bd = ((segs[:, None] - pool_segs[None]) ** 2).sum(-1).argmin(1)
        for r in range(n):
            pr, pa = where[bd[r]]
            out[r, t - tail:] = pool.frames[pr, pa + chunk - tail: pa + chunk]
    return np.repeat(out[:, None], tries, 1)


def copier_feature(stimulus: np.ndarray) -> np.ndarray:
    """relu(T − 42 °C) delayed by 1 s: the one-line rule that correlates with PSPI as well as the model."""
    d = int(COPIER_DELAY_S * 25)
    s = np.concatenate([np.repeat(stimulus[..., :1], d, -1), stimulus[..., : stimulus.shape[-1] - d]], -1)
    return np.maximum(s - COPIER_THRESHOLD_C, 0.0)


def stimulus_copier(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """Every channel = a + b · relu(T − 42 °C) delayed 1 s, with a, b fitted per channel by least squares on the
    training pool ("scaled sensibly": the pool's mean face at rest and its average rise per °C above 42)."""
    f = copier_feature(pool.stimulus).reshape(-1)
    y = pool.frames.reshape(-1, pool.frames.shape[-1])
    X = np.stack([np.ones_like(f), f], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)  # (2, D)
    q = copier_feature(held.stimulus)
    out = coef[0] + q[..., None] * coef[1]
    return np.repeat(FACS.clip(out.astype(np.float32))[:, None], tries, 1)


def rules_random_subject(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """The cohort's rules with a random subject per try: what robot simulators do today."""
    return _rules(held, tries, rng, lambda i: SubjectParams.sample("random", rng))


def rules_given_controls(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """``generate --rule-based``: the rules with the recording's requested expressiveness and emotion, and its
    pain threshold and tolerance (the controls the model gets)."""
    out = np.empty((len(held), tries) + held.frames.shape[1:], np.float32)
    for i in range(len(held)):
        thr, tol = held.calibration(i)
        for k in range(tries):
            seq = rule_based_sequence(held.stimulus[i], float(held.expressiveness[i]), held.emotion[i],
                                      int(rng.integers(2**31)), spec=spec, threshold=thr, tolerance=tol)
            out[i, k] = seq.frames
    return out


def oracle(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    """The rules with the recording's TRUE subject and new noise: the ceiling on synthetic data."""
    if held.params is None:
        raise ValueError("the oracle needs the recordings' true subject parameters")
    return _rules(held, tries, rng, lambda i: held.params[i])


def _rules(held: Recordings, tries: int, rng, params_of) -> np.ndarray:
    out = np.empty((len(held), tries) + held.frames.shape[1:], np.float32)
    for i in range(len(held)):
        for k in range(tries):
            out[i, k] = RuleBasedFace(params_of(i)).generate(held.stimulus[i].astype(np.float64), rng)
    return out


# ---- a small autoregressive model ---------------------------------------------------------------------------
@dataclasses.dataclass
class RidgeARX:
    """Linear autoregressive model with exogenous inputs, fitted by ridge regression in seconds (numpy):
    z_t = W · [z_{t−1}, z_{t−2}, lagged stimulus (the model's STIMULUS_LAGS), expressiveness, emotion one-hot, 1]
    + Gaussian noise with the residuals' per-channel std; z are face frames standardised by the pool."""

    weights: np.ndarray
    noise: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @staticmethod
    def exogenous(stim: np.ndarray, expr: np.ndarray, emotion: list[str]) -> np.ndarray:
        """(N, T, F) inputs known in advance: lagged stimulus (°C − 37)/6, expressiveness/2, emotion one-hot."""
        n, t = stim.shape
        z = (stim - 37.0) / 6.0
        lags = [np.concatenate([np.repeat(z[:, :1], lag, 1), z[:, : t - lag]], 1) for lag in STIMULUS_LAGS]
        emo = np.zeros((n, len(EMOTIONS)))
        emo[np.arange(n), [EMOTIONS.index(e) for e in emotion]] = 1
        per_rec = np.concatenate([np.asarray(expr, float)[:, None] / 2.0, emo, np.ones((n, 1))], 1)
        return np.concatenate([np.stack(lags, -1), np.repeat(per_rec[:, None], t, 1)], -1)

    @classmethod
    def fit(cls, pool: Recordings, ridge: float = 1.0) -> "RidgeARX":
        f = pool.frames.astype(np.float64)
        mean, std = f.reshape(-1, f.shape[-1]).mean(0), f.reshape(-1, f.shape[-1]).std(0) + 1e-3
        z = (f - mean) / std
        ex = cls.exogenous(pool.stimulus, pool.expressiveness, pool.emotion)
        X = np.concatenate([z[:, 1:-1], z[:, :-2], ex[:, 2:]], -1).reshape(-1, 2 * z.shape[-1] + ex.shape[-1])
        Y = z[:, 2:].reshape(-1, z.shape[-1])
        w = np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ Y)
        return cls(w, (Y - X @ w).std(0), mean, std)

    def generate(self, held: Recordings, tries: int, rng) -> np.ndarray:
        n, t, d = held.frames.shape
        ex = np.repeat(self.exogenous(held.stimulus, held.expressiveness, held.emotion), tries, 0)  # (N·K, T, F)
        z1 = z2 = np.zeros((n * tries, d))
        out = np.empty((n * tries, t, d))
        noise = rng.normal(size=(t, n * tries, d)) * self.noise
        for i in range(t):
            z = np.concatenate([z1, z2, ex[:, i]], 1) @ self.weights + noise[i]
            out[:, i] = z
            z1, z2 = z, z1
        frames = FACS.clip((out * self.std + self.mean).astype(np.float32))
        return frames.reshape(n, tries, t, d)


def ridge_arx(held: Recordings, pool: Recordings, tries: int, rng, spec) -> np.ndarray:
    return RidgeARX.fit(pool).generate(held, tries, rng)


BASELINES = {
    "static mean face": static_mean_face,
    "random clip": random_clip,
    "nearest neighbour (chunked)": nearest_neighbour,
    "stimulus copier": stimulus_copier,
    "rules, random subject": rules_random_subject,
    "rules given the controls": rules_given_controls,
    "ridge ARX": ridge_arx,
    "oracle": oracle,
}
