"""End to end: a participant takes the study in Debian's headless chromium (playwright-core, as for the live demo),
served by the real StudyServer on 127.0.0.1 — consent, questions, every trial by touch and keyboard, a reload
halfway — then the rows in SQLite and ``analyze`` are checked against the answers the script gave.

The README's screenshots come from this run on a study made with the shipped model:
``STUDY=path/to/study UPDATE_SCREENSHOTS=1 pytest tests/test_study_web.py`` copies them to docs/images/."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from paindiffusion.study.report import write_study_report
from paindiffusion.study.server import StudyServer
from paindiffusion.study.store import DB

from test_live_web import ROOT, WEB, pytestmark  # noqa: F401 (pytestmark: slow, and the same chromium set-up)


@pytest.fixture(scope="module")
def taken(study_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study_web")
    study = Path(shutil.copytree(os.environ.get("STUDY", study_dir), tmp / "study"))
    shutil.rmtree(study / "results", ignore_errors=True)
    out = tmp / "shots"
    out.mkdir()
    server = StudyServer(study, port=0)
    url = server.start()
    try:
        p = subprocess.run(["node", str(WEB / "study.mjs"), url, str(out)], cwd=WEB, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
        result = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    if os.environ.get("UPDATE_SCREENSHOTS"):
        for name in result["shots"]:
            shutil.copy(out / f"{name}.png", ROOT / "docs" / "images" / f"{name}.png")
    return result, study, out


def test_the_page_takes_the_whole_study_offline(taken):
    r, study, out = taken
    assert r["outside"] == [] and r["errors"] == []  # nothing left 127.0.0.1, no page error
    plan = json.loads((study / "manifest.json").read_text())["plan"]
    assert len(r["given"]) == plan["trials_per_participant"]
    assert {g["block"] for g in r["given"]} == {"realism", "reaction", "diversity", "overall"}
    assert r["resumed"]["answered"] == 4 and r["resumed"]["progress"].startswith("5 of ")  # the reload resumed
    for name in ("study_consent", "study_questions", "study_realism", "study_reaction", "study_diversity",
                 "study_overall", "study_done"):
        assert (out / f"{name}.png").stat().st_size > 5_000, name


def test_sqlite_holds_exactly_the_answers_given(taken):
    r, study, _ = taken
    db = sqlite3.connect(study / DB)
    person = db.execute("SELECT id, role, years, frequency, finished_at, machine FROM participants").fetchall()
    rows = db.execute("SELECT trial, answer, chosen, rating, comment, rt_ms, sources, clips FROM answers").fetchall()
    db.close()
    assert person == [(r["participant"], "nurse", 7.0, "weekly", person[0][4], 0)] and person[0][4] is not None
    stored = {row[0]: row for row in rows}
    assert sorted(stored) == sorted(g["trial"] for g in r["given"])
    for g in r["given"]:
        trial, answer, chosen, rating, comment, rt, sources, clips = stored[g["trial"]]
        assert answer == str(g["answer"]) and rt > 0
        if g["block"] in ("reaction", "diversity"):
            assert rating == g["answer"] and chosen is None
        else:
            assert chosen == json.loads(sources)[0]  # the left clip's source
        assert (comment == "more mouth and nose-wrinkle detail") == (g["block"] == "overall")
        assert len(json.loads(clips)) == len(json.loads(sources))


def test_analyze_reports_the_answers_and_the_left_bias(taken, tmp_path):
    r, study, _ = taken
    rep = write_study_report(study, tmp_path / "report")
    sided = [g for g in r["given"] if g["answer"] == "left"]
    pb = rep["position_bias"]
    assert (pb["left"], pb["answers"]) == (len(sided), len(sided))
    assert pb["participants"][0]["flagged"] and pb["participants"][0]["participant"] == r["participant"]
    ratings = sorted(g["answer"] for g in r["given"] if g["block"] in ("reaction", "diversity"))
    assert sorted(x for row in rep["ratings"] for v, n in zip(range(1, 6), row["counts"]) for x in [v] * n) == ratings
    assert sum(p["trials"] for p in rep["preferences"]) == len(sided)
    assert "position" in (tmp_path / "report" / "report.md").read_text().lower()
