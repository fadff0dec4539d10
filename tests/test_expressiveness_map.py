"""The expressiveness map: a checkpoint's (requested, fed) knots, measured after training so that a requested
expressiveness is the one the face achieves (docs/evaluation.md, "Expressiveness map")."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_model
from paindiffusion.checkpoint import CONFIG, PainModel, default_checkpoint
from paindiffusion.conditions import ConditionSpec
from paindiffusion.errors import PainDiffusionError
from paindiffusion.evaluation.expressiveness_map import invert_response
from paindiffusion.stream import PainStream


def test_expressiveness_map_feeds_the_inverse_of_the_measured_response():
    """A map measured on a known convex response (achieved = fed² / 4 over 0-4) feeds √(4·requested): the
    request is what the face achieves. NaN (unknown) stays unknown; no map feeds the request itself."""
    grid = np.linspace(0.0, 4.0, 41)
    knots = invert_response(grid, grid ** 2 / 4)
    spec = ConditionSpec(expressiveness_range=(0.0, 4.0), expressiveness_map=knots)
    asked = np.array([0.25, 1.0, 2.25, 3.5, np.nan])
    fed = spec.fed_expressiveness(asked)
    np.testing.assert_allclose(fed[:4], np.sqrt(4 * asked[:4]), atol=0.05)
    assert np.isnan(fed[4]) and fed.dtype == np.float32
    assert (fed[:4] ** 2 / 4 == pytest.approx(asked[:4], abs=0.1))
    np.testing.assert_array_equal(ConditionSpec().fed_expressiveness([0.5, 2.0]), np.float32([0.5, 2.0]))
    assert ConditionSpec.from_dict(spec.to_dict()) == spec


def test_expressiveness_map_never_feeds_less_for_more():
    """Measurement noise (a dip in the achieved curve) must not make a higher request feed a lower value; a
    request above the highest achieved value feeds the top of the range."""
    grid = np.linspace(0.0, 4.0, 9)
    noisy = np.array([0.3, 0.5, 0.9, 0.8, 1.9, 2.6, 3.5, 3.5, 3.5])
    req, fed = (np.array(v) for v in zip(*invert_response(grid, noisy)))
    assert np.all(np.diff(req) > 0) and np.all(np.diff(fed) >= 0)
    assert fed[0] == 0.0 and fed[-1] == 4.0
    assert np.interp(1.9, req, fed) == pytest.approx(2.0, abs=0.1)


def test_stream_feeds_the_mapped_expressiveness_and_reports_the_request():
    """With an expressiveness map the model is fed the mapped value (the frames equal those of a model without
    a map asked for that value), while the chunk reports what the user asked for."""
    spec = ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0, presets={"low": 0.5, "medium": 2.0, "high": 4.0},
                         expressiveness_range=(0.0, 16.0))
    mapped = tiny_model(spec=dataclasses.replace(spec, expressiveness_map=((0.0, 0.0), (2.0, 5.0), (16.0, 16.0))))
    a = PainStream(mapped, stimulus=46.0, seed=3, expressiveness=2.0)
    first = a.step()
    assert first.controls["expressiveness"].tolist() == [2.0]
    frames = np.concatenate([first.frames, a.step().frames], 1)
    b = PainStream(tiny_model(spec=spec), stimulus=46.0, seed=3, expressiveness=5.0)
    np.testing.assert_array_equal(frames, np.concatenate([b.step().frames, b.step().frames], 1))
    c = PainStream(tiny_model(spec=spec), stimulus=46.0, seed=3, expressiveness=2.0)
    assert not np.allclose(frames, np.concatenate([c.step().frames, c.step().frames], 1))


def test_expressiveness_map_round_trip_and_a_config_without_it(tmp_path):
    """The map survives save/load; a config without the key is refused in one line (format 1, which had none,
    loads without a map: tests/test_checkpoint.py)."""
    m = tiny_model()
    m.spec = dataclasses.replace(m.spec, expressiveness_map=((0.0, 0.0), (2.0, 3.0), (3.86, 3.86)))
    path = m.save(tmp_path / "mapped")
    back = PainModel.load(path)
    assert back.spec == m.spec and back.spec.expressiveness_map == ((0.0, 0.0), (2.0, 3.0), (3.86, 3.86))
    cfg = json.loads((path / CONFIG).read_text())
    del cfg["conditions"]["expressiveness_map"]
    (path / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(PainDiffusionError, match="conditions.expressiveness_map is missing") as e:
        PainModel.load(path)
    assert "\n" not in str(e.value)


def test_fit_expressiveness_map_script_measures_and_stores_an_increasing_map(packed_dir, tmp_path, monkeypatch):
    """scripts/fit_expressiveness_map.py on the shipped network and training recordings: the measured response
    rises over the trained range, and the saved checkpoint loads with a map that feeds more for more."""
    script = Path(__file__).parents[1] / "scripts" / "fit_expressiveness_map.py"
    out = tmp_path / "mapped"
    monkeypatch.setattr(sys, "argv", [str(script), str(default_checkpoint()), str(packed_dir), "-o", str(out),
                                      "--recordings", "2", "--points", "3", "--seconds", "40", "--threads", "1"])
    runpy.run_path(str(script), run_name="__main__")
    mapped = PainModel.load(out)
    req, fed = (np.array(v) for v in zip(*mapped.spec.expressiveness_map))
    lo, hi = mapped.spec.expressiveness_range
    assert req[0] == pytest.approx(lo) and req[-1] == pytest.approx(hi)
    assert np.all(np.diff(fed) >= 0) and fed[-1] > fed[0]
    asked = np.array([lo, (lo + hi) / 2, hi])
    assert np.all(np.diff(mapped.spec.fed_expressiveness(asked)) >= 0)
