"""The packed store: content, alignment, split, statistics, windows, sampling, and fake BioVid trees."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import make_biovid_tree
from paindiffusion.dataset import (TEST_SHARE, VAL_SHARE, PackedData, WindowSampler, balance_weights, expressiveness_of, pack,
                                   split_subjects)
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import EMOTIONS, FACS
from paindiffusion.rawdata import load_recording


def read_column(path):
    return np.array([float(ln.split("\t")[1]) for ln in path.read_text().splitlines()[1:]])


def test_packed_arrays_match_the_raw_files(cohort_dir, packed_dir):
    d = PackedData(packed_dir)
    assert d.space is FACS and d.meta["fps"] == 25 and len(d.recordings) == 6
    assert d.frames.dtype == np.float32 and d.label.dtype == np.int8
    assert isinstance(d.frames, np.memmap)
    offset = 0
    for r in d.recordings:
        assert r["offset"] == offset
        offset += r["length"]
        src = cohort_dir / r["name"]
        face = np.load(src / f"{r['name']}_face.npy")
        s = slice(r["offset"], r["offset"] + r["length"])
        np.testing.assert_array_equal(d.frames[s], face[: r["length"]])
        # stimulus and label of frame f are the 32 Hz samples floor(f / 25 * 32)
        idx = np.floor(np.arange(r["length"]) / 25 * 32).astype(int)
        np.testing.assert_array_equal(d.stimulus[s], read_column(src / f"{r['name']}_temp.csv")[idx].astype(np.float32))
        np.testing.assert_array_equal(d.label[s], read_column(src / f"{r['name']}_label.csv")[idx].astype(np.int8))
        np.testing.assert_allclose(d.pspi[s], FACS.pspi(face[: r["length"]]), rtol=1e-6)
        meta = json.loads((src / f"{r['name']}.json").read_text())
        assert r["emotion"] == meta["emotion"] and r["subject"] == meta["subject"]
        stim = d.label[s] > 0
        reactivity = float(d.pspi[s][stim].mean()) - float(np.median(d.pspi[s][~stim]))
        assert r["expressiveness"] == pytest.approx(max(0.0, reactivity), rel=1e-5, abs=1e-6)
    assert offset == len(d.frames) == 6 * 3 * 60 * 25


def test_split_is_subject_disjoint_and_stats_come_from_train(packed_dir):
    d = PackedData(packed_dir)
    splits = {s: d.split(s) for s in ("train", "val", "test")}
    assert all(splits.values()) and sum(map(len, splits.values())) == 6
    subj = {s: {d.recordings[i]["subject"] for i in v} for s, v in splits.items()}
    assert not (subj["train"] & subj["val"] or subj["train"] & subj["test"] or subj["val"] & subj["test"])
    rows = np.concatenate([np.arange(d.recordings[i]["offset"], d.recordings[i]["offset"] + d.recordings[i]["length"])
                           for i in splits["train"]])
    np.testing.assert_allclose(d.stats["frames_mean"], d.frames[rows].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d.stats["frames_std"], d.frames[rows].std(0), rtol=1e-3, atol=1e-5)
    assert d.stats["stimulus_mean"] == pytest.approx(float(d.stimulus[rows].mean()), rel=1e-5)
    assert d.stats["stimulus_mean"] != pytest.approx(float(d.stimulus[:].mean()), rel=1e-7)


def test_split_subjects_rules():
    subjects = [f"p{i:02d}" for i in range(20)]
    a = split_subjects(subjects, 0, VAL_SHARE, TEST_SHARE)
    assert a == split_subjects(list(reversed(subjects)), 0, VAL_SHARE, TEST_SHARE)  # order-independent, deterministic
    assert sorted(a.values()).count("test") == 3 and sorted(a.values()).count("val") == 3
    assert a != split_subjects(subjects, 1, VAL_SHARE, TEST_SHARE)
    assert set(split_subjects(["a", "b"], 0, 0.15, 0.15).values()) == {"train"}
    assert sorted(split_subjects(["a", "b", "c"], 0, 0.15, 0.15).values()) == ["test", "train", "val"]


def test_pack_is_deterministic(cohort_dir, packed_dir, tmp_path):
    again = pack(cohort_dir, tmp_path / "again")
    for f in ("frames.npy", "stimulus.npy", "label.npy", "pspi.npy"):
        assert (again / f).read_bytes() == (packed_dir / f).read_bytes()
    m1, m2 = (json.loads((p / "index.json").read_text()) for p in (again, packed_dir))
    m1.pop("source"), m2.pop("source")
    assert m1 == m2


def test_multiple_recordings_of_a_subject_stay_in_one_split(tmp_path):
    names = [f"r{i:02d}" for i in range(12)]
    subjects = {n: f"subj{i // 3}" for i, n in enumerate(names)}  # 4 subjects × 3 recordings
    raw = make_biovid_tree(tmp_path / "raw", "facs", names, seconds=12, subjects=subjects)
    d = PackedData(pack(raw, tmp_path / "d", val=0.25, test=0.25))
    split_of = {}
    for r in d.recordings:
        assert split_of.setdefault(r["subject"], r["split"]) == r["split"]
    assert set(split_of.values()) == {"train", "val", "test"}


def test_window_reads_slices_and_pads_history_within_the_recording(packed_dir):
    d = PackedData(packed_dir)
    r = d.recordings[2]
    o = r["offset"]
    w = d.window(2, 100, 64, history=75)
    np.testing.assert_array_equal(w.frames, d.frames[o + 100: o + 164])
    np.testing.assert_array_equal(w.stimulus, d.stimulus[o + 25: o + 164])
    np.testing.assert_array_equal(w.pspi, d.pspi[o + 100: o + 164])
    np.testing.assert_array_equal(w.label, d.label[o + 100: o + 164])
    assert w.emotion == EMOTIONS.index(r["emotion"]) and w.expressiveness == pytest.approx(r["expressiveness"])
    # at the start of a recording the history repeats its first value, never the previous recording's frames
    w0 = d.window(2, 10, 64, history=75)
    assert len(w0.stimulus) == 139
    np.testing.assert_array_equal(w0.stimulus[:65], np.full(65, d.stimulus[o]))
    np.testing.assert_array_equal(w0.stimulus[65:], d.stimulus[o: o + 74])
    last = d.window(2, r["length"] - 64, 64)
    assert len(last.frames) == 64
    for start in (-1, r["length"] - 63):
        with pytest.raises(PainDiffusionError, match="outside recording"):
            d.window(2, start, 64)


def test_sampler_is_reproducible_stays_in_split_and_targets_changes(packed_dir):
    d = PackedData(packed_dir)
    train = set(d.split("train"))
    s = WindowSampler(d, "train", 64, history=75, change_fraction=1.0, seed=3)
    for i in range(200):
        w = s.sample(i)
        assert w.recording in train and w.frames.shape == (64, 20) and len(w.stimulus) == 139
        o = d.recordings[w.recording]["offset"] + w.start
        lab = d.label[o - 1 if w.start else o: o + 64]  # a change at the window's first frame counts
        assert len(np.unique(lab)) > 1
    a, b = s.sample(7, epoch=2), s.sample(7, epoch=2)
    assert (a.recording, a.start) == (b.recording, b.start)
    starts = {(s.sample(i, epoch=e).recording, s.sample(i, epoch=e).start) for i in range(5) for e in range(3)}
    assert len(starts) > 10
    # change_fraction 0: uniform; most windows then contain no change (stimulated ~30% of the time)
    u = WindowSampler(d, "train", 64, change_fraction=0.0, seed=3)
    no_change = np.mean([len(np.unique(u.sample(i).label)) == 1 for i in range(400)])
    assert 0.5 < no_change < 0.95
    half = WindowSampler(d, "train", 64, change_fraction=0.5, seed=3)
    has_change = np.mean([len(np.unique(half.sample(i).label)) > 1 for i in range(400)])
    assert 0.4 < has_change < 0.8
    with pytest.raises(PainDiffusionError, match="no recording of at least"):
        WindowSampler(d, "val", 10**7)


def test_balance_weights_equalise_expressiveness_bins():
    # 6 subjects in the bottom bin, 2 at the top: power 1 gives the top ones 3x the weight, bins equal in total
    w = balance_weights([0.1] * 6 + [3.9, 4.0] + [None], power=1.0, bins=2)
    assert w[0] * 6 == pytest.approx(w[6] * 2) and w[6] == pytest.approx(3 * w[0]) and w.mean() == pytest.approx(1)
    assert (balance_weights([0.1] * 6 + [3.9, 4.0], power=0.0) == 1).all()
    assert (balance_weights([1.0, 1.0, None], power=1.0) == 1).all()  # no spread: nothing to balance


def test_balanced_sampler_draws_rare_subjects_more_often(packed_dir):
    d = PackedData(packed_dir)
    train = d.split("train")
    top = max(train, key=lambda i: d.recordings[i]["expressiveness"])
    share = {b: np.mean([WindowSampler(d, "train", 64, change_fraction=0.5, seed=3, balance=b).sample(i).recording == top
                         for i in range(600)]) for b in (0.0, 1.0)}
    w = balance_weights([d.recordings[i]["expressiveness"] for i in train], 1.0)
    assert w[train.index(top)] > 1.2 and share[1.0] > share[0.0] * 1.2


def test_expressiveness_of():
    lab = np.array([0, 0, 1, 2, 0])
    # reactivity: mean while stimulated (5) minus the resting median (1)
    assert expressiveness_of(np.array([1.0, 1, 4, 6, 1]), lab) == 4.0
    # a resting face that counts toward PSPI (anger's AU4/AU7) is not pain: same reactivity, higher mean PSPI
    assert expressiveness_of(np.array([3.0, 3, 6, 8, 3]), lab) == 4.0
    assert expressiveness_of(np.array([3.0, 3, 1, 1, 3]), lab) == 0.0  # floored at 0
    assert expressiveness_of(np.array([1.0, 3]), np.array([0, 0])) == 0.0
    assert expressiveness_of(None, lab) is None and expressiveness_of(np.full(5, np.nan), lab) is None


def test_packs_and_checkpoints_name_the_same_expressiveness_definition():
    from paindiffusion.conditions import ConditionSpec
    from paindiffusion.dataset import EXPRESSIVENESS_DEFINITION

    assert ConditionSpec().expressiveness_definition == EXPRESSIVENESS_DEFINITION == "reactivity"


def test_a_store_without_the_definition_field_gets_reactivity(packed_dir, tmp_path):
    """A store whose index has no expressiveness_definition holds mean PSPI values; loading recomputes reactivity."""
    old = tmp_path / "old"
    shutil.copytree(packed_dir, old)
    meta = json.loads((old / "index.json").read_text())
    new_values = [r["expressiveness"] for r in meta["recordings"]]
    del meta["expressiveness_definition"]
    for r in meta["recordings"]:
        r["expressiveness"] = 99.0  # what the file says must not survive
    (old / "index.json").write_text(json.dumps(meta))
    d = PackedData(old)
    assert [r["expressiveness"] for r in d.recordings] == pytest.approx(new_values)
    assert d.meta["expressiveness_definition"] == "reactivity"


# ---- real BioVid-layout trees go through the same path ----------------------------------------------------
@pytest.mark.parametrize("with_pspi", [False, True])
def test_flame_tree_packs(tmp_path, with_pspi):
    raw = make_biovid_tree(tmp_path / "raw", "flame", pspi=with_pspi, meta={"emotion": "sadness"})
    d = PackedData(pack(raw, tmp_path / "d"))
    assert d.space.name == "flame" and d.frames.shape == (4 * 20 * 25, 103)  # video cut to the streams
    for r in d.recordings:
        s = slice(r["offset"], r["offset"] + r["length"])
        face = np.load(raw / r["name"] / f"{r['name']}_face.npy")
        np.testing.assert_array_equal(d.frames[s], face[:500])
        assert r["emotion"] == "Sadness" and r["subject"] == r["name"]
        if with_pspi:
            p = np.load(raw / r["name"] / f"{r['name']}_pspi.npy")[:500]
            np.testing.assert_array_equal(d.pspi[s], p)
            stim = d.label[s] > 0
            assert r["expressiveness"] == pytest.approx(max(0.0, float(p[stim].mean() - np.median(p[~stim]))), rel=1e-5)
        else:
            assert np.isnan(d.pspi[s]).all() and r["expressiveness"] is None
        assert set(np.unique(d.label[s])) == {0, int(r["name"][-1]) % 4 or 4}


def test_facs_tree_with_face_csv_packs(tmp_path):
    raw = make_biovid_tree(tmp_path / "raw", "facs", face_csv=True, seconds=8)
    d = PackedData(pack(raw, tmp_path / "d"))
    r = d.recordings[0]
    rec = load_recording(raw / r["name"])
    assert d.space is FACS and rec.frames.shape == (200, 20)
    # columns were written reversed plus an extra one: the reader must pick them by name
    rows = (raw / r["name"] / f"{r['name']}_face.csv").read_text().splitlines()
    first = [float(x) for x in rows[1].split(",")][:20][::-1]
    np.testing.assert_allclose(d.frames[0], first, atol=1e-5)
    np.testing.assert_allclose(d.pspi[: r["length"]], FACS.pspi(rec.frames), rtol=1e-6)


def test_tree_without_json_uses_the_default_space(tmp_path):
    raw = make_biovid_tree(tmp_path / "raw", "flame", seconds=6)
    for j in raw.glob("*/*.json"):
        j.unlink()
    with pytest.raises(PainDiffusionError, match="face space 'facs' needs"):
        pack(raw, tmp_path / "d")
    assert not (tmp_path / "d").exists()
    d = PackedData(pack(raw, tmp_path / "d", default_space="flame"))
    assert d.space.name == "flame" and all(r["emotion"] is None for r in d.recordings)


def test_pack_refuses_mixed_spaces_and_leaves_nothing(tmp_path):
    make_biovid_tree(tmp_path / "raw", "flame", recordings=("a1", "a2"), seconds=6)
    make_biovid_tree(tmp_path / "raw", "facs", recordings=("b1",), seconds=6)
    with pytest.raises(PainDiffusionError, match="mix face spaces"):
        pack(tmp_path / "raw", tmp_path / "d")
    assert sorted(os.listdir(tmp_path)) == ["raw"]


def test_pack_overwrite_rules(cohort_dir, tmp_path):
    raw = make_biovid_tree(tmp_path / "raw", "facs", seconds=6)
    out = tmp_path / "d"
    pack(raw, out)
    with pytest.raises(PainDiffusionError, match="not empty"):
        pack(raw, out)
    shutil.rmtree(raw / "r04")
    pack(raw, out, overwrite=True)
    assert len(PackedData(out).recordings) == 3
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PainDiffusionError, match="not a folder"):
        pack(raw, tmp_path / "afile")
    with pytest.raises(PainDiffusionError, match="split shares"):
        pack(raw, tmp_path / "d2", val=0.6, test=0.5)
    assert sorted(os.listdir(tmp_path)) == ["afile", "d", "raw"]


def test_packed_data_rejects_non_stores(tmp_path, packed_dir):
    with pytest.raises(PainDiffusionError, match="not a packed dataset"):
        PackedData(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(packed_dir, bad)
    (bad / "frames.npy").unlink()
    with pytest.raises(PainDiffusionError, match="missing or corrupt"):
        PackedData(bad)
    with pytest.raises(PainDiffusionError, match="no recording 'nope'"):
        PackedData(packed_dir).find("nope")
