"""Sampler tests (docs/design.md §1, §5, §6, §8): σ grid, scheduling matrices, the first- and second-order steps,
full sampling loops with a tiny deterministic denoiser (golden values, diffusers style, plus properties that
do not depend on them), clean context frames, and per-condition guidance at any batch size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import random_denoiser
from paindiffusion.conditions import HISTORY, NAMES, CondBatch, ConditionSpec
from paindiffusion.errors import PainDiffusionError
from paindiffusion.model import Denoiser
from paindiffusion.sampling import (GUIDANCE, SamplerSettings, full_sequence_levels, guided, initial_noise, karras_sigmas,
                                    pyramid_levels, sample_levels, step)

DIM, GROUP = 6, 4
torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the CPU is shared)


def tiny_denoiser(seed: int = 0) -> Denoiser:
    """The shared tiny real Denoiser with every weight random (see conftest.random_denoiser)."""
    return random_denoiser(DIM, seed)


def conds(b: int, t: int, seed: int = 0) -> CondBatch:
    """B different condition sets: stimulus ramps, expressiveness and emotion differ per sample."""
    rng = np.random.default_rng(seed)
    stim = 32.0 + rng.uniform(0, 16, (b, 1)) * np.linspace(0, 1, HISTORY + t)[None]
    return ConditionSpec().batch(stim, rng.uniform(0, 6, b), rng.integers(0, 8, b), t)


def row(c: CondBatch, i: int) -> CondBatch:
    return c.rows(slice(i, i + 1))


class Counter:
    """Wraps a model and records the batch size of every call."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, x, sigma, cond):
        self.batches.append(x.shape[0])
        return self.model(x, sigma, cond)


# ---- σ grid ---------------------------------------------------------------------------------------------

def test_karras_sigmas_matches_eq5_in_float64():
    n, lo, hi, rho = 8, 0.004, 40.0, 7.0
    s = karras_sigmas(n, lo, hi, rho)
    ref = [(hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for i in range(n)]
    assert s.shape == (n + 1,)
    np.testing.assert_allclose(s[:-1].numpy(), ref, rtol=1e-5)
    assert s[0].item() == pytest.approx(hi, rel=1e-6) and s[n - 1].item() == pytest.approx(lo, rel=1e-5)
    assert s[-1].item() == 0.0
    assert (s[1:] < s[:-1]).all()  # strictly decreasing, high to low
    # Golden: the paper's 35-level grid on [0.002, 80] (docs/design.md §1): value in the middle of the grid.
    paper = karras_sigmas(35, 0.002, 80.0, 7.0)
    assert paper[17].item() == pytest.approx(2.51522, rel=1e-4)


def test_karras_rho_one_is_linear():
    s = karras_sigmas(5, 1.0, 5.0, rho=1.0)
    np.testing.assert_allclose(s.numpy(), [5, 4, 3, 2, 1, 0], rtol=1e-6)


# ---- scheduling matrices --------------------------------------------------------------------------------

@pytest.mark.parametrize("n_frames,n_levels,u,n_context", [(32, 4, 1.0, 0), (32, 5, 2.0, 8), (40, 3, 0.5, 4),
                                                          (24, 6, 1.5, 6), (16, 4, 1.0, 3)])
def test_pyramid_levels_properties(n_frames, n_levels, u, n_context):
    lv = pyramid_levels(n_frames, n_levels, GROUP, u, n_context)
    stacks = torch.arange(n_frames) // GROUP
    first = int(stacks[n_context])
    n_new_stacks = int(stacks[-1]) - first
    # shape: the last stack starts ⌊j·u⌋ rows late and then needs n_levels steps
    assert lv.shape == (math.floor(n_new_stacks * u) + n_levels + 1, n_frames)
    assert lv.min() >= 0 and lv.max() <= n_levels
    assert (lv[:, :n_context] == n_levels).all()  # context columns always clean
    assert (lv[0, n_context:] == 0).all()  # every new frame starts at σ_max
    assert (lv[-1] == n_levels).all()  # the last row is all clean
    d = lv[1:] - lv[:-1]
    assert ((d == 0) | (d == 1)).all()  # each frame goes down the grid one level per row at most
    assert (lv[:, :-1] >= lv[:, 1:]).all()  # earlier frames are never noisier than later ones
    # uncertainty scale: new stack j (counted from the first non-context stack) leaves level 0 at row ⌊j·u⌋
    for t in range(n_context, n_frames):
        j = int(stacks[t]) - first
        starts = int(torch.nonzero(lv[:, t] > 0)[0])
        assert starts == math.floor(j * u) + 1, (t, j)
    # frames of one stack share their levels (one token per stack)
    for t in range(n_context, n_frames):
        if t > n_context and stacks[t] == stacks[t - 1]:
            assert torch.equal(lv[:, t], lv[:, t - 1])


def test_pyramid_golden_small():
    lv = pyramid_levels(12, 2, group=4, uncertainty=1.0, n_context=4)
    expect = torch.tensor([[2] * 4 + [0] * 4 + [0] * 4,
                           [2] * 4 + [1] * 4 + [0] * 4,
                           [2] * 4 + [2] * 4 + [1] * 4,
                           [2] * 4 + [2] * 4 + [2] * 4])
    assert torch.equal(lv, expect)


def test_pyramid_all_context_and_zero_uncertainty():
    assert torch.equal(pyramid_levels(8, 5, 4, 1.0, n_context=8), torch.full((1, 8), 5))
    # u = 0 removes the delays: the pyramid becomes full-sequence sampling
    assert torch.equal(pyramid_levels(16, 4, 4, 0.0, 4), full_sequence_levels(16, 4, 4))


def test_full_sequence_levels():
    lv = full_sequence_levels(12, 5, n_context=4)
    assert lv.shape == (6, 12)
    assert (lv[:, :4] == 5).all()
    for s in range(6):
        assert (lv[s, 4:] == s).all()


# ---- one step -------------------------------------------------------------------------------------------

def test_step_order1_closed_form_and_untouched_frames():
    model = tiny_denoiser(0)
    sig = karras_sigmas(6)
    x = torch.randn(2, 16, DIM, generator=torch.Generator().manual_seed(3)) * 5
    a = torch.tensor([[6, 6, 6, 6, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0]] * 2)  # clean | level 2 | level 0
    b = torch.tensor([[6, 6, 6, 6, 3, 3, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0]] * 2)  # last stack stays at σ_max
    c = conds(2, 16)
    with torch.no_grad():
        out = step(model, x, sig[a], sig[b], c, order=1)
        d = model(x, sig[a], c)
    moving = (a != b)[..., None]
    closed = d + (sig[b] / sig[a].clamp(min=1e-12))[..., None] * (x - d)
    torch.testing.assert_close(out[moving.expand_as(out)], closed[moving.expand_as(out)], rtol=1e-6, atol=1e-6)
    assert torch.equal(out[:, :4], x[:, :4])  # clean context: bit-identical
    assert torch.equal(out[:, 12:], x[:, 12:])  # equal levels: bit-identical
    assert not torch.allclose(out[:, 4:12], x[:, 4:12])
    # a step to σ' = 0 lands exactly on the denoised estimate
    z = torch.zeros(2, 16, dtype=torch.long)
    last = torch.full((2, 16), 6)
    with torch.no_grad():
        torch.testing.assert_close(step(model, x, sig[z], sig[last], c), model(x, sig[z], c))


def gaussian_denoiser(s2: float):
    """Exact D for data ~ N(0, s²): D(x, σ) = x·s²/(s² + σ²); its probability-flow ODE dx/dσ = xσ/(s² + σ²)
    has the solution x(σ') = x·sqrt((s² + σ'²)/(s² + σ²))."""
    return lambda x, sigma, cond: x * s2 / (s2 + sigma[..., None] ** 2)


def _ode_error(order: int, n: int, s2: float = 1.0) -> float:
    sig = karras_sigmas(n, 0.05, 2.0).double()
    x0 = torch.full((1, 8, 2), 3.0, dtype=torch.float64)
    out = sample_levels(gaussian_denoiser(s2), x0, sig, full_sequence_levels(8, n)[:n], None, order)
    exact = x0 * math.sqrt((s2 + sig[n - 1].item() ** 2) / (s2 + sig[0].item() ** 2))
    return float((out - exact).abs().max() / exact.abs().max())


def test_heun_is_second_order_on_gaussian_data():
    e1 = {n: _ode_error(1, n) for n in (16, 32)}
    e2 = {n: _ode_error(2, n) for n in (16, 32)}
    assert e2[32] < e1[32] / 10  # Heun ≪ Euler at the same grid
    assert 1.7 < e1[16] / e1[32] < 2.3  # first order: halving the step halves the error
    assert e2[16] / e2[32] > 3.5  # second order: it quarters it
    assert e2[32] < 2e-3


def test_order2_makes_a_second_call_only_when_some_frame_stays_noisy():
    model = Counter(gaussian_denoiser(1.0))
    sig = karras_sigmas(4)
    x = torch.randn(1, 8, 2)
    lv = torch.tensor([[0] * 8, [1] * 8])
    step(model, x, sig[lv[0]][None], sig[lv[1]][None], None, order=2)
    assert model.batches == [1, 1]
    model.batches.clear()
    out = step(model, x, sig[torch.full((1, 8), 3)], sig[torch.full((1, 8), 4)], None, order=2)
    assert model.batches == [1]  # every frame goes to σ = 0: Heun's correction is skipped
    torch.testing.assert_close(out, gaussian_denoiser(1.0)(x, sig[torch.full((1, 8), 3)], None))


# ---- full loops with a tiny deterministic denoiser -------------------------------------------------------

def _golden_run(order: int):
    model = random_denoiser(DIM, 0)
    sig = karras_sigmas(4)
    lv = pyramid_levels(16, 4, GROUP, 1.0, n_context=4)
    context = torch.linspace(-1, 1, 16 * DIM).reshape(1, 16, DIM).repeat(2, 1, 1)
    x = initial_noise((2, 16, DIM), sig, lv[0], context, generator=torch.Generator().manual_seed(1))
    calls = Counter(model)
    out = sample_levels(guided(calls, (0.25, 0.5, 1.0)), x, sig, lv, conds(2, 16), order)
    return x, out, calls, lv


def test_sample_levels_golden_values_and_properties():
    golden_sum, golden_abs, golden_last, _ = GOLDEN
    x, out, calls, lv = _golden_run(order=1)
    # properties that hold whatever the weights
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out[:, :4], x[:, :4])  # context frames never touched
    assert x[:, 4:].std() > 20 and out[:, 4:].std() < 3  # from σ_max = 40 noise to denoised frames
    assert len(calls.batches) == lv.shape[0] - 1  # one (batched) model call per row
    assert set(calls.batches) == {2 * 4}  # B = 2 × (cond + 3 leave-one-out branches)
    # golden values (computed once with this code; torch CPU float32)
    assert out[:, 4:].sum().item() == pytest.approx(golden_sum, rel=1e-3, abs=1e-2)
    assert out[:, 4:].abs().sum().item() == pytest.approx(golden_abs, rel=1e-3)
    assert out[0, -1, :3].tolist() == pytest.approx(golden_last, rel=1e-3, abs=1e-3)


def test_sample_levels_heun_golden():
    x, out, calls, lv = _golden_run(order=2)
    assert torch.equal(out[:, :4], x[:, :4])
    # Heun: a second call on every row where some frame stays noisy; the last row goes to σ = 0 only
    assert len(calls.batches) == 2 * (lv.shape[0] - 1) - 1
    assert out[:, 4:].abs().sum().item() == pytest.approx(GOLDEN[3], rel=1e-3)
    _, out1, _, _ = _golden_run(order=1)
    assert not torch.allclose(out, out1)


# (sum, |sum|, last frame's first 3 channels, Heun |sum|), computed once with this code (torch CPU float32).
GOLDEN = (-32.97653, 87.3014, [-0.00536, 0.34489, -0.91425], 384.3705)


def test_context_frames_anywhere_stay_exact_through_full_loop():
    """Editing (docs/design.md §8): clean frames anywhere in the window, per sample, stay bit-identical."""
    model = guided(tiny_denoiser(1), (0.25, 0.5, 1.0))
    sig = karras_sigmas(5)
    lv = full_sequence_levels(24, 5)[:, None].repeat(1, 2, 1)  # (steps + 1, B, T)
    keep = torch.zeros(2, 24, dtype=torch.bool)
    keep[0, 8:12] = True  # sample 0 keeps a stack in the middle
    keep[1, 20:] = True  # sample 1 keeps its end
    lv[:, keep] = 5
    clean = torch.randn(2, 24, DIM)
    x = initial_noise((2, 24, DIM), sig, lv[0], clean, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[keep], clean[keep])
    out = sample_levels(model, x, sig, lv, conds(2, 24))
    assert torch.equal(out[keep], clean[keep])
    assert torch.isfinite(out).all() and not torch.allclose(out[~keep], x[~keep])


def test_per_sample_levels_equal_running_alone():
    model = tiny_denoiser(2)
    sig = karras_sigmas(4)
    a, b = pyramid_levels(16, 4, GROUP, 1.0, 4), pyramid_levels(16, 4, GROUP, 1.0, 8)
    b = torch.cat([b, b[-1:].repeat(len(a) - len(b), 1)])  # the shorter schedule idles at the end
    lv = torch.stack([a, b], dim=1)
    c = conds(2, 16, seed=5)
    x = initial_noise((2, 16, DIM), sig, lv[0], torch.zeros(2, 16, DIM), generator=torch.Generator().manual_seed(2))
    both = sample_levels(model, x, sig, lv, c)
    for i in range(2):
        alone = sample_levels(model, x[i:i + 1], sig, lv[:, i], row(c, i))
        torch.testing.assert_close(both[i:i + 1], alone, rtol=1e-5, atol=1e-5)


def test_initial_noise_scales_and_context():
    sig = karras_sigmas(4)
    lv0 = torch.tensor([4] * 4 + [2] * 4 + [0] * 4)
    ctx = torch.full((3, 12, 5), 7.0)
    x = initial_noise((3, 12, 5), sig, lv0, ctx, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 12, 5)
    assert (x[:, :4] == 7.0).all()
    # noise scaled to each frame's own σ: the ratio of the two noisy parts ≈ σ_max / σ_2
    ratio = (x[:, 8:].std() / x[:, 4:8].std()).item()
    assert ratio == pytest.approx((sig[0] / sig[2]).item(), rel=0.35)
    same = initial_noise((3, 12, 5), sig, lv0, ctx, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, same)


def test_callback_once_per_changing_row():
    seen = []
    lv = torch.cat([pyramid_levels(8, 2, 4, 1.0)[:1], pyramid_levels(8, 2, 4, 1.0)])  # a repeated first row
    sample_levels(gaussian_denoiser(1.0), torch.randn(1, 8, 2), karras_sigmas(2), lv, None,
                  callback=lambda info: seen.append(info["step"]))
    assert seen == list(range(1, lv.shape[0] - 1))


# ---- guidance -------------------------------------------------------------------------------------------

def test_guidance_defaults_follow_names_order():
    assert NAMES == ("emotion", "expressiveness", "stimulus")
    assert GUIDANCE == SamplerSettings().guidance == (0.25, 1.0, 0.3)  # emotion, expressiveness, stimulus
    s = SamplerSettings()
    torch.testing.assert_close(s.sigmas(), karras_sigmas(s.levels))  # one set of Karras defaults


def test_guided_matches_leave_one_out_formula():
    model = tiny_denoiser(3)
    x = torch.randn(3, 16, DIM)
    sigma = karras_sigmas(4)[torch.tensor([[1] * 8 + [2] * 8] * 3)]
    c = conds(3, 16, seed=1)
    w = (0.7, -0.3, 1.5)
    with torch.no_grad():
        got = guided(model, w)(x, sigma, c)
        d = model(x, sigma, c)
        want = d + sum(w[k] * (d - model(x, sigma, c.without(k))) for k in range(3))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # one condition only: its own branch, not another's (NAMES order)
        got_s = guided(model, (0, 0, 2.0))(x, sigma, c)
        torch.testing.assert_close(got_s, d + 2.0 * (d - model(x, sigma, c.without(2))), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(got_s, d + 2.0 * (d - model(x, sigma, c.without(0))), atol=1e-3)


def test_guidance_interval_guides_only_frames_at_or_below_max_sigma():
    model = tiny_denoiser(3)
    x = torch.randn(2, 16, DIM)
    grid = karras_sigmas(4)  # 40, …, 0.004, 0
    sigma = grid[torch.tensor([[0] * 4 + [1] * 4 + [2] * 4 + [3] * 4] * 2)]
    c = conds(2, 16, seed=3)
    w = (0.25, 1.5, 0.6)
    cut = float(grid[1]) * 1.01  # guide levels 1-3, not level 0 (σ = 40)
    with torch.no_grad():
        everywhere = guided(model, w)(x, sigma, c)
        limited = guided(model, w, max_sigma=cut)(x, sigma, c)
        plain = model(x, sigma, c)
    torch.testing.assert_close(limited[:, :4], plain[:, :4])  # σ above the interval: D(c) alone
    torch.testing.assert_close(limited[:, 4:], everywhere[:, 4:])  # inside: the full guided value
    assert not torch.allclose(everywhere[:, :4], plain[:, :4], atol=1e-3)  # guidance really moved those frames
    torch.testing.assert_close(guided(model, w, max_sigma=0.0)(x, sigma, c), everywhere)  # 0 = every σ
    with pytest.raises(PainDiffusionError, match="guidance_max_sigma"):
        SamplerSettings(guidance_max_sigma=-1.0).validate()


def test_guided_batch3_equals_each_sample_alone_full_loop():
    model = tiny_denoiser(4)
    sig = karras_sigmas(4)
    lv = pyramid_levels(16, 4, GROUP, 2.0, n_context=4)
    c = conds(3, 16, seed=7)
    c = c._replace(keep=torch.tensor([[True, True, True], [False, True, True], [True, False, True]]))
    x = initial_noise((3, 16, DIM), sig, lv[0], torch.randn(3, 16, DIM), generator=torch.Generator().manual_seed(9))
    counter = Counter(guided(model, (0.25, 0.5, 1.0)))
    out3 = sample_levels(counter, x, sig, lv, c)
    assert len(counter.batches) == lv.shape[0] - 1  # exactly one guided (batched) call per step
    inner = Counter(model)
    sample_levels(guided(inner, (0.25, 0.5, 1.0)), x, sig, lv, c)
    assert inner.batches == [3 * 4] * (lv.shape[0] - 1)  # all branches of all samples in one call
    alone = [sample_levels(guided(model, (0.25, 0.5, 1.0)), x[i:i + 1], sig, lv, row(c, i)) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(out3[i:i + 1], alone[i], rtol=1e-4, atol=1e-5)
    # the three samples really differ (different conditions and noise), so the equality means something
    assert not torch.allclose(alone[0], alone[1], atol=1e-2) and not torch.allclose(alone[1], alone[2], atol=1e-2)


def test_guided_zero_weights_is_the_plain_model():
    model = tiny_denoiser(5)
    sig = karras_sigmas(4)
    lv = pyramid_levels(16, 4, GROUP, 1.0, 4)
    c = conds(2, 16)
    x = initial_noise((2, 16, DIM), sig, lv[0], torch.zeros(2, 16, DIM), generator=torch.Generator().manual_seed(0))
    inner = Counter(model)
    plain = sample_levels(model, x, sig, lv, c)
    zero = sample_levels(guided(inner, (0.0, 0.0, 0.0)), x, sig, lv, c)
    assert torch.equal(plain, zero)
    assert inner.batches == [2] * (lv.shape[0] - 1)  # no extra branches
    strong = sample_levels(guided(model, (0.0, 0.0, 3.0)), x, sig, lv, c)
    assert not torch.allclose(strong, plain, atol=1e-3)  # guidance does change the result
