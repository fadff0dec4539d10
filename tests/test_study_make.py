"""``study make``: the manifest, real mp4 clips drawn by the project's renderer (only the motion differs between
sources of a window), the material the observer reads, a study from stimulus files, one-line errors; and
``study observe``: the machine observer answers every realism trial as a flagged participant."""

from __future__ import annotations

import json
import sqlite3

import av
import numpy as np
import pytest

from conftest import cli_here, tiny_model
from paindiffusion.errors import PainDiffusionError
from paindiffusion.evaluation.observer import ObserverConfig
from paindiffusion.evaluation.runner import MODEL
from paindiffusion.study.make import load_manifest, make_study
from paindiffusion.study.material import StudyConfig, load_material
from paindiffusion.study.observe import OBSERVER_ID, observe_study
from paindiffusion.study.plan import REFERENCE, STATIC
from paindiffusion.study.report import write_study_report
from paindiffusion.study.store import DB

FAST = ObserverConfig(epochs=5, min_steps=60)
SIZE, STRIP = 64, 24  # the fixture's face size and the stimulus strip under it (3/8 of the size)


def decode(path) -> np.ndarray:
    with av.open(str(path)) as f:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])


def test_manifest_lists_windows_sources_clips_trials_and_plan(study_dir):
    m = load_manifest(study_dir)
    assert [b["name"] for b in m["blocks"]] == ["realism", "reaction", "diversity", "overall"]
    assert m["generators"] == [MODEL, "rules given the controls", "ridge ARX", "random clip"]
    assert len(m["windows"]) == 3 and [w["catch"] for w in m["windows"]] == [False, False, True]
    assert all(w["seconds"] == 2.0 and w["start_s"] >= 20 and w["stimulus_level"] > 0 for w in m["windows"])
    assert m["plan"]["trials_per_participant"] == 9 and len(m["plan"]["rows"]) == m["plan"]["cycle"]
    clip_ids = {c["id"] for c in m["clips"]}
    assert all(c in clip_ids for t in m["trials"] for c in t["clips"])  # every trial's clips exist
    assert all(len(c["id"]) == 16 and c["source"] not in c["file"] for c in m["clips"])  # names reveal nothing
    assert m["sources"][MODEL]["tries"] == 2 and "sampler" in m["sources"][MODEL]


def test_clips_are_real_mp4s_of_the_same_face_and_camera(study_dir):
    from paindiffusion.render import FaceRig, Renderer

    m = load_manifest(study_dir)
    by = {(c["window"], c["source"], len(c["tries"])): c for c in m["clips"]}
    ref = decode(study_dir / by[("w1", REFERENCE, 1)]["file"])
    model = decode(study_dir / by[("w1", MODEL, 1)]["file"])
    tries = decode(study_dir / by[("w1", MODEL, 2)]["file"])
    assert ref.shape == model.shape == (50, SIZE + STRIP, SIZE, 3) and tries.shape == (50, SIZE + STRIP, 2 * SIZE, 3)
    # the same stimulus strip under every source of a window: only the faces differ
    assert np.abs(ref[:, SIZE:].astype(float) - model[:, SIZE:]).mean() < 2.0
    mat = load_material(study_dir, "w1")
    with Renderer(SIZE) as r:
        drawn = r.render(FaceRig().deform(mat[REFERENCE][0, 10])[0]).astype(float)
    assert np.abs(ref[10, :SIZE] - drawn).mean() < 3.0  # the project's renderer drew it (H.264 is the difference)
    assert np.abs(tries[10, :SIZE, :SIZE].astype(float) - model[10, :SIZE]).mean() < 3.0  # try 0 left of try 1
    assert mat[MODEL].shape == (2, 50, 20) and mat[REFERENCE].shape == (1, 50, 20) and mat["stimulus"].shape == (50,)


def test_study_from_stimulus_files_has_no_realism_block(tmp_path):
    t = np.arange(0, 40, 0.04)
    stim = np.where((t > 25) & (t < 33), 46.0, 32.0).astype(np.float32)
    m = make_study(tmp_path / "s", tiny_model(), StudyConfig(windows=2, seconds=2.0, size=SIZE, tries=2, baselines=("ridge ARX",)),
                   stimuli=[stim, stim + 1], stimulus_names=["a", "b"], expressiveness="high", emotion="Sadness")
    assert not m["reference"] and [b["name"] for b in m["blocks"]] == ["reaction", "diversity", "overall"]
    assert [w["recording"] for w in m["windows"]] == ["a", "b"] and m["windows"][0]["start_s"] == pytest.approx(24.4, abs=0.05)
    assert m["controls"]["emotion"] == "Sadness" and m["plan"]["trials_per_participant"] == 6
    with pytest.raises(Exception, match="no realism trials"):
        observe_study(tmp_path / "s", tiny_model())


def test_study_from_a_packed_datasets_test_split(tmp_path, packed_dir):
    from paindiffusion.dataset import PackedData

    d = PackedData(packed_dir)
    test = {d.recordings[i]["name"] for i in d.split("test")}
    m = make_study(tmp_path / "s", tiny_model(), StudyConfig(windows=2, seconds=2.0, size=SIZE, tries=1, baselines=(), catch=False),
                   data=packed_dir)
    assert m["data"] == str(packed_dir.resolve()) and "test split" in m["held_out"]
    assert {w["recording"] for w in m["windows"]} <= test and [b["name"] for b in m["blocks"]] == ["realism", "reaction"]
    with pytest.raises(PainDiffusionError, match="non-overlapping"):  # one 3-minute test recording holds fewer
        make_study(tmp_path / "t", tiny_model(), StudyConfig(windows=60, seconds=10.0, size=SIZE, tries=1, baselines=(),
                                                             catch=False), data=packed_dir)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("args,words", [
    (["--windows", "0"], "--windows 0"),
    (["--seconds", "1"], "--seconds 1"),
    (["--baselines", "rules,oracle"], "unknown baseline 'oracle'"),
    (["--baselines", "rules,rules"], "listed twice"),
    (["--size", "65"], "--size 65"),
    (["--emotion", "Boredom"], "Boredom"),
    (["--expressiveness", "loud"], "loud"),
    (["--data", "d", "--stimulus", "s.csv"], "either --data or --stimulus"),
])
def test_bad_make_options_are_one_line_and_leave_nothing(tmp_path, capsys, tiny_checkpoint, args, words):
    code, out, err = cli_here(capsys, "study", "make", tmp_path / "s", "--checkpoint", tiny_checkpoint, *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_make_refuses_a_study_with_results_and_serve_a_folder_without_manifest(tmp_path, capsys, study_copy, tiny_checkpoint):
    (study_copy / "results").mkdir(exist_ok=True)
    code, _, err = cli_here(capsys, "study", "make", study_copy, "--overwrite", "--checkpoint", tiny_checkpoint)
    assert code == 2 and "already has results" in err
    code, _, err = cli_here(capsys, "study", "serve", tmp_path, "--port", "0", "--seconds", "1")
    assert code == 2 and "not a study folder" in err
    clip = next((study_copy / "clips").iterdir())
    clip.rename(clip.with_suffix(".bak"))
    code, _, err = cli_here(capsys, "study", "serve", study_copy, "--port", "0", "--seconds", "1")
    assert code == 2 and "a clip of the manifest is missing" in err
    code, _, err = cli_here(capsys, "study", "serve", study_copy, "--host", "0.0.0.0", "--access-code", "12")
    assert code == 2 and "4-40 characters" in err
    code, _, err = cli_here(capsys, "study", "analyze", study_copy, "-o", tmp_path / "r")
    assert code == 2 and "no answers" in err and not (tmp_path / "r").exists()


def test_make_through_the_cli(tmp_path, capsys, tiny_checkpoint):
    code, out, err = cli_here(capsys, "--quiet", "study", "make", tmp_path / "s", "--checkpoint", tiny_checkpoint, "--windows", "1",
                                 "--seconds", "2", "--size", "64", "--tries", "1", "--baselines", "", "--no-catch")
    assert code == 0, err
    assert "2 per participant" in out and "blocks realism, reaction;" in out  # no baseline: no overall; 1 try: no diversity
    m = load_manifest(tmp_path / "s")
    assert [b["name"] for b in m["blocks"]] == ["realism", "reaction"] and m["sources"][MODEL]["checkpoint"] == str(tiny_checkpoint.resolve())


@pytest.mark.slow  # trains five small observers twice (~10-20 s)
def test_machine_observer_answers_every_realism_trial_as_a_machine(study_copy):
    s = observe_study(study_copy, tiny_model(), recordings=4, minutes=0.6, config=FAST)
    m = load_manifest(study_copy)
    realism = [t for t in m["trials"] if t["block"] == "realism"]
    assert s["answers"] == len(realism)
    db = sqlite3.connect(study_copy / DB)
    people = db.execute("SELECT id, machine, number, finished_at FROM participants").fetchall()
    rows = db.execute("SELECT trial, sources, chosen, answer FROM answers WHERE participant = ?", (OBSERVER_ID,)).fetchall()
    db.close()
    assert people == [(OBSERVER_ID, 1, None, people[0][3])] and people[0][3] is not None
    assert sorted(r[0] for r in rows) == sorted(t["id"] for t in realism)
    for _, sources, chosen, answer in rows:
        sources = json.loads(sources)
        assert chosen == sources[0 if answer == "left" else 1]
    catch = {t["id"] for t in realism if t["catch"]}
    assert all(chosen == REFERENCE for trial, _, chosen, _ in rows if trial in catch)  # a lifeless face is never "real"
    assert {t["sources"][1] for t in realism} >= {STATIC, MODEL}
    observe_study(study_copy, tiny_model(), recordings=4, minutes=0.6, seed=1, config=FAST)  # a second run replaces the first
    db = sqlite3.connect(study_copy / DB)
    assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == len(realism)
    db.close()
    rep = write_study_report(study_copy, study_copy.parent / "report")
    assert rep["participants"]["people"] == 0 and rep["answers"] == 0  # the machine is no person
    assert {r["source"] for r in rep["machine"]} >= {MODEL, STATIC}
