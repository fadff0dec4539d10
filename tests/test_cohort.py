"""The synthetic pain cohort: BioVid layout, determinism, protocol, and the facial response rules (docs/design.md §4)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from paindiffusion.biovid import BASELINE_C, FPS, MAX_LEVEL_C, stimulus_index, true_runs
from paindiffusion.cohort import PLATEAU_S, RAMP_C_PER_S, RuleBasedFace, SubjectParams, biovid_protocol, write_cohort
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS
from paindiffusion.rawdata import find_recordings, load_recording

def runs(label):
    """(start, end) of each stretch with label > 0."""
    return true_runs(np.asarray(label) > 0)


def read_tsv(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), np.array([[float(x) for x in ln.split("\t")] for ln in lines[1:]])


# ---- layout and determinism -------------------------------------------------------------------------------
def test_layout_like_biovid(cohort_dir):
    recs = sorted(p.name for p in cohort_dir.iterdir() if p.is_dir())
    assert recs == [f"s{i:03d}" for i in range(1, 7)]
    info = json.loads((cohort_dir / "cohort.json").read_text())
    assert info["subjects"] == 6 and info["seed"] == 1 and "simulation" in info["dataset"]
    for name in recs:
        d = cohort_dir / name
        h_t, temp = read_tsv(d / f"{name}_temp.csv")
        h_l, lab = read_tsv(d / f"{name}_label.csv")
        assert h_t == ["time", "temperature"] and h_l == ["time", "label"]
        assert len(temp) == len(lab) == 3 * 60 * 32
        np.testing.assert_allclose(np.diff(temp[:, 0]), 1 / 32, atol=1e-5)  # 32 Hz
        np.testing.assert_array_equal(temp[:, 0], lab[:, 0])
        assert set(np.unique(lab[:, 1])) == {0, 1, 2, 3, 4}
        face = np.load(d / f"{name}_face.npy")
        assert face.shape == (3 * 60 * FPS, FACS.dim) and face.dtype == np.float32
        FACS.validate(face)
        meta = json.loads((d / f"{name}.json").read_text())
        assert meta["face_space"] == "facs" and meta["simulated"] is True and meta["subject"] == name
        for key in ("levels_c", "threshold_c", "tolerance_c", "expressiveness_gain", "emotion", "delay_s"):
            assert key in meta


def test_same_seed_gives_identical_files_and_subjects_do_not_depend_on_n(cohort_dir, tmp_path):
    # 2 subjects with the cohort's seed: s001, s002 must be byte-identical to the 6-subject cohort's
    again = write_cohort(tmp_path / "again", 2, 3.0, 1)
    for name in ("s001", "s002"):
        for f in (cohort_dir / name).iterdir():
            assert (again / name / f.name).read_bytes() == f.read_bytes(), f.name
    other = write_cohort(tmp_path / "other", 2, 3.0, 2)
    assert (other / "s001/s001_temp.csv").read_bytes() != (cohort_dir / "s001/s001_temp.csv").read_bytes()
    assert not (other / "s001/s001_face.npy").read_bytes() == (cohort_dir / "s001/s001_face.npy").read_bytes()


@pytest.mark.parametrize("kwargs, problem", [
    (dict(subjects=0, minutes=3), "--subjects must be 1-"),
    (dict(subjects=2, minutes=0.2), "too short"),
    (dict(subjects=2, minutes=float("nan")), "--minutes must be positive"),
    (dict(subjects=2, minutes=1e9), "at most 240"),
    (dict(subjects=2, minutes=3, seed=-1), "seed must be an integer in 0"),
])
def test_bad_arguments_are_user_errors_and_write_nothing(tmp_path, kwargs, problem):
    with pytest.raises(PainDiffusionError, match=problem):
        write_cohort(tmp_path / "c", **{"seed": 0, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(PainDiffusionError, match="not empty"):
        write_cohort(out, 1, 1.0, 0)
    assert (out / "keep.txt").exists()
    with pytest.raises(PainDiffusionError, match="only folders written by paindiffusion"):
        write_cohort(out, 1, 1.0, 0, overwrite=True)  # not ours: left alone even with --overwrite
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    write_cohort(out, 1, 1.0, 0)  # empty: fine; the folder is then marked as ours
    write_cohort(out, 1, 1.0, 1, overwrite=True)
    assert (out / "s001" / "s001_face.npy").is_file() and json.loads((out / "cohort.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp folder left


# ---- protocol ---------------------------------------------------------------------------------------------
def test_stimulus_index_is_biovid_alignment():
    f = np.arange(0, 40000)
    np.testing.assert_array_equal(stimulus_index(f), np.floor(f / 25 * 32).astype(int))
    np.testing.assert_array_equal(stimulus_index(100), stimulus_index(np.arange(100)))


def test_protocol_follows_biovid(cohort_dir):
    for d in find_recordings(cohort_dir):
        meta = json.loads((d / f"{d.name}.json").read_text())
        levels = meta["levels_c"]
        assert meta["threshold_c"] == levels[0] and meta["tolerance_c"] == levels[3] <= MAX_LEVEL_C
        assert np.all(np.diff(levels) > 0) and np.allclose(np.diff(levels), np.diff(levels)[0], atol=0.02)
        temp = read_tsv(d / f"{d.name}_temp.csv")[1][:, 1]
        lab = read_tsv(d / f"{d.name}_label.csv")[1][:, 1].astype(int)
        assert abs(np.median(temp[lab == 0]) - BASELINE_C) < 0.05 and temp[lab == 0].max() < BASELINE_C + 0.2
        eps = runs(lab)
        counts = np.bincount([lab[a] for a, _ in eps], minlength=5)[1:]
        assert counts.max() - counts.min() <= 1, counts  # each level equally often (shuffled blocks of 4)
        for (_, b), (c, _) in zip(eps, eps[1:]):
            assert 8.0 - 0.1 <= (c - b) / 32 <= 12.0 + 0.1  # pauses
        for a, b in eps:
            assert len(set(lab[a:b])) == 1
            peak = levels[lab[a] - 1]
            plateau = np.flatnonzero(np.abs(temp[a:b] - peak) < 0.1)
            assert abs(len(plateau) / 32 - PLATEAU_S) < 0.25, (d.name, a, len(plateau))
            ramp_s = (peak - BASELINE_C) / RAMP_C_PER_S
            assert abs(plateau[0] / 32 - ramp_s) < 0.15  # plateau starts after the ramp
            assert abs(temp[a:b].max() - peak) < 0.1


def test_protocol_is_random_order_and_fits_the_duration():
    orders = set()
    for s in range(5):
        temp, lab = biovid_protocol([42.0, 44.0, 46.0, 48.0], 120.0, np.random.default_rng(s))
        assert len(temp) == len(lab) == 120 * 32 and lab[-1] == 0
        orders.add(tuple(lab[a] for a, _ in runs(lab)))
    assert len(orders) > 1


# ---- the response rules -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_cohorts(tmp_path_factory):
    """12 subjects × 3 min on three seeds, read back through the raw-data reader."""
    out = {}
    for seed in (0, 1, 2):
        root = write_cohort(tmp_path_factory.mktemp(f"big{seed}") / "raw", 12, 3.0, seed)
        out[seed] = [load_recording(d) for d in find_recordings(root)]
    return out


def episodes(rec):
    """Per stimulated episode: level, frames of heat onset (temperature above threshold − 0.5 °C), plateau start,
    pre-episode baseline and end, from the recording's ground-truth JSON."""
    m = rec.meta
    for a, b in runs(rec.label):
        level = int(rec.label[a])
        ramp_frames = int(round((m["levels_c"][level - 1] - BASELINE_C) / RAMP_C_PER_S * FPS))
        hot = a + int(np.argmax(rec.stimulus[a:b] > m["threshold_c"] - 0.5))
        yield level, a, b, a + ramp_frames, hot


def test_pspi_rises_within_2s_of_the_plateau(big_cohorts):
    for seed, recs in big_cohorts.items():
        reliable, total, late = 0, 0, []
        for r in recs:
            pspi = FACS.pspi(r.frames, with_au43=False)  # without blinks (which are not pain)
            g, delay = r.meta["expressiveness_gain"], r.meta["delay_s"]
            for level, a, b, plateau, hot in episodes(r):
                base = np.median(pspi[max(0, a - 50): a])
                above = np.flatnonzero(pspi[a:b] > base + 1.0)
                if len(above):
                    onset = a + above[0]
                    assert onset >= hot + delay * FPS - 2, "response before the delayed stimulus"
                    # "~2 s": a 1.5 s delay plus the rise to +1 PSPI at level 2 can end a few frames past 2 s
                    if pspi[a:b].max() > base + 2.0 and onset > plateau + 2.5 * FPS:  # a clear response that is late
                        late.append((r.name, level, (onset - plateau) / FPS))
                if g >= 0.6 and level >= 3:
                    total += 1
                    reliable += len(above) > 0 and above[0] + a <= plateau + 2 * FPS
        assert total >= 10
        assert reliable / total >= 0.75, (seed, reliable, total)  # expressive subjects react reliably at high levels
        assert not late, (seed, late)


def test_responses_are_rare_at_the_lowest_level(big_cohorts):
    resp = {1: [], 4: []}
    for recs in big_cohorts.values():
        for r in recs:
            pspi = FACS.pspi(r.frames, with_au43=False)
            for level, a, b, _, _ in episodes(r):
                if level in resp:
                    resp[level].append(pspi[a:b].max() > np.median(pspi[max(0, a - 50): a]) + 1.0)
    assert np.mean(resp[1]) < 0.2 and np.mean(resp[4]) > 2 * np.mean(resp[1]) + 0.3, {k: np.mean(v) for k, v in resp.items()}


def test_pspi_increases_with_level_and_expressiveness(big_cohorts):
    for seed, recs in big_cohorts.items():
        by_level = np.zeros((len(recs), 4))
        gains, response = [], []
        for i, r in enumerate(recs):
            rest = r.pspi[r.label == 0].mean()
            for level in range(1, 5):
                by_level[i, level - 1] = r.pspi[r.label == level].mean() - rest
            gains.append(r.meta["expressiveness_gain"])
            response.append(r.pspi[r.label > 0].mean() - rest)
        mean = by_level.mean(0)
        assert np.all(np.diff(mean) > 0.1), (seed, mean)
        assert np.corrcoef(gains, response)[0, 1] > 0.6, seed
        stoic = [x for g, x in zip(gains, response) if g < 0.3]
        expressive = [x for g, x in zip(gains, response) if g > 0.8]
        if stoic and expressive:
            assert max(stoic) < np.mean(expressive), seed


def test_blinks_15_to_20_per_minute(cohort_dir):
    blinks, minutes = 0, 0.0
    for d in find_recordings(cohort_dir):
        r = load_recording(d)
        closed = r.frames[:, FACS.index("AU43")] > 2.5
        blinks += int(np.sum(np.diff(closed.astype(int)) == 1))
        minutes += len(r.frames) / FPS / 60
    assert 12 <= blinks / minutes <= 22, blinks / minutes


# ---- the rule-based generator -----------------------------------------------------------------------------
def subject(**kw) -> SubjectParams:
    p = SubjectParams.sample("x", np.random.default_rng(0))
    base = dict(threshold_c=43.0, tolerance_c=48.0, levels_c=(43.0, 44.67, 46.33, 48.0), expressiveness_gain=1.5,
                emotion="Neutral", delay_s=1.0, rise_s=0.5, decay_s=1.5, head_gain=1.0, stimulated_side=1)
    return dataclasses.replace(p, **{**base, **kw})


def step(seconds_rest=10.0, seconds_hot=8.0, temp=48.0):
    n0, n1 = int(seconds_rest * FPS), int(seconds_hot * FPS)
    return np.concatenate([np.full(n0, BASELINE_C), np.full(n1, temp), np.full(n0, BASELINE_C)]), n0, n0 + n1


def test_rule_based_generator_is_deterministic_and_valid():
    stim, _, _ = step()
    a = RuleBasedFace(subject()).generate(stim, np.random.default_rng(3))
    b = RuleBasedFace(subject()).generate(stim, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(stim), FACS.dim) and a.dtype == np.float32
    FACS.validate(a)
    assert not np.array_equal(a, RuleBasedFace(subject()).generate(stim, np.random.default_rng(4)))


def test_no_heat_no_pain():
    stim = np.full(30 * FPS, BASELINE_C)
    for s in range(3):
        f = RuleBasedFace(subject()).generate(stim, np.random.default_rng(s))
        assert FACS.pspi(f, with_au43=False).mean() < 0.6


def test_upper_face_before_lower_face_before_jaw_and_head_turns_down_and_aside():
    stim, on, off = step()
    onsets = {4: [], 10: [], 26: []}
    down, aside, spread = [], [], []
    for s in range(8):
        for side in (-1, 1):
            f = RuleBasedFace(subject(stimulated_side=side)).generate(stim, np.random.default_rng(s))
            for au in onsets:
                x = f[:, FACS.index(f"AU{au}")]
                onsets[au].append(on + np.argmax(x[on:] > x[:on].mean() + 0.3))
            hp = FACS.index("head_pitch")
            plateau = slice(on + 3 * FPS, off)
            down.append(f[plateau, hp].mean() - f[:on, hp].mean())
            aside.append(side * (f[plateau, hp + 1].mean() - f[:on, hp + 1].mean()))
            spread.append(np.diff(f[plateau, hp + 2]).std() / np.diff(f[:on, hp + 2]).std())
    # head noise is large, so judge the average over 16 runs: down, toward the stimulated side, faster movement
    assert np.mean(down) > 2.5 and np.mean(aside) > 2.0 and np.median(spread) > 1.3, (down, aside, spread)
    m = {au: np.median(v) for au, v in onsets.items()}
    assert m[4] < m[10] < m[26], m
    assert (m[4] - on) / FPS >= 0.9  # the subject's 1 s delay


def test_emotion_changes_the_resting_face():
    stim = np.full(20 * FPS, BASELINE_C)
    happy = RuleBasedFace(subject(emotion="Happiness")).generate(stim, np.random.default_rng(0))
    neutral = RuleBasedFace(subject(emotion="Neutral")).generate(stim, np.random.default_rng(0))
    sad = RuleBasedFace(subject(emotion="Sadness")).generate(stim, np.random.default_rng(0))
    au = lambda f, k: f[:, FACS.index(f"AU{k}")].mean()  # noqa: E731
    assert au(happy, 12) > 1.0 > 0.3 > au(neutral, 12)
    assert au(sad, 15) > 0.7 and au(sad, 1) > 0.7 and au(neutral, 15) < 0.3


def test_expressiveness_gain_scales_the_response():
    stim, on, off = step()
    peak = {}
    for g in (0.1, 0.5, 1.5):
        vals = []
        for s in range(5):
            f = RuleBasedFace(subject(expressiveness_gain=g)).generate(stim, np.random.default_rng(s))
            p = FACS.pspi(f, with_au43=False)
            vals.append(p[on:off].mean() - p[:on].mean())
        peak[g] = np.mean(vals)
    assert peak[0.1] < peak[0.5] < peak[1.5] and peak[0.1] < 0.5, peak
