"""prepare-biovid: a fake BioVid Part C tree of rendered videos and 32 Hz CSVs → packed data → a few training steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIAPIPE, TINY_NET, cli, need_module
from paindiffusion.biovid import STIMULUS_HZ, stimulus_index
from paindiffusion.cohort import RuleBasedFace, SubjectParams, biovid_protocol
from paindiffusion.dataset import PackedData
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS
from paindiffusion.sequence import FaceSequence

SECONDS = 12.0


def write_stream(path: Path, column: str, values, fmt: str) -> None:
    path.write_text("\n".join([f"time\t{column}"] + [f"{i / STIMULUS_HZ:.5f}\t{v:{fmt}}" for i, v in enumerate(values)]) + "\n")


def fake_biovid(root: Path, n: int = 3, video: bool = True) -> dict[str, np.ndarray]:
    """n recordings: a stimulus schedule at 32 Hz, the face the cohort's rules make of it, rendered to mp4 at
    30 fps (not BioVid's 25: the reader must resample); returns each recording's true facs frames at 25 fps."""
    from paindiffusion.render.video import write_mp4

    truth = {}
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        p = SubjectParams.sample(f"sub{i}", rng)
        p.expressiveness_gain, p.emotion = 1.2, "Neutral"
        temp, label = biovid_protocol((44.0, 45.5, 47.0, 48.5), SECONDS, rng)
        temp[len(temp) // 3: len(temp) // 2], label[len(temp) // 3: len(temp) // 2] = 48.5, 4  # one sure episode
        frames25 = RuleBasedFace(p).generate(temp[np.minimum(stimulus_index(int(SECONDS * 25)), len(temp) - 1)], rng)
        name = f"rec{i}"
        d = root / name
        d.mkdir(parents=True)
        write_stream(d / f"{name}_temp.csv", "temperature", temp, ".2f")
        write_stream(d / f"{name}_label.csv", "label", label, "d")
        (d / f"{name}.json").write_text(json.dumps({"subject": f"S{i}"}))
        truth[name] = frames25
        if video:  # the same face at 30 fps: frame j shows the 25 fps frame on screen at j/30 s
            from paindiffusion.render.renderer import Renderer
            from paindiffusion.render.rig import FaceRig

            src = frames25[(np.arange(int(SECONDS * 30)) * 25) // 30]
            with Renderer(256) as r:
                write_mp4(d / f"{name}.mp4", r.render_many(FaceRig().deform(src)), fps=30)
    return truth


@pytest.mark.slow
def test_prepare_biovid_from_videos_then_train(tmp_path):
    need_module("mediapipe", MEDIAPIPE)
    from paindiffusion.model import ModelConfig
    from paindiffusion.train import TrainConfig, train

    truth = fake_biovid(tmp_path / "biovid")
    out = tmp_path / "data"
    r = cli("prepare-biovid", tmp_path / "biovid", "-o", out, "--workers", "2", timeout=300)
    assert r.returncode == 0, r.stderr
    d = PackedData(out)
    assert d.space.name == "facs" and len(d.recordings) == 3
    assert {rec["subject"] for rec in d.recordings} == {"S0", "S1", "S2"}
    assert sorted(rec["split"] for rec in d.recordings) == ["test", "train", "val"]
    for i, rec in enumerate(d.recordings):
        w = d.window(i, 0, rec["length"])
        assert rec["length"] == int(SECONDS * 25)  # 30 fps video read at 25 fps, aligned with the 32 Hz streams
        assert rec["emotion"] in FACS_EMOTIONS and rec["expressiveness"] is not None
        true = truth[rec["name"]][: rec["length"]]
        assert np.corrcoef(w.pspi, FACS.pspi(true))[0, 1] > 0.7  # the tracked face follows the rendered pain
        assert w.stimulus.max() == pytest.approx(48.5, abs=0.1) and w.label.max() == 4
    # 12-s fake recordings hold too few heat levels to read a threshold and tolerance from: the recipe's
    # calibrated stimulus refuses them in one line naming the fix, and --celsius trains
    small = dict(steps=3, batch=4, window=32, val_every=2, val_batches=1)
    with pytest.raises(PainDiffusionError, match="train with --celsius"):
        train(out, tmp_path / "refused", TrainConfig(**small), mcfg=ModelConfig(**TINY_NET), progress=False)
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    model = train(out, tmp_path / "run", TrainConfig(**small, calibrated=False), mcfg=ModelConfig(**TINY_NET),
                  progress=False)
    assert model.info["trained_steps"] == 3 and (tmp_path / "run" / "model").is_dir()
    # a second run reuses the extracted faces (resumable) and refuses to overwrite without --overwrite
    r = cli("prepare-biovid", tmp_path / "biovid", "-o", out, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--overwrite" in r.stderr
    faces = sorted((tmp_path / "data.work" / "faces").glob("*.npz"))
    stamps = [f.stat().st_mtime_ns for f in faces]
    r = cli("prepare-biovid", tmp_path / "biovid", "-o", out, "--overwrite", timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(faces) == 3 and [f.stat().st_mtime_ns for f in faces] == stamps  # extracted faces reused


FACS_EMOTIONS = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")


def test_prepare_biovid_with_faces_from_another_tool(tmp_path):
    """--faces-from: EMOCA-style FLAME npz (expr, jaw_pose) per recording; no video is read."""
    from paindiffusion.tracking.prepare import prepare_biovid

    fake_biovid(tmp_path / "biovid", video=False)
    faces = tmp_path / "emoca"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        n = int(SECONDS * 25) + 5  # videos run a little longer than the streams
        np.savez(faces / f"rec{i}.npz", expr=rng.normal(0, 1, (n, 100)).astype(np.float32),
                 jaw_pose=rng.normal(0, 0.05, (n, 3)).astype(np.float32))
        np.save(faces / f"rec{i}_pspi.npy", rng.uniform(0, 3, n).astype(np.float32))
    out, outcomes = prepare_biovid(tmp_path / "biovid", tmp_path / "data", faces_from=faces, face_space="flame",
                                   labels={"rec1": {"emotion": "Sadness"}})
    d = PackedData(out)
    assert outcomes == [] and d.space.name == "flame" and d.frames.shape[1] == 103
    assert [rec["emotion"] for rec in d.recordings] == [None, "Sadness", None]
    assert all(rec["expressiveness"] is not None for rec in d.recordings)  # from the given PSPI
    np.save(faces / "rec2_pspi.npy", np.zeros(3, np.float32))
    (faces / "rec2.npz").unlink()
    with pytest.raises(PainDiffusionError, match="no face array for recording rec2"):
        prepare_biovid(tmp_path / "biovid", tmp_path / "data2", faces_from=faces, face_space="flame")


def test_prepare_biovid_names_a_missing_video(tmp_path):
    from paindiffusion.tracking.prepare import prepare_biovid

    fake_biovid(tmp_path / "biovid", n=1, video=False)
    with pytest.raises(PainDiffusionError, match="no video named rec0"):
        prepare_biovid(tmp_path / "biovid", tmp_path / "data")
    assert not (tmp_path / "data").exists()
    sequence_written = list((tmp_path).glob("data.work/faces/*.npz"))
    assert sequence_written == [] and FaceSequence  # nothing half-written
