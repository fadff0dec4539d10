"""Checkpoints (docs/design.md §2, §5): safetensors + JSON, round trips, fp16, loading never unpickles, and every
broken folder gives one line naming the problem."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from conftest import TINY_SHAPE, random_denoiser, tiny_model as make_tiny
from paindiffusion.checkpoint import CONFIG, RETIRED_IN_FORMAT_2, WEIGHTS, PainModel
from paindiffusion.conditions import HISTORY
from paindiffusion.errors import PainDiffusionError
from paindiffusion.files import MARKER
from paindiffusion.facespace import FACS
from paindiffusion.model import Denoiser, ModelConfig
from paindiffusion.sampling import SamplerSettings

torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the CPU is shared)


def tiny_model(seed: int = 0) -> PainModel:
    return make_tiny(seed, mean=torch.linspace(0.5, 1.5, FACS.dim), std=torch.linspace(0.2, 2.0, FACS.dim),
                     info={"trained_steps": 7, "note": "tiny"}, levels=4, context=2, guidance=(0.1, 0.2, 0.3),
                     guidance_max_sigma=8.0)


def outputs(m: PainModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, m.config.dim, generator=g)
    sigma = torch.rand(2, 16, generator=g) * 3
    stim = 32 + 10 * torch.rand(2, HISTORY + 16, generator=g)
    c = m.spec.batch(stim, [1.0, 3.0], [2, 5], 16)
    with torch.no_grad():
        return m.denoiser(x, sigma, c)


@pytest.fixture
def saved(tmp_path):
    m = tiny_model()
    return m, m.save(tmp_path / "model")


def one_line_error(path, match: str) -> str:
    with pytest.raises(PainDiffusionError) as e:
        PainModel.load(path)
    msg = str(e.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_round_trip_identical(saved):
    m, path = saved
    assert sorted(p.name for p in path.iterdir()) == sorted([CONFIG, WEIGHTS, MARKER])
    back = PainModel.load(path)
    assert torch.equal(outputs(back), outputs(m))
    assert not back.denoiser.training
    for a, b in zip(m.denoiser.state_dict().values(), back.denoiser.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(back.standardizer.mean, m.standardizer.mean) and torch.equal(back.standardizer.std, m.standardizer.std)
    assert back.spec == m.spec and back.space == FACS and back.config == m.config
    assert back.sampler == m.sampler and back.info == m.info
    # the config is plain JSON a person can read
    cfg = json.loads((path / CONFIG).read_text())
    assert cfg["model"]["width"] == 32 and cfg["face_space"]["name"] == "facs"
    # the config or the weights file also name the checkpoint
    assert torch.equal(outputs(PainModel.load(path / CONFIG)), outputs(m))
    assert torch.equal(outputs(PainModel.load(path / WEIGHTS)), outputs(m))


def test_format_1_settings_added_since_take_model_v5_values_and_format_2_needs_every_setting(saved):
    """A format-1 config gets the sampler settings added since as model v5 ran them (not today's defaults); a
    format-2 config missing one is refused in one line."""
    m, path = saved
    assert PainModel.load(path).sampler.guidance_max_sigma == 8.0
    cfg = json.loads((path / CONFIG).read_text())
    for k in ("guidance_max_sigma", "ramp", "enter_at_context"):
        del cfg["sampler"][k]
    (path / CONFIG).write_text(json.dumps(cfg))
    one_line_error(path, "sampler.guidance_max_sigma is missing")
    cfg["version"] = 1
    cfg["model"].update(RETIRED_IN_FORMAT_2["model"])
    cfg["sampler"].update(RETIRED_IN_FORMAT_2["sampler"])
    (path / CONFIG).write_text(json.dumps(cfg))
    back = PainModel.load(path).sampler
    assert (back.guidance_max_sigma, back.ramp, back.enter_at_context) == (0.0, "stack", False)
    assert (SamplerSettings().ramp, SamplerSettings().enter_at_context) == ("frame", True)  # not the defaults
    del cfg["sampler"]["warmup"]  # older than model v5's config: refused
    (path / CONFIG).write_text(json.dumps(cfg))
    one_line_error(path, "sampler.warmup is missing")


def test_save_overwrites_atomically(saved, tmp_path):
    m, path = saved
    other = tiny_model(seed=1)
    other.save(path)
    assert torch.equal(outputs(PainModel.load(path)), outputs(other))
    assert not torch.equal(outputs(other), outputs(m))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left behind


def test_half_precision_loads_close(saved, tmp_path):
    m, path = saved
    half = m.save(tmp_path / "half", half=True)
    assert (half / WEIGHTS).stat().st_size < 0.6 * (path / WEIGHTS).stat().st_size
    back = PainModel.load(half)
    assert all(p.dtype == torch.float32 for p in back.denoiser.parameters())
    assert torch.equal(back.standardizer.std, m.standardizer.std)  # normalisation stays fp32
    a, b = outputs(m), outputs(back)
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, a, rtol=1e-2, atol=2e-2)


def test_decode_encode(saved):
    m, _ = saved
    frames = np.clip(np.random.default_rng(0).normal(1, 0.5, (3, FACS.dim)), 0, 4).astype(np.float32)
    np.testing.assert_allclose(m.decode(m.encode(frames)), frames, rtol=1e-5, atol=1e-5)
    wild = m.decode(torch.full((2, FACS.dim), 1e3))
    assert wild.max() <= 90.0 and (wild[:, :17] <= 5.0).all()  # clipped into the face space's ranges


def test_loading_never_unpickles(saved, monkeypatch):
    m, path = saved

    def boom(*a, **k):
        raise AssertionError("unpickling during PainModel.load")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(np, "load", boom)
    back = PainModel.load(path)
    assert torch.equal(outputs(back), outputs(m))


@pytest.mark.parametrize("missing", [WEIGHTS, CONFIG])
def test_missing_file(saved, missing):
    _, path = saved
    (path / missing).unlink()
    one_line_error(path, missing)


def test_missing_folder(tmp_path):
    one_line_error(tmp_path / "nowhere", "missing")


@pytest.mark.parametrize("how", ["truncate", "empty", "garble_header", "header_length"])
def test_corrupt_weights(saved, how):
    _, path = saved
    w = path / WEIGHTS
    b = w.read_bytes()
    data = {"truncate": b[: len(b) // 2], "empty": b"",
            "garble_header": b[:8] + bytes(255 - c for c in b[8:40]) + b[40:],
            "header_length": (10**12).to_bytes(8, "little") + b[8:]}[how]
    w.write_bytes(data)
    msg = one_line_error(path, "corrupt")
    assert WEIGHTS in msg


def test_corrupt_tensor_bytes_are_detected(saved):
    """Flipped bytes inside the tensor data (header intact) must not load silently as a different model."""
    _, path = saved
    w = path / WEIGHTS
    b = bytearray(w.read_bytes())
    mid = len(b) - 200
    b[mid: mid + 16] = bytes(255 - c for c in b[mid: mid + 16])
    w.write_bytes(bytes(b))
    one_line_error(path, "corrupt")


def _edit_config(path, fn):
    cfg = json.loads((path / CONFIG).read_text())
    fn(cfg)
    (path / CONFIG).write_text(json.dumps(cfg))


def test_invalid_json(saved):
    _, path = saved
    (path / CONFIG).write_text('{"format": "paindiffusion-checkpoint", "version": 1,')
    one_line_error(path, "JSON")
    (path / CONFIG).write_bytes(b"\xff\xfe\x00garbage")
    one_line_error(path, "JSON")
    (path / CONFIG).write_text("[1, 2, 3]")  # valid JSON, but not a config object
    one_line_error(path, "config")


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(format="something-else"), "paindiffusion-checkpoint"),
    (lambda c: c.update(version=99), "version"),
    (lambda c: c.pop("model"), "model"),
    (lambda c: c["model"].update(bogus=1), "bogus"),
    (lambda c: c["model"].update(width="wide"), "width"),
    (lambda c: c["model"].update(heads=3), "heads"),
    (lambda c: c["conditions"].pop("drop"), "drop"),
    (lambda c: c["sampler"].update(levels="many"), "levels"),
    (lambda c: c["sampler"].update(order=3), "order"),
    (lambda c: c["conditions"].update(expressiveness_map=[[0.0, 1.0], [1.0, 0.5]]), "expressiveness_map"),  # feeds less
    (lambda c: c["conditions"].update(expressiveness_map=[[0.0, 0.0]]), "expressiveness_map"),  # one knot
    (lambda c: c["conditions"].update(expressiveness_map=[[0.0, 0.0], [1.0, 99.0]]), "expressiveness_map"),  # out of range
    (lambda c: c["conditions"].update(expressiveness_map=[[0.0, "a"], [1.0, 1.0]]), "expressiveness_map"),
    (lambda c: c["conditions"].update(calibration=[20.0, 47.0]), "threshold 20.0 must be a temperature in 30-55 °C"),  # the run-time rule
    (lambda c: c["conditions"].update(calibration=[45.0, 45.2]), "at least 0.5 °C above"),
    (lambda c: c["conditions"].update(calibration=[45.0]), "must be (threshold, tolerance)"),
    (lambda c: c["conditions"].update(expressiveness_definition="mean_pspi"), "reads 'reactivity'"),
])
def test_malformed_config(saved, edit, match):
    _, path = saved
    _edit_config(path, edit)
    one_line_error(path, match)


def test_width_differs_from_weights(saved):
    _, path = saved
    _edit_config(path, lambda c: c["model"].update(width=64, heads=2))
    msg = one_line_error(path, "do not match")
    assert "size mismatch" in msg or "64" in msg
    _edit_config(path, lambda c: c["model"].update(width=32, depth=2))  # an extra block the weights lack
    one_line_error(path, "do not match")


def test_face_space_mismatch(saved):
    _, path = saved
    _edit_config(path, lambda c: c["face_space"].update(channels=c["face_space"]["channels"][::-1]))
    one_line_error(path, "face space")
    _edit_config(path, lambda c: c["face_space"].update(name="flame", channels=None))
    one_line_error(path, "face space")
    _edit_config(path, lambda c: c["face_space"].update(name="klingon", channels=[]))
    one_line_error(path, "klingon")


def test_face_space_width_mismatch(saved, tmp_path):
    """A model whose dim is not its face space's (flame has 103 channels)."""
    _, path = saved
    from paindiffusion.facespace import FLAME
    _edit_config(path, lambda c: c["face_space"].update(name="flame", channels=list(FLAME.channels)))
    one_line_error(path, "face space")


def test_weights_from_another_model(saved, tmp_path):
    _, path = saved
    other = tiny_model()
    other.denoiser = Denoiser(ModelConfig(dim=FACS.dim, **{**TINY_SHAPE, "depth": 2}))
    other.save(tmp_path / "other")
    shutil.copy(tmp_path / "other" / WEIGHTS, path / WEIGHTS)
    one_line_error(path, "do not match")


def test_checkpoint_without_checksum_still_loads(saved):
    """Folders written before the checksum was recorded load as before (header and shape checks only)."""
    m, path = saved
    _edit_config(path, lambda c: c.pop("weights_sha256"))
    assert torch.equal(outputs(PainModel.load(path)), outputs(m))


def test_a_format_1_config_of_model_v5_loads_and_earlier_generations_are_refused_in_one_line(tmp_path):
    """Format 1 (paindiffusion 0.1) named architecture variants; a v5 config (the one variant built here) loads
    with them dropped and gives the same outputs, any other variant names the release that reads it."""
    m = tiny_model()  # a v5 network: no resting-face input
    m.denoiser, m.spec = random_denoiser(FACS.dim, 0, resting_face=False), dataclasses.replace(m.spec, resting_faces={})
    path = m.save(tmp_path / "v5")
    cfg = json.loads((path / CONFIG).read_text())
    cfg["version"] = 1
    cfg["model"].update(cond_tokens=True, expressiveness_features="smooth", readout="conv", patches="interp_sigma")
    cfg["sampler"]["eta"] = 0.0
    for k in ("resting_face",):
        del cfg["model"][k]
    (path / CONFIG).write_text(json.dumps(cfg))
    torch.testing.assert_close(outputs(PainModel.load(path)), outputs(m))
    for key, value in (("patches", "overlap"), ("readout", "stack"), ("cond_tokens", False)):
        c = json.loads(json.dumps(cfg))
        c["model"][key] = value
        (path / CONFIG).write_text(json.dumps(c))
        assert "paindiffusion 0.1 reads it" in one_line_error(path, f"earlier model generation (model.{key} = ")
    c = json.loads(json.dumps(cfg))
    del c["model"]["patches"]  # v1 configs had no such key
    (path / CONFIG).write_text(json.dumps(c))
    one_line_error(path, "paindiffusion 0.1 reads it")
    c = json.loads(json.dumps(cfg))
    c["sampler"]["eta"] = 0.5
    (path / CONFIG).write_text(json.dumps(c))
    one_line_error(path, "sampler.eta")
    cfg["model"]["readout_kernel"] = "wide"
    (path / CONFIG).write_text(json.dumps(cfg))
    one_line_error(path, "model.readout_kernel = 'wide'")
