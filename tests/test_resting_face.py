"""The patient's resting face (a condition drawn once per patient) and training on censored AU values: what the
data gives, what a checkpoint stores and refuses, and how a stream draws, keeps and hands over each face."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY_NET, random_denoiser, tiny_model
from paindiffusion.biovid import resting_mask
from paindiffusion.checkpoint import PainModel
from paindiffusion.conditions import ConditionSpec
from paindiffusion.dataset import PackedData, floor_mirror_quantiles, resting_face_of
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import EMOTIONS, FACS
from paindiffusion.model import ModelConfig
from paindiffusion.stream import PainStream
from paindiffusion.train import DiffusionTask, TrainConfig, train

torch.set_num_threads(1)


def test_resting_face_is_the_median_of_the_frames_at_rest():
    label = np.zeros(1000, int)
    label[200:400] = 3
    frames = np.zeros((1000, FACS.dim), np.float32)
    frames[:, 0] = 1.0
    frames[200:560, 0] = 4.0  # pain, and its slow relief inside the 6 s after the episode
    frames[::50, 1] = 5.0  # blinks: brief, so the median ignores them
    face = resting_face_of(frames, label)
    assert face[0] == 1.0 and face[1] == 0.0
    assert resting_mask(label)[200:549].sum() == 0 and resting_mask(label)[549:].all()  # 6 s after frame 399
    assert resting_face_of(frames[:40], label[:40]) is None  # under 2 s at rest: unknown


def test_spec_from_data_stores_each_training_recordings_resting_face_by_emotion(packed_dir):
    data = PackedData(packed_dir)
    spec = ConditionSpec.from_data(data, resting_faces=True)
    train_recs = data.split("train")
    assert sum(len(v) for v in spec.resting_faces.values()) == len(train_recs)
    for i in train_recs:
        e = data.recordings[i]["emotion"]
        assert list(np.round(data.resting_face(i), 3)) in [list(f) for f in spec.resting_faces[e]]
    assert ConditionSpec.from_data(data).resting_faces == {}


def test_floor_quantiles_mirror_the_part_of_the_noise_above_the_floor(packed_dir):
    data = PackedData(packed_dir)
    q = floor_mirror_quantiles(data)
    assert q.shape == (FACS.dim, 64) and (np.diff(q, axis=1) >= 0).all() and (q >= 0).all()
    assert (q[17:] == 0).all()  # head pose never sits on its floor
    rest_au = FACS.index("AU14")  # at 0 with small noise for most subjects: half its frames are censored
    assert 0.01 < np.median(q[rest_au]) < 0.15  # the cohort's AU noise (std ≈ 0.07) mirrored below 0


def test_uncensor_moves_only_values_at_the_floor_below_it():
    floor = {"low": list(FACS.low), "depths": np.tile(np.linspace(0.01, 0.2, 8), (FACS.dim, 1)).tolist()}
    floor["depths"][17] = [0.0] * 8  # a channel that is never censored
    task = DiffusionTask(ModelConfig(dim=FACS.dim, **TINY_NET).to_dict(), ConditionSpec().to_dict(),
                         {"frames_mean": [0.0] * FACS.dim, "frames_std": [1.0] * FACS.dim}, TrainConfig().__dict__,
                         {}, floor)
    frames = torch.rand(4, 32, FACS.dim) * 3
    frames[:, ::3, :17] = 0.0
    out = task.uncensor(frames, torch.Generator().manual_seed(0))
    censored = frames[..., :17] == 0
    assert (out[..., :17][censored] < 0).all() and (out[..., :17][censored] >= -0.2).all()
    torch.testing.assert_close(out[..., :17][~censored], frames[..., :17][~censored])
    torch.testing.assert_close(out[..., 17:], frames[..., 17:])


def resting_model(**sampler) -> PainModel:
    faces = {e: [[0.1 * (k + 1) + 0.5 * i] * 17 + [0.0, 0.0, 0.0] for k in range(3)] for i, e in enumerate(EMOTIONS)}
    spec = ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0, presets={"low": 0.3, "medium": 1.7, "high": 3.9},
                         resting_faces=faces)
    m = tiny_model(spec=spec, **sampler)
    cfg = ModelConfig(**{**m.config.to_dict(), "resting_face": True})
    m.denoiser = random_denoiser(FACS.dim, 0, resting_face=True)
    assert m.config == cfg
    return m


def test_a_patient_keeps_its_draw_and_gets_the_face_of_each_emotion_it_shows():
    m = resting_model()
    s = PainStream(m, batch=3, seed=5, emotion=["Anger", "Anger", "Sadness"])
    lat = s._patients.latents(s.controls["emotion"])
    faces = m.standardizer.decode(lat).numpy()
    for b, e in enumerate(s.controls["emotion"]):
        np.testing.assert_allclose(faces[b], m.spec.resting_face(e, s._patients.draws[b]), atol=1e-5)
    again = PainStream(m, batch=3, seed=5, emotion="Anger")._patients
    assert again.draws == s._patients.draws  # the same seed, the same patients
    assert len(set(s._patients.draws)) == 3
    assert np.isfinite(s.step().frames).all()
    # join / leave / restart keep each patient's own face
    s.add(seed=9, emotion="Fear")
    assert len(s._patients.draws) == 4 and s._patients.draws[3] == s.prepare(seed=9)._patients.draws[0]
    s.remove(0)
    assert s._patients.draws[:2] == again.draws[1:]
    s.reset(0, seed=11)
    assert s._patients.draws[0] == s.prepare(seed=11)._patients.draws[0]


def test_an_explicit_resting_face_is_used_and_a_bad_one_is_refused_in_one_line():
    m = resting_model()
    face = np.full(FACS.dim, 0.7, np.float32)
    face[17:] = 0
    s = PainStream(m, batch=2, seed=1, resting_face=face)
    np.testing.assert_allclose(m.standardizer.decode(s._patients.latents(["Anger", "Fear"])).numpy(), [face, face], atol=1e-5)
    bad = face.copy()
    bad[0] = 9.0
    with pytest.raises(PainDiffusionError, match="outside its range"):
        PainStream(m, resting_face=bad)


def test_the_resting_face_changes_the_denoiser_output():
    m = resting_model()
    spec = m.spec
    x, sigma = torch.randn(2, 16, FACS.dim), torch.full((2, 16), 1.0)
    stim = np.full((2, 75 + 16), 40.0, np.float32)
    r1 = torch.zeros(2, FACS.dim)
    c1 = spec.batch(stim, [1.0, 1.0], [0, 0], 16, resting=r1)
    c2 = spec.batch(stim, [1.0, 1.0], [0, 0], 16, resting=r1 + 1)
    with torch.no_grad():
        assert not torch.allclose(m.denoiser(x, sigma, c1), m.denoiser(x, sigma, c2))
        dropped = [c.without(0) for c in (c1, c2)]  # emotion dropped: the resting face goes with it
        torch.testing.assert_close(m.denoiser(x, sigma, dropped[0]), m.denoiser(x, sigma, dropped[1]))


def test_checkpoint_round_trip_and_malformed_resting_faces(tmp_path):
    m = resting_model()
    path = m.save(tmp_path / "m")
    back = PainModel.load(path)
    assert back.config.resting_face and back.spec.resting_faces == m.spec.resting_faces
    config = json.loads((path / "config.json").read_text())
    for bad in ({"Angry": [[0.0] * 20]}, {"Anger": []}, {"Anger": [[0.0] * 19]}, {"Anger": [[9.0] * 20]}, {}):
        c = json.loads(json.dumps(config))
        c["conditions"]["resting_faces"] = bad
        (path / "config.json").write_text(json.dumps(c))
        with pytest.raises(PainDiffusionError, match="resting_faces"):
            PainModel.load(path)


@pytest.mark.slow
def test_training_with_resting_faces_and_floor_imputation(tmp_path, packed_dir):
    cfg = TrainConfig(steps=3, batch=4, window=32, val_every=3, val_batches=1, floor_imputation=True)
    m = train(packed_dir, tmp_path / "run", cfg, mcfg=ModelConfig(**TINY_NET, resting_face=True),
              progress=False)
    loaded = PainModel.load(tmp_path / "run" / "model")
    assert loaded.config.resting_face and set(loaded.spec.resting_faces) <= set(EMOTIONS) and loaded.spec.resting_faces
    assert m.denoiser.net.cond.resting.weight.abs().sum() > 0  # trained away from its zero start
    seq = PainStream(loaded, seed=0, emotion="Happiness").take(40)
    assert seq.frames.shape == (40, FACS.dim) and np.isfinite(seq.frames).all()
