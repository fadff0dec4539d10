"""``paindiffusion demo``: a local web app (aiohttp on 127.0.0.1) with a live face that reacts to heat.

Every page and script comes from ``live/static`` in the package (no CDN, no network). Each tab opens one
WebSocket and is one patient of the shared :class:`~paindiffusion.live.generator.LiveGenerator`, so all tabs
are generated in ONE batched model call per step. Per frame the tab gets one binary message: a 4-byte
little-endian length, a JSON header (channels, PSPI, stimulus, controls, lag, latency) and a JPEG image.

Why the server renders the face and sends images (measured on the project's 2-core machine, 256² frames):
rig + our moderngl renderer + JPEG encode cost 0.3 + 1.7 + 1.0 ≈ 3 ms per frame, 10 KB. Drawing in the
browser would still need 0.9 ms per frame here (rig, normals, skin folds: 13 KB of vertices) plus a second,
WebGL copy of the renderer's shaders, colours and eye/teeth logic that could drift from ``paindiffusion
render``, and a browser WebGL that on machines like this one is itself software-rendered. With images, the
page shows exactly the pixels of ``paindiffusion render`` (one definition of mesh, rig and colours:
:mod:`paindiffusion.render`), and 8 tabs cost ≈ 0.6 of one core, which the 25 fps budget allows.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import random
import struct
import sys
import threading
import time
from importlib import resources

from ..biovid import BASELINE_C
from ..controls import CONTROLS
from ..errors import PainDiffusionError
from ..facespace import EMOTIONS
from .editing import EditPanel
from .generator import Frame, LiveGenerator
from .guard import LocalOrigin, MessageBudget, parse_bounded_json
from .outputs import frame_json
from .web import LoopThread, serve_page, start_site

STATIC = resources.files("paindiffusion.live") / "static"
SEND_QUEUE = 8  # frames a tab may fall behind before its oldest are dropped (8 × 40 ms)
STALE_S = 0.12  # a frame that waited 120 ms for the render thread is skipped (it would only add lag)
HEAT_RANGE_C = (30.0, 50.0)  # the page's heat slider (the official demo's); within biovid.TEMPERATURE_RANGE_C


class FaceImages:
    """Renders each viewer's frames to JPEG in one thread (the GL context lives there) and hands them to the
    asyncio loop. A tab whose send queue is full, or a frame already stale, is skipped (dropped, not rendered)."""

    def __init__(self, size: int, deliver, quality: int = 90):
        self.size, self.deliver, self.quality = size, deliver, quality
        self.jobs: collections.deque = collections.deque(maxlen=256)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="paindiffusion-render", daemon=True)
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None:
            raise self.error

    def submit(self, tab, frame: Frame) -> None:
        self.jobs.append((tab, frame, time.monotonic()))
        self._wake.set()

    def _run(self) -> None:
        from PIL import Image

        from ..render import FaceRig, Renderer

        try:
            rig, renderer = FaceRig(), Renderer(self.size)
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            self._wake.wait()
            self._wake.clear()
            while self.jobs:
                tab, f, queued = self.jobs.popleft()
                if tab is None:
                    return
                if tab.closed or tab.full() or time.monotonic() - queued > STALE_S:
                    tab.dropped += 1  # an overloaded machine shows fewer frames, never older ones
                    continue
                buf = io.BytesIO()
                Image.fromarray(renderer.render(rig.deform(f.values)[0])).save(buf, format="JPEG", quality=self.quality)
                head = json.dumps({**frame_json(f), "size": self.size}, separators=(",", ":")).encode()
                self.deliver(tab, struct.pack("<I", len(head)) + head + buf.getvalue())

    def close(self) -> None:
        self.jobs.append((None, None, 0.0))
        self._wake.set()


class Tab:
    """One browser tab: its patient and its bounded queue of frames to send."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue(SEND_QUEUE)
        self.closed, self.dropped, self.patient = False, 0, None

    def full(self) -> bool:
        return self.queue.full()

    def put(self, data: bytes) -> None:  # on the loop
        if self.closed:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(data)


class DemoServer:
    """The demo's web server; :meth:`start` binds 127.0.0.1:``port`` (0 = any free port) and returns the URL.

    Every route answers only this machine's own page (:class:`~paindiffusion.live.guard.LocalOrigin`); a
    WebSocket client that is not a browser adds ``?token=`` :attr:`token` (:attr:`client_url`). Each tab has a
    :class:`~paindiffusion.live.guard.MessageBudget` (its ``clock`` is injectable for tests), every message is parsed
    within bounds, and its "new patient" requests are coalesced (:meth:`LiveGenerator.new_patient`)."""

    def __init__(self, model, port: int = 8000, size: int = 256, max_viewers: int = 8, token: str | None = None,
                 clock=time.monotonic):
        self.model, self.port, self.size, self.clock = model, port, size, clock
        self.generator = LiveGenerator(model, max_patients=max_viewers)
        self.guard = LocalOrigin(token)
        self.io = LoopThread("paindiffusion-demo")
        self.images: FaceImages | None = None
        self.url = self.client_url = None
        self.closed_floods = 0  # connections closed for flooding (the benchmark reports it)

    @property
    def token(self) -> str:
        return self.guard.token

    def _info(self) -> dict:
        """What the page reads (app.js, edit.js): every range and default it shows comes from here, so the page
        holds none of its own: the expressiveness slider spans the model's trained range, the heat slider
        :data:`HEAT_RANGE_C` from the baseline (it decays back there), the patient's default pain range (threshold,
        tolerance) is the model's."""
        spec = self.model.spec
        return {"emotions": list(EMOTIONS), "presets": {k: float(v) for k, v in spec.presets.items()},
                "expressiveness_range": [float(v) for v in spec.expressiveness_range], "heat_range": list(HEAT_RANGE_C),
                "baseline": BASELINE_C, "fps": self.generator.fps, "size": self.size,
                "channels": list(self.model.space.channels),
                "reads_pain_range": spec.calibrated, "pain_range": [float(v) for v in spec.calibration]}

    def _app(self):
        from aiohttp import WSCloseCode, WSMsgType, web

        async def info(_):
            return web.json_response(self._info())

        async def stats(_):
            return web.json_response(self.generator.stats())

        async def socket(request):
            # Frames up to 64 KiB are read and, past MAX_LINE_BYTES, refused in one line (the tab stays); only a
            # bigger frame closes the connection (aiohttp's 1009), as no page of ours sends one.
            ws = web.WebSocketResponse(heartbeat=10, max_msg_size=1 << 16)
            await ws.prepare(request)
            tab = Tab()
            loop = asyncio.get_running_loop()
            try:
                tab.patient = self.generator.join(lambda f: self.images.submit(tab, f), seed=random.randrange(1 << 31))
            except PainDiffusionError as e:
                await ws.send_json({"error": str(e)})
                await ws.close()
                return ws
            sender = loop.create_task(self._send(ws, tab))
            budget = MessageBudget(clock=self.clock)
            try:
                async for msg in ws:
                    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        if not budget.take():
                            if budget.flooding:
                                self.closed_floods += 1
                                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"message flood")
                                break
                            if budget.refused_in_a_row == 1:
                                await ws.send_json({"error": f"more than {budget.rate:g} messages per second; "
                                                             "the extra ones are dropped"})
                            continue
                        err = self._control(tab, msg.data) if msg.type == WSMsgType.TEXT else \
                            "control messages are JSON text, not binary"
                        if err:
                            await ws.send_json({"error": err})
                    elif msg.type == WSMsgType.ERROR:
                        break
            finally:
                tab.closed = True
                self.generator.leave(tab.patient)
                sender.cancel()
            return ws

        app = web.Application(middlewares=[self.guard.middleware()])
        serve_page(app, STATIC)
        app.router.add_get("/api/info", info)
        app.router.add_get("/api/stats", stats)
        app.router.add_get("/ws", socket)
        EditPanel(self.model, self.size).register(app)  # the edit panel's routes (live/editing.py)
        return app

    def _control(self, tab: Tab, text: str) -> str | None:
        """A tab's control message: {"stimulus"|"expressiveness"|"emotion": value, "seq": n} or {"new_patient": seed}."""
        arrived = self.generator.clock()  # on the clock the generator measures latency with
        try:
            msg = parse_bounded_json(text)
            if not isinstance(msg, dict):
                return "control messages are JSON objects"
            if "new_patient" in msg:
                seed = msg["new_patient"]
                ok = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 1 << 63
                self.generator.new_patient(tab.patient, seed if ok else random.randrange(1 << 31))
                return None
            controls = {k: msg[k] for k in CONTROLS if k in msg}
            if not controls:
                return f"a control message needs {', '.join(CONTROLS)} or new_patient"
            seq = msg.get("seq")
            ok = isinstance(seq, int) and not isinstance(seq, bool)
            tab.patient.set(**controls, arrived=arrived, tag=seq if ok else None)
        except (PainDiffusionError, ValueError, ArithmeticError) as e:  # bad input: one line to the tab, never a crash
            return " ".join(str(e).split())[:300]
        return None

    async def _send(self, ws, tab: Tab) -> None:
        try:
            while True:
                await ws.send_bytes(await tab.queue.get())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return

    def start(self) -> str:
        loop = self.io.loop
        self.images = FaceImages(self.size, lambda tab, data: loop.call_soon_threadsafe(tab.put, data))
        try:
            self.runner = self.io.run(start_site(self._app(), "127.0.0.1", self.port, "demo --port", "paindiffusion demo"))
        except BaseException:
            self.images.close()
            self.io.stop()
            raise
        port = self.runner.addresses[0][1]
        self.generator.start()
        self.url = f"http://127.0.0.1:{port}/"
        self.client_url = f"ws://127.0.0.1:{port}/ws?token={self.token}"
        return self.url

    def stop(self) -> None:
        self.generator.stop()
        if self.images is not None:
            self.images.close()
        try:
            self.io.run(self.runner.cleanup(), timeout=5)
        except Exception as e:  # shutting down: say so, but finish
            print(f"paindiffusion demo: shutdown: {e}", file=sys.stderr)
        self.io.stop()
