"""The stream's rolling window of latents (:class:`LatentWindow`) and the filter of its 4-frame phase
(:class:`StackPhaseFilter`): what :class:`paindiffusion.stream.PainStream` rolls and emits from, one step at a time."""

from __future__ import annotations

import torch

from .sampling import SamplerSettings, initial_noise, karras_sigmas, pyramid_levels, sample_levels, step


class LatentWindow:
    """The (B, window, dim) latents: ``context`` clean stacks, then the noisy frames, each at a fixed *rank* (how
    many steps of the σ grid it is from clean). Every step moves every noisy frame ``per_step`` ranks down, the
    frames that reach rank 0 are clean and emitted, and a stack of fresh noise enters at the far end.

    ``ramp`` "stack" (the paper's pyramid, u = 1): the 4 frames of a stack share a rank, 1 … levels, on a grid of
    ``levels`` σ values, and a step moves one rank. "frame": frame j of the noisy part has rank j + 1 on a grid of
    levels × group σ values and a step moves ``group`` ranks, so each frame still takes ``levels`` steps, but
    neighbouring frames differ by a quarter level instead of 0 within a stack and a full level across it. The
    stack layout gives every 4-frame stack its own σ history and the frames a 6.25 Hz judder (a stack-ramp network without the
    stack-phase filter: spectral peak 1.88, seam ratio 1.14 on the pain AUs); the ramp has no such period
    (0.90 / 0.91, the data 0.95 / 1.0, MODEL_CARD.md)."""

    def __init__(self, denoise, settings: SamplerSettings, group: int, dim: int):
        self.denoise, self.s, self.group, self.dim = denoise, settings, group, dim
        frame = settings.ramp == "frame"
        self.per_step = group if frame else 1
        self.sigmas = karras_sigmas(settings.levels * self.per_step, settings.sigma_min, settings.sigma_max, settings.rho)
        self.size = (settings.context + settings.levels) * group
        self.n_context = settings.context * group
        n_noisy = settings.levels * group
        rank = torch.arange(n_noisy) + 1 if frame else torch.arange(n_noisy) // group + 1
        self.rank = torch.cat([torch.zeros(self.n_context, dtype=torch.long), rank])  # (window,) 0 = clean
        self.sigma_now = self._sigma(self.rank)
        self.sigma_next = self._sigma((self.rank - self.per_step).clamp(min=0))
        self.x: torch.Tensor | None = None

    def _sigma(self, rank: torch.Tensor) -> torch.Tensor:
        n = len(self.sigmas) - 1  # sigmas[n] = 0: rank 0
        return self.sigmas[n - rank]

    def build(self, batch: int, cond, generator: torch.Generator) -> None:
        """A pyramid from pure noise (each stack, or each frame, one step behind the previous), stopped when the
        context is clean and every noisy frame sits at its rank."""
        n = len(self.sigmas) - 1
        unit = self.group if self.per_step == 1 else 1  # frames that start together
        first = self.s.context * (self.group // unit)  # rows until the last context frame is clean
        levels = pyramid_levels(self.size, n, unit, 1.0)[: n + first]
        x = initial_noise((batch, self.size, self.dim), self.sigmas, levels[0], generator=generator)
        self.x = sample_levels(self.denoise, x, self.sigmas, levels, cond, self.s.order)

    def advance(self, cond, noise: torch.Tensor) -> None:
        """One guided call: every noisy frame moves down by ``per_step`` ranks; the frames that became clean join
        the context and ``noise`` ((B, group, dim) unit Gaussian) enters at the far end, scaled to the entering
        ranks' σ and, with ``enter_at_context``, centred on the clean context's per-channel median (a level the
        context holds, not a blink or a twitch passing through it)."""
        b = self.x.shape[0]
        x = step(self.denoise, self.x, self.sigma_now[None].expand(b, -1), self.sigma_next[None].expand(b, -1), cond,
                 self.s.order)
        fresh = noise * self.sigma_now[-self.group:][None, :, None]
        if self.s.enter_at_context:
            fresh = fresh + x[:, self.group: self.n_context + self.group].median(dim=1, keepdim=True).values
        self.x = torch.cat([x[:, self.group:], fresh], dim=1)

    def newest_clean(self, n: int) -> torch.Tensor:
        return self.x[:, self.n_context - n: self.n_context]


class StackPhaseFilter:
    """Removes from the emitted latents the part that repeats with the stack period (a 4-frame pattern, 6.25 Hz
    and 12.5 Hz at 25 fps), causally and without delay.

    Diffusion forcing denoises 4-frame stacks on a fixed grid, so a model can put a small offset on each frame
    position of a stack (measured on an ``interp_sigma`` model: ≤ 0.05 standardised units, 2-3× the spectral
    power of the neighbouring frequencies once its frames are smooth). The data has no such pattern: frames are
    not aligned to any grid. Every new stack updates, per frame position and channel, an exponential mean
    (time constant ``tau`` stacks) of the previous stack's residual against a centred moving average spanning
    exactly one period (taps 1, 2, …, 2, 1 over group + 1 frames: zero gain at every multiple of the stack
    frequency, so the residual keeps all of the periodic part), and the new stack is emitted minus that mean.
    Motion that is not locked to the grid averages out of the estimate; the window itself is left as it is."""

    def __init__(self, tau: float, group: int):
        self.a, self.group = 1.0 / tau, group
        self.taps = torch.tensor([1.0] + [2.0] * (group - 1) + [1.0]) / (2 * group)
        self.recent: torch.Tensor | None = None  # (B, ≤ 2·group, dim) the last raw frames
        self.bias: torch.Tensor | None = None  # (B, group, dim) the estimated offset of each frame position

    def prime(self, frames: torch.Tensor) -> None:
        """Start from clean frames the stream already has (B, ≥ group, dim; the first repeated when there are
        fewer than 2·group), with no offset estimated yet, so that every started stream has a state of its full
        batch (patients can join before any frame is out)."""
        g = self.group
        pad = frames[:, :1].expand(-1, max(0, 2 * g - frames.shape[1]), -1)
        self.recent = torch.cat([pad, frames], dim=1)[:, -2 * g:].clone()
        self.bias = torch.zeros_like(self.recent[:, :g])

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """Take the next raw stack (B, group, dim) and return it filtered."""
        g = self.group
        if self.bias is None:
            self.bias = torch.zeros_like(raw)
        if self.recent is not None and self.recent.shape[1] == 2 * g:
            h = g // 2  # the previous stack's frames with h neighbours on each side
            seg = torch.cat([self.recent[:, g - h:], raw[:, :h]], dim=1)
            smooth = sum(w * seg[:, k: k + g] for k, w in enumerate(self.taps))
            resid = self.recent[:, g:] - smooth
            resid = resid - resid.mean(dim=1, keepdim=True)  # no level shift: only the pattern across positions
            self.bias = self.bias + self.a * (resid - self.bias)
        self.recent = raw if self.recent is None else torch.cat([self.recent[:, -g:], raw], dim=1)
        return raw - self.bias

    def rows(self, keep) -> None:
        """Keep only these batch rows (a patient left)."""
        self.recent, self.bias = self.recent[keep], self.bias[keep]

    def join(self, other: "StackPhaseFilter", slot: int | None = None) -> None:
        """Take another (primed) stream's single-row state: appended (``slot`` None) or in place of row ``slot``."""
        if slot is None:
            self.recent = torch.cat([self.recent, other.recent])
            self.bias = torch.cat([self.bias, other.bias])
        else:
            self.recent[slot], self.bias[slot] = other.recent[0], other.bias[0]
