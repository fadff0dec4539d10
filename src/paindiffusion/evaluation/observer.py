"""A machine observer: a classifier two-sample test of realism (docs/evaluation.md, "Machine observer").

The paper's realism evidence is a two-alternative forced choice: shown a real recording and a generated face
side by side, clinicians picked the generated one as "the real patient" 31.2 % ± 4.8 % of the time (50 % =
indistinguishable). A classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017) is its machine analogue: a
small classifier learns to tell real from generated motion on some recordings and is then asked, on other
recordings, which of two windows is real. Its **preference rate** for the generated side

    preference = P(score(generated window) > score(real window))        (ties count ½)

is what a participant's 2AFC rate is, and equals 1 − AUC of the classifier on held-out windows. 50 % means the
classifier finds nothing that separates the two; 0 % means every generated window is told apart.

The classifier sees **motion only** (face frames, not the stimulus): fixed-length windows of standardised
channels and their first differences, through a tiny 1-D convolution net (:class:`ObserverNet`). So real motion
placed at the wrong time (a random clip of another recording) is indistinguishable by construction, which
makes it the test's null check.

Recordings are split into two folds; an observer trained on one fold answers the other (cross-fitting), so
every window is judged by an observer that never saw its recording. When ``real`` and ``generated`` are paired
(the same count and lengths: generated[i] made for real[i]'s stimulus), each trial compares the two windows at
the same time of the same recording, as a study trial does; otherwise every real × generated window pair of
a fold is a trial. The 95 % interval is a percentile bootstrap over recordings (windows of one recording are
not independent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import PainDiffusionError
from .metrics import bootstrap_ci


@dataclass(frozen=True)
class ObserverConfig:
    """Window length (seconds of motion one judgement sees), the net's width and its training budget."""

    window_s: float = 2.56  # 64 frames at 25 fps: long enough for a blink and the rise of a pain response
    features: str = "both"  # "levels" (z only) or "differences" (Δz only): which of the two the observer may see
    hop: float = 0.5  # windows overlap by half
    width: int = 32
    epochs: int = 15
    min_steps: int = 200  # a small training set (a short study's few windows) still gets enough optimiser steps
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-2

    def frames(self, fps: float) -> int:
        return max(8, int(round(self.window_s * fps)))


def motion_windows(seq: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(T, D) frames → (n, window, D) windows starting every ``hop`` frames (n = 0 if T < window)."""
    seq = np.asarray(seq, np.float32)
    starts = range(0, len(seq) - window + 1, hop)
    return np.stack([seq[a:a + window] for a in starts]) if len(seq) >= window else np.zeros((0, window, seq.shape[1]), np.float32)


@dataclass
class MotionFeatures:
    """Each window as its standardised channels z = (x − μ) / σ and first differences Δz = (x_t − x_{t−1}) / σ_Δ
    (μ, σ, σ_Δ per channel from the training windows): level and speed of every channel, side by side."""

    mean: np.ndarray
    std: np.ndarray
    diff_std: np.ndarray
    kinds: str = "both"

    @classmethod
    def fit(cls, windows: np.ndarray, kinds: str = "both") -> "MotionFeatures":
        if kinds not in ("both", "levels", "differences"):
            raise PainDiffusionError(f"observer features {kinds!r}: use both, levels or differences")
        flat = windows.reshape(-1, windows.shape[-1])
        diff = np.diff(windows, axis=1).reshape(-1, windows.shape[-1])
        return cls(flat.mean(0), flat.std(0) + 1e-3, diff.std(0) + 1e-3, kinds)

    def __call__(self, windows: np.ndarray) -> torch.Tensor:
        z = (windows - self.mean) / self.std
        dz = np.diff(windows, axis=1, prepend=windows[:, :1]) / self.diff_std
        parts = {"both": [z, dz], "levels": [z], "differences": [dz]}[self.kinds]
        return torch.from_numpy(np.concatenate(parts, -1).astype(np.float32))


class ObserverNet(nn.Module):
    """Two 1-D convolutions over time (kernel 5, the second dilated: a 0.5 s receptive field at 25 fps), then the
    mean and the maximum over the window, then one logit: positive = "real"."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, width, 5, padding=2)
        self.conv2 = nn.Conv1d(width, width, 5, padding=4, dilation=2)
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, window, channels) → (B,)
        h = nn.functional.gelu(self.conv1(x.transpose(1, 2)))
        h = nn.functional.gelu(self.conv2(h))
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], 1)).squeeze(1)


class MachineObserver:
    """A trained observer: :meth:`window_scores` (one logit per window, higher = more real) and :meth:`realness`
    (a whole clip's mean logit, what answers a study trial)."""

    def __init__(self, net: ObserverNet, features: MotionFeatures, window: int, hop: int):
        self.net, self.features, self.window, self.hop = net.eval(), features, window, hop

    @classmethod
    def fit(cls, real: list[np.ndarray], generated: list[np.ndarray], fps: float = 25, *, seed: int = 0,
            config: ObserverConfig | None = None) -> "MachineObserver":
        """Train on every window of ``real`` (label 1) and ``generated`` (label 0), the classes weighted equally."""
        cfg = config or ObserverConfig()
        window = cfg.frames(fps)
        hop = max(1, int(round(window * cfg.hop)))
        wr = _windows(real, window, hop, "real")
        wg = _windows(generated, window, hop, "generated")
        features = MotionFeatures.fit(wr, cfg.features)
        x = torch.cat([features(wr), features(wg)])
        y = torch.cat([torch.ones(len(wr)), torch.zeros(len(wg))])
        weight = torch.cat([torch.full((len(wr),), 0.5 / len(wr)), torch.full((len(wg),), 0.5 / len(wg))]) * len(x)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = ObserverNet(x.shape[-1], cfg.width)
        opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        net.train()
        batches: list = []
        for _ in range(max(cfg.min_steps, cfg.epochs * -(-len(x) // cfg.batch))):
            if not batches:  # a new epoch: every window once, in a new order
                batches = list(torch.randperm(len(x), generator=gen).split(cfg.batch))
            i = batches.pop()
            loss = (nn.functional.binary_cross_entropy_with_logits(net(x[i]), y[i], reduction="none") * weight[i]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return cls(net, features, window, hop)

    @torch.no_grad()
    def window_scores(self, seq: np.ndarray) -> np.ndarray:
        w = motion_windows(seq, self.window, self.hop)
        return self.net(self.features(w)).numpy() if len(w) else np.zeros(0, np.float32)

    def realness(self, seq: np.ndarray) -> float:
        """Mean logit over the clip's windows: > 0 leans "real"."""
        s = self.window_scores(seq)
        if not len(s):
            raise PainDiffusionError(f"a clip of {len(seq)} frames is shorter than the observer's window ({self.window} frames)")
        return float(s.mean())


def _windows(seqs: list[np.ndarray], window: int, hop: int, what: str) -> np.ndarray:
    parts = [motion_windows(s, window, hop) for s in seqs]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise PainDiffusionError(f"no {what} sequence is as long as the observer's window ({window} frames)")
    return np.concatenate(parts)


def _check(seqs, what: str) -> list[np.ndarray]:
    out = [np.asarray(s, np.float32) for s in seqs]
    if len(out) < 4:
        raise PainDiffusionError(f"the realism test needs at least 4 {what} sequences (2 per fold), got {len(out)}")
    if any(s.ndim != 2 or not np.isfinite(s).all() for s in out):
        raise PainDiffusionError(f"every {what} sequence must be a finite (T, D) array of face frames")
    if len({s.shape[1] for s in out}) != 1:
        raise PainDiffusionError(f"{what} sequences have different channel counts")
    return out


def _preference(gen_scores: np.ndarray, real_scores: np.ndarray) -> np.ndarray:
    """Per generated window: the share of its real partners it beats (ties ½)."""
    return (gen_scores[:, None] > real_scores[None]).mean(1) + 0.5 * (gen_scores[:, None] == real_scores[None]).mean(1)


def realism_two_sample_test(real: list[np.ndarray], generated: list[np.ndarray], fps: float = 25, *, seed: int = 0,
                            config: ObserverConfig | None = None) -> dict:
    """The machine observer's 2AFC preference rate for ``generated`` over ``real`` face sequences ((T, D) arrays in
    the model's face space), with a 95 % bootstrap interval over recordings.

    Returns ``{"preference", "lo", "hi", "accuracy", "trials", "windows": {"real", "generated"}, "recordings":
    {"real", "generated"}, "paired", "folds", "window_s", "seed"}``: ``preference`` 0.5 = indistinguishable,
    ``accuracy`` the observer's balanced accuracy on held-out windows (logit 0 as the threshold)."""
    cfg = config or ObserverConfig()
    real, generated = _check(real, "real"), _check(generated, "generated")
    if real[0].shape[1] != generated[0].shape[1]:
        raise PainDiffusionError(f"real sequences have {real[0].shape[1]} channels, generated {generated[0].shape[1]}")
    paired = len(real) == len(generated) and all(r.shape == g.shape for r, g in zip(real, generated))
    rng = np.random.default_rng(seed)
    fold_r = rng.permutation(len(real)) % 2
    fold_g = fold_r if paired else rng.permutation(len(generated)) % 2
    per_rec, hits, trials = [], {"real": [], "generated": []}, 0
    with torch.random.fork_rng(devices=[]):
        for k in (0, 1):
            observer = MachineObserver.fit([s for s, f in zip(real, fold_r) if f != k],
                                           [s for s, f in zip(generated, fold_g) if f != k], fps, seed=seed + k, config=cfg)
            rs = [observer.window_scores(s) for s, f in zip(real, fold_r) if f == k]
            gs = [observer.window_scores(s) for s, f in zip(generated, fold_g) if f == k]
            hits["real"] += [s > 0 for s in rs]
            hits["generated"] += [s <= 0 for s in gs]
            if paired:  # the same moment of the same recording on both sides, as in a study trial
                per_rec += [float(np.mean((g > r) + 0.5 * (g == r))) for g, r in zip(gs, rs) if len(g)]
                trials += sum(len(g) for g in gs)
            else:
                pool = np.concatenate(rs)
                per_rec += [float(_preference(g, pool).mean()) for g in gs if len(g)]
                trials += sum(len(g) for g in gs) * len(pool)
    n_windows = {k: int(sum(map(len, v))) for k, v in hits.items()}
    accuracy = float(np.mean([np.concatenate(v).mean() for v in hits.values()]))  # balanced: each class counts half
    lo, hi = bootstrap_ci(per_rec, seed=seed)
    return {"preference": float(np.mean(per_rec)), "lo": lo, "hi": hi, "accuracy": accuracy,
            "trials": int(trials), "windows": n_windows, "recordings": {"real": len(real), "generated": len(generated)},
            "paired": paired, "folds": 2, "window_s": cfg.frames(fps) / fps, "seed": seed, "config": asdict(cfg)}
