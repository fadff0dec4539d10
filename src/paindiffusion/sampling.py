"""Samplers (k-diffusion style: plain functions over a denoiser ``model(x, sigma, cond)``).

Diffusion forcing makes the noise level a per-frame quantity, so a sampling run is described by a
**scheduling matrix** ``levels`` of shape (steps + 1, T): row s holds, for every frame, an index into the σ
grid (``len(sigmas) - 1`` means clean). Step s moves each frame from ``sigmas[levels[s]]`` to
``sigmas[levels[s + 1]]``; frames whose level does not change are left exactly as they are. The same
function therefore runs the pyramid schedule, full-sequence sampling (the ablation), clean context frames
anywhere in the window, and partial re-noising for editing (docs/design.md §8).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .conditions import CondBatch
from .errors import PainDiffusionError

# The sampler's defaults, defined once: SamplerSettings and karras_sigmas both read them.
SIGMA_MIN, SIGMA_MAX, RHO = 0.004, 40.0, 7.0  # Karras et al. 2022's σ grid (rho = 7), σ_max for standardised latents
# Guidance weights in conditions.NAMES order (emotion, expressiveness, stimulus). The official demo uses
# (0.25, 0.5, 1.0); these were chosen for the shipped network on validation subjects (MODEL_CARD.md): stronger
# stimulus guidance makes tries more alike than the data's people, weaker expressiveness guidance a flatter scale.
GUIDANCE = (0.25, 1.0, 0.3)


@dataclass
class SamplerSettings:
    """Sampler defaults, saved in the checkpoint config; every field can be overridden per run."""

    levels: int = 8  # σ levels per frame; each costs one model call per emitted stack
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    rho: float = RHO
    context: int = 4  # clean stacks the window keeps (4 × 4 frames = 0.64 s)
    guidance: tuple = GUIDANCE
    order: int = 1  # 1 = DDIM/DPM-Solver++(1), the paper's; 2 = Heun (twice the calls)
    # Stacks generated and discarded before the first emitted frame, at the first stimulus value: the start
    # from pure noise has no context, and its first frames are off the data (a grimace that fades).
    warmup: int = 12
    # Stack-phase filter time constant, in stacks (0 = off; see StackPhaseFilter in window.py): removes the part
    # of the output that repeats every 4 frames, a 6.25 Hz judder a stack-ramp model can leave. The frame ramp
    # leaves none (MODEL_CARD.md), so the shipped sampler runs without it.
    phase_filter: float = 0.0
    # Guidance interval (Kynkäänniemi et al., NeurIPS 2024, "Applying guidance in a limited interval"): guide
    # only frames whose σ is at or below this value; 0 = guide at every σ. At the highest noise levels guidance
    # pulls every try toward the same conditional mode, which is where tries lose their variety.
    guidance_max_sigma: float = 0.0
    # How noise levels are laid out along the stream's window (stream.LatentWindow): "stack" (the paper's: the
    # 4 frames of a stack share a level) or "frame" (each frame a quarter level from its neighbour, so no σ
    # step every 4 frames).
    ramp: str = "frame"
    # A stack entering the window starts as noise around the clean context's median rather than around 0
    # (the channel means): x = μ + σ_max·n is the σ_max marginal of frames that stay near their recent level;
    # latents standardised per channel put an emotion's resting AUs 3-5 units from 0.
    enter_at_context: bool = True

    def to_dict(self) -> dict:
        return {**self.__dict__, "guidance": list(self.guidance)}

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerSettings":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "guidance" in d:
            d["guidance"] = tuple(d["guidance"])
        return cls(**d)

    def sigmas(self) -> torch.Tensor:
        return karras_sigmas(self.levels, self.sigma_min, self.sigma_max, self.rho)

    def validate(self) -> "SamplerSettings":
        """Return self, or raise a one-line error naming the first unusable setting."""
        def num(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))

        def whole(v, least=1):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= least

        problems = [
            ("levels", whole(self.levels), "a whole number ≥ 1"),
            ("context", whole(self.context), "a whole number ≥ 1 (emitted stacks pass through the context)"),
            ("order", self.order in (1, 2) and not isinstance(self.order, bool), "1 or 2"),
            ("warmup", whole(self.warmup, 0), "a whole number ≥ 0"),
            ("sigma_min", num(self.sigma_min) and self.sigma_min > 0, "a positive number"),
            ("sigma_max", num(self.sigma_max) and num(self.sigma_min) and self.sigma_max > self.sigma_min, "a number above sigma_min"),
            ("rho", num(self.rho) and self.rho > 0, "a positive number"),
            ("phase_filter", num(self.phase_filter) and (self.phase_filter == 0 or self.phase_filter >= 1),
             "0 (off) or a time constant ≥ 1 stack"),
            ("guidance_max_sigma", num(self.guidance_max_sigma) and self.guidance_max_sigma >= 0,
             "0 (guide at every σ) or the highest σ to guide"),
            ("ramp", self.ramp in ("stack", "frame"), "'stack' or 'frame'"),
            ("enter_at_context", isinstance(self.enter_at_context, bool), "true or false"),
            ("guidance", isinstance(self.guidance, (tuple, list)) and len(self.guidance) == 3 and all(num(w) for w in self.guidance),
             "3 numbers (emotion, expressiveness, stimulus)"),
        ]
        for name, ok, need in problems:
            if not ok:
                raise PainDiffusionError(f"sampler setting {name} = {getattr(self, name)!r} must be {need}")
        return self


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO) -> torch.Tensor:
    """Noise levels of Karras et al. 2022 (eq. 5), high to low, with a final 0 appended: n + 1 values."""
    ramp = torch.linspace(0, 1, n)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1)])


def pyramid_levels(n_frames: int, n_levels: int, group: int = 4, uncertainty: float = 1.0,
                   n_context: int = 0) -> torch.Tensor:
    """Pyramid scheduling matrix (Diffusion Forcing; PainDiffusion §III): stack j starts denoising
    ⌊j·u⌋ rows after stack 0, so earlier frames are always cleaner. ``n_context`` leading frames are clean
    throughout. Returns (steps + 1, n_frames) indices into a grid of ``n_levels`` σ values plus the final 0."""
    stacks = torch.arange(n_frames) // group
    first = stacks[n_context] if n_context < n_frames else 0
    delay = torch.floor((stacks - first).clamp(min=0) * uncertainty).long()
    n_steps = int(delay.max()) + n_levels if n_context < n_frames else 0
    s = torch.arange(n_steps + 1)[:, None]
    levels = (s - delay[None]).clamp(0, n_levels)
    levels[:, :n_context] = n_levels
    return levels


def full_sequence_levels(n_frames: int, n_levels: int, n_context: int = 0) -> torch.Tensor:
    """Every new frame at the same noise level at every step: full-sequence diffusion (the ablation)."""
    levels = torch.arange(n_levels + 1)[:, None].repeat(1, n_frames)
    levels[:, :n_context] = n_levels
    return levels


@dataclass
class RollingSchedule:
    """The stream's rolling pyramid swept over a whole known sequence, every frame from its own start level
    (editing, docs/design.md §8). With L grid levels, n = L − min(start), ``per_row`` stacks per row group and
    a frame's offset m_f (``ramp`` "stack": m_f = ⌊stack / per_row⌋, one level per row, the pyramid's
    uncertainty scale u = 1 / per_row; "frame": L counts levels × group grid values, m_f = ⌊frame / per_row⌋ and
    a row moves ``group`` of them, the stream's frame ramp), row r holds

        level(r, f) = clamp(L − n + k·r − m_f, start_f, L),   k = 1 (stack) or group (frame)

    so a frame waits at its start level until the sweep reaches it, then goes down one step per row, and a
    frame that starts clean (level L) never moves. ``start`` 0 everywhere is the stream's own schedule."""

    start: torch.Tensor  # (T,) long, T a multiple of ``group``: each frame's first level
    n_levels: int
    group: int
    per_row: int = 1
    ramp: str = "stack"

    @property
    def depth(self) -> int:
        """n: the grid steps from the lowest start level to clean."""
        return self.n_levels - int(self.start.min())

    @property
    def per_step(self) -> int:
        return self.group if self.ramp == "frame" else 1

    def offset(self, f: torch.Tensor) -> torch.Tensor:
        return f // self.per_row if self.ramp == "frame" else f // self.group // self.per_row

    @property
    def rows(self) -> int:
        last = int(self.offset(torch.tensor(len(self.start) - 1)))  # the last frame is the last to be clean
        return -(-(self.depth + last) // self.per_step) + 1

    def levels(self, r: int, a: int = 0, b: int | None = None) -> torch.Tensor:
        """Row r for frames a … b − 1."""
        b = len(self.start) if b is None else b
        return self._sweep(r, torch.arange(a, b)).clamp(max=self.n_levels).maximum(self.start[a:b])

    def _sweep(self, r: int, f: torch.Tensor) -> torch.Tensor:
        """Row r's level of frames f before the clamps: where the pyramid's front puts them."""
        return self.n_levels - self.depth + self.per_step * r - self.offset(f)

    def done(self, r: int) -> int:
        """Frames at the start that are final after row r (the front has passed them)."""
        f = torch.arange(len(self.start))
        return int((self._sweep(r, f) >= self.n_levels).sum())

    def window(self, r: int, context: int) -> tuple[int, int]:
        """Frames [a, b) the step from row r to r + 1 needs, in whole stacks: the frames the front is passing
        (not yet clean at row r, reached at row r + 1) and ``context`` clean stacks before them, the stream's
        window: (context + n·per_row) stacks for the stack ramp, about one stack more for the frame ramp."""
        f = torch.arange(len(self.start))
        passing = (self._sweep(r, f) < self.n_levels) & (self._sweep(r + 1, f) > self.n_levels - self.depth)
        if not passing.any():
            return 0, 0
        idx = torch.nonzero(passing).flatten()
        first, last = int(idx[0]) // self.group, -(-(int(idx[-1]) + 1) // self.group)
        return max(0, first - context) * self.group, last * self.group


@torch.no_grad()
def sample_rolling(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, schedule: RollingSchedule,
                   cond_fn: Callable[[int, int], CondBatch], context: int, order: int = 1,
                   callback: Callable | None = None) -> torch.Tensor:
    """Run a :class:`RollingSchedule` over ``x`` (B, T, dim: each frame noised to its start level, clean frames
    as they are) in windows: each row is one model call on :meth:`RollingSchedule.window`, and a row where no
    frame moves costs nothing. ``cond_fn(a, b)`` gives the conditions of frames a … b − 1; ``callback`` gets
    {"frames": frames that are final}."""
    sig = sigmas.to(x.dtype)
    for r in range(schedule.rows - 1):
        a, b = schedule.window(r, context)
        now, nxt = schedule.levels(r, a, b), schedule.levels(r + 1, a, b)
        if not torch.equal(now, nxt):
            s0, s1 = sig[now].expand(x.shape[0], -1), sig[nxt].expand(x.shape[0], -1)
            x[:, a:b] = step(model, x[:, a:b], s0, s1, cond_fn(a, b), order)
        if callback is not None:
            callback({"frames": schedule.done(r + 1)})
    return x


def guided(model: Callable, weights: tuple[float, float, float], max_sigma: float = 0.0) -> Callable:
    """Per-condition leave-one-out guidance, D̂ = D(c) + Σ_k w_k [D(c) − D(c without k)], with all branches
    evaluated in one batched call. Correct for any batch size: branch b of sample i is row b·B + i.
    ``max_sigma`` > 0 limits the guidance term to frames with σ ≤ max_sigma (the guidance interval); the
    others get D(c) alone."""
    active = [k for k, w in enumerate(weights) if w != 0]

    def fn(x: torch.Tensor, sigma: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        if not active:
            return model(x, sigma, cond)
        n = 1 + len(active)
        b = x.shape[0]
        conds = CondBatch.cat([cond] + [cond.without(k) for k in active])
        d = model(x.repeat(n, 1, 1), sigma.repeat(n, 1), conds).view(n, b, *x.shape[1:])
        push = torch.zeros_like(d[0])
        for i, k in enumerate(active, start=1):
            push += weights[k] * (d[0] - d[i])
        if max_sigma > 0:  # relative slack: the grid's float32 powers land a few ulps off (σ_max 40 → 40.00001)
            push = push * (sigma <= max_sigma * (1 + 1e-5))[..., None]
        return d[0] + push

    return fn


def step(model: Callable, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, cond: CondBatch,
         order: int = 1, denoised: torch.Tensor | None = None) -> torch.Tensor:
    """Move every frame from ``sigma`` to ``sigma_next`` (both (B, T)), frames with equal levels untouched.

    order 1: the DDIM / first-order DPM-Solver++ step in EDM form, x' = D + (σ'/σ)(x − D) (what the paper uses).
    order 2: Heun's correction (EDM Algorithm 1) where σ' > 0; one more model call.
    ``denoised`` lets a caller pass D(x, σ) it already computed.
    """
    moving = (sigma_next != sigma)[..., None]
    d = model(x, sigma, cond) if denoised is None else denoised
    ratio = torch.where(sigma > 0, sigma_next / sigma.clamp(min=1e-12), torch.zeros_like(sigma))  # σ'/σ
    x_next = d + ratio[..., None] * (x - d)
    if order == 2:
        heun = (sigma_next > 0)[..., None] & moving
        if heun.any():
            d2 = model(x_next, sigma_next, cond)
            # Average the slopes (x − D)/σ at both ends, then step: x' = x + (σ' − σ)·½(k1 + k2)
            k1 = (x - d) / sigma.clamp(min=1e-12)[..., None]
            k2 = (x_next - d2) / sigma_next.clamp(min=1e-12)[..., None]
            x_heun = x + (sigma_next - sigma)[..., None] * 0.5 * (k1 + k2)
            x_next = torch.where(heun, x_heun, x_next)
    return torch.where(moving, x_next, x)


@torch.no_grad()
def sample_levels(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, levels: torch.Tensor, cond: CondBatch,
                  order: int = 1, callback: Callable | None = None) -> torch.Tensor:
    """Run a scheduling matrix. ``x`` holds noise scaled to each frame's starting σ (and the clean values of
    context frames); ``levels`` is (steps + 1, T) or (steps + 1, B, T)."""
    if levels.dim() == 2:
        levels = levels[:, None].expand(-1, x.shape[0], -1)
    sig = sigmas.to(x.dtype)
    for s in range(levels.shape[0] - 1):
        a, b = levels[s], levels[s + 1]
        if torch.equal(a, b):
            continue
        x = step(model, x, sig[a], sig[b], cond, order)
        if callback is not None:
            callback({"step": s, "x": x, "sigma": sig[b]})
    return x


def initial_noise(shape, sigmas: torch.Tensor, levels0: torch.Tensor, context: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise at each frame's first level; frames that start clean take their values from ``context``."""
    b, t, d = shape
    noise = torch.randn(shape, generator=generator) * sigmas[levels0].reshape(-1 if levels0.dim() == 2 else 1, t, 1)
    if context is not None:
        clean = (levels0 == len(sigmas) - 1).reshape(-1 if levels0.dim() == 2 else 1, t, 1)
        noise = torch.where(clean, context, noise)
    return noise


@torch.no_grad()
def sample_chunked(model: Callable, cond_fn: Callable[[int, int], CondBatch], shape: tuple[int, int, int],
                   sigmas: torch.Tensor, chunk: int, context: int, schedule: str = "pyramid", uncertainty: float = 1.0,
                   group: int = 4, order: int = 1, generator: torch.Generator | None = None,
                   callback: Callable | None = None) -> torch.Tensor:
    """Offline generation of ``shape`` = (B, T, dim) latents in windows of ``context + chunk`` frames: each window
    keeps the last ``context`` frames already made as clean context and samples ``chunk`` new frames with the
    ``schedule`` "pyramid" (diffusion forcing, uncertainty scale u: stack j starts ⌊j·u⌋ rows late) or
    "full_sequence" (every new frame at the same level: the paper's no-diffusion-forcing ablation).
    ``cond_fn(start, length)`` returns the CondBatch of frames start .. start + length − 1 (start ≥ 0).
    The first window has no context. ``chunk`` and ``context`` are multiples of ``group``."""
    b, t, d = shape
    if chunk % group or context % group or chunk <= 0:
        raise ValueError(f"chunk ({chunk}) and context ({context}) must be positive multiples of the stack size {group}")
    n_levels = len(sigmas) - 1
    out = torch.zeros(b, t + chunk, d)  # room for a last, partly used chunk
    pos = 0
    while pos < t:
        ctx = min(context, pos)
        length = ctx + chunk
        if schedule == "pyramid":
            levels = pyramid_levels(length, n_levels, group, uncertainty, n_context=ctx)
        elif schedule == "full_sequence":
            levels = full_sequence_levels(length, n_levels, n_context=ctx)
        else:
            raise ValueError(f"unknown schedule {schedule!r}; use 'pyramid' or 'full_sequence'")
        start = pos - ctx
        known = out[:, start: start + length].clone()  # (B, length, dim): clean context first, zeros after
        x = initial_noise((b, length, d), sigmas, levels[0], context=known, generator=generator)
        x = sample_levels(model, x, sigmas, levels, cond_fn(start, length), order)
        out[:, pos: pos + chunk] = x[:, ctx:]
        if callback is not None:
            callback({"frames": min(pos + chunk, t), "total": t})
        pos += chunk
    return out[:, :t]
