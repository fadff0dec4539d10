"""Full-run extras: ablations like the paper's, full-sequence sampling, and drift over a long rollout.

Ablations run on the first draw's first recordings (one try each) so that every variant sees the same inputs:
σ levels, context length, guidance weight per condition, the stack-phase filter (through the stream, the
shipped code path), and the uncertainty scale and full-sequence scheduling (through
:func:`paindiffusion.sampling.sample_chunked`, the offline chunked sampler: the stream's rolling window has
u = 1 built in).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ..conditions import HISTORY
from ..facespace import EMOTIONS, FACS
from ..sampling import guided, karras_sigmas, sample_chunked
from ..progress import progress as progress_bar
from ..stream import PatientFaces
from . import metrics as M
from .data import Recordings, fresh_cohort
from .generation import generate_model, latent_standardiser, recording_jobs
from .scoring import score

ABLATION_KEYS = ("pspi_r", "dtw_per_frame", "expressiveness_r", "seam_ratio", "spectral_peak_6p25", "frechet_motion",
                 "between_try_r", "mean_pspi")


def stream_variants(base) -> dict:
    """Sampler settings to compare with the shipped ones (one change each)."""
    g = tuple(base.guidance)
    v = {"shipped sampler": base}
    for levels in (4, 6, 12):
        if levels != base.levels:
            v[f"σ levels {levels}"] = dataclasses.replace(base, levels=levels)
    for ctx in (2, 8):
        if ctx != base.context:
            v[f"context {ctx} stacks"] = dataclasses.replace(base, context=ctx)
    names = ("emotion", "expressiveness", "stimulus")
    for k, alts in ((2, (1.0, 3.0)), (1, (0.0, 1.0)), (0, (0.0,))):
        for w in alts:
            if w != g[k]:
                v[f"guidance {names[k]} {w:g}"] = dataclasses.replace(base, guidance=tuple(w if i == k else x for i, x in enumerate(g)))
    v["no guidance"] = dataclasses.replace(base, guidance=(0.0, 0.0, 0.0))
    if base.guidance_max_sigma:
        v["guidance at every σ"] = dataclasses.replace(base, guidance_max_sigma=0.0)
    else:  # the guidance interval (MODEL_CARD.md): the two noisiest of 8 levels unguided
        v["guidance only at σ ≤ 8"] = dataclasses.replace(base, guidance_max_sigma=8.0)
    if base.phase_filter:
        v["no stack-phase filter"] = dataclasses.replace(base, phase_filter=0.0)
    return v


def offline_generate(model, held: Recordings, tries: int, seed: int, schedule: str, uncertainty: float,
                     chunk: int = 48, context: int = 16) -> np.ndarray:
    """The model through the offline chunked sampler (same σ grid and guidance as the shipped sampler)."""
    s = model.sampler
    sig = karras_sigmas(s.levels, s.sigma_min, s.sigma_max, s.rho)
    n, t = held.stimulus.shape
    stim = np.repeat(held.stimulus, tries, 0)
    stim = np.concatenate([np.repeat(stim[:, :1], HISTORY, 1), stim, np.repeat(stim[:, -1:], chunk, 1)], 1)
    expr = model.spec.fed_expressiveness(np.repeat(np.clip(held.expressiveness, 0, 16), tries))
    emo = np.repeat([EMOTIONS.index(e) for e in held.emotion], tries)
    cal = np.repeat([model.spec.calibration_value(*held.calibration(i)) for i in range(n)], tries, axis=0)
    resting = PatientFaces(model, n * tries, seed).latents([EMOTIONS[i] for i in emo])

    def cond_fn(start, length):
        return model.spec.batch(stim[:, start: start + HISTORY + length], expr, emo, length, calibration=cal,
                                resting=resting)

    fn = guided(model.denoiser, s.guidance, s.guidance_max_sigma)
    gen = torch.Generator().manual_seed(seed)
    z = sample_chunked(fn, cond_fn, (n * tries, t, model.config.dim), sig, chunk, context, schedule, uncertainty,
                       model.config.group, s.order, gen)
    return model.decode(z).reshape(n, tries, t, -1)


def _stream(model, held: Recordings, tries: int, seed: int, settings) -> np.ndarray:
    f = generate_model(model, recording_jobs(held, tries), seed, settings, show=False)
    return f.reshape(len(held), tries, held.frames.shape[1], -1)


def ablations(model, held: Recordings, seed: int, standardise, progress: bool = True) -> dict:
    runs = {name: (lambda s=s: _stream(model, held, 1, seed, s)) for name, s in stream_variants(model.sampler).items()}
    for u in (0.5, 1.0, 2.0):
        runs[f"offline pyramid u={u:g}"] = lambda u=u: offline_generate(model, held, 1, seed, "pyramid", u)
    runs["full-sequence (no diffusion forcing)"] = lambda: offline_generate(model, held, 1, seed, "full_sequence", 1.0)
    out = {}
    for name, fn in progress_bar(runs.items(), desc="ablations", show=progress):
        t0 = time.process_time()
        frames = fn()
        dt = time.process_time() - t0  # CPU time: wall time on a shared machine says little about speed
        sc = score(frames, held, standardise, model.config.group)
        out[name] = {k: sc[k] for k in ABLATION_KEYS} | {"frames_per_cpu_s": frames.shape[0] * frames.shape[2] / dt}
    return out


def drift(model, minutes: float, recordings: int, seed: int, segment_s: float = 120.0) -> dict:
    """Metric vs rollout length: one long rollout per recording of a fresh cohort (seed 7000 + 50), scored per
    ``segment_s`` segment against the ground truth: PSPI r, mean PSPI and AU variability, beside the data's."""
    held = fresh_cohort(recordings, minutes, 50)
    frames = _stream(model, held, 1, seed, model.sampler)[:, 0]
    seg = int(segment_s * 25)
    k = frames.shape[1] // seg
    pspi, truth = FACS.pspi(frames), held.pspi
    res = {"minutes": minutes, "recordings": recordings, "segment_s": segment_s, "start_min": [], "pspi_r": [],
           "mean_pspi": [], "mean_pspi_data": [], "au_std": [], "au_std_data": []}
    for i in range(k):
        sl = slice(i * seg, (i + 1) * seg)
        res["start_min"].append(i * segment_s / 60)
        res["pspi_r"].append(float(M.pearson(M.smooth(pspi[:, sl]), M.smooth(truth[:, sl])).mean()))
        res["mean_pspi"].append(float(pspi[:, sl].mean()))
        res["mean_pspi_data"].append(float(truth[:, sl].mean()))
        res["au_std"].append(float(frames[:, sl, :17].std(1).mean()))
        res["au_std_data"].append(float(held.frames[:, sl, :17].std(1).mean()))
    return res


def run_extras(model, held: Recordings, pool: Recordings, cfg, progress: bool = True, standardise=None) -> dict:
    t0 = time.time()
    sub = held.subset(range(min(4, len(held))))
    cut = min(sub.frames.shape[1], 2250)
    sub = dataclasses.replace(sub, frames=sub.frames[:, :cut], stimulus=sub.stimulus[:, :cut], label=sub.label[:, :cut],
                              pspi=sub.pspi[:, :cut])
    out = {"note": (f"Ablations: draw 0, {len(sub)} recordings × 1 try × {cut / 25:.0f} s, one change each from the shipped "
                    f"sampler; 'offline' rows use the chunked sampler (48 new frames per 64-frame window). Drift: "
                    f"{cfg.drift_minutes:g}-min rollouts of 4 fresh subjects (seed 7050).")}
    out["ablations"] = ablations(model, sub, cfg.seed, standardise or latent_standardiser(model), progress)
    out["drift"] = drift(model, cfg.drift_minutes, 4, cfg.seed)
    out["seconds"] = round(time.time() - t0, 1)
    return out
