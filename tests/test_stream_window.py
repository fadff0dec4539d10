"""The stream's window (window.py): the frame ramp's per-frame levels, fresh noise entering at the clean
context's median, and the stack-phase filter."""

from __future__ import annotations

import numpy as np
import torch

from conftest import tiny_model
from paindiffusion.facespace import FACS
from paindiffusion.stream import PainStream, StackPhaseFilter

torch.set_num_threads(1)
G = 4  # frames per stack


def test_stack_phase_filter_removes_a_pattern_locked_to_the_stacks_and_keeps_the_motion():
    """A smooth random motion plus a fixed offset on each of the 4 frame positions of a stack (the judder): after
    a few time constants the filter's output has lost ≥ 90% of the pattern and follows the motion."""
    rng = np.random.default_rng(0)
    t = 1600
    motion = np.cumsum(np.cumsum(rng.normal(0, 0.002, (2, t, 3)), axis=1), axis=1)  # smooth (integrated twice)
    pattern = np.array([0.05, -0.03, 0.01, -0.03])[:, None] * np.array([1.0, -2.0, 0.5])  # (4, 3), mean 0 per channel
    raw = torch.tensor(motion + np.tile(pattern, (t // G, 1))[None], dtype=torch.float32)
    f = StackPhaseFilter(10.0, G)
    out = torch.cat([f(raw[:, i: i + G]) for i in range(0, t, G)], dim=1).numpy()[:, 400:]
    left = out - motion[:, 400:]
    per_position = np.stack([left[:, p::G].mean(axis=(0, 1)) for p in range(G)])
    per_position -= per_position.mean(0)
    assert np.abs(per_position).max() < 0.1 * np.abs(pattern).max()
    assert np.abs(left - left.mean(axis=1, keepdims=True)).max() < 0.01  # the motion passes
    # a motion without the pattern comes out nearly as it went in
    g = StackPhaseFilter(10.0, G)
    plain = torch.tensor(motion, dtype=torch.float32)
    same = torch.cat([g(plain[:, i: i + G]) for i in range(0, t, G)], dim=1).numpy()
    assert np.abs(same - motion).max() < 0.01


def test_stack_phase_filter_with_one_context_stack():
    """The filter starts from the window's clean context; one context stack (the least allowed) is enough."""
    model = tiny_model(phase_filter=2.0, context=1)
    seq = PainStream(model, stimulus=44.0, seed=2).take(10 * G)
    assert seq.frames.shape == (10 * G, FACS.dim) and np.isfinite(seq.frames).all()
    s = PainStream(model, stimulus=44.0, seed=2)
    s.step()
    s.add(seed=3)
    assert s.step().frames.shape == (2, G, FACS.dim)


def test_frame_ramp_gives_each_frame_its_own_level_and_the_same_number_of_steps():
    m = tiny_model(levels=3, context=2, warmup=0, ramp="frame")
    s = PainStream(m, batch=2, seed=0)
    lw = s.latents
    g = m.config.group
    assert len(lw.sigmas) == 3 * g + 1  # a grid of levels × group σ values and 0
    noisy = lw.sigma_now[lw.n_context:]
    assert (lw.sigma_now[: lw.n_context] == 0).all() and (noisy.diff() > 0).all()  # rising frame by frame
    assert (lw.sigma_next[lw.n_context: lw.n_context + g] == 0).all() and (lw.sigma_next[lw.n_context + g:] > 0).all()
    # a frame entering at rank r reaches 0 after r / group steps: every frame gets `levels` steps
    ranks = lw.rank[lw.n_context:]
    assert ranks[-g:].tolist() == list(range(3 * g - g + 1, 3 * g + 1)) and (ranks - g <= 0).sum() == g
    a = s.take(24)
    b = PainStream(m, batch=2, seed=0).take(24)
    assert np.array_equal(a[0].frames, b[0].frames) and np.isfinite(a[0].frames).all()
    stack = PainStream(tiny_model(levels=3, context=2, warmup=0, ramp="stack"), batch=2, seed=0).take(24)
    assert not np.allclose(a[0].frames, stack[0].frames)


def test_entering_at_the_context_centres_the_fresh_noise_on_the_clean_context_median():
    m = tiny_model(levels=2, context=2, warmup=0, enter_at_context=True)
    s = PainStream(m, seed=0)
    s.step()
    lw = s.latents
    zero = torch.zeros(1, m.config.group, m.config.dim)
    before = lw.x.clone()
    lw.advance(s._conditions(lw.n_context), zero)  # no noise: the entering stack is exactly the centre
    centre = lw.x[:, :lw.n_context].median(dim=1, keepdim=True).values
    torch.testing.assert_close(lw.x[:, -m.config.group:], centre.expand(-1, m.config.group, -1))
    assert not torch.equal(centre.expand(-1, m.config.group, -1), lw.newest_clean(m.config.group))
    assert not torch.equal(before, lw.x)
