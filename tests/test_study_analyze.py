"""``study analyze`` on a small table of answers whose numbers are computed by hand below, then the report folder
written from a real SQLite database (report.md/.html/.json, answers.csv, participants.csv, figures)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from paindiffusion.errors import PainDiffusionError
from paindiffusion.study.analyze import analyse, binomial_two_sided, rate_summary, wilson
from paindiffusion.study.report import write_study_report
from paindiffusion.study.store import Store

PD, RULES, REF, STATIC = "PainDiffusion", "rules given the controls", "reference", "static face"
MANIFEST = {
    "format": 1, "study_id": "hand", "held_out": "a hand-made table", "generators": [PD, RULES], "seed": 0,
    "sources": {PD: {"name": "tiny"}}, "clips": [], "blocks": [], "plan": {"trials_per_participant": 5, "cycle": 1, "rows": []},
    "trials": [
        {"id": "t1", "block": "realism", "window": "w1", "sources": [REF, PD], "clips": ["a", "b"]},
        {"id": "t2", "block": "realism", "window": "w2", "sources": [REF, PD], "clips": ["c", "d"]},
        {"id": "t3", "block": "realism", "window": "w3", "sources": [REF, RULES], "clips": ["e", "f"]},
        {"id": "t4", "block": "reaction", "window": "w1", "sources": [PD], "clips": ["b"]},
        {"id": "t5", "block": "overall", "window": "w1", "sources": [PD, RULES], "clips": ["b", "g"]},
        {"id": "t6", "block": "realism", "window": "w9", "sources": [REF, STATIC], "clips": ["h", "i"], "catch": True},
    ],
}
PEOPLE = [("P001", "nurse", 3.0, "weekly"), ("P002", "physician", 20.0, "daily"), ("P003", "nurse", 8.0, "weekly")]
# participant, trial, sources as shown (left, right), answer
ANSWERS = [
    ("P001", "t1", [PD, REF], "left"), ("P001", "t2", [REF, PD], "left"), ("P001", "t4", [PD], 4),
    ("P001", "t5", [PD, RULES], "left"), ("P001", "t6", [REF, STATIC], "left"),
    ("P002", "t1", [REF, PD], "right"), ("P002", "t2", [PD, REF], "left"), ("P002", "t4", [PD], 2),
    ("P002", "t5", [RULES, PD], "left"), ("P002", "t6", [STATIC, REF], "left"),
    ("P003", "t1", [REF, PD], "left"), ("P003", "t2", [PD, REF], "right"), ("P003", "t3", [RULES, REF], "left"),
    ("P003", "t4", [PD], 5), ("P003", "t5", [PD, RULES], "right"),
    ("observer", "t1", [REF, PD], "left"), ("observer", "t2", [PD, REF], "right"), ("observer", "t3", [REF, RULES], "right"),
]


def rows():
    out = []
    for k, (p, t, shown, ans) in enumerate(ANSWERS):
        side = isinstance(ans, str)
        out.append({"participant": p, "trial": t, "position": k, "block": next(x["block"] for x in MANIFEST["trials"] if x["id"] == t),
                    "window": "w", "clips": ["x"] * len(shown), "sources": shown, "answer": str(ans),
                    "chosen": shown[0 if ans == "left" else 1] if side else None, "rating": None if side else ans,
                    "comment": None, "rt_ms": 1000.0, "shown_at": None, "answered_at": None})
    return out


def people():
    humans = [{"id": i, "number": n, "machine": 0, "role": r, "years": y, "frequency": f, "finished_at": "x"}
              for n, (i, r, y, f) in enumerate(PEOPLE)]
    return humans + [{"id": "observer", "number": None, "machine": 1, "role": None, "years": None, "frequency": None, "finished_at": "x"}]


def test_exact_binomial_and_wilson_by_hand():
    assert binomial_two_sided(3, 6) == 1.0  # 2·(1+6+15+20)/64 > 1
    assert binomial_two_sided(9, 12) == pytest.approx(2 * (1 + 12 + 66 + 220) / 4096)
    assert binomial_two_sided(0, 8) == pytest.approx(2 / 256)
    assert math.isnan(binomial_two_sided(0, 0))
    lo, hi = wilson(0, 2)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.6576, abs=1e-4)
    lo, hi = wilson(1, 1)
    assert lo == pytest.approx(0.2065, abs=1e-4) and hi == pytest.approx(1.0)


def test_bootstrap_over_participants_on_cases_with_known_quantiles():
    s = rate_summary({"a": (0, 2), "b": (2, 2)})  # resampled means take 0, ½, 1 with chances ¼, ½, ¼
    assert (s["rate"], s["lo"], s["hi"]) == (0.5, 0.0, 1.0)
    assert s["sd"] == pytest.approx(math.sqrt(0.5)) and (s["chosen"], s["trials"]) == (2, 4)
    s = rate_summary({"a": (1, 4), "b": (2, 8), "c": (3, 12)})  # everyone 25 %: the interval is the point
    assert (s["rate"], s["lo"], s["hi"], s["sd"]) == (0.25, 0.25, 0.25, 0.0)


def test_hand_computed_table():
    rep = analyse(MANIFEST, people(), rows())
    pref = {(r["block"], r["source"], r["catch"]): r for r in rep["preferences"]}
    pd = pref[("realism", PD, False)]  # per participant 1/2, 2/2, 0/2
    assert (pd["rate"], pd["sd"], pd["chosen"], pd["trials"], pd["participants"]) == (0.5, 0.5, 3, 6, 3)
    assert pd["p_binomial"] == 1.0 and 0.0 <= pd["lo"] <= 0.5 <= pd["hi"] <= 1.0
    rules = pref[("realism", RULES, False)]
    assert (rules["rate"], rules["trials"], rules["participants"]) == (1.0, 1, 1) and math.isnan(rules["sd"])
    assert math.isnan(rules["lo"]) and math.isnan(rules["hi"])  # one participant: no interval over participants
    overall = pref[("overall", PD, False)]  # chose the model: 1/1, 0/1, 0/1
    assert overall["rate"] == pytest.approx(1 / 3) and overall["sd"] == pytest.approx(math.sqrt(1 / 3))
    assert overall["against"] == RULES and overall["p_binomial"] == 1.0
    assert pref[("realism", STATIC, True)]["trials"] == 2  # the catch trials are counted apart
    (reaction,) = rep["ratings"]  # 4, 2, 5
    assert reaction["mean"] == pytest.approx(11 / 3) and reaction["pooled_sd"] == pytest.approx(math.sqrt(7 / 3))
    assert (reaction["median"], reaction["counts"], reaction["answers"]) == (4.0, [0, 1, 0, 1, 1], 3)
    pb = rep["position_bias"]  # humans: left 4/4, 3/4, 2/4
    assert (pb["left"], pb["answers"]) == (9, 12) and pb["p_binomial"] == pytest.approx(2 * 299 / 4096)
    per = {x["participant"]: x for x in pb["participants"]}
    assert per["P001"]["flagged"] and not per["P002"]["flagged"] and not per["P003"]["flagged"]
    assert per["P002"]["p_binomial"] == pytest.approx(10 / 16)
    assert rep["catch"] == {"passed": 1, "failed": ["P002"]}
    assert [r["block"] for r in rep["preferences"]] == ["realism"] * 3 + ["overall"]  # in the study's block order
    groups = {(g["by"], g["group"]): g for g in rep["groups"]}
    assert groups[("role", "nurse")]["rate"] == 0.25 and groups[("role", "physician")]["rate"] == 1.0
    assert groups[("clinical experience", "under 5 years")]["rate"] == 0.5
    assert groups[("clinical experience", "15 years or more")]["participants"] == 1
    machine = {m["source"]: m for m in rep["machine"]}
    assert (machine[PD]["chosen"], machine[PD]["trials"], machine[RULES]["rate"]) == (0, 2, 1.0)
    assert rep["participants"]["machines"] == ["observer"] and rep["answers"] == 15  # the machine is not a person


def test_failed_catch_can_be_excluded():
    rep = analyse(MANIFEST, people(), rows(), exclude_failed_catch=True)
    pd = next(r for r in rep["preferences"] if r["block"] == "realism" and r["source"] == PD)
    assert pd["rate"] == 0.25 and pd["participants"] == 2 and rep["participants"]["excluded_failed_catch"] == ["P002"]


def test_report_folder_from_a_real_database(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "manifest.json").write_text(json.dumps(MANIFEST))
    store = Store(study)
    for i, role, years, freq in PEOPLE:
        p = store.add_participant(f"token-{i}", role, years, freq)
        assert p.id == i
    store.set_machine("observer", "{}", [r for r in rows() if r["participant"] == "observer"])
    for r in rows():
        if r["participant"] != "observer":
            assert store.add_answer(r)
    assert not store.add_answer(rows()[0])  # a replay is refused
    store.close()
    out = tmp_path / "report"
    rep = write_study_report(study, out)
    assert rep["preferences"][0]["participants"] >= 1
    for f in ("report.md", "report.html", "report.json", "answers.csv", "participants.csv", "images/preferences.png",
              "images/ratings.png"):
        assert (out / f).is_file(), f
    with open(out / "answers.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(ANSWERS) and {r["participant"] for r in table} == {"P001", "P002", "P003", "observer"}
    assert [r["answer"] for r in table if r["participant"] == "P001"] == ["left", "left", "4", "left", "left"]
    md = (out / "report.md").read_text()
    assert "50.0 % ± 50.0 %" in md and "Flagged (one side only, or p < 0.01): P001" in md and "Machine observer" in md
    assert json.loads((out / "report.json").read_text())["catch"]["failed"] == ["P002"]
    write_study_report(study, out)  # an earlier study report is replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(PainDiffusionError, match="not an earlier study report"):
        write_study_report(study, tmp_path / "other")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "manifest.json").write_text(json.dumps(MANIFEST))
    with pytest.raises(PainDiffusionError, match="no answers yet"):
        write_study_report(fresh, tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
