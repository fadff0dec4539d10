"""Evaluation metrics on tiny arrays with values worked out by hand (paindiffusion.evaluation.metrics)."""

import numpy as np
import pytest

from paindiffusion.biovid import resting_mask
from paindiffusion.evaluation import metrics as M


def test_pearson_rowwise_and_constant_rows_give_zero():
    a = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    b = np.array([[2.0, 4.0, 6.0], [1.0, 2.0, 3.0]])
    assert M.pearson(a, b) == pytest.approx([1.0, 0.0])
    assert M.pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_smooth_is_a_centred_moving_average_with_edge_padding():
    x = np.array([0.0, 0.0, 3.0, 0.0, 0.0])
    assert M.smooth(x, 3) == pytest.approx([0.0, 1.0, 1.0, 1.0, 0.0])
    assert M.smooth(np.array([[1.0, 2.0, 3.0]]), 3) == pytest.approx(np.array([[4 / 3, 2.0, 8 / 3]]))  # edges: (1+1+2)/3, (2+3+3)/3


def test_dtw_by_hand():
    # a = [0, 1, 2], b = [0, 2]: best path (0,0) (1,0)|(1,1) (2,1) costs 0 + 1 + 0 = 1.
    assert M.dtw(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0]), normalise=False) == pytest.approx(1.0)
    # a shifted copy warps for free except at the ends: [0,0,1,1] vs [0,1,1,1] → 0.
    assert M.dtw(np.array([0.0, 0, 1, 1]), np.array([0.0, 1, 1, 1]), normalise=False) == pytest.approx(0.0)
    # normalised: per frame for equal lengths ([1,1] vs [0,0] costs 2 over 2 frames).
    assert M.dtw(np.array([1.0, 1.0]), np.array([0.0, 0.0])) == pytest.approx(1.0)


def test_dtw_batches_and_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 2, 7)), rng.normal(size=(3, 2, 5))

    def loop(x, y):
        d = np.full((len(x) + 1, len(y) + 1), np.inf)
        d[0, 0] = 0
        for i in range(len(x)):
            for j in range(len(y)):
                d[i + 1, j + 1] = abs(x[i] - y[j]) + min(d[i, j + 1], d[i + 1, j], d[i, j])
        return d[-1, -1]

    got = M.dtw(a, b, normalise=False)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert got[i, j] == pytest.approx(loop(a[i, j], b[i, j]))


def test_paper_windows_keep_the_scored_last_608_of_each_640():
    x = np.arange(1300.0)
    w = M.paper_windows(x)
    assert w.shape == (2, 608)
    assert w[0, 0] == 32 and w[1, 0] == 672 and w[1, -1] == 1279


def test_paper_metrics_quirks_max_r_and_unnormalised_dtw_against_raw_celsius():
    t = 640
    truth = np.zeros((2, t))
    truth[:, 300:400] = 4.0
    gen = truth[:, None].copy()  # recording 0: perfect; recording 1: constant (r 0)
    gen[1, 0] = 0.0
    stim = np.full((2, t), 32.0)
    lat = np.zeros((2, t, 3))
    out = M.paper_metrics(lat[:, None], lat, gen, truth, stim)
    assert out["PainCorr_max"] == pytest.approx(1.0)  # the maximum, not the mean (0.5)
    assert out["PainSim"] == pytest.approx(4.0 * 100 / 2)  # recording 1 pays 4 per frame of the 100-frame bump, mean of 2
    # PainAcc: DTW of PSPI (0-4) against raw 32 °C is dominated by the offset: ≈ 608 frames × ~31 °C.
    assert out["PainAcc"] > 600 * 27
    assert out["PainDist"] == 0.0 and out["PainVar"] == 0.0


def test_paper_divrs_is_mean_pairwise_squared_distance_between_tries():
    lat = np.zeros((1, 3, 640, 2))
    lat[0, 1] += 1.0
    lat[0, 2] += 2.0
    out = M.paper_metrics(lat, lat[:, 0], np.zeros((1, 3, 640)), np.zeros((1, 640)), np.full((1, 640), 32.0))
    assert out["PainDivrs"] == pytest.approx((1 + 4 + 1) / 3)
    assert out["PainDist"] == pytest.approx((0 + 1 + 4) / 3)


def test_episodes_and_latency_from_plateau_onset():
    label = np.zeros(200, int)
    label[50:150] = 3
    stim = np.full(200, 32.0)
    stim[50:150] = np.minimum(32 + np.arange(100) * 1.0, 45.0)  # ramp reaches 45 at frame 63
    eps = M.episodes(label, stim)
    assert eps == [(50, 150, 3, 63)]
    pspi = np.zeros(200)
    pspi[100:] = 4.0  # a step at frame 100: smoothed, it crosses half (2.0) at frame 100
    r = M.episode_responses(pspi[None], label, stim)
    assert r["responded"][0, 0] and r["level"][0] == 3
    assert r["latency_s"][0, 0] == pytest.approx((100 - 63) / 25)
    assert r["peak"][0, 0] == pytest.approx(4.0)
    flat = M.episode_responses(np.full((1, 200), 0.5), label, stim)
    assert not flat["responded"][0, 0] and np.isnan(flat["latency_s"][0, 0])


def test_seam_ratio_sees_a_jump_every_fourth_frame():
    steps = np.repeat(np.arange(10.0), 4)[:, None]  # constant within stacks, +1 at each boundary
    ramp = np.arange(40.0)[:, None] * 0.25
    assert M.seam_ratio(steps + ramp) == pytest.approx((1.25) / 0.25)
    assert M.seam_ratio(ramp) == pytest.approx(1.0)


def test_spectral_peak_ratio_finds_a_6p25_hz_judder():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(640, 3))
    judder = noise + 2.0 * np.sin(2 * np.pi * 6.25 * np.arange(640) / 25)[:, None]
    assert M.spectral_peak_ratio(noise) < 2.0
    assert M.spectral_peak_ratio(judder) > 10.0


def test_lagged_xcorr_finds_the_delay():
    rng = np.random.default_rng(1)
    s = M.smooth(rng.normal(size=500), 9)
    resp = np.concatenate([np.zeros(25), s[:-25]])  # 1 s later
    lags, r = M.lagged_xcorr(resp, s)
    assert lags[np.argmax(r)] == pytest.approx(1.0)


def test_emotion_rule_nearest_scaled_prototype():
    proto = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])  # class 2 = Neutral
    x = np.array([[0.8, 0.1, 0.0], [0.0, 2.5, 0.2], [0.05, 0.05, 0.05]])
    assert list(M.classify_emotion(x, proto, neutral=2)) == [0, 1, 2]


def test_resting_mask_waits_after_each_episode():
    label = np.zeros(400, int)
    label[100:200] = 2
    m = resting_mask(label, after_s=2.0)
    assert m[:100].all() and not m[100:249].any() and m[249:].all()  # 50 frames after the last hot one (199)


def test_between_try_r_and_bootstrap():
    base = np.sin(np.linspace(0, 6, 200))
    same = np.stack([base, base])[None]
    assert M.between_try_r(same) == pytest.approx(1.0)
    lo, hi = M.bootstrap_ci([1.0, 1.0, 1.0])
    assert lo == hi == 1.0
    lo, hi = M.bootstrap_ci(np.arange(10.0))
    assert lo < 4.5 < hi


def test_frechet_distance_zero_for_same_statistics_and_mean_shift_squared():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 3))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(f, f + np.array([2.0, 0, 0])) == pytest.approx(4.0, abs=1e-6)


def test_calibration_and_monotone():
    c = M.calibration_curve(np.arange(6.0), 2 * np.arange(6.0), bins=3)
    assert c["requested"] == pytest.approx([0.5, 2.5, 4.5]) and c["achieved"] == pytest.approx([1.0, 5.0, 9.0])
    assert M.strictly_increasing([1, 2, 3]) and not M.strictly_increasing([1, 2, 2])


@pytest.mark.parametrize("shared_model,shared_data", [(0.6, 0.6), (0.9, 0.5), (0.4, 0.7)])
def test_correlation_ceiling_is_what_a_generator_sharing_the_data_structure_reaches(shared_model, shared_data):
    """Tries = a shared curve (per recording) + own noise. A generator with the data's shared curve reaches
    r = √(ρ_model ρ_data) with a recording, where ρ is the measured between-try r; one with a different
    curve stays below it."""
    rng = np.random.default_rng(1)
    n, k, t = 40, 4, 2000
    shared = M.smooth(rng.normal(size=(n, 1, t)), 25)
    shared /= shared.std(-1, keepdims=True)

    def tries(share, curve):
        noise = M.smooth(rng.normal(size=(n, k, t)), 25)
        noise /= noise.std(-1, keepdims=True)
        return np.sqrt(share) * curve + np.sqrt(1 - share) * noise

    data, model = tries(shared_data, shared), tries(shared_model, shared)
    bt_model, bt_data = M.between_try_r(model), M.between_try_r(data)
    r = float(M.pearson(model, data[:, :1]).mean())
    assert r == pytest.approx(M.correlation_ceiling(bt_model, bt_data), abs=0.03)
    other = tries(shared_model, np.roll(shared, 1, axis=0))  # the shared curve of another recording
    assert float(M.pearson(other, data[:, :1]).mean()) < M.correlation_ceiling(M.between_try_r(other), bt_data) - 0.2
