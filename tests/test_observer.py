"""The machine observer (a classifier two-sample test): indistinguishable samples score near 50 % with an interval
that holds 50 %, motion with a visible flaw scores near 0 %, pairing, determinism and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paindiffusion.errors import PainDiffusionError
from paindiffusion.evaluation.data import fresh_cohort
from paindiffusion.evaluation.observer import MachineObserver, ObserverConfig, motion_windows, realism_two_sample_test

torch.set_num_threads(1)
FAST = ObserverConfig(epochs=6, min_steps=50)


@pytest.fixture(scope="module")
def cohorts():
    return fresh_cohort(12, 1.0, 880).frames, fresh_cohort(12, 1.0, 881).frames


def test_windows_cut_every_hop():
    seq = np.arange(100 * 2, dtype=np.float32).reshape(100, 2)
    w = motion_windows(seq, 64, 32)
    assert w.shape == (2, 64, 2) and w[1, 0, 0] == seq[32, 0]
    assert motion_windows(seq[:10], 64, 32).shape == (0, 64, 2)


def test_same_process_is_indistinguishable(cohorts):
    real, other = cohorts  # new subjects of the same simulation: nothing to find
    r = realism_two_sample_test(list(real), list(other), seed=0, config=FAST)
    assert r["lo"] <= 0.5 <= r["hi"] and 0.3 < r["preference"] < 0.7
    assert r["paired"] and r["trials"] == r["windows"]["generated"] == r["windows"]["real"] == 12 * 45
    assert r["recordings"] == {"real": 12, "generated": 12} and r["window_s"] == pytest.approx(2.56)


def test_jittery_motion_is_told_apart(cohorts):
    real, _ = cohorts
    rng = np.random.default_rng(0)
    jitter = real + rng.normal(0, 0.25, real.shape).astype(np.float32)  # frame-to-frame noise no face makes
    r = realism_two_sample_test(list(real), list(jitter), seed=0, config=FAST)
    assert r["preference"] < 0.05 and r["hi"] < 0.2 and r["accuracy"] > 0.9


def test_unpaired_samples_compare_every_pair_and_same_seed_same_answer(cohorts):
    real, other = cohorts
    a = realism_two_sample_test(list(real), list(other[:9]), seed=3, config=FAST)
    b = realism_two_sample_test(list(real), list(other[:9]), seed=3, config=FAST)
    assert not a["paired"] and a == b
    assert a["trials"] > a["windows"]["generated"]  # every generated window meets every real window of its fold


def test_observer_scores_a_clip_as_its_mean_window(cohorts):
    real, other = cohorts
    obs = MachineObserver.fit(list(real[:4]), list(other[:4] + 0.5), 25, seed=0, config=FAST)
    s = obs.window_scores(real[5])
    assert obs.realness(real[5]) == pytest.approx(float(s.mean()), rel=1e-6)
    with pytest.raises(PainDiffusionError, match="shorter than the observer's window"):
        obs.realness(real[5][:20])


@pytest.mark.parametrize("real,gen,words", [
    ([np.zeros((100, 20))] * 3, [np.zeros((100, 20))] * 4, "at least 4 real"),
    ([np.zeros((100, 20))] * 4, [np.full((100, 20), np.nan)] * 4, "finite"),
    ([np.zeros((100, 20))] * 4, [np.zeros((100, 21))] * 4, "channels"),
    ([np.zeros((10, 20))] * 4, [np.zeros((10, 20))] * 4, "window"),
])
def test_bad_inputs_are_one_line_errors(real, gen, words):
    with pytest.raises(PainDiffusionError, match=words):
        realism_two_sample_test(real, gen)


def test_features_levels_or_differences_only(cohorts):
    from paindiffusion.evaluation.observer import MotionFeatures

    w = motion_windows(cohorts[0][0], 64, 32)
    assert MotionFeatures.fit(w)(w).shape[-1] == 40
    assert MotionFeatures.fit(w, "levels")(w).shape[-1] == MotionFeatures.fit(w, "differences")(w).shape[-1] == 20
    assert np.allclose(MotionFeatures.fit(w, "differences")(w)[:, 0].numpy(), 0)  # the first frame has no difference
    with pytest.raises(PainDiffusionError, match="levels or differences"):
        MotionFeatures.fit(w, "speed")
