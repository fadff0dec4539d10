"""Denoiser, training noise and conditions (docs/design.md §1, §2, §5): EDM preconditioning with per-frame σ, the
parameter budget, the loss ignoring clean context frames, diffusion-forcing noise levels, and "dropped" meaning
one thing — the learned null embedding — in training and in sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TINY_SHAPE, random_denoiser
from paindiffusion.conditions import HISTORY, NAMES, STIMULUS_LAGS, CondBatch, ConditionSpec
from paindiffusion.errors import PainDiffusionError
from paindiffusion.model import ConditionEmbedding, Denoiser, ModelConfig, NoiseDistribution, Standardizer, edm_loss

torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the CPU is shared)
TINY = dict(dim=6, **TINY_SHAPE)


def tiny_denoiser(seed: int = 0, scale: float = 0.15) -> Denoiser:
    """Every weight random, so the zero-initialised output/modulation layers do not hide anything."""
    return random_denoiser(TINY["dim"], seed, scale)


def conds(b: int, t: int, seed: int = 0, spec: ConditionSpec | None = None) -> CondBatch:
    rng = np.random.default_rng(seed)
    stim = 32.0 + rng.uniform(0, 16, (b, HISTORY + t))
    return (spec or ConditionSpec()).batch(stim, rng.uniform(0, 6, b), rng.integers(0, 8, b), t)


# ---- denoiser -------------------------------------------------------------------------------------------

def test_output_shape_and_window_multiple_of_group():
    d = tiny_denoiser()
    x = torch.randn(3, 16, 6)
    out = d(x, torch.rand(3, 16), conds(3, 16))
    assert out.shape == (3, 16, 6) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple"):
        d(torch.randn(1, 15, 6), torch.rand(1, 15), conds(1, 15))


def test_preconditioning_limits():
    """c_skip → 1, c_out → 0 as σ → 0, so D(x) → x (linearly in σ, down to the σ floor used for clean frames);
    at large σ, c_in keeps the network's input O(1) and D no longer follows x's scale."""
    d = tiny_denoiser(1, scale=0.3)
    x = torch.randn(2, 16, 6)
    c = conds(2, 16)
    with torch.no_grad():
        gap = [(d(x, torch.full((2, 16), s), c) - x).abs().max().item() for s in (1e-1, 1e-2, 1e-3)]
        assert gap[0] > gap[1] > gap[2]
        assert gap[1] / gap[0] < 0.2 and gap[2] / gap[1] < 0.2  # |D(x) − x| = O(σ)
        floor = d.SIGMA_FLOOR
        f = d.net(x / (floor**2 + 1) ** 0.5, torch.full((2, 16), math.log(floor) / 4), c)  # F at the σ floor
        gap0 = (d(x, torch.zeros(2, 16), c) - x).abs().max()
        assert gap0 <= 1.01 * floor * f.abs().max() + 1e-5  # = |c_skip·x − x| + c_out(σ floor)·|F|, both ≈ 1e-3
        assert gap0 < 0.2
        torch.testing.assert_close(d(x, torch.zeros(2, 16), c), d(x, torch.full((2, 16), 1e-3), c))  # σ floor
        assert (d(x, torch.full((2, 16), 1.0), c) - x).abs().max() > 0.05  # at σ = σ_data the network matters
        big = d(x * 1e4, torch.full((2, 16), 1e4), c)  # c_skip·x ≈ x·σ_d²/σ² → small; c_in·x is O(1)
        assert big.abs().max() < 1e-2 * (x * 1e4).abs().max()  # does not follow x's scale


def test_per_frame_sigma_reaches_the_network():
    """σ is per frame: changing it on one stack changes the output (the stack's own frames most)."""
    d = tiny_denoiser(2)
    x = torch.randn(1, 16, 6)
    c = conds(1, 16)
    s = torch.full((1, 16), 0.5)
    s2 = s.clone()
    s2[0, 8:12] = 5.0
    with torch.no_grad():
        a, b = d(x, s, c), d(x, s2, c)
    diff = (a - b).abs().amax(-1)[0]
    assert diff[8:12].min() > 1e-3
    assert diff[8:12].mean() > diff[:8].mean()


def test_default_config_parameter_budget():
    n = sum(p.numel() for p in Denoiser(ModelConfig()).parameters())
    assert 0.5e6 <= n <= 6e6  # at most 6M, about the paper's model (5.4M)


def test_denoiser_is_deterministic_and_batch_independent():
    d = tiny_denoiser(3)
    x, s, c = torch.randn(3, 16, 6), torch.rand(3, 16) * 3, conds(3, 16)
    with torch.no_grad():
        full = d(x, s, c)
        one = d(x[1:2], s[1:2], c.rows(slice(1, 2)))
    torch.testing.assert_close(full[1:2], one, rtol=1e-5, atol=1e-5)


# ---- loss and training noise ----------------------------------------------------------------------------

class Fake:
    """A stand-in denoiser: perfect except on σ = 0 frames, where it returns garbage."""

    def __init__(self, clean: torch.Tensor, garbage: float):
        self.cfg, self.clean, self.garbage = ModelConfig(**TINY), clean, garbage

    def __call__(self, x, sigma, cond):
        return torch.where((sigma == 0)[..., None], x + self.garbage, self.clean * 0.9)


def test_edm_loss_ignores_clean_frames():
    x = torch.randn(2, 16, 6)
    sigma = torch.full((2, 16), 0.7)
    sigma[:, :4] = 0.0
    losses = []
    for garbage in (0.0, 1e3):
        torch.manual_seed(0)
        losses.append(edm_loss(Fake(x, garbage), x, sigma, None))
    assert torch.isfinite(losses[0]) and losses[0] > 0
    assert losses[0].item() == losses[1].item()
    # and it is the λ-weighted mean over the noisy frames only: λ(0.7) = (0.49 + 1)/0.49
    want = (1.49 / 0.49) * ((x[:, 4:] * 0.1) ** 2).mean()
    assert losses[0].item() == pytest.approx(want.item(), rel=1e-5)
    assert edm_loss(Fake(x, 5.0), x, torch.zeros(2, 16), None).item() == 0.0  # all context: nothing to learn


def test_tokens_see_the_neighbouring_stacks():
    """Token j is made from frames 4j − 2 … 4j + 5: its own stack and half of each neighbour."""
    net = random_denoiser(6, 0).net
    x = torch.zeros(1, 16, 6, requires_grad=True)
    tokens = net.inp(x.transpose(1, 2)).transpose(1, 2)
    tokens[0, 1].sum().backward()
    touched = tuple(int(i) for i in torch.nonzero(x.grad.abs().sum(-1)[0]).flatten())
    assert touched == (2, 3, 4, 5, 6, 7, 8, 9)


def test_interpolated_readout_has_no_step_at_stack_boundaries():
    """Token features are decoded by linear interpolation: the change across a stack boundary (frame 4j − 1
    → 4j) equals the changes just before and after it, whatever the tokens."""
    from paindiffusion.model import tokens_to_frames

    tok = torch.randn(2, 5, 6)
    f = tokens_to_frames(tok, 4)
    assert f.shape == (2, 5, 24)
    torch.testing.assert_close(f[..., 1::4], 0.875 * tok + 0.125 * torch.cat([tok[..., :1], tok[..., :-1]], -1))
    d = f.diff(dim=-1)
    for j in range(1, 6):
        torch.testing.assert_close(d[..., 4 * j - 1], d[..., 4 * j - 2])  # across the boundary = within
        torch.testing.assert_close(d[..., 4 * j - 1], d[..., 4 * j])
    net = random_denoiser(6, 0)
    x, sigma = torch.randn(2, 16, 6), torch.full((2, 16), 0.5)
    assert net(x, sigma, conds(2, 16)).shape == (2, 16, 6)


def test_the_per_frame_path_reads_each_frames_noise_level():
    """The per-frame path is scaled by each frame's own σ: zero at initialisation (the network starts as zero),
    and once set, changing one stack's σ moves that stack's frames."""
    from paindiffusion.model import Denoiser, ModelConfig

    fresh = Denoiser(ModelConfig(**TINY))
    assert fresh.net.local_film.weight.abs().sum() == 0 and fresh.net.readout.final.weight.abs().sum() == 0
    b = random_denoiser(6, 0)
    x, sigma, c = torch.randn(2, 16, 6), torch.full((2, 16), 0.5), conds(2, 16)
    with torch.no_grad():
        base = b(x, sigma, c)
        s2 = sigma.clone()
        s2[:, 8:12] = 0.6  # stack 2 only
        moved = (b(x, s2, c) - base).abs().sum(-1)[0]
    assert moved[8:12].min() > 0


def test_edm_loss_trains_a_real_denoiser():
    d = tiny_denoiser(4, scale=0.05)
    x = torch.randn(4, 16, 6)
    sigma = NoiseDistribution().sample(4, 4, torch.Generator().manual_seed(0)).repeat_interleave(4, dim=1)
    loss = edm_loss(d, x, sigma, conds(4, 16))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in d.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_noise_distribution_shapes_and_pyramid():
    g = torch.Generator().manual_seed(0)
    s = NoiseDistribution(pyramid_fraction=0.0).sample(64, 8, g)
    assert s.shape == (64, 8) and (s > 0).all()
    assert not (s[:, 1:] >= s[:, :-1]).all(dim=1).all()  # independent per stack: not all sorted
    # log-uniform over [σ_lo, σ_hi] (the default): the sampler's whole grid is trained, its top levels included
    ln = NoiseDistribution(pyramid_fraction=0.0).sample(4000, 8, g).log()
    assert ln.min() >= math.log(0.002) and ln.max() <= math.log(80.0)
    assert ln.mean().item() == pytest.approx((math.log(0.002) + math.log(80.0)) / 2, abs=0.1)
    assert (ln > math.log(10.0)).float().mean().item() == pytest.approx(math.log(8) / math.log(40000), abs=0.02)
    # EDM's log-normal around p_mean (the option)
    ln_edm = NoiseDistribution(kind="lognormal", pyramid_fraction=0.0).sample(64, 8, g)
    assert math.log(ln_edm.median()) == pytest.approx(-0.5, abs=0.25)
    nd = NoiseDistribution(pyramid_fraction=1.0, max_context=3)
    p = nd.sample(200, 8, g)
    assert p.shape == (200, 8)
    assert (p[:, 1:] >= p[:, :-1]).all()  # rows sorted: later stacks noisier
    n_clean = (p == 0).sum(1)
    assert n_clean.max() <= 3 and n_clean.min() == 0 and len(set(n_clean.tolist())) == 4  # 0..3 context stacks
    for r, k in zip(p, n_clean):  # clean stacks form a prefix
        assert (r[:k] == 0).all() and (r[k:] > 0).all()
    mixed = NoiseDistribution(pyramid_fraction=0.5).sample(400, 8, g)
    sorted_rows = (mixed[:, 1:] >= mixed[:, :-1]).all(1).float().mean().item()
    assert 0.4 < sorted_rows < 0.65
    again = NoiseDistribution().sample(5, 8, torch.Generator().manual_seed(7))
    assert torch.equal(again, NoiseDistribution().sample(5, 8, torch.Generator().manual_seed(7)))


def test_standardizer_round_trip():
    st = Standardizer(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]))  # zero std is floored
    f = torch.tensor([[1.5, 2.0], [0.0, 3.0]])
    z = st.encode(f)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(st.decode(z), f)
    torch.testing.assert_close(z[:, 0], torch.tensor([1.0, -2.0]))


# ---- conditions: dropped means the same in training and sampling ----------------------------------------

@pytest.mark.parametrize("k", range(3))
def test_dropped_condition_uses_null_embedding_whatever_its_value(k):
    torch.manual_seed(0)
    emb = ConditionEmbedding(ModelConfig(**TINY)).eval()
    a, b = conds(3, 16, seed=1), conds(3, 16, seed=2)  # different raw values of every condition
    # give b the other conditions of a, so only condition k's raw value differs
    fields = {0: "emotion", 1: "expressiveness", 2: "stimulus"}
    b = a._replace(**{fields[k]: getattr(b, fields[k])})
    with torch.no_grad():
        kept_a, kept_b = emb(a, 4), emb(b, 4)
        drop_a, drop_b = emb(a.without(k), 4), emb(b.without(k), 4)
    assert not torch.allclose(kept_a, kept_b)  # while kept, the value matters
    torch.testing.assert_close(drop_a, drop_b, rtol=0, atol=0)  # dropped: it does not
    assert not torch.allclose(drop_a, kept_a)
    # training-time dropout with p = 1 for condition k is the very same thing as CondBatch.without(k)
    spec = ConditionSpec(drop=tuple(1.0 if i == k else 0.0 for i in range(3)))
    trained = spec.dropout(a, torch.Generator().manual_seed(0))
    assert torch.equal(trained.keep, a.without(k).keep)
    with torch.no_grad():
        torch.testing.assert_close(emb(trained, 4), drop_a, rtol=0, atol=0)


def test_dropped_condition_same_through_denoiser():
    d = tiny_denoiser(5)
    x, s = torch.randn(2, 16, 6), torch.full((2, 16), 0.8)
    a = conds(2, 16, seed=3)
    b = a._replace(emotion=(a.emotion + 3) % 8, expressiveness=a.expressiveness * -2 + 5)
    with torch.no_grad():
        assert not torch.allclose(d(x, s, a), d(x, s, b))
        dropped = a._replace(keep=torch.tensor([[False, False, True]] * 2))
        torch.testing.assert_close(d(x, s, dropped), d(x, s, b._replace(keep=dropped.keep)), rtol=0, atol=0)


def test_dropout_rates_per_condition():
    spec = ConditionSpec(drop=(0.0, 0.5, 1.0))
    c = CondBatch.cat([conds(1, 8)] * 2000)
    kept = spec.dropout(c, torch.Generator().manual_seed(0)).keep.float().mean(0)
    assert kept[0].item() == 1.0 and kept[2].item() == 0.0
    assert kept[1].item() == pytest.approx(0.5, abs=0.05)
    unknown = c._replace(keep=torch.zeros_like(c.keep))
    assert not ConditionSpec(drop=(0, 0, 0)).dropout(unknown).keep.any()  # dropout never revives an unknown one


# ---- ConditionSpec ---------------------------------------------------------------------------------------

def test_stimulus_features_lags():
    spec = ConditionSpec(stimulus_mean=10.0, stimulus_std=2.0)
    t = 8
    raw = torch.arange(HISTORY + t, dtype=torch.float32)
    f = spec.stimulus_features(raw, t)
    assert f.shape == (t, len(STIMULUS_LAGS))
    for j, lag in enumerate(STIMULUS_LAGS):
        for i in range(t):
            assert f[i, j].item() == pytest.approx((HISTORY + i - lag - 10.0) / 2.0)
    fb = spec.stimulus_features(np.stack([raw.numpy(), raw.numpy() + 1]), t)
    assert fb.shape == (2, t, len(STIMULUS_LAGS))
    torch.testing.assert_close(fb[1] - fb[0], torch.full((t, len(STIMULUS_LAGS)), 0.5))
    with pytest.raises(PainDiffusionError, match="history"):
        spec.stimulus_features(raw[:-1], t)


def test_expressiveness_values_and_errors():
    spec = ConditionSpec(presets={"low": 0.5, "medium": 2.0, "high": 4.0}, expressiveness_range=(0.2, 6.0))
    assert spec.expressiveness_value("low") == 0.5
    assert spec.expressiveness_value(" High ") == 4.0
    assert spec.expressiveness_value("medium") == 2.0
    assert spec.expressiveness_value("3.5") == 3.5
    for bad in ("huge", 20, -0.1, float("nan"), float("inf"), "17"):
        with pytest.raises(PainDiffusionError) as e:
            spec.expressiveness_value(bad)
        assert "\n" not in str(e.value) and "expressiveness" in str(e.value)


@pytest.mark.parametrize("asked, used", [(16, 6.0), (8, 6.0), ("0", 0.2), (0.1, 0.2)])
def test_expressiveness_outside_the_trained_range_is_clamped_with_a_warning(asked, used):
    """A model asked beyond the values it saw gives no trustworthy face."""
    spec = ConditionSpec(expressiveness_range=(0.2, 6.0))
    with pytest.warns(UserWarning, match=r"outside the range this model was trained on \(0.2-6\)"):
        assert spec.expressiveness_value(asked) == used


def test_expressiveness_jitter_in_training_only():
    c = conds(4000, 8)
    jittered = ConditionSpec(drop=(0, 0, 0), expressiveness_jitter=0.2).dropout(c, torch.Generator().manual_seed(0))
    noise = jittered.expressiveness - c.expressiveness
    assert noise.std().item() == pytest.approx(0.2, rel=0.05) and abs(noise.mean().item()) < 0.01
    assert torch.equal(ConditionSpec(drop=(0, 0, 0)).dropout(c).expressiveness, c.expressiveness)


def test_batch_unknown_conditions_and_keep():
    spec = ConditionSpec()
    stim = np.full((3, HISTORY + 8), 40.0)
    c = spec.batch(stim, [2.0, float("nan"), 3.0], [4, 1, -1], 8)
    assert c.stimulus.shape == (3, 8, len(STIMULUS_LAGS))
    assert c.keep.tolist() == [[True, True, True], [True, False, True], [False, True, True]]
    assert torch.isfinite(c.expressiveness).all() and (c.emotion >= 0).all()  # raw values stay usable
    assert c.emotion.dtype == torch.int64 and c.keep.dtype == torch.bool
    assert c.expressiveness[0].item() == pytest.approx((2.0 - spec.expressiveness_mean) / spec.expressiveness_std)
    user = spec.batch(stim, [2.0, float("nan"), 3.0], [4, 1, -1], 8, keep=[[True, True, False]] * 3)
    assert user.keep.tolist() == [[True, True, False], [True, False, False], [False, True, False]]
    assert NAMES.index("stimulus") == 2


def test_condbatch_helpers_and_spec_round_trip():
    c = conds(2, 8)
    w = c.without(1)
    assert w.keep[:, 1].sum() == 0 and torch.equal(w.keep[:, [0, 2]], c.keep[:, [0, 2]])
    assert c.keep[:, 1].all()  # without() does not mutate the original
    cat = CondBatch.cat([c, w])
    assert torch.equal(cat.keep[2:], w.keep) and torch.equal(cat.emotion[:2], c.emotion)
    spec = ConditionSpec(stimulus_mean=36.0, presets={"low": 1.0, "medium": 2.5, "high": 5.0}, drop=(0.1, 0.2, 0.3))
    back = ConditionSpec.from_dict(spec.to_dict())
    assert back == spec


def test_frame_ramp_windows_rise_frame_by_frame_after_a_clean_stack_prefix():
    g = torch.Generator().manual_seed(1)
    stacked = NoiseDistribution(pyramid_fraction=1.0, max_context=3, frame_ramp=False).per_frame(100, 8, 4, g)
    assert stacked.shape == (100, 32) and (stacked.view(100, 8, 4).diff(dim=2) == 0).all()  # one σ per stack
    ramp = NoiseDistribution(pyramid_fraction=1.0, max_context=3, frame_ramp=True).per_frame(100, 8, 4, g)
    assert (ramp[:, 1:] >= ramp[:, :-1]).all()
    n_clean = (ramp == 0).sum(1)
    assert (n_clean % 4 == 0).all() and set(n_clean.tolist()) == {0, 4, 8, 12}  # whole context stacks
    noisy = ramp[ramp > 0].view(-1)
    assert len(torch.unique(noisy)) == len(noisy)  # every noisy frame its own σ
    iid = NoiseDistribution(pyramid_fraction=0.0, frame_ramp=True).per_frame(50, 8, 4, g)
    assert (iid.view(50, 8, 4).diff(dim=2) == 0).all()  # independent windows keep one σ per stack
