"""The patient's pain range (threshold and tolerance): read from recordings, checked, turned into the stimulus
condition relative to it, and carried by every path a user sets it on (stream, generate CLI, live inputs,
training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY_NET, cli, tiny_model
from paindiffusion.checkpoint import PainModel
from paindiffusion.conditions import HISTORY, ConditionSpec
from paindiffusion.dataset import PackedData, calibration_of
from paindiffusion.errors import PainDiffusionError
from paindiffusion.live.inputs import parse_line
from paindiffusion.model import ModelConfig
from paindiffusion.stream import PainStream
from paindiffusion.train import TrainConfig, train

torch.set_num_threads(1)
CALIBRATED = ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0, presets={"low": 0.3, "medium": 1.7, "high": 3.9},
                           stimulus_reference="calibrated", calibration=(43.0, 47.0))


def test_pain_range_is_read_from_the_stimulus_level_labels(cohort_dir, packed_dir):
    d = PackedData(packed_dir)
    for r in d.recordings:  # the simulated subjects' true threshold and tolerance, within the 25 fps sampling
        truth = json.loads((cohort_dir / r["name"] / f"{r['name']}.json").read_text())
        assert r["calibration"] == pytest.approx((truth["threshold_c"], truth["tolerance_c"]), abs=0.15)
    s = slice(d.recordings[0]["offset"], d.recordings[0]["offset"] + d.recordings[0]["length"])
    stim, lab = np.asarray(d.stimulus[s]), np.asarray(d.label[s])
    only_two = np.where(np.isin(lab, (2, 3)), lab, 0)  # any two levels give the line through all four
    assert calibration_of(stim, only_two) == pytest.approx(d.recordings[0]["calibration"], abs=0.15)
    assert calibration_of(stim, np.where(lab == 4, 4, 0)) is None  # one level: no line
    assert calibration_of(stim, np.zeros_like(lab)) is None


def test_relative_stimulus_features_are_zero_at_threshold_and_one_at_tolerance():
    stim = torch.tensor([[43.0] * (HISTORY + 4), [47.0] * (HISTORY + 4)])
    f = CALIBRATED.stimulus_features(stim, 4)
    assert torch.allclose(f[0], torch.zeros_like(f[0])) and torch.allclose(f[1], torch.ones_like(f[1]))
    own = CALIBRATED.stimulus_features(stim, 4, calibration=torch.tensor([[41.0, 45.0], [41.0, 45.0]]))
    assert torch.allclose(own[0], torch.full_like(own[0], 0.5)) and torch.allclose(own[1], torch.full_like(own[1], 1.5))
    celsius = ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0)  # a model that reads °C ignores the pain range
    assert torch.equal(celsius.stimulus_features(stim, 4), celsius.stimulus_features(stim, 4, calibration=[[41.0, 45.0]] * 2))
    assert ConditionSpec.from_dict(CALIBRATED.to_dict()) == CALIBRATED


@pytest.mark.parametrize("threshold, tolerance, message", [
    (49.0, None, "at least 0.5 °C above"), (None, 80.0, "30-55 °C"), (float("nan"), 47.0, "30-55 °C"),
    ("hot", 47.0, "30-55 °C"), (True, 47.0, "30-55 °C")])
def test_a_bad_pain_range_is_one_line_error(threshold, tolerance, message):
    with pytest.raises(PainDiffusionError, match=message):
        CALIBRATED.calibration_value(threshold, tolerance)


def test_stream_reads_the_patients_threshold_only_when_the_model_reads_the_pain_range():
    def frames(spec, **cal):
        s = PainStream(tiny_model(spec=spec), trace=np.full(32, 45.0), seed=3, **cal)
        return s.take(32).frames

    hot_for_him = frames(CALIBRATED, threshold=41.0, tolerance=45.0)
    assert not np.allclose(hot_for_him, frames(CALIBRATED, threshold=44.5, tolerance=49.0))
    assert np.allclose(frames(CALIBRATED), frames(CALIBRATED, threshold=43.0, tolerance=47.0))  # default = training median
    celsius = ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0)
    assert np.array_equal(frames(celsius, threshold=41.0, tolerance=45.0), frames(celsius, threshold=44.5, tolerance=49.0))
    live = PainStream(tiny_model(spec=CALIBRATED), batch=2)
    live.set_controls(threshold=[42.0, 44.0], tolerance=46.0)
    with pytest.raises(PainDiffusionError, match="above the threshold"):
        live.set_controls(threshold=45.8, slot=0)  # above slot 0's tolerance 46 - 0.5
    assert live.controls["threshold"].tolist() == [42.0, 44.0] and live.controls["tolerance"].tolist() == [46.0, 46.0]
    live.step()
    slot = live.add(seed=1, threshold=41.5, tolerance=46.5)
    assert live.controls["threshold"][slot] == 41.5 and live.step().frames.shape[0] == 3


def test_live_text_inputs_carry_threshold_and_tolerance():
    assert parse_line("threshold 43.5") == (None, {"threshold": 43.5})
    assert parse_line("@1 tolerance 48") == (1, {"tolerance": 48.0})
    assert parse_line('{"threshold": 42, "patient": 0}') == (0, {"threshold": 42})
    with pytest.raises(PainDiffusionError, match="not a number"):
        parse_line("threshold warm")


def test_generate_cli_refuses_a_tolerance_below_the_threshold(tmp_path):
    r = cli("generate", "-o", tmp_path / "x.npz", "--protocol", "biovid", "--seconds", "20", "--rule-based",
            "--threshold", "46", "--tolerance", "44")
    assert r.returncode != 0 and "above the threshold" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_training_on_the_pain_range_stores_the_training_median(tmp_path, packed_dir):
    cfg = TrainConfig(steps=2, batch=4, window=32, val_every=2, val_batches=1, calibrated=True)
    model = train(packed_dir, tmp_path / "run", cfg, mcfg=ModelConfig(**TINY_NET), progress=False)
    d = PackedData(packed_dir)
    cal = np.median([r["calibration"] for r in d.recordings if r["split"] == "train"], axis=0)
    loaded = PainModel.load(tmp_path / "run" / "model")
    assert loaded.spec.stimulus_reference == "calibrated" and model.spec.calibrated
    assert loaded.spec.calibration == pytest.approx(tuple(cal), abs=0.01)
