"""The streaming generator (docs/design.md §1 live demo, §5, §8): context stacks first, then ``group`` frames per step
with one guided model call, contiguous frame indices, bounded state, thread-safe controls that take effect at
the next step, one-line errors, batches with per-sequence controls, seeds, and offline stimulus traces."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from conftest import tiny_model as make_tiny
from paindiffusion.checkpoint import PainModel
from paindiffusion.conditions import ConditionSpec
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS, FACS_AUS
from paindiffusion.model import Denoiser
from paindiffusion.sequence import FaceSequence
from paindiffusion.stream import Chunk, PainStream, SamplerSettings

torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the CPU is shared)
LEVELS, CONTEXT, G = 4, 2, 4


class Counting(torch.nn.Module):
    """A denoiser wrapper that counts calls (and can run a hook inside a call, like another thread would)."""

    def __init__(self, inner: Denoiser):
        super().__init__()
        self.inner, self.cfg, self.batches, self.hook = inner, inner.cfg, [], None

    def forward(self, x, sigma, cond):
        self.batches.append(x.shape[0])
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self.inner(x, sigma, cond)


def tiny_model(seed: int = 0, **sampler) -> PainModel:
    """conftest's tiny model, its denoiser counting calls."""
    aus = len(FACS_AUS)
    m = make_tiny(seed, spec=ConditionSpec(presets={"low": 0.5, "medium": 2.0, "high": 4.0}, expressiveness_range=(0.0, 16.0)),
                  mean=torch.tensor([1.5] * aus + [0.0] * 3), std=torch.tensor([1.0] * aus + [5.0] * 3),
                  **{"levels": LEVELS, "context": CONTEXT, **sampler})
    m.denoiser = Counting(m.denoiser)
    return m


@pytest.fixture
def model():
    return tiny_model()


@pytest.mark.parametrize("ramp", ["frame", "stack"])
def test_every_step_emits_one_stack_and_the_first_builds_the_window(ramp):
    model = tiny_model(ramp=ramp)
    s = PainStream(model, stimulus=40.0, seed=0)
    model.denoiser.batches.clear()
    first = s.step()
    assert isinstance(first, Chunk)
    assert first.frames.shape == (1, G, FACS.dim) and first.start == 0
    assert first.stimulus.shape == (1, G) and first.pspi.shape == (1, G)
    # building the window: the pyramid start (levels + context - 1 rows of stacks; the frame ramp's rows are one
    # frame apart, group times as many) + warm-up + this step's call
    rows = (LEVELS + CONTEXT) * (G if ramp == "frame" else 1) - 1
    assert len(model.denoiser.batches) == rows + s.s.warmup + 1
    ends = G
    for _ in range(6):
        model.denoiser.batches.clear()
        c = s.step()
        assert c.frames.shape == (1, G, FACS.dim)
        assert c.start == ends  # contiguous frame indices
        ends += G
        # a step is cheap: exactly one batched model call (cond + 3 leave-one-out branches)
        assert model.denoiser.batches == [4]
        assert np.isfinite(c.frames).all()
        FACS.validate(c.frames[0])  # valid face frames
        np.testing.assert_allclose(c.pspi[0], FACS.pspi(c.frames[0]), rtol=1e-6)
    assert s.emitted == ends == 7 * G


def test_take_exact_length_with_stimulus(model):
    s = PainStream(model, stimulus=44.0, expressiveness="high", emotion="Fear", seed=1)
    seq = s.take(37)
    assert isinstance(seq, FaceSequence)
    assert len(seq) == 37 and seq.frames.shape == (37, FACS.dim)
    np.testing.assert_array_equal(seq.stimulus, np.full(37, 44.0, np.float32))
    assert seq.pspi is not None and seq.pspi.shape == (37,)
    assert seq.meta["emotion"] == "Fear" and seq.meta["expressiveness"] == pytest.approx(model.spec.presets["high"])
    assert s.emitted >= 37 and s.emitted - 37 < G + CONTEXT * G
    more = s.take(8)  # the stream continues where it left
    assert len(more) == 8


def test_bounded_state_and_no_drift(model):
    s = PainStream(model, stimulus=38.0, seed=2)
    s.step()
    shapes = (s.x.shape, s.history.past.shape, s.history.window.shape)
    early, late = [], []
    for i in range(80):
        c = s.step()
        if i % 9 == 0:
            s.set_controls(stimulus=30.0 + (i % 27))
        assert (s.x.shape, s.history.past.shape, s.history.window.shape) == shapes
        (early if i < 20 else late if i >= 60 else []).append(np.abs(c.frames).mean())
    assert s.x.shape == (1, (CONTEXT + LEVELS) * G, FACS.dim)
    assert torch.isfinite(s.x).all()
    # no drift: the latent context does not blow up or collapse over a long run
    ctx = s.x[:, : CONTEXT * G]
    assert ctx.abs().max() < 20
    assert 0.3 < np.mean(late) / np.mean(early) < 3.0


def test_set_controls_from_another_thread_takes_effect_next_step(model):
    s = PainStream(model, stimulus=35.0, expressiveness="low", emotion="Neutral", seed=3)
    s.step()
    t = threading.Thread(target=s.set_controls, kwargs=dict(stimulus=50.0, expressiveness=3.0, emotion="anger"))
    t.start()
    t.join()
    c = s.step()
    assert c.controls["stimulus"].tolist() == [50.0]
    assert c.controls["expressiveness"].tolist() == [3.0]
    assert c.controls["emotion"] == ["Anger"]
    np.testing.assert_array_equal(c.stimulus, np.full((1, G), 50.0, np.float32))  # frames carry it
    s.set_controls(stimulus=33.0)  # only what is given changes
    c = s.step()
    assert c.controls["stimulus"].tolist() == [33.0] and c.controls["emotion"] == ["Anger"]
    np.testing.assert_array_equal(c.stimulus, np.full((1, G), 33.0, np.float32))


def test_controls_changed_during_a_step_apply_to_the_next(model):
    """Controls set while a step is running (another thread) must not be reported for frames made without them."""
    s = PainStream(model, stimulus=35.0, seed=3)
    s.step()
    model.denoiser.hook = lambda: s.set_controls(stimulus=55.0, emotion="Happiness")
    c = s.step()  # the hook fires inside this step's model call
    assert c.controls["stimulus"].tolist() == [35.0] and c.controls["emotion"] == ["Neutral"]
    np.testing.assert_array_equal(c.stimulus, np.full((1, G), 35.0, np.float32))
    c = s.step()
    assert c.controls["stimulus"].tolist() == [55.0] and c.controls["emotion"] == ["Happiness"]
    np.testing.assert_array_equal(c.stimulus, np.full((1, G), 55.0, np.float32))


def test_concurrent_controls_stay_consistent(model):
    s = PainStream(model, stimulus=35.0, seed=4)
    stop = threading.Event()

    writes = [0]

    def writer():
        while not stop.is_set():
            s.set_controls(stimulus=30.0 + writes[0] % 20)
            writes[0] += 1
            # Pause ~1 ms between writes: a loop that never blocks holds the GIL for whole switch intervals
            # (5 ms) and starves the stepping thread (15 steps took 20-50 s). At ~1000 writes a second the
            # controls still change many times within every step.
            time.sleep(0.001)

    t = threading.Thread(target=writer)
    t.start()
    try:
        chunks = [s.step() for _ in range(15)]
    finally:
        stop.set()
        t.join()
    assert writes[0] > 15, f"only {writes[0]} control writes during 15 steps: the test did not exercise concurrency"
    for c in chunks[1:]:
        # the stimulus attached to a stack is the control in force for its final step
        assert np.all(c.stimulus == c.controls["stimulus"][:, None])


@pytest.mark.parametrize("controls,match", [
    (dict(stimulus=float("nan")), "stimulus"),
    (dict(stimulus=70.0), "stimulus"),
    (dict(stimulus=10.0), "stimulus"),
    (dict(emotion="Boredom"), "emotion"),
    (dict(expressiveness="huge"), "expressiveness"),
    (dict(expressiveness=20), "expressiveness"),
    (dict(stimulus=[40.0, 41.0]), "batch"),
])
def test_invalid_controls_one_line_and_nothing_changes(model, controls, match):
    s = PainStream(model, stimulus=36.0, expressiveness="medium", emotion="Sadness")
    before = s.controls
    with pytest.raises(PainDiffusionError) as e:
        s.set_controls(**controls)
    assert "\n" not in str(e.value) and match in str(e.value)
    after = s.controls
    assert after["stimulus"].tolist() == before["stimulus"].tolist() and after["emotion"] == before["emotion"]
    with pytest.raises(PainDiffusionError):
        PainStream(model, **controls)


def test_invalid_controls_are_all_or_nothing(model):
    s = PainStream(model, stimulus=36.0, expressiveness="medium", emotion="Sadness")
    with pytest.raises(PainDiffusionError, match="emotion"):
        s.set_controls(stimulus=45.0, expressiveness="high", emotion="Boredom")
    c = s.controls
    assert c["stimulus"].tolist() == [36.0] and c["expressiveness"].tolist() == pytest.approx([model.spec.presets["medium"]]) and c["emotion"] == ["Sadness"]


def test_invalid_settings(model):
    with pytest.raises(PainDiffusionError, match="context"):
        PainStream(model, settings=SamplerSettings(levels=4, context=0))
    with pytest.raises(PainDiffusionError, match="levels"):
        PainStream(model, settings=SamplerSettings(levels=0, context=2))
    with pytest.raises(PainDiffusionError, match="exceeds"):
        PainStream(model, settings=SamplerSettings(levels=10, context=8))  # 18 stacks > max_tokens 16
    for bad, name in [(dict(order=3), "order"), (dict(sigma_min=1.0, sigma_max=0.5), "sigma_max"),
                      (dict(guidance=(1.0, 2.0)), "guidance"), (dict(levels=2.5), "levels"),
                      (dict(phase_filter=0.5), "phase_filter"), (dict(phase_filter=float("nan")), "phase_filter"),
                      (dict(guidance_max_sigma=-1.0), "guidance_max_sigma"), (dict(ramp="diagonal"), "ramp"),
                      (dict(enter_at_context=1), "enter_at_context")]:
        with pytest.raises(PainDiffusionError, match=name):
            PainStream(model, settings=SamplerSettings(**{"levels": 4, "context": 2, **bad}))
    ok = SamplerSettings(levels=3, context=1, guidance=(0.0, 1.0, 2.0), order=2, phase_filter=10.0, guidance_max_sigma=8.0,
                         ramp="frame", enter_at_context=True)
    assert SamplerSettings.from_dict(ok.to_dict()) == ok and ok.validate() is ok


def test_guidance_interval_in_the_stream():
    """The stream passes the setting to the guidance: a cut below σ_max changes the frames, a cut at σ_max
    (the grid's top level) changes nothing."""
    def frames(model):
        return PainStream(model, stimulus=46.0, seed=3, expressiveness="high").take(6 * G).frames

    base = frames(tiny_model(levels=4, guidance=(0.25, 1.5, 0.6)))
    top = frames(tiny_model(levels=4, guidance=(0.25, 1.5, 0.6), guidance_max_sigma=40.0))
    cut = frames(tiny_model(levels=4, guidance=(0.25, 1.5, 0.6), guidance_max_sigma=8.0))
    np.testing.assert_array_equal(top, base)
    assert np.abs(cut - base).max() > 1e-3


def test_batch_with_per_sequence_controls(model):
    s = PainStream(model, batch=3, stimulus=[34.0, 42.0, 50.0], expressiveness=["low", 2.5, "high"],
                   emotion=["Neutral", "Fear", "Happiness"], seed=5)
    first = s.step()
    assert first.frames.shape == (3, G, FACS.dim)
    model.denoiser.batches.clear()
    c = s.step()
    assert model.denoiser.batches == [3 * 4]  # all sequences and guidance branches in one call
    assert c.frames.shape == (3, G, FACS.dim)
    np.testing.assert_array_equal(c.stimulus[:, 0], [34.0, 42.0, 50.0])
    assert c.controls["expressiveness"].tolist() == [0.5, 2.5, 4.0]
    assert c.controls["emotion"] == ["Neutral", "Fear", "Happiness"]
    assert not np.allclose(c.frames[0], c.frames[1])
    s.set_controls(stimulus=[50.0, 34.0, 42.0])
    np.testing.assert_array_equal(s.step().stimulus[:, 0], [50.0, 34.0, 42.0])
    seqs = s.take(10)
    assert isinstance(seqs, list) and len(seqs) == 3 and all(len(q) == 10 for q in seqs)
    assert [q.meta["emotion"] for q in seqs] == ["Neutral", "Fear", "Happiness"]


def test_seeds(model):
    a = PainStream(model, stimulus=45.0, seed=11).take(24)
    b = PainStream(model, stimulus=45.0, seed=11).take(24)
    c = PainStream(model, stimulus=45.0, seed=12).take(24)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.allclose(a.frames, c.frames)


def test_conditions_reach_the_frames(model):
    lo = PainStream(model, stimulus=32.0, seed=6).take(20)
    hi = PainStream(model, stimulus=50.0, seed=6).take(20)
    assert not np.allclose(lo.frames, hi.frames)  # same noise, different stimulus


def test_offline_trace_attaches_trace_values(model):
    trace = np.linspace(32.0, 48.0, 50).astype(np.float32)
    s = PainStream(model, trace=trace, seed=7)
    first = s.step()
    np.testing.assert_array_equal(first.stimulus[0], trace[:G])
    c = s.step()
    np.testing.assert_array_equal(c.stimulus[0], trace[G: 2 * G])
    seq = PainStream(model, trace=trace, seed=7).take(60)  # longer than the trace: its last value holds
    np.testing.assert_array_equal(seq.stimulus[:50], trace)
    np.testing.assert_array_equal(seq.stimulus[50:], np.full(10, trace[-1]))
    np.testing.assert_array_equal(seq.frames[:G], first.frames[0])  # same seed, same frames
    # per-sequence traces in a batch
    tr2 = np.stack([trace, trace[::-1]])
    seqs = PainStream(model, trace=tr2, batch=2, seed=7).take(20)
    np.testing.assert_array_equal(seqs[1].stimulus, trace[::-1][:20])
    # a trace differs from holding its first value: the window sees the future stimulus
    held = PainStream(model, stimulus=float(trace[0]), seed=7).take(20)
    assert not np.allclose(held.frames, seq.frames[:20])


@pytest.mark.parametrize("trace,batch", [(np.array([35.0, np.nan, 40.0]), 1), (np.full((3, 20), 40.0), 2)])
def test_bad_trace(model, trace, batch):
    with pytest.raises(PainDiffusionError, match="trace"):
        PainStream(model, trace=trace, batch=batch)


def test_heun_stream_makes_two_calls_per_step():
    m = tiny_model(order=2)
    s = PainStream(m, seed=0)
    s.step()
    m.denoiser.batches.clear()
    c = s.step()
    assert m.denoiser.batches == [4, 4] and np.isfinite(c.frames).all()


@pytest.mark.parametrize("controls", [
    dict(stimulus=np.array([[40.0]])),          # a (1, 1) array for a batch of 1
    dict(stimulus=[[40.0]]),
    dict(stimulus="hot"),
    dict(stimulus=np.array("x")),                # 0-d string array
    dict(expressiveness=np.array([[1.0]])),
    dict(expressiveness=[None]),
    dict(expressiveness=True),
    dict(emotion=3),
    dict(emotion=np.array(["Fear", "Anger"])),
    dict(emotion=[["Fear"]]),
])
def test_malformed_controls_one_line_and_the_stream_goes_on(model, controls):
    s = PainStream(model, stimulus=36.0, expressiveness="medium", emotion="Sadness")
    s.step()
    before = s.controls
    with pytest.raises(PainDiffusionError) as e:
        s.set_controls(**controls)
    assert "\n" not in str(e.value)
    after = s.controls
    assert after["stimulus"].tolist() == before["stimulus"].tolist() and after["emotion"] == before["emotion"]
    assert after["expressiveness"].tolist() == before["expressiveness"].tolist()
    c = s.step()  # every later step still works
    assert c.frames.shape == (1, G, FACS.dim) and c.controls["stimulus"].tolist() == [36.0]
    s.set_controls(stimulus=np.array(41.0))  # a 0-d number array is one value
    assert s.step().controls["stimulus"].tolist() == [41.0]


@pytest.mark.parametrize("phase_filter,ramp,warmup", [(0.0, "stack", 12), (2.0, "stack", 12), (2.0, "stack", 0),
                                                      (0.0, "frame", 12)])
def test_patients_join_leave_and_restart_without_disturbing_others(phase_filter, ramp, warmup):
    """The live demo's batch: each browser tab is one slot of one batched model call per step (with the
    stack-phase filter too: its state is per patient and moves with the slot)."""
    model = tiny_model(phase_filter=phase_filter, ramp=ramp, warmup=warmup)
    alone = PainStream(model, stimulus=44.0, seed=21).take(8 + 2 * G + 4 * G).frames  # the undisturbed patient
    s = PainStream(model, stimulus=44.0, seed=21)
    s.take(8)
    slot = s.add(seed=5, stimulus=36.0, emotion="Fear")
    assert slot == 1 and s.batch == 2
    c = s.step()
    assert c.frames.shape == (2, G, FACS.dim) and c.controls["emotion"] == ["Neutral", "Fear"]
    assert c.stimulus[1].tolist() == [36.0] * G
    s.set_controls(stimulus=50.0, slot=1)  # one tab's slider moves only its own patient
    assert s.controls["stimulus"].tolist() == [44.0, 50.0]
    model.denoiser.batches.clear()
    d = s.step()
    assert model.denoiser.batches == [2 * 4]  # one batched call for both patients
    with pytest.raises(PainDiffusionError, match="slot"):
        s.set_controls(stimulus=40.0, slot=2)
    s.reset(1, seed=9)  # "new patient": fresh latents, same controls, slot 0 untouched
    assert s.controls["stimulus"].tolist() == [44.0, 50.0]
    s.remove(1)
    assert s.batch == 1 and s.controls["emotion"] == ["Neutral"]
    rest = s.take(4 * G)
    # slot 0 never noticed: its frames are the lone patient's (its own noise; batching changes only float
    # rounding), while the other patient's differ from it
    np.testing.assert_allclose(c.frames[0], alone[8:8 + G], atol=1e-3)
    np.testing.assert_allclose(d.frames[0], alone[8 + G:8 + 2 * G], atol=1e-3)
    np.testing.assert_allclose(rest.frames, alone[8 + 2 * G:], atol=1e-3)
    assert not np.allclose(c.frames[1], c.frames[0], atol=1e-2)
    with pytest.raises(PainDiffusionError, match="remove"):
        s.remove(0)
