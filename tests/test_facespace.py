"""Face spaces: channel layout (a file format: append, never reorder), PSPI, validation and FLAME npz I/O."""

import numpy as np
import pytest

from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import (EMOTIONS, FACS, FLAME, emotion_index, flame_from_npz_arrays,
                                     flame_to_npz_arrays, get_space, pspi_from_aus)


def test_facs_layout_is_stable():
    aus = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 43)
    assert FACS.channels == tuple(f"AU{k}" for k in aus) + ("head_pitch", "head_yaw", "head_roll")
    assert FACS.dim == 20 and FACS.has_pspi
    assert all(FACS.low[i] == 0 and FACS.high[i] == 5 for i in range(17))


def test_flame_layout_matches_emoca():
    assert FLAME.dim == 103
    assert FLAME.channels[:3] == ("jaw_x", "jaw_y", "jaw_z") and FLAME.channels[3] == "expr000"
    assert FLAME.channels[-1] == "expr099" and not FLAME.has_pspi
    assert get_space("flame") is FLAME and get_space("facs") is FACS


def test_pspi_formula_against_hand_computation():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 5, (50, FACS.dim)).astype(np.float32)
    au = {k: frames[:, FACS.index(f"AU{k}")] for k in (4, 6, 7, 9, 10, 43)}
    for t in range(50):
        expect = au[4][t] + max(au[6][t], au[7][t]) + max(au[9][t], au[10][t])
        assert FACS.pspi(frames, with_au43=False)[t] == pytest.approx(expect, abs=1e-5)
        assert FACS.pspi(frames)[t] == pytest.approx(expect + au[43][t] / 5, abs=1e-5)  # AU43 counts 0-1
    # extremes: 0-16 with AU43, 0-15 without
    assert FACS.pspi(np.zeros((1, 20))).item() == 0
    full = np.zeros((1, 20))
    full[0, :17] = 5
    assert FACS.pspi(full).item() == 16 and FACS.pspi(full, with_au43=False).item() == 15
    assert pspi_from_aus(1, 2, 3, 4, 0.5) == 1 + 3 + 4
    assert pspi_from_aus(1, 2, 3, 4, 0.5, au43=5.0) == 1 + 3 + 4 + 1


def test_pspi_of_flame_is_a_clear_error():
    with pytest.raises(PainDiffusionError, match="PSPI cannot be computed"):
        FLAME.pspi(np.zeros((3, 103)))


def test_validate_accepts_and_converts():
    a = FACS.validate(np.ones((4, 20), np.float64))
    assert a.dtype == np.float32 and a.shape == (4, 20)
    assert FACS.validate(np.full((2, 20), 5.0005)).shape == (2, 20)  # float noise within tolerance


@pytest.mark.parametrize("frames, problem", [
    (np.zeros((10, 19)), r"shape \(10, 19\).*\(frames, 20\)"),
    (np.zeros(20), r"shape \(20,\)"),
    (np.zeros((0, 20)), "no frames"),
    (np.array([["a"] * 20]), "non-numeric"),
])
def test_validate_rejects_bad_shapes(frames, problem):
    with pytest.raises(PainDiffusionError, match=problem) as e:
        FACS.validate(frames, "some/file.npy")
    assert str(e.value).startswith("some/file.npy: ") and "\n" not in str(e.value)


def test_validate_names_first_nan_and_out_of_range_value():
    a = np.zeros((10, 20))
    a[3, FACS.index("AU9")] = np.nan
    a[7, 0] = np.inf
    with pytest.raises(PainDiffusionError, match=r"2 NaN/inf values \(first at frame 3, channel AU9\)"):
        FACS.validate(a)
    b = np.zeros((10, 20))
    b[5, FACS.index("AU12")] = 5.5
    with pytest.raises(PainDiffusionError, match=r"AU12 = 5.5 at frame 5 is outside"):
        FACS.validate(b)
    c = np.zeros((3, 103))
    c[1, 0] = 4.0  # jaw rotation beyond pi
    with pytest.raises(PainDiffusionError, match="jaw_x"):
        FLAME.validate(c)


def test_clip_brings_overshoot_into_range():
    a = np.full((2, 20), 7.0, np.float32)
    a[:, 17:] = -200
    c = FACS.clip(a)
    assert c[:, :17].max() == 5 and c[:, 17:].min() == -90
    FACS.validate(c)


def test_emotions_and_spaces_lookup():
    assert EMOTIONS == ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
    assert emotion_index(" happiness ") == 4 and emotion_index("ANGER") == 0
    with pytest.raises(PainDiffusionError, match="unknown emotion 'Joy'.*Surprise"):
        emotion_index("Joy")
    with pytest.raises(PainDiffusionError, match="unknown face space 'arkit'"):
        get_space("arkit")
    with pytest.raises(PainDiffusionError, match="no channel 'AU99'"):
        FACS.index("AU99")


def test_flame_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    frames = np.concatenate([rng.uniform(-0.3, 0.3, (30, 3)), rng.normal(0, 1, (30, 100))], 1).astype(np.float32)
    arrays = flame_to_npz_arrays(frames)
    assert arrays["jaw_pose"].shape == (30, 3) and arrays["expr"].shape == (30, 100)
    np.savez(tmp_path / "f.npz", **arrays)
    back = flame_from_npz_arrays(np.load(tmp_path / "f.npz"), tmp_path / "f.npz")
    np.testing.assert_array_equal(back, frames)
    with pytest.raises(PainDiffusionError, match="'jaw_pose' is missing"):
        flame_from_npz_arrays({"expr": arrays["expr"]})
    with pytest.raises(PainDiffusionError, match="same T"):
        flame_from_npz_arrays({"expr": arrays["expr"][:10], "jaw_pose": arrays["jaw_pose"]})


def test_errors_are_one_line():
    e = PainDiffusionError("first line\n  second line\tend", "a/b.csv")
    assert str(e) == "a/b.csv: first line second line end"
