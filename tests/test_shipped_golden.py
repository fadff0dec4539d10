"""Golden values of the shipped network and of the stream it drives (diffusers-style: full loops, fixed seeds,
numbers computed once with this code on torch CPU float32). A change to the checkpoint, the denoiser, the
sampler's defaults or the stream shows here first; after shipping a new model, recompute them with
``python tests/test_shipped_golden.py``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from paindiffusion.checkpoint import PainModel, default_checkpoint
from paindiffusion.conditions import HISTORY
from paindiffusion.stream import PainStream

torch.set_num_threads(1)

# (D's output sum, |sum|, first frame's first 4 channels), (PainStream.take: sum, |sum|, frame 20's AU4, AU6, AU7,
# AU43), computed once with this code on the shipped checkpoint.
GOLDEN_DENOISER = (78.6316, 573.918, [-1.1251, -1.1521, -0.2496, -0.4334])
GOLDEN_STREAM = (2013.758, 2923.464, [4.669, 3.9135, 4.637, 1.8313])


@pytest.fixture(scope="module")
def model() -> PainModel:
    return PainModel.load(default_checkpoint())


def denoiser_output(model: PainModel) -> torch.Tensor:
    """One call of the shipped D(x, σ, c) on fixed inputs: two patients, a clean prefix and rising σ, with
    different heat, expressiveness and emotion."""
    g = torch.Generator().manual_seed(0)
    t = 32
    x = torch.randn(2, t, model.config.dim, generator=g)
    sigma = torch.linspace(0.0, 20.0, t).expand(2, t).clone()
    heat = torch.tensor([[38.0], [46.0]]) + torch.linspace(0, 2, HISTORY + t)[None]
    cond = model.spec.batch(heat, [0.5, 2.5], [0, 3], t)  # resting face unknown: the mean face
    with torch.no_grad():
        return model.denoiser(x, sigma, cond)


def stream_frames(model: PainModel) -> np.ndarray:
    """60 frames of the shipped stream (default sampler) for a patient under 46 °C, seed 0."""
    return PainStream(model, stimulus=46.0, expressiveness="high", seed=0).take(60).frames


def figures(model: PainModel):
    d = denoiser_output(model)
    f = stream_frames(model)
    au = model.space.index
    return ((round(d.sum().item(), 4), round(d.abs().sum().item(), 4), [round(v, 4) for v in d[0, 0, :4].tolist()]),
            (round(float(f.sum()), 3), round(float(np.abs(f).sum()), 3),
             [round(float(f[20, au(c)]), 4) for c in ("AU4", "AU6", "AU7", "AU43")]))


def test_shipped_denoiser_golden(model):
    out = denoiser_output(model)
    assert out.shape == (2, 32, model.config.dim) and torch.isfinite(out).all()
    total, absolute, first = GOLDEN_DENOISER
    assert out.sum().item() == pytest.approx(total, rel=1e-3, abs=1e-2)
    assert out.abs().sum().item() == pytest.approx(absolute, rel=1e-3)
    assert out[0, 0, :4].tolist() == pytest.approx(first, rel=1e-3, abs=1e-3)


def test_shipped_stream_golden(model):
    f = stream_frames(model)
    assert f.shape == (60, model.config.dim)
    model.space.validate(f)
    total, absolute, frame20 = GOLDEN_STREAM
    au = model.space.index
    assert float(f.sum()) == pytest.approx(total, rel=1e-3, abs=1e-2)
    assert float(np.abs(f).sum()) == pytest.approx(absolute, rel=1e-3)
    assert [float(f[20, au(c)]) for c in ("AU4", "AU6", "AU7", "AU43")] == pytest.approx(frame20, rel=1e-3, abs=1e-3)
    assert np.array_equal(f, stream_frames(model))  # and the same seed gives the same frames


if __name__ == "__main__":
    print(figures(PainModel.load(default_checkpoint())), file=sys.stdout)
