"""The demo's edit panel, server side: load a sequence, edit it, preview it beside the original, download it.

A sequence comes from a file the page uploads (what ``paindiffusion generate``, ``extract`` or ``edit`` wrote)
or from the last 30 s of the tab's own live face (the page holds those frames and sends them). An edit is
:func:`paindiffusion.edit.edit`; a preview frame is the original and the edit drawn side by side by the same rig
and renderer as ``paindiffusion render``; a download is written by :func:`paindiffusion.render.save_output`, so
the panel offers every format ``generate`` writes.

Every request passes the demo's guard (a page of another site, or a DNS name rebound to this machine, gets 403),
takes a JSON or binary body that a cross-site form cannot send, and is bounded (8 MiB, 10 minutes of frames). The work — edits, renders, files — runs in one worker thread (which also holds the preview renderer's
GL context), so the event loop that feeds the live tabs never waits for it. Errors are one line of JSON.
"""

from __future__ import annotations

import asyncio
import collections
import io
import itertools
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import PainDiffusionError
from ..render.exports import OUTPUT_SUFFIXES
from ..sequence import FPS, FaceSequence

MAX_BODY = 8 << 20  # bytes of an upload: a 30-minute facs npz is ~3 MB
MAX_FRAMES = 10 * 60 * FPS  # a demo edit of 10 minutes takes ~15 s on one core; longer ones belong to the CLI
MAX_EXTEND_S = 60.0
KEEP_SEQUENCES = 16  # loaded sequences and edits held at once (the oldest go first)


class EditPanel:
    """Routes of the edit panel (:meth:`register` adds them to the demo's aiohttp app)."""

    def __init__(self, model, size: int = 256):
        self.model, self.size = model, size
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="paindiffusion-edit")
        self.items: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._draw = None  # (rig, renderer), made in the worker thread on the first preview

    def register(self, app) -> None:
        r = app.router
        r.add_get("/api/edit/info", self._handler(self.info))
        r.add_post("/api/edit/load", self._handler(self.load, "application/octet-stream"))
        r.add_post("/api/edit/live", self._handler(self.live, "application/json"))
        r.add_post("/api/edit/run", self._handler(self.run, "application/json"))
        r.add_get("/api/edit/{id}/face/{frame}.jpg", self._handler(self.face))
        r.add_get("/api/edit/{id}/download.{ext}", self._handler(self.download))
        app.on_cleanup.append(self._close)

    async def _close(self, _app) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _handler(self, fn, content_type: str | None = None):
        """The body type checked, and a user error as {"error": one line} (status 400). Who may ask is the demo
        app's guard (:class:`~paindiffusion.live.guard.LocalOrigin`), as for every route."""
        from aiohttp import web

        async def handle(request):
            if content_type and request.content_type != content_type:
                return web.json_response({"error": f"send the body as {content_type}"}, status=415)
            try:
                return await fn(request)
            except PainDiffusionError as e:
                return web.json_response({"error": str(e)}, status=400)
        return handle

    async def _work(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _body(self, request) -> bytes:
        if (request.content_length or 0) > MAX_BODY:
            raise PainDiffusionError(f"the upload is larger than {MAX_BODY >> 20} MiB; edit long sequences with 'paindiffusion edit'")
        data = await request.content.read(MAX_BODY + 1)
        while len(data) <= MAX_BODY and (more := await request.content.read(MAX_BODY + 1 - len(data))):
            data += more
        if len(data) > MAX_BODY:
            raise PainDiffusionError(f"the upload is larger than {MAX_BODY >> 20} MiB; edit long sequences with 'paindiffusion edit'")
        return data

    def _item(self, key) -> dict:
        if key not in self.items:
            raise PainDiffusionError("that sequence is no longer held; load it again")
        return self.items[key]

    def _hold(self, seq: FaceSequence, **more) -> dict:
        """Keep a loaded sequence or an edit (refusing what the demo cannot edit) and describe it for the page."""
        if len(seq) > MAX_FRAMES:
            raise PainDiffusionError(f"the sequence has {len(seq)} frames; the demo edits up to {MAX_FRAMES // (60 * FPS)} "
                                     "minutes (use 'paindiffusion edit' for longer ones)")
        if seq.space.name != self.model.space.name:
            raise PainDiffusionError(f"the sequence is in face space {seq.space.name!r} and the demo's model in "
                                     f"{self.model.space.name!r}; edit it with 'paindiffusion edit --checkpoint'")
        key = str(next(self._ids))
        self.items[key] = {"seq": seq, **more}
        while len(self.items) > KEEP_SEQUENCES:
            self.items.popitem(last=False)
        return {"id": key, "frames": len(seq), "seconds": seq.seconds, "pspi": _rounded(seq.pspi),
                "stimulus": _rounded(seq.stimulus), "expressiveness": seq.meta.get("expressiveness"),
                "emotion": seq.meta.get("emotion")}

    # ---- routes ---------------------------------------------------------------------------------------------
    async def info(self, _request):
        from aiohttp import web

        formats = [s[1:] for s in OUTPUT_SUFFIXES if s != ".flame.npz"]  # the demo's faces are facs
        return web.json_response({"noise_levels": self.model.sampler.levels, "formats": formats,
                                  "max_seconds": MAX_FRAMES / FPS, "max_extend_s": MAX_EXTEND_S, "size": self.size})

    async def load(self, request):
        """An uploaded sequence file (?name= gives its type: .npz or .csv)."""
        from aiohttp import web

        suffix = Path(request.query.get("name", "")).suffix.lower()
        if suffix not in (".npz", ".csv"):
            raise PainDiffusionError("upload a sequence file (.npz or .csv) written by paindiffusion generate, extract or edit")
        data = await self._body(request)
        seq = await self._work(_read_sequence, data, suffix)
        return web.json_response(self._hold(seq))

    async def live(self, request):
        """The page's last seconds of live face: {"frames": [[channel values] ...], "stimulus": [...], and the
        controls they were made with}."""
        from aiohttp import web

        try:
            msg = json.loads(await self._body(request))
            frames = np.asarray(msg["frames"], np.float32)
        except (ValueError, KeyError, TypeError, RecursionError):
            raise PainDiffusionError("send {\"frames\": [[values of every channel] per frame], \"stimulus\": [°C per frame]}") from None
        if frames.ndim != 2 or not 1 <= len(frames) <= MAX_FRAMES:
            raise PainDiffusionError(f"frames must be 1-{MAX_FRAMES} rows of {self.model.space.dim} channel values")
        meta = {k: msg.get(k) for k in ("expressiveness", "emotion", "threshold", "tolerance")}
        seq = FaceSequence(self.model.space, frames, msg.get("stimulus"), None, FPS, {"source": "live face", **meta})
        return web.json_response(self._hold(seq))

    async def run(self, request):
        """{"source": id, "strength", "expressiveness", "emotion", "keep", "extend", "seed"} → the edit."""
        from aiohttp import web

        try:
            msg = json.loads(await self._body(request))
            if not isinstance(msg, dict):
                raise ValueError
        except (ValueError, RecursionError):
            raise PainDiffusionError("an edit request is a JSON object with source, strength and the new conditions") from None
        src = self._item(str(msg.get("source")))["seq"]
        extend = msg.get("extend") or 0.0
        if not isinstance(extend, (int, float)) or not 0 <= extend <= MAX_EXTEND_S:
            raise PainDiffusionError(f"extend must be 0-{MAX_EXTEND_S:g} seconds in the demo")
        options = {k: None if msg.get(k) in ("", None) else msg[k] for k in ("expressiveness", "emotion", "keep")}
        seed = msg.get("seed") if isinstance(msg.get("seed"), int) and msg["seed"] >= 0 else 0
        edited = await self._work(self._edit, src, msg.get("strength", 0.5), options, float(extend), seed)
        return web.json_response({**self._hold(edited, original=src), "original": _rounded(src.pspi),
                                  "keep_s": edited.meta["keep_s"], "levels_rerun": edited.meta["levels_rerun"]})

    def _edit(self, src: FaceSequence, strength, options: dict, extend: float, seed: int) -> FaceSequence:
        from ..edit import edit

        return edit(src, strength=strength, extend=extend, seed=seed, model=self.model, desc=None, **options)

    async def face(self, request):
        """The original (left) and the edit (right) at one frame, as a JPEG."""
        from aiohttp import web

        item = self._item(request.match_info["id"])
        try:
            i = int(request.match_info["frame"])
        except ValueError:
            raise PainDiffusionError("the frame must be a whole number") from None
        seq = item["seq"]
        if not 0 <= i < len(seq):
            raise PainDiffusionError(f"frame {i} is outside the sequence (0-{len(seq) - 1})")
        shown = [item.get("original"), seq] if item.get("original") is not None else [seq]
        body = await self._work(self._jpeg, [s.frames[min(i, len(s) - 1)] for s in shown])
        return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def _jpeg(self, frames: list[np.ndarray]) -> bytes:
        from PIL import Image

        from ..render import FaceRig, Renderer

        if self._draw is None:
            self._draw = FaceRig(), Renderer(self.size)
        rig, renderer = self._draw
        img = np.concatenate([renderer.render(rig.deform(f)[0]) for f in frames], axis=1)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    async def download(self, request):
        """The edit as a file of the type its extension names (npz, csv, mp4, arkit.json, ...)."""
        from aiohttp import web

        item = self._item(request.match_info["id"])
        suffix = "." + request.match_info["ext"].lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise PainDiffusionError(f"unknown download type; use {', '.join(s[1:] for s in OUTPUT_SUFFIXES)}")
        body = await self._work(_written, item["seq"], suffix)
        kind = "video/mp4" if suffix == ".mp4" else "application/octet-stream"
        return web.Response(body=body, content_type=kind,
                            headers={"Content-Disposition": f'attachment; filename="edited{suffix}"'})


def _rounded(values) -> list | None:
    return None if values is None else np.round(np.asarray(values, np.float64), 3).tolist()


def _read_sequence(data: bytes, suffix: str) -> FaceSequence:
    """An uploaded file read by :meth:`FaceSequence.load` (it reads paths: the bytes go to a private temporary)."""
    with tempfile.TemporaryDirectory(prefix="paindiffusion-edit-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return FaceSequence.load(path)
        except PainDiffusionError as e:
            raise PainDiffusionError(str(e).replace(f"{path}: ", "the uploaded file: ")) from None


def _written(seq: FaceSequence, suffix: str) -> bytes:
    """``seq`` written by :func:`paindiffusion.render.save_output` (the CLI's writer), returned as bytes."""
    from ..render import save_output

    with tempfile.TemporaryDirectory(prefix="paindiffusion-edit-") as tmp:
        path = save_output(Path(tmp) / f"edited{suffix}", seq, size=512)
        return path.read_bytes()
