"""Tracking without a tracker: alignment, the bounded solver, fitting exact landmarks, gaps, labels, 25 fps reading."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from paindiffusion.cohort import EMOTION_AUS
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import EMOTIONS, FACS, FACS_AUS
from paindiffusion.render.rig import rotation
from paindiffusion.tracking.extract import fill_gaps, find_videos, parse_shard
from paindiffusion.tracking.fit import box_least_squares, fit_frames, head_angles, reading_model, similarity
from paindiffusion.tracking.labels import emotion_from_aus, read_labels


def test_similarity_recovers_a_known_transform_for_every_frame():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    angles = rng.uniform(-30, 30, (4, 3))
    r = rotation(*np.deg2rad(angles).T)
    s, t = rng.uniform(5, 20, 4), rng.normal(size=(4, 3)) * 100
    dst = s[:, None, None] * np.einsum("tij,vj->tvi", r, src) + t[:, None]
    s2, r2, t2 = similarity(src, dst)
    np.testing.assert_allclose(s2, s, rtol=1e-6)
    np.testing.assert_allclose(r2, r, atol=1e-6)
    np.testing.assert_allclose(t2, t, atol=1e-5)
    np.testing.assert_allclose(head_angles(r2), angles, atol=1e-4)  # the rig's pitch/yaw/roll conventions


def test_box_least_squares_meets_the_optimality_conditions():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 6))
    g = a.T @ a + 0.1 * np.eye(6)
    h = rng.normal(size=(200, 6)) * 30
    x = box_least_squares(g, h, 0.0, 5.0, iters=400)
    grad = x @ g - h  # gradient of ½xᵀGx − hᵀx
    assert (x >= 0).all() and (x <= 5).all()
    free = (x > 1e-6) & (x < 5 - 1e-6)
    assert np.abs(grad[free]).max() < 1e-4  # zero gradient on free coordinates
    assert (grad[x <= 1e-6] > -1e-4).all() and (grad[x >= 5 - 1e-6] < 1e-4).all()  # KKT at the bounds
    inside = np.linalg.solve(g, np.full(6, 1.0) @ g)  # an interior optimum is the unconstrained one
    np.testing.assert_allclose(box_least_squares(g, (np.full(6, 1.0) @ g)[None], iters=400)[0], inside, atol=1e-5)


def test_fit_recovers_aus_and_pose_from_exact_landmarks():
    """Landmarks made by the reading model itself (posed, scaled, moved like pixels; the AU fields taken at each
    frame's yaw and the head pose's own displacement added) read back exactly."""
    model = replace(reading_model(), ridge=0.0, sparsity=0.0, pose_correction=None)
    assert model.turns and model.pose_basis is not None and len(model.pose_basis)
    rng = np.random.default_rng(2)
    t = 60
    aus = np.where(rng.random((t, 17)) < 0.3, rng.uniform(0, 5, (t, 17)), 0.0)
    aus[:10] = 0.0  # some calm frames to find the neutral face
    pose = rng.uniform(-20, 20, (t, 3))
    shape = model.shape(model.neutral, model.segments(aus), pose[:, 1]) + model.pose_shape(pose)
    r = rotation(*np.deg2rad(pose).T)
    pts = 25.0 * np.einsum("tij,tvj->tvi", r, shape) + np.array([300.0, -250.0, 0.0])
    frames, neutral, scale = fit_frames(pts, model, rounds=20)  # alternation converges linearly
    np.testing.assert_allclose(frames[:, :17], aus, atol=0.05)
    np.testing.assert_allclose(frames[:, 17:], pose, atol=0.05)
    np.testing.assert_allclose(scale, 25.0, rtol=1e-3)
    np.testing.assert_allclose(neutral, model.neutral, atol=1e-3)


def test_yaw_dependent_solve_is_the_least_squares_of_the_basis_at_that_yaw():
    """solve(residual, yaw) is the bounded least squares of the basis as it reads at each frame's yaw (B + y·B',
    y in units of 20°), with the ridge and sparsity weights in units of the frontal Gram's mean diagonal."""
    model = reading_model()
    rng = np.random.default_rng(3)
    yaw = np.array([-22.0, -5.0, 0.0, 12.0, 25.0])
    seg = model.segments(np.where(rng.random((5, 17)) < 0.4, rng.uniform(0, 5, (5, 17)), 0.0))
    resid = model.shape(np.zeros_like(model.neutral), seg, yaw) + rng.normal(0, 0.02, (5, *model.neutral.shape))
    got = model.solve(resid, yaw)
    w = model.weight.reshape(-1)
    b0 = model.basis.reshape(len(model.basis), -1).astype(np.float64)
    unit = np.einsum("kd,d,kd->", b0, w, b0) / len(b0)
    for i, y in enumerate(yaw):
        b = b0 + y / 20.0 * model.yaw_basis.reshape(len(b0), -1)
        gram = (b * w) @ b.T + model.ridge * unit * np.eye(len(b))
        rhs = (b * w) @ resid[i].reshape(-1) - model.sparsity * unit
        np.testing.assert_allclose(got[i], box_least_squares(gram, rhs[None], 0.0, model.widths)[0], atol=1e-6)


def test_fit_rejects_bad_landmarks():
    with pytest.raises(PainDiffusionError, match="landmarks"):
        fit_frames(np.full((3, 468, 3), np.nan))
    with pytest.raises(PainDiffusionError, match="landmarks"):
        fit_frames(np.zeros((3, 100, 3)))


def test_short_gaps_are_interpolated_and_long_ones_reported():
    frames = np.arange(40, dtype=np.float32)[:, None].repeat(2, 1)
    found = np.ones(40, bool)
    found[5:8] = False  # 3 frames: short
    found[20:35] = False  # 15 frames: long
    filled, gaps = fill_gaps(np.where(found[:, None], frames, np.nan), found, max_gap=12)
    np.testing.assert_allclose(filled, frames)  # a line is interpolated exactly
    assert gaps == [[20, 35]]


def test_emotion_rule_names_each_cohort_resting_face():
    for name in EMOTIONS:
        f = np.zeros((50, FACS.dim), np.float32)
        for au, v in EMOTION_AUS[name].items():
            f[:, FACS_AUS.index(au)] = 0.8 * v  # a milder face than the prototype still reads as its class
        assert emotion_from_aus(f) == name


def test_emotion_rule_ignores_pain_episodes():
    f = np.zeros((100, FACS.dim), np.float32)
    f[:, FACS_AUS.index(12)], f[:, FACS_AUS.index(6)] = 1.8, 1.2  # a smiling subject ...
    f[60:90, [FACS_AUS.index(a) for a in (4, 7, 9, 10)]] = 4.0  # ... with a grimace
    assert emotion_from_aus(f) == "Happiness"


def test_labels_file(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("video,emotion,subject\nclips/a.mp4,happiness,S1\nb,Fear,\n")
    assert read_labels(p) == {"a": {"emotion": "Happiness", "subject": "S1"}, "b": {"emotion": "Fear"}}
    p.write_text("video,emotion\nc,bored\n")
    with pytest.raises(PainDiffusionError, match="line 2.*bored"):
        read_labels(p)
    p.write_text("file,mood\nc,Fear\n")
    with pytest.raises(PainDiffusionError, match="header"):
        read_labels(p)


def test_shards_split_a_corpus_exactly_once(tmp_path):
    for i in range(7):
        (tmp_path / "sub" / f"v{i}.mp4").parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / f"v{i}.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video")
    everything = find_videos([tmp_path])
    assert [n for _, n in everything] == [f"sub/v{i}" for i in range(7)]
    shards = [find_videos([tmp_path])[k::3] for k in range(3)]
    assert sorted(n for s in shards for _, n in s) == sorted(n for _, n in everything)
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (0, 1)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(PainDiffusionError, match="shard"):
            parse_shard(bad)


def test_frames_are_read_at_25_fps_whatever_the_source_rate(tmp_path):
    """Sources at 50, 25 and 10 fps: frame k at 25 fps shows the source frame on screen at k/25 s."""
    import av

    from paindiffusion.tracking.landmarks import frames_at_25fps

    for rate in (50, 25, 10):
        path = tmp_path / f"r{rate}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=rate)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
            s.options = {"crf": "0"}
            for i in range(rate):  # 1 second; frame i has brightness 4·i
                img = np.full((64, 64, 3), 4 * i, np.uint8)
                for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        got = [(k, int(round(img.mean() / 4))) for k, img in frames_at_25fps(path)]
        assert [k for k, _ in got] == list(range(25))
        assert [i for _, i in got] == [int(k * rate / 25) for k in range(25)]
