"""The denoiser D(x, σ, c): EDM preconditioning around a small temporal transformer (docs/design.md §1, §5).

* Latents are face frames standardised per channel (training statistics live in the checkpoint), so
  σ_data = 1 (the official code fed raw latents reaching ~40 with σ_data = 0.5, docs/design.md §2).
* Diffusion forcing: σ is given **per frame**, shape (B, T); every frame can be at its own noise level, and
  a clean context frame is simply a frame at σ ≈ 0.
* The backbone works on tokens of ``group`` frames (the paper's 4-frame stacks). A token is embedded from 8
  frames (its own 4 and 2 on each side); its features are spread back by linear interpolation between token
  centres, so no frame sits on a step between tokens, and a per-frame path (a temporal convolution of the input
  frames, scaled and shifted by each frame's own σ) adds the detail of single frames (docs/design.md §5.3).
  Conditions enter every block through adaptive layer norm (DiT-style) and are added to the tokens; tokens
  attend to each other over the whole window (temporal self-attention).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .conditions import CondBatch, STIMULUS_LAGS


@dataclass
class ModelConfig:
    dim: int = 20  # face channels (face space width)
    group: int = 4  # frames per token (the paper stacks 4 frames)
    # Width/depth chosen by measurement (benchmarks/bench_stream.py): the stream must run ≥ 10× real time
    # on one CPU thread with 4 guidance branches; 6 blocks of 128 (1.0M parameters; the paper's model has
    # 5.4M for a 128-wide latent) cost ~0.9M multiply-adds per token.
    width: int = 128
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 2
    max_tokens: int = 32  # longest window: 32 tokens = 128 frames = 5.1 s
    n_lags: int = len(STIMULUS_LAGS)
    n_emotions: int = 8
    sigma_data: float = 1.0  # latents are standardised to unit variance
    readout_channels: int = 32  # per-frame features of the read-out
    readout_kernel: int = 5  # frames the read-out's temporal convolutions see
    # The patient's resting face joins the emotion condition (conditions.py): a linear map of the standardised
    # resting face added to the emotion class embedding, zero at initialisation.
    resting_face: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def fourier_features(x: torch.Tensor, n: int = 16, max_freq: float = 64.0, min_freq: float = 1.0) -> torch.Tensor:
    """Fixed sinusoidal features of a scalar (EDM uses Fourier/positional embeddings of c_noise), n/2
    frequencies spaced geometrically from ``min_freq`` to ``max_freq``."""
    freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), n // 2, device=x.device))
    ang = x[..., None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


# Expressiveness is embedded with low frequencies only (0.25-2 per standardised unit): nearby values get nearby
# embeddings and the model learns a scale; features up to 64 let a model memorise its ~44 training values
# (measured: requested vs achieved r 0.47, not monotone).
EXPRESSIVENESS_FREQUENCIES = dict(min_freq=0.25, max_freq=2.0)


class ConditionEmbedding(nn.Module):
    """CondBatch → one vector per token. Dropped/unknown conditions use their learned null vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.stimulus = nn.Sequential(nn.Linear(cfg.group * cfg.n_lags, w), nn.SiLU(), nn.Linear(w, w))
        self.expressiveness = nn.Sequential(nn.Linear(16, w), nn.SiLU(), nn.Linear(w, w))
        self.emotion = nn.Embedding(cfg.n_emotions, w)
        self.resting = nn.Linear(cfg.dim, w) if cfg.resting_face else None
        if self.resting is not None:
            nn.init.zeros_(self.resting.weight)
            nn.init.zeros_(self.resting.bias)
        self.null = nn.Parameter(torch.zeros(3, w))  # emotion, expressiveness, stimulus (conditions.NAMES order)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, cond: CondBatch, n_tokens: int) -> torch.Tensor:
        b = cond.stimulus.shape[0]
        keep = cond.keep[:, :, None]  # (B, 3, 1); torch.where, not a blend, so a dropped NaN stays out
        emo = self.emotion(cond.emotion)
        if self.resting is not None:
            rest = cond.resting if cond.resting is not None else torch.zeros(b, self.resting.in_features)
            emo = emo + self.resting(rest)
        emo = torch.where(keep[:, 0], emo, self.null[0])
        expr = torch.where(keep[:, 1], self.expressiveness(fourier_features(cond.expressiveness, **EXPRESSIVENESS_FREQUENCIES)),
                           self.null[1])
        stim = torch.where(keep[:, 2, None], self.stimulus(cond.stimulus.reshape(b, n_tokens, -1)), self.null[2])
        return stim + (emo + expr)[:, None]


class Block(nn.Module):
    """Pre-norm transformer block, modulated by (scale, shift, gate) × 2 from the token's condition vector.
    As in PixArt-α's adaLN-single, one projection of the condition is shared by all blocks and each block adds
    its own learned offset: per-block projections (DiT) would cost 6·depth·width² multiply-adds per token,
    more than the blocks themselves, and the stream's speed is bound by multiply-adds (docs/design.md §5)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(w, cfg.mlp_ratio * w), nn.GELU(), nn.Linear(cfg.mlp_ratio * w, w))
        self.offset = nn.Parameter(torch.zeros(6 * w))

    def forward(self, h: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        s1, b1, g1, s2, b2, g2 = (mod + self.offset).chunk(6, dim=-1)
        b, n, w = h.shape
        q, k, v = (self.qkv(self.norm1(h) * (1 + s1) + b1)
                   .view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # temporal self-attention over stacks
        h = h + g1 * self.proj(a.transpose(1, 2).reshape(b, n, w))
        return h + g2 * self.mlp(self.norm2(h) * (1 + s2) + b2)


class Backbone(nn.Module):
    """F_θ(c_in·x, c_noise, cond): frames (B, T, dim) → (B, T, dim), T a multiple of ``group``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, g, c = cfg.width, cfg.group, cfg.readout_channels
        self.inp = nn.Conv1d(cfg.dim, w, 2 * g, stride=g, padding=g // 2)  # token j ← frames g·j − g/2 … g·j + 3g/2 − 1
        self.noise = nn.Sequential(nn.Linear(g * 16, w), nn.SiLU(), nn.Linear(w, w))
        self.pos = nn.Parameter(torch.zeros(cfg.max_tokens, w))
        nn.init.normal_(self.pos, std=0.02)
        self.cond = ConditionEmbedding(cfg)
        # The condition also joins the tokens, not only the adaLN modulation: the stimulus is per-token content
        # (when the face should respond), which a shared scale/shift carries poorly (measured: without it the
        # unguided model barely follows the stimulus, r ≈ 0.2 on held-out subjects).
        self.cond_in = nn.Linear(w, w)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.modulation = nn.Linear(w, 6 * w)
        nn.init.zeros_(self.modulation.weight)  # every block starts as the identity (adaLN-zero)
        nn.init.zeros_(self.modulation.bias)
        self.out_norm = nn.LayerNorm(w, elementwise_affine=False)
        self.out_mod = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, c)
        # The per-frame path. D = c_skip·x + c_out·F passes c_skip × the input noise into every frame, which F must
        # cancel frame by frame with a gain that depends on that frame's σ: so the path is scaled and shifted by
        # each frame's σ features (FiLM, zero-initialised). Measured without it: D's jerk 2.5-5× the clean input's
        # at σ 0.2-2.
        self.local = nn.Conv1d(cfg.dim, c, cfg.readout_kernel, padding=cfg.readout_kernel // 2)
        self.local_film = nn.Linear(16, 2 * c)
        self.readout = FrameReadout(c, cfg.dim, cfg.readout_kernel)
        for m in (self.local_film, self.out_mod, self.readout.final):  # the network starts as zero: D = c_skip·x (EDM)
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        b, t, d = x.shape
        g = self.cfg.group
        n = t // g
        h = self.inp(x.transpose(1, 2)).transpose(1, 2)  # (B, T, d) → (B, n, w)
        h = h + self.pos[:n]
        e = self.cond(cond, n)
        h = h + self.cond_in(e)
        c = torch.nn.functional.silu(self.noise(fourier_features(c_noise).reshape(b, n, g * 16)) + e)
        mod = self.modulation(c)
        for blk in self.blocks:
            h = blk(h, mod)
        s, sh = self.out_mod(c).chunk(2, dim=-1)
        h = self.out_norm(h) * (1 + s) + sh
        f = tokens_to_frames(self.out(h).transpose(1, 2), g).transpose(1, 2)  # (B, T, c); token centres at g·j + 1.5
        scale, shift = self.local_film(fourier_features(c_noise)).chunk(2, dim=-1)  # per frame, from its own σ
        local = self.local(x.transpose(1, 2)).transpose(1, 2) * (1 + scale) + shift  # (B, T, c)
        return self.readout(f + local)


def tokens_to_frames(tokens: torch.Tensor, group: int) -> torch.Tensor:
    """(B, c, n) token features → (B, c, n·group) frame features, linear between token centres (frame
    group·j + (group − 1)/2 of token j) and constant beyond the first and last: frames 4j − 2 … 4j + 1 lie on one
    straight segment, so a stack boundary is never a step."""
    return torch.nn.functional.interpolate(tokens, scale_factor=group, mode="linear")


class FrameReadout(nn.Module):
    """Per-frame features (B, T, c) → frames (B, T, dim) through a depthwise-separable temporal convolution
    that sees across 4-frame stack boundaries, so neighbouring stacks are decoded jointly, not one token each."""

    def __init__(self, channels: int, dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.mix = nn.Linear(channels, channels)
        self.final = nn.Linear(channels, dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = f + self.conv(f.transpose(1, 2)).transpose(1, 2)  # conv over time: (B, c, T)
        return self.final(torch.nn.functional.gelu(self.mix(f)))


class Denoiser(nn.Module):
    """EDM-preconditioned denoiser D(x; σ, c) ≈ E[clean | x] (Karras et al. 2022, Table 1), σ per frame."""

    SIGMA_FLOOR = 1e-3  # clean context frames are passed with σ = 0; preconditioning uses this floor

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.net = Backbone(cfg)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        if x.shape[1] % self.cfg.group:
            raise ValueError(f"window length {x.shape[1]} is not a multiple of the stack size {self.cfg.group}")
        sd = self.cfg.sigma_data
        s = sigma.clamp(min=self.SIGMA_FLOOR)[..., None]  # (B, T, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = s.log().squeeze(-1) / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, cond)


@dataclass
class NoiseDistribution:
    """Training σ per frame stack, independent per stack (diffusion forcing).

    ``log_uniform``: ln σ uniform over [σ_lo, σ_hi], which spans the sampler's whole Karras grid (σ 40 → 0.004).
    EDM's log-normal (``lognormal``: ln σ ~ N(−0.5, 1.2²)) puts ~1% of stacks above σ = 10, yet the sampler's
    first levels (40, 16, 6) decide each response's onset and size there: trained that way, D at σ = 40
    predicted mean PSPI 3.7 for windows whose mean is 1.1, and ignored expressiveness."""

    kind: str = "log_uniform"
    sigma_lo: float = 0.002
    sigma_hi: float = 80.0
    p_mean: float = -0.5  # lognormal: EDM's −1.2 at σ_data 0.5, shifted by ln 2 for σ_data 1
    p_std: float = 1.2
    pyramid_fraction: float = 0.5  # share of windows whose levels rise along time, with a clean prefix
    max_context: int = 6  # stacks of clean context at most in those windows
    # Rising windows rise frame by frame (each frame its own σ, sorted), as the sampler's "frame" ramp lays them
    # out (stream.LatentWindow), instead of stack by stack.
    frame_ramp: bool = True

    def per_frame(self, b: int, n_stacks: int, group: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n_stacks · group) σ per frame: :meth:`sample` with each stack's σ on its frames, and with
        ``frame_ramp`` the rising windows' noisy frames redrawn as one sorted ramp of per-frame values."""
        sigma, rising = self._draw(b, n_stacks, generator)
        sigma = sigma.repeat_interleave(group, dim=1)
        if self.frame_ramp and rising.any():
            ramp, _ = self._levels(int(rising.sum()), n_stacks * group, generator).sort(dim=1)
            sigma[rising] = torch.where(sigma[rising] == 0, torch.zeros_like(ramp), ramp)
        return sigma

    def sample(self, b: int, n_stacks: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n_stacks) σ. Half the windows look like what the sampler shows the model (docs/design.md §1 pyramid):
        clean context stacks first, then noise levels increasing along time; the rest are fully independent."""
        return self._draw(b, n_stacks, generator)[0]

    def _levels(self, b: int, n: int, generator) -> torch.Tensor:
        if self.kind == "lognormal":
            return (torch.randn(b, n, generator=generator) * self.p_std + self.p_mean).exp()
        lo, hi = math.log(self.sigma_lo), math.log(self.sigma_hi)
        return (lo + (hi - lo) * torch.rand(b, n, generator=generator)).exp()

    def _draw(self, b: int, n_stacks: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_stacks) σ and which windows rise (the pyramid-shaped ones)."""
        sigma = self._levels(b, n_stacks, generator)
        pyramid = torch.rand(b, generator=generator) < self.pyramid_fraction
        if pyramid.any():
            sorted_sigma, _ = sigma[pyramid].sort(dim=1)
            n_ctx = torch.randint(0, self.max_context + 1, (int(pyramid.sum()), 1), generator=generator)
            ctx = torch.arange(n_stacks)[None] < n_ctx
            sigma[pyramid] = torch.where(ctx, torch.zeros_like(sorted_sigma), sorted_sigma)
        return sigma, pyramid


def edm_loss(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, cond: CondBatch) -> torch.Tensor:
    """EDM loss with per-frame σ: λ(σ)·‖D(x + σn) − x‖², λ = (σ² + σ_d²)/(σ σ_d)². Clean frames (σ = 0) are
    context, not targets, and carry no loss."""
    noisy = x + torch.randn_like(x) * sigma[..., None]
    sd = denoiser.cfg.sigma_data
    target = sigma > 0
    weight = torch.where(target, (sigma**2 + sd**2) / (sigma * sd).clamp(min=1e-8) ** 2, torch.zeros_like(sigma))
    d = denoiser(noisy, sigma, cond)
    err = (d - x).pow(2).mean(-1)
    loss = (weight * err).sum() / target.sum().clamp(min=1)
    return loss


class Standardizer(nn.Module):
    """Face frames ↔ unit-variance latents, with the training split's per-channel statistics."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-3))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean
