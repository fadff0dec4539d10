"""What an edit does with the shipped model (slow): strength against achieved expressiveness, strength 1 against
generation, kept frames and their joins, re-timing to a new stimulus, and an acted video edited to "low".
Achieved expressiveness is measured as the evaluation measures it (dataset.expressiveness_of, with the
protocol's own stimulus labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MEDIAPIPE, need_module
from paindiffusion.biovid import stimulus_index
from paindiffusion.checkpoint import PainModel
from paindiffusion.cohort import biovid_protocol
from paindiffusion.dataset import expressiveness_of
from paindiffusion.edit import edit
from paindiffusion.generate import generate_sequence

pytestmark = pytest.mark.slow
torch.set_num_threads(1)
FPS = 25


@pytest.fixture(scope="module")
def model() -> PainModel:
    return PainModel.load()


def protocol(model, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A BioVid-like heat trace for the model's median patient, per frame, with its level labels."""
    temp, label = biovid_protocol(tuple(np.linspace(*model.spec.calibration, 4)), seconds, np.random.default_rng(seed))
    i = np.minimum(stimulus_index(int(seconds * FPS)), len(temp) - 1)
    return temp[i].astype(np.float32), label[i]


def changes(frames: np.ndarray) -> np.ndarray:
    """Frame-to-frame change: the Euclidean norm of the difference of consecutive frames (AUs and head pose)."""
    return np.linalg.norm(np.diff(frames, axis=0), axis=1)


@pytest.mark.parametrize("start, asked", [("high", "low"), ("low", "high")])
def test_strength_moves_achieved_expressiveness_toward_the_request(model, start, asked):
    trace, label = protocol(model, 40.0, 3)
    seq = generate_sequence(trace, start, model=model, seed=1)
    want = model.spec.presets[asked]
    achieved = [np.mean([expressiveness_of(edit(seq, strength=s, expressiveness=asked, model=model, seed=k,
                                                 desc=None).pspi, label) for k in range(3)])
                for s in (0.0, 0.5, 0.75, 1.0)]
    toward = np.sign(want - achieved[0])
    assert np.all(toward * np.diff(achieved) > 0), achieved  # each step of strength moves it further toward the request
    assert abs(achieved[-1] - want) < 0.7 * abs(achieved[0] - want), achieved  # and strength 1 lands nearer than the input


def test_strength_one_is_like_generation_from_scratch(model):
    trace, label = protocol(model, 30.0, 5)
    seq = generate_sequence(trace, "high", model=model, seed=2)
    edited = [edit(seq, strength=1.0, expressiveness="medium", model=model, seed=k, desc=None) for k in range(5)]
    made = [generate_sequence(trace, "medium", model=model, seed=50 + k) for k in range(5)]
    for stat in (lambda s: expressiveness_of(s.pspi, label), lambda s: s.pspi.mean(),
                 lambda s: np.corrcoef(s.pspi, seq.pspi)[0, 1]):  # achieved, mean PSPI, likeness to the input
        a, b = np.array([stat(s) for s in edited]), np.array([stat(s) for s in made])
        assert abs(a.mean() - b.mean()) <= 2 * np.sqrt(a.var(ddof=1) / 5 + b.var(ddof=1) / 5) + 0.05, (a, b)
    # the test can fail: a half-strength edit keeps the input's face, which generation does not
    half = edit(seq, strength=0.5, expressiveness="medium", model=model, desc=None)
    assert np.corrcoef(half.pspi, seq.pspi)[0, 1] > max(np.corrcoef(s.pspi, seq.pspi)[0, 1] for s in made) + 0.05


def test_kept_frames_are_exact_and_the_joins_are_ordinary(model):
    for case in range(2):
        trace, _ = protocol(model, 30.0, 10 + case)
        seq = generate_sequence(trace, "high", model=model, seed=case)
        low = generate_sequence(trace, "low", model=model, seed=60 + case)
        ordinary = np.concatenate([changes(s.frames) for s in (seq, low, generate_sequence(trace, "medium", model=model, seed=70))])
        p99 = np.percentile(ordinary, 99)
        kept = np.zeros(len(seq), bool)
        kept[0:100] = kept[312:500] = True  # "0-4.0,12.5-20"
        joins = [100, 312, 500]  # first frame after each edge
        # the criterion has teeth: pasting the kept frames into another take of the face jumps at a join
        pasted = np.where(kept[:, None], seq.frames, low.frames)
        assert max(changes(pasted)[j - 1] for j in joins) > p99
        for strength, seed in ((1.0, 0), (0.75, 1)):
            out = edit(seq, strength=strength, expressiveness="low", keep="0-4.0,12.5-20", model=model, seed=seed,
                       desc=None)
            assert np.array_equal(out.frames[kept], seq.frames[kept])
            d = changes(out.frames)
            assert all(d[j - 1] <= p99 for j in joins), ([d[j - 1] for j in joins], p99)
            edge = 2 * round(strength * 8)  # the soft edge: one σ level per 2 frames (edit.FEATHER_PER_LEVEL)
            zones = [d[100 - 1: 100 + edge], d[312 - edge - 1: 312], d[500 - 1: 500 + edge]]
            assert max(z.max() for z in zones) <= ordinary.max()  # nothing the model does not do itself


def best_lag(stimulus: np.ndarray, pspi: np.ndarray, most: int = 100) -> int:
    """Frames by which PSPI best follows the stimulus (the largest cross-correlation, lags 0 … most − 1)."""
    s, p = stimulus - stimulus.mean(), pspi - pspi.mean()
    return int(np.argmax([np.corrcoef(s[: len(s) - k], p[k:])[0, 1] for k in range(most)]))


def test_retiming_moves_the_pspi_peaks_to_the_new_plateaus(model):
    """"The same face, but the heat comes 10 s later"."""
    old, _ = protocol(model, 60.0, 3)
    new = np.concatenate([np.full(250, 32.0, np.float32), old[:-250]])
    seq = generate_sequence(old, "high", model=model, seed=1)
    own = np.median([best_lag(new, generate_sequence(new, "high", model=model, seed=30 + k).pspi) for k in range(2)])
    moved_away = np.roll((old > 40) & ~(new > 40), int(own))  # where the old peaks were, now at rest
    moved_to = np.roll((new > 40) & ~(old > 40), int(own))
    for seed in range(2):
        out = edit(seq, strength=0.875, stimulus=new, model=model, seed=seed, desc=None)
        # generation's own lag spreads over ~1 s between seeds (45-68 frames on the shipped network) and an
        # edit at this strength reacts ~0.5 s earlier than generation (38-45 frames): within 1 s of it
        assert abs(best_lag(new, out.pspi) - own) <= 1.0 * FPS, (best_lag(new, out.pspi), own)
        assert out.pspi[moved_to].mean() > 3 * out.pspi[moved_away].mean()
        assert seq.pspi[moved_away].mean() > 3 * seq.pspi[moved_to].mean()  # the input had them the other way round


def test_acted_video_edited_to_low_is_milder_and_keeps_its_timing(model, tmp_path):
    need_module("mediapipe", MEDIAPIPE)
    from paindiffusion.edit import load_source
    from paindiffusion.render.video import save_video
    from paindiffusion.sequence import FaceSequence
    from paindiffusion.tracking.roundtrip import cohort_sequences

    actor = cohort_sequences(subjects=1, seconds=30.0, seed=7)[0]  # an expressive face, known AU by AU
    video = save_video(tmp_path / "acting.mp4", FaceSequence(actor.space, actor.frames), size=256)
    acted = load_source(video)  # what the tracker reads: no stimulus, no labels
    assert acted.stimulus is None and np.corrcoef(acted.pspi, actor.pspi)[0, 1] > 0.9

    def smooth(p):  # the PSPI shape over time: a 1 s moving average
        return np.convolve(p, np.ones(FPS) / FPS, mode="same")
    for seed in range(2):
        out = edit(acted, strength=0.625, expressiveness="low", model=model, seed=seed, desc=None)
        assert out.pspi.mean() < 0.75 * acted.pspi.mean(), (out.pspi.mean(), acted.pspi.mean())
        assert np.corrcoef(smooth(out.pspi), smooth(acted.pspi))[0, 1] >= 0.7
