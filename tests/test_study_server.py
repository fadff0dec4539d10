"""``study serve`` over real sockets on 127.0.0.1: a participant's way through, resuming, two participants at once,
a server killed mid-study and restarted, and tampered requests that are refused and change nothing."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from conftest import cli_process
from paindiffusion.errors import PainDiffusionError
from paindiffusion.live.guard import LocalOrigin
from paindiffusion.study.access import AttemptLimiter
from paindiffusion.study.make import load_manifest
from paindiffusion.study.server import MAX_BODY, StudyServer
from paindiffusion.study.store import DB

QUESTIONS = {"consent": True, "role": "nurse", "years": 6, "frequency": "weekly"}


class Client:
    """HTTP to the study server, as the page talks to it (JSON bodies, the session in X-Study-Session)."""

    def __init__(self, url: str, session: str | None = None):
        self.url, self.session = url.rstrip("/"), session

    def call(self, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        h = {"Content-Type": "application/json", **({"X-Study-Session": self.session} if self.session else {}), **(headers or {})}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, headers=h, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                content = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            content, status = e.read(), e.code
        try:
            return status, json.loads(content)
        except ValueError:
            return status, content

    def join(self, **answers) -> dict:
        status, body = self.call("/api/participants", {**QUESTIONS, **answers})
        assert status == 201, body
        self.session = body["session"]
        self.participant = body["participant"]
        status, plan = self.call("/api/session")
        assert status == 200
        return plan

    def answer(self, trial: dict, value=None, **extra):
        value = value if value is not None else (3 if trial["block"] in ("reaction", "diversity") else "left")
        return self.call("/api/answers", {"participant": self.participant, "trial": trial["trial"], "answer": value,
                                          "rt_ms": 1500, "shown_at": "2026-01-01T10:00:00.000Z", **extra})


def dump(study) -> tuple[list, list]:
    db = sqlite3.connect(study / DB)
    try:
        return (db.execute("SELECT * FROM participants ORDER BY id").fetchall(),
                db.execute("SELECT * FROM answers ORDER BY participant, trial").fetchall())
    finally:
        db.close()


@pytest.fixture
def served(study_copy):
    server = StudyServer(study_copy, port=0)
    url = server.start()
    yield study_copy, url
    server.stop()


def test_a_participant_takes_the_study_and_a_reload_resumes(served):
    study, url = served
    c = Client(url)
    status, info = c.call("/api/study")
    assert status == 200 and not info["code_required"] and info["trials"] == 9
    plan = c.join()
    trials = plan["trials"]
    assert len(trials) == 9 and plan["answered"] == []
    assert {t["block"] for t in trials} == {"realism", "reaction", "diversity", "overall"}
    assert "sources" not in json.dumps(plan)  # which clip is real is never sent to the page
    status, clip = c.call(trials[0]["clips"][0])
    assert status == 200 and clip[4:8] == b"ftyp"  # an mp4
    for t in trials[:4]:
        assert c.answer(t)[0] == 201
    again = Client(url, c.session)  # the page after a reload: same session from localStorage
    status, plan2 = again.call("/api/session")
    assert status == 200 and sorted(plan2["answered"]) == sorted(t["trial"] for t in trials[:4])
    assert [t["trial"] for t in plan2["trials"]] == [t["trial"] for t in trials]  # the same plan, the same sides
    for t in trials[4:]:
        status, body = c.answer(t, comment="more mouth movement" if t["block"] == "overall" else None)
        assert status == 201
    assert body["remaining"] == 0
    people, answers = dump(study)
    assert people[0][0] == c.participant and people[0][7] is not None  # finished_at
    assert len(answers) == 9
    rows = {a[1]: a for a in answers}
    manifest = load_manifest(study)
    for t in trials:  # the stored clips are the ones shown, in the order shown
        assert json.loads(rows[t["trial"]][5]) == [c.split("/")[-1][:-4] for c in t["clips"]]
        tr = next(x for x in manifest["trials"] if x["id"] == t["trial"])
        assert sorted(json.loads(rows[t["trial"]][6])) == sorted(tr["sources"])


def test_tampered_requests_are_refused_and_change_nothing(served):
    study, url = served
    a, b = Client(url), Client(url)
    plan_a, plan_b = a.join(), b.join(role="physician")
    likert = next(t for t in plan_a["trials"] if t["block"] == "reaction")
    choice = next(t for t in plan_a["trials"] if t["block"] == "realism")
    assert a.answer(choice)[0] == 201
    all_trials = {t["id"] for t in load_manifest(study)["trials"]}
    not_mine = sorted(all_trials - {t["trial"] for t in plan_a["trials"]})[0]
    not_my_clip = next(c for t in plan_b["trials"] for c in t["clips"] if c not in {x for t in plan_a["trials"] for x in t["clips"]})
    before = dump(study)
    port = url.rstrip("/").rsplit(":", 1)[1]
    post = dict(participant=a.participant, rt_ms=1200)
    cases = [
        (a.call("/api/answers", {**post, "trial": "t999", "answer": "left"}), 404, "unknown trial"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 9}), 400, "1 to 5"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": "3"}), 400, "1 to 5"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": True}), 400, "1 to 5"),
        (a.call("/api/answers", {**post, "trial": choice["trial"], "answer": "middle"}), 400, "left"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 3, "rt_ms": -5}), 400, "rt_ms"),
        (a.call("/api/answers", raw=b'{"participant": "%s", "trial": "%s", "answer": 3, "rt_ms": NaN}'
                % (a.participant.encode(), likert["trial"].encode())), 400, "rt_ms"),
        (a.call("/api/answers", {**post, "participant": b.participant, "trial": likert["trial"], "answer": 3}), 403, "another participant"),
        (a.call("/api/answers", {**post, "trial": not_mine, "answer": "left"}), 403, "not one of yours"),
        (a.call("/api/answers", {**post, "trial": choice["trial"], "answer": "right"}), 409, "already answered"),
        (a.call("/api/answers", {**post, "trial": choice["trial"], "answer": "left", "comment": "x"}), 400, "overall choice only"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 3, "comment": "x" * (MAX_BODY * 8)}), 413, ""),
        (a.call("/api/answers", raw=b"not json"), 400, "JSON"),
        (a.call("/api/answers", [1, 2]), 400, "JSON object"),
        (Client(url).call("/api/answers", {**post, "trial": likert["trial"], "answer": 3}), 401, "no valid session"),
        (Client(url, "forged-token").call("/api/answers", {**post, "trial": likert["trial"], "answer": 3}), 401, "no valid session"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 3}, {"Host": f"evil.example:{port}"}), 403, "IP address"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 3}, {"Origin": "http://evil.example"}), 403, "other web pages"),
        (a.call("/api/answers", {**post, "trial": likert["trial"], "answer": 3}, {"Sec-Fetch-Site": "cross-site"}), 403, "other web pages"),
        (a.call("/api/participants", {**QUESTIONS, "consent": False}), 400, "consent"),
        (a.call("/api/participants", {**QUESTIONS, "years": 200}), 400, "years"),
        (a.call("/api/participants", {**QUESTIONS, "role": "<script>"}), 400, "role"),
        (Client(url).call(not_my_clip), 401, ""),
        (a.call(not_my_clip), 403, "not a clip of your trials"),
        (a.call("/manifest.json"), 404, ""),
        (a.call("/" + DB), 404, ""),
        (a.call("/static/..%2Fmanifest.json"), 404, ""),
        (a.call("/clips/../manifest.json"), 404, ""),
    ]
    for (status, body), want, words in cases:
        assert status == want, (want, words, body)
        if words:
            assert words in body["error"]
    assert dump(study) == before  # nothing was stored or changed
    c = Client(url)  # and the server still serves a well-behaved participant
    assert c.answer(c.join()["trials"][0])[0] == 201


def test_two_participants_answering_at_once_lose_nothing(served):
    study, url = served
    clients = [Client(url), Client(url)]
    plans = [c.join() for c in clients]
    errors = []

    def take(c, plan):
        for t in plan["trials"]:
            status, body = c.answer(t)
            if status != 201:
                errors.append(body)

    threads = [threading.Thread(target=take, args=(c, p)) for c, p in zip(clients, plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    people, answers = dump(study)
    assert len(answers) == 18 and all(p[7] is not None for p in people)  # both finished
    assert {a[0] for a in answers} == {c.participant for c in clients}


def test_access_code_and_the_limit_on_wrong_codes(study_copy):
    with pytest.raises(PainDiffusionError, match="access code"):
        StudyServer(study_copy, host="0.0.0.0", port=0)  # refused before anything listens
    now = [0.0]
    server = StudyServer(study_copy, port=0, access_code="482913")
    server.limiter = AttemptLimiter(limit=3, period_s=60, clock=lambda: now[0])
    url = server.start()
    try:
        c = Client(url)
        assert c.call("/api/study")[1]["code_required"] is True
        assert c.call("/api/participants", QUESTIONS)[0] == 403  # no code
        for _ in range(2):
            status, body = c.call("/api/participants", {**QUESTIONS, "code": "000000"})
            assert status == 403 and "wrong access code" in body["error"]
        status, body = c.call("/api/participants", {**QUESTIONS, "code": "482913"})
        assert status == 429  # three wrong codes: this computer waits, even with the right one
        now[0] += 61
        assert c.call("/api/participants", {**QUESTIONS, "code": " 482913 "})[0] == 201
        people, _ = dump(study_copy)
        assert len(people) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("host,port,loopback,ok", [
    ("127.0.0.1:8100", 8100, True, True), ("localhost:8100", 8100, True, True), ("[::1]:8100", 8100, True, True),
    ("127.0.0.1:8101", 8100, True, False), ("192.168.1.20:8100", 8100, True, False), ("evil.example:8100", 8100, True, False),
    ("192.168.1.20:8100", 8100, False, True), ("evil.example:8100", 8100, False, False), ("", 8100, True, False),
    ("127.0.0.1:80x", 8100, True, False), ("[::1", 8100, True, False), ("127.0.0.1", 80, True, True),
])
def test_host_header_rules(host, port, loopback, ok):
    assert LocalOrigin(network=not loopback).host_ok(host, port) is ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(study, port):
    p = cli_process("study", "serve", study, "--port", port, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert f"127.0.0.1:{port}" in line, (line, p.stderr.read() if p.poll() is not None else "")
    return p


@pytest.mark.slow  # two real server processes, ~4 s each to start (torch is imported with the live stack)
def test_server_killed_mid_study_and_restarted_loses_no_answer(study_copy):
    port = _free_port()
    p = _serve(study_copy, port)
    try:
        c = Client(f"http://127.0.0.1:{port}/")
        trials = c.join()["trials"]
        for t in trials[:5]:
            assert c.answer(t)[0] == 201
    finally:
        p.send_signal(signal.SIGKILL)  # no clean shutdown: as a crash or a pulled plug
        p.wait(10)
    assert len(dump(study_copy)[1]) == 5
    p = _serve(study_copy, port)  # the same port: the open page carries on
    try:
        status, plan = c.call("/api/session")
        assert status == 200 and len(plan["answered"]) == 5
        for t in trials[5:]:
            assert c.answer(t)[0] == 201
        assert c.answer(trials[0])[0] == 409  # a retry of an answer stored before the crash is not stored twice
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    people, answers = dump(study_copy)
    assert len(answers) == 9 and people[0][7] is not None


def test_own_consent_text_is_what_the_page_gets(study_copy, tmp_path):
    from paindiffusion.cli_study import _consent

    f = tmp_path / "consent.txt"
    f.write_text("\ufeffOur ethics board's first   paragraph\nwraps here.\n\n\nSecond paragraph.\n", encoding="utf-8")
    text = _consent(f)
    assert text == ("Our ethics board's first paragraph wraps here.", "Second paragraph.")
    server = StudyServer(study_copy, port=0, consent=text)
    url = server.start()
    try:
        assert Client(url).call("/api/study")[1]["consent"] == list(text)
    finally:
        server.stop()
    f.write_text("  \n\n")
    with pytest.raises(PainDiffusionError, match="empty"):
        _consent(f)
    f.write_bytes(b"\xff\xfe bad")
    with pytest.raises(PainDiffusionError, match="UTF-8"):
        _consent(f)
