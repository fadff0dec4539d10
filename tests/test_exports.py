"""Exports: ARKit-52 weights, FACS-AU robot frames, FLAME npz, and the save_output dispatcher."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS, FLAME, flame_from_npz_arrays
from paindiffusion.render import ARKIT_NAMES, AU_TO_ARKIT, save_output
from paindiffusion.sequence import FaceSequence


@pytest.fixture
def facs_seq():
    rng = np.random.default_rng(0)
    frames = np.concatenate([rng.uniform(0, 5, (12, 17)), rng.uniform(-20, 20, (12, 3))], 1).astype(np.float32)
    frames[0, :17] = 5.0  # every AU at its maximum: weights must still stay ≤ 1
    frames[1, :17] = 0.0
    return FaceSequence(FACS, frames, stimulus=np.linspace(32, 48, 12))


def test_arkit_names_are_the_52_standard_ones():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    for required in ("eyeBlinkLeft", "jawOpen", "browInnerUp", "mouthSmileRight", "noseSneerLeft", "tongueOut"):
        assert required in ARKIT_NAMES
    assert all(name in ARKIT_NAMES for targets in AU_TO_ARKIT.values() for name, _ in targets)


def test_arkit_json_round_trip(tmp_path, facs_seq):
    path = save_output(tmp_path / "face.arkit.json", facs_seq)
    doc = json.loads(path.read_text())
    assert doc["format"] == "arkit-52" and doc["fps"] == 25
    assert doc["channels"] == list(ARKIT_NAMES)
    w = np.asarray(doc["frames"])
    assert w.shape == (12, 52) and w.min() >= 0.0 and w.max() <= 1.0
    by_name = dict(zip(ARKIT_NAMES, w[0]))
    assert by_name["eyeBlinkLeft"] == by_name["eyeBlinkRight"] == 1.0  # AU43 = 5
    assert by_name["browDownLeft"] == 1.0 and by_name["tongueOut"] == 0.0
    assert w[1].max() == 0.0  # a neutral face is all zeros
    au4 = facs_seq.frames[5, FACS.index("AU4")] / 5
    assert dict(zip(ARKIT_NAMES, w[5]))["browDownRight"] == pytest.approx(au4, abs=1e-4)
    head = np.asarray(doc["head_pose"]["frames"])
    np.testing.assert_allclose(head, facs_seq.frames[:, 17:], atol=1e-3)
    assert len(doc["pspi"]) == len(doc["stimulus"]) == 12


def test_arkit_csv_header_names_every_channel(tmp_path, facs_seq):
    rows = list(csv.reader(open(save_output(tmp_path / "face.arkit.csv", facs_seq))))
    assert rows[0][:2] == ["frame", "time"] and rows[0][2:54] == list(ARKIT_NAMES)
    assert rows[0][54:] == ["head_pitch_deg", "head_yaw_deg", "head_roll_deg"] and len(rows) == 13


def test_facs_robot_frames_json_and_csv(tmp_path, facs_seq):
    doc = json.loads(save_output(tmp_path / "face.facs.json", facs_seq).read_text())
    expected = [f"AU{k}" for k in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 43)]
    assert doc["format"] == "facs-au" and doc["channels"][:17] == expected
    f = np.asarray(doc["frames"])
    np.testing.assert_allclose(f[:, :17], facs_seq.frames[:, :17] / 5, atol=1e-4)
    assert f[:, :17].min() >= 0 and f[:, :17].max() <= 1
    rows = list(csv.reader(open(save_output(tmp_path / "face.facs.csv", facs_seq))))
    assert rows[0] == ["frame", "time", *doc["channels"]] and len(rows) == 13
    np.testing.assert_allclose(np.asarray(rows[3][2:], float), f[2], atol=1e-4)


def test_flame_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    frames = np.concatenate([rng.normal(0, 0.1, (9, 3)), rng.normal(0, 1, (9, 100))], 1).astype(np.float32)
    seq = FaceSequence(FLAME, frames)
    z = np.load(save_output(tmp_path / "face.flame.npz", seq))
    assert z["expr"].shape == (9, 100) and z["jaw_pose"].shape == (9, 3) and int(z["fps"]) == 25
    np.testing.assert_array_equal(flame_from_npz_arrays(z), frames)
    with pytest.raises(PainDiffusionError, match="flame-space"):
        save_output(tmp_path / "x.flame.npz", FaceSequence(FACS, np.zeros((3, 20), np.float32)))
    with pytest.raises(PainDiffusionError, match="facs-space"):
        save_output(tmp_path / "x.arkit.json", seq)
    with pytest.raises(PainDiffusionError, match="rendered"):
        save_output(tmp_path / "x.mp4", seq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.flame.npz"]


@pytest.mark.parametrize("name", ["seq.npz", "seq.csv"])
def test_plain_sequence_files_go_through_sequence_save(tmp_path, facs_seq, name):
    back = FaceSequence.load(save_output(tmp_path / name, facs_seq))
    np.testing.assert_allclose(back.frames, facs_seq.frames, atol=1e-4)
    np.testing.assert_allclose(back.stimulus, facs_seq.stimulus, atol=1e-3)


def test_bad_output_names_are_one_line_errors(tmp_path, facs_seq):
    with pytest.raises(PainDiffusionError, match="unknown output type"):
        save_output(tmp_path / "face.gif", facs_seq)
    with pytest.raises(PainDiffusionError, match="side-by-side"):
        save_output(tmp_path / "face.arkit.json", facs_seq, side_by_side=True)
    assert list(tmp_path.iterdir()) == []
