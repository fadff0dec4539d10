"""``paindiffusion study serve``: the study's pages and answers over HTTP (aiohttp, the live demo's stack).

Routes (nothing else is served: not the manifest, not the database, not a directory listing):

=============================  ===========================================================================
``GET /``, ``/static/NAME``    the page and its script and style (``study/static``)
``GET /api/study``             what the first pages need: consent text, questions, whether a code is needed
``POST /api/participants``     consent + answers to the questions (+ access code) → participant id, session
``GET /api/session``           the participant's own trials (clip URLs, questions; never the sources) and
                               which are answered, so a reload resumes where it stopped
``GET /clips/NAME.mp4``        a clip of the participant's own plan
``POST /api/answers``          one answer, validated and stored at once; 201, or a 4xx with one JSON line
=============================  ===========================================================================

A session is a random token the page keeps in localStorage and sends as ``X-Study-Session``; a header (not a
cookie) is never attached by the browser to another site's request. Host and Origin are checked by the guard
every local server shares (:class:`~paindiffusion.live.guard.LocalOrigin`), the access code by :mod:`.access`. Bodies are capped at :data:`MAX_BODY` bytes (413 above).
"""

from __future__ import annotations

import math
import re
import secrets
import sys
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..errors import PainDiffusionError
from ..live.guard import LocalOrigin, is_loopback
from ..live.web import LoopThread, serve_page, start_site
from .access import AccessCode, AttemptLimiter
from .make import load_manifest
from .plan import BLOCKS, Trial, shown
from .questions import CONSENT, FREQUENCIES, MAX_CONSENT_CHARS, MAX_YEARS, ROLES, valid_answers
from .store import Store

STATIC = resources.files("paindiffusion.study") / "static"
SESSION_HEADER = "X-Study-Session"
MAX_BODY = 16 * 1024  # an answer with a long comment is < 3 KB
MAX_COMMENT = 2000
MAX_RT_MS = 3_600_000.0
CLIP_NAME = re.compile(r"[0-9a-f]{16}\.mp4")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _timestamp(v) -> str | None:
    return v if isinstance(v, str) and len(v) <= 40 else None


class StudyServer:
    """Serve ``study`` on ``host``:``port`` (0 = any free port); :meth:`start` returns the URL."""

    def __init__(self, study: str | Path, host: str = "127.0.0.1", port: int = 8100, access_code: str | None = None,
                 consent: tuple[str, ...] = CONSENT, allowed_names: tuple[str, ...] = ()):
        self.study = Path(study)
        self.manifest = load_manifest(self.study)
        self.trials = {t["id"]: Trial.from_json(t) for t in self.manifest["trials"]}
        self.rows = self.manifest["plan"]["rows"]
        self.clip_files = {f"{c['id']}.mp4": self.study / c["file"] for c in self.manifest["clips"]}
        for f in self.clip_files.values():
            if not f.is_file():
                raise PainDiffusionError("a clip of the manifest is missing; make the study again", f)
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        if not self.loopback and not access_code:
            raise PainDiffusionError("serving beyond this computer (--host) needs an access code; pass --access-code or "
                                     "let the server make one (it does so unless --access-code is empty)")
        self.code = AccessCode(access_code)
        self.consent = consent
        if sum(map(len, consent)) > MAX_CONSENT_CHARS:
            raise PainDiffusionError(f"the consent text is longer than {MAX_CONSENT_CHARS} characters; shorten it")
        self.guard = LocalOrigin(network=not self.loopback, names=allowed_names)
        self.limiter = AttemptLimiter()
        self.store: Store | None = None
        self.io: LoopThread | None = None
        self.url = None

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> str:
        self.io = LoopThread("paindiffusion-study")
        try:
            self.store = self.io.run(self._open())
            # reuse_address: a study server restarted after a crash takes its port (and its open pages) back at once
            self.runner = self.io.run(start_site(self._app(), self.host, self.port, "study serve --port", reuse_address=True))
        except BaseException:
            if self.store is not None:
                self.io.run(self._close())
            self.io.stop()
            raise
        port = self.runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        return self.url

    async def _open(self) -> Store:  # the connection lives in the loop's thread, where every request runs
        return Store(self.study)

    async def _close(self) -> None:
        self.store.close()

    def stop(self) -> None:
        try:
            self.io.run(self.runner.cleanup(), timeout=5)
            self.io.run(self._close())
        except Exception as e:  # shutting down: say so, but finish
            print(f"paindiffusion study serve: shutdown: {e}", file=sys.stderr)
        self.io.stop()

    # ---- the app ------------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.guard.middleware()])
        serve_page(app, STATIC, {"Cache-Control": "no-store"})
        app.router.add_get("/api/study", self.info)
        app.router.add_post("/api/participants", self.register)
        app.router.add_get("/api/session", self.session)
        app.router.add_get("/clips/{name}", self.clip)
        app.router.add_post("/api/answers", self.answer)
        return app

    async def info(self, _):
        return web.json_response({"study": self.manifest["study_id"], "code_required": self.code.required,
                                  "consent": list(self.consent), "roles": list(ROLES), "frequencies": list(FREQUENCIES),
                                  "max_years": MAX_YEARS, "trials": self.manifest["plan"]["trials_per_participant"]})

    async def _body(self, request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error": "the body must be JSON"}', content_type="application/json") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}', content_type="application/json")
        return body

    def _participant(self, request):
        token = request.headers.get(SESSION_HEADER, "")
        p = self.store.by_token(token) if 0 < len(token) <= 100 else None
        if p is None:
            raise web.HTTPUnauthorized(text='{"error": "no valid session; start the study from its first page"}',
                                       content_type="application/json")
        return p

    async def register(self, request):
        client = request.remote or "?"
        if self.limiter.blocked(client):
            return _error(429, "too many wrong access codes from this computer; wait a minute and try again")
        body = await self._body(request)
        if not self.code.matches(body.get("code")):
            self.limiter.fail(client)
            return _error(403, "wrong access code; ask the researcher for the code")
        if body.get("consent") is not True:
            return _error(400, "the study needs your consent to go on")
        problem = valid_answers(body.get("role"), body.get("years"), body.get("frequency"))
        if problem:
            return _error(400, problem)
        token = secrets.token_urlsafe(24)
        p = self.store.add_participant(token, body["role"], float(body["years"]), body["frequency"])
        return web.json_response({"participant": p.id, "session": token}, status=201)

    def _plan(self, number: int) -> list[tuple[Trial, bool]]:
        return [(self.trials[e["trial"]], e["flip"]) for e in self.rows[number % len(self.rows)]]

    async def session(self, request):
        p = self._participant(request)
        blocks = {b["name"]: b for b in self.manifest["blocks"]}
        trials = []
        for t, flip in self._plan(p.number):
            _, clips = shown(t, flip)
            trials.append({"trial": t.id, "block": t.block, "clips": [f"/clips/{c}.mp4" for c in clips]})
        return web.json_response({"participant": p.id, "trials": trials, "answered": sorted(self.store.answered(p.id)),
                                  "blocks": blocks})

    async def clip(self, request):
        p = self._participant(request)
        name = request.match_info["name"]
        if not CLIP_NAME.fullmatch(name) or name not in self.clip_files:
            raise web.HTTPNotFound()
        if not any(name[:-4] in t.clips for t, _ in self._plan(p.number)):
            return _error(403, "not a clip of your trials")
        return web.FileResponse(self.clip_files[name], headers={"Cache-Control": "private, max-age=86400"})

    async def answer(self, request):
        p = self._participant(request)
        body = await self._body(request)
        if body.get("participant") != p.id:
            return _error(403, "this session belongs to another participant")
        trial_id = body.get("trial")
        if trial_id not in self.trials:
            return _error(404, f"unknown trial {str(trial_id)[:20]!r}")
        plan = self._plan(p.number)
        position = next((i for i, (t, _) in enumerate(plan) if t.id == trial_id), None)
        if position is None:
            return _error(403, "that trial is not one of yours")
        trial, flip = plan[position]
        sources, clips = shown(trial, flip)
        row = {"participant": p.id, "trial": trial.id, "position": position, "block": trial.block, "window": trial.window,
               "clips": list(clips), "sources": list(sources), "shown_at": _timestamp(body.get("shown_at")),
               "answered_at": _timestamp(body.get("answered_at"))}
        problem = self._value(trial, body, sources, row)
        if problem:
            return _error(400, problem)
        if not self.store.add_answer(row):
            return _error(409, "this trial is already answered; answers cannot be changed")
        remaining = len(plan) - len(self.store.answered(p.id))
        if remaining == 0:
            self.store.finish(p.id)
        return web.json_response({"stored": trial.id, "remaining": remaining}, status=201)

    @staticmethod
    def _value(trial: Trial, body: dict, sources, row: dict) -> str | None:
        """Check the answer against its block and fill the row; the problem in one line, or None."""
        kind = BLOCKS[trial.block].kind
        answer, rt = body.get("answer"), body.get("rt_ms")
        if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not (math.isfinite(rt) and 0 <= rt <= MAX_RT_MS):
            return f"rt_ms must be the response time in milliseconds, 0-{MAX_RT_MS:.0f}"
        row["rt_ms"] = float(rt)
        if kind == "likert":
            if isinstance(answer, bool) or not isinstance(answer, int) or not 1 <= answer <= 5:
                return "a rating must be a whole number from 1 to 5"
            row.update(answer=str(answer), rating=answer)
            return None
        if answer not in ("left", "right"):
            return "the answer must be 'left' or 'right'"
        row.update(answer=answer, chosen=sources[0 if answer == "left" else 1])
        comment = body.get("comment")
        if comment is not None:
            if kind != "choice" or not isinstance(comment, str) or len(comment) > MAX_COMMENT:
                return f"a comment is text of at most {MAX_COMMENT} characters, on the overall choice only"
            row["comment"] = comment.strip() or None
        return None
