"""Heat above the patient's tolerance is felt as the tolerance, with a one-line notice (on stderr and on the
demo page), and the head pose stays within the training data's range whatever the controls: at 50 °C with the
default 47.5 °C tolerance the shipped model turned the head 48-90° aside and pinned every AU at 5."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli
from paindiffusion.facespace import EMOTIONS, FACS, HEAD_CHANNELS

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HEAD = [FACS.index(c) for c in HEAD_CHANNELS]


def limits() -> np.ndarray:
    """|pitch|, |yaw|, |roll| at the training data's 99.9th percentile (degrees)."""
    from paindiffusion.cohort import HEAD_POSE_P999_DEG

    return np.array([HEAD_POSE_P999_DEG[c] for c in HEAD_CHANNELS])


@pytest.fixture(scope="module")
def shipped():
    from paindiffusion.checkpoint import PainModel

    return PainModel.load()


def test_heat_above_tolerance_is_felt_as_the_tolerance(shipped):
    from paindiffusion.stream import PainStream

    tolerance = float(shipped.spec.calibration[1])
    runs = {}
    for heat in (50.0, tolerance):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = PainStream(shipped, stimulus=heat, threshold=46.0, expressiveness="high", seed=3)
            runs[heat] = (s.take(250), [str(w.message) for w in caught])
    hot, at_tolerance = runs[50.0][0], runs[tolerance][0]
    np.testing.assert_array_equal(hot.frames, at_tolerance.frames)  # the same face: 50 °C is felt as the tolerance
    assert np.all(hot.stimulus == 50.0)  # and the frames still say what heat was applied
    assert len(runs[50.0][1]) == 1 and "felt as" in runs[50.0][1][0] and runs[tolerance][1] == []
    assert np.all(np.abs(hot.frames[:, HEAD]) <= limits())


@pytest.mark.slow
def test_the_head_stays_in_the_data_range_whatever_the_controls(shipped):
    from paindiffusion.stream import PainStream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = PainStream(shipped, batch=len(EMOTIONS), stimulus=50.0, expressiveness=16.0, emotion=list(EMOTIONS), seed=1)
        frames = np.concatenate([s.take(500)[b].frames for b in range(len(EMOTIONS))])
    assert np.all(np.abs(frames[:, HEAD]) <= limits())


def test_soft_limit_is_the_identity_inside_its_knee_and_never_passes_the_limit():
    from paindiffusion.stream import soft_limit

    x = np.linspace(-100, 100, 2001).astype(np.float32)
    y = soft_limit(x, np.float32(20.0))
    inside = np.abs(x) <= 16.0
    assert np.array_equal(y[inside], x[inside]) and np.all(np.abs(y) <= 20.0) and np.all(np.diff(y) >= 0)
    assert abs(soft_limit(np.float32(18.0), np.float32(20.0))) < 18.0  # above the knee it is compressed


def test_the_head_pose_range_is_the_training_cohorts(tmp_path):
    """HEAD_POSE_P999_DEG was measured on the shipped model's training cohort (300 subjects × 10 min, seed 2026);
    its first 24 subjects (subject i is drawn from (seed, i)) give the same percentiles within 12%."""
    from paindiffusion.cohort import write_cohort

    out = write_cohort(tmp_path / "c", 24, 10.0, 2026)
    head = np.concatenate([np.load(f)[:, HEAD] for f in sorted(out.glob("*/*_face.npy"))])
    p999 = np.percentile(np.abs(head), 99.9, axis=0)
    np.testing.assert_allclose(p999, limits(), rtol=0.12)


def test_the_demo_page_is_told_when_the_heat_is_above_tolerance():
    import aiohttp

    from test_live_guards import Demo, header

    with Demo() as d:
        async def frames():
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(f"ws://127.0.0.1:{d.port}/ws", headers={"Origin": d.origin}) as ws:
                    await ws.send_str(json.dumps({"stimulus": 50, "seq": 1}))
                    while True:
                        msg = await ws.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.BINARY and header(msg.data)["control_seq"] == 1:
                            first = header(msg.data)
                            await ws.send_str(json.dumps({"stimulus": 40, "seq": 2}))
                            break
                    while True:
                        msg = await ws.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.BINARY and header(msg.data)["control_seq"] == 2:
                            return first, header(msg.data)

        hot, mild = asyncio.run(frames())
    assert "felt as" in hot["notice"] and hot["stimulus"] == 50.0
    assert mild["notice"] is None


@pytest.mark.slow
def test_stream_at_50_degrees_for_20_seconds():
    """``stream --stimulus 50 --threshold 46 --expressiveness high`` for 20 s: the head stays within the data's
    99.9th percentile and stderr holds one notice."""
    r = cli("stream", "--stdout", "--stimulus", "50", "--threshold", "46", "--expressiveness", "high", "--seconds", "20",
            cwd=ROOT)
    assert r.returncode == 0, r.stderr
    frames = [json.loads(x) for x in r.stdout.splitlines()]
    head = np.array([[f["channels"][c] for c in HEAD_CHANNELS] for f in frames])
    assert len(frames) > 400 and np.all(np.abs(head) <= limits())
    notices = [x for x in r.stderr.splitlines() if "tolerance" in x]
    assert len(notices) == 1 and notices[0].startswith("warning: heat 50 °C is above") and "felt as" in notices[0]
    assert all(f["notice"] and "felt as" in f["notice"] for f in frames)


def test_heat_within_the_thermodes_scatter_of_the_tolerance_is_felt_as_it_without_a_notice():
    """A tolerance read off a recording's plateaus is their median: the plateau's own readings scatter a few
    hundredths above it. They are felt as the tolerance, and no notice is printed for them."""
    from conftest import tiny_model
    from paindiffusion.biovid import HEAT_NOTICE_SLACK_C, heat_notice
    from paindiffusion.stream import PainStream

    m = tiny_model()
    tolerance = float(m.spec.calibration[1])
    assert heat_notice(tolerance + HEAT_NOTICE_SLACK_C / 2, tolerance) is None
    assert heat_notice(tolerance + 2 * HEAT_NOTICE_SLACK_C, tolerance) is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        near = PainStream(m, stimulus=tolerance + 0.05, seed=3).take(40).frames
    at = PainStream(m, stimulus=tolerance, seed=3).take(40).frames
    np.testing.assert_array_equal(near, at)
    assert not [w for w in caught if "tolerance" in str(w.message)]
