"""Where live frames go: OSC (FACS addresses or the VMC protocol's ARKit blendshapes), a WebSocket server
(one JSON object per frame) and stdout (JSON lines). Several at once; each is a sink of
:class:`~paindiffusion.live.generator.LiveGenerator` and never blocks it: a lost client or receiver is
reported once and the stream goes on.

OSC addresses of ``--format facs`` (one bundle per frame; with ``--batch N`` > 1 every address gets the
patient's number after ``/paindiffusion``, e.g. ``/paindiffusion/1/pspi``):

==============================  ======================================================================
``/paindiffusion/frame``        int: frame number (25 per second)
``/paindiffusion/au/<N>``       float 0-1: action unit N's intensity / 5 (N = 1, 2, 4, 5, ..., 43)
``/paindiffusion/head``         3 floats: head pitch, yaw, roll in degrees
``/paindiffusion/pspi``         float: Prkachin-Solomon pain intensity of the frame (0-16)
``/paindiffusion/stimulus``     float: the heat (°C) the frame was made with
==============================  ======================================================================

``--format arkit`` sends what VSeeFace and other VMC receivers read: one ``/VMC/Ext/Blend/Val name value``
per ARKit-52 blendshape (the same mapping as ``.arkit.json`` exports) and then ``/VMC/Ext/Blend/Apply``.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from ..errors import PainDiffusionError
from ..facespace import FACS_AUS
from ..render.exports import ARKIT_NAMES, arkit_from_facs
from .generator import Frame
from .guard import LocalOrigin, Once, host_port
from .web import LoopThread, start_site

FORMATS = ("facs", "arkit")


def frame_json(f: Frame) -> dict:
    """One frame as a JSON-ready dict: every channel of the face space by name, PSPI, stimulus, controls."""
    def num(x, nd):
        return None if x is None or not math.isfinite(x) else round(float(x), nd)
    return {"patient": f.patient, "frame": f.index, "stimulus": num(f.stimulus, 2), "pspi": num(f.pspi, 3),
            "expressiveness": num(f.expressiveness, 3), "emotion": f.emotion,
            "threshold": num(f.threshold, 2), "tolerance": num(f.tolerance, 2),
            "channels": dict(zip(f.channels, np.round(f.values.astype(np.float64), 4).tolist())),
            "lag_ms": num(f.lag_ms, 1), "latency_ms": num(f.latency_ms, 1), "control_seq": f.control_seq,
            "speed_x_realtime": num(f.speed, 1), "notice": f.notice}


class OscOut:
    """Frames as OSC bundles over UDP (python-osc's message builders; one datagram per frame)."""

    def __init__(self, target: str, fmt: str = "facs", batch: int = 1, space=None):
        if fmt not in FORMATS:
            raise PainDiffusionError(f"unknown --format {fmt!r}; use facs or arkit")
        if space is not None and space.name != "facs":
            raise PainDiffusionError(f"OSC output needs the facs face space; this model's is {space.name!r}")
        if fmt == "arkit" and batch > 1:
            raise PainDiffusionError("--format arkit drives one avatar; use --batch 1 (or --format facs)")
        self.host, self.port = host_port(target, "--osc")
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except OSError as e:
            raise PainDiffusionError(f"--osc host {self.host!r} cannot be resolved ({e.strerror or e})") from None
        self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.addr, self.fmt, self.batch, self.report = info[4], fmt, batch, Once(f"OSC {target}")

    def _message(self, address: str, *args) -> OscMessageBuilder:
        m = OscMessageBuilder(address)
        for a in args:
            m.add_arg(a)
        return m.build()

    def packet(self, f: Frame) -> bytes:
        b = OscBundleBuilder(IMMEDIATELY)
        if self.fmt == "arkit":
            for name, w in zip(ARKIT_NAMES, arkit_from_facs(f.values).tolist()):
                b.add_content(self._message("/VMC/Ext/Blend/Val", name, float(w)))
            b.add_content(self._message("/VMC/Ext/Blend/Apply"))
        else:
            root = "/paindiffusion" if self.batch == 1 else f"/paindiffusion/{f.patient}"
            aus = np.clip(f.values[: len(FACS_AUS)] / 5.0, 0.0, 1.0).tolist()
            b.add_content(self._message(f"{root}/frame", int(f.index)))
            for au, v in zip(FACS_AUS, aus):
                b.add_content(self._message(f"{root}/au/{au}", float(v)))
            b.add_content(self._message(f"{root}/head", *(float(x) for x in f.values[len(FACS_AUS):])))
            b.add_content(self._message(f"{root}/pspi", float(f.pspi)))
            b.add_content(self._message(f"{root}/stimulus", float(f.stimulus)))
        return b.build().dgram

    def __call__(self, f: Frame) -> None:
        try:
            self.sock.sendto(self.packet(f), self.addr)
        except OSError as e:  # nobody listening (ICMP refused), network down: keep going
            self.report(type(e).__name__, f"cannot send ({e.strerror or e}); still trying every frame")

    def close(self) -> None:
        self.sock.close()


class StdoutOut:
    """JSON lines on stdout, one per frame (flushed, so a pipe reader sees each frame at once)."""

    def __init__(self, stream=None):
        self.stream, self.broken, self.report = stream or sys.stdout, False, Once("stdout")

    def __call__(self, f: Frame) -> None:
        if self.broken:
            return
        try:
            self.stream.write(json.dumps(frame_json(f), separators=(",", ":")) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            self.broken = True
            self.report("closed", f"stopped writing ({type(e).__name__}); the other outputs go on")


class WebSocketOut:
    """A WebSocket server on 127.0.0.1:PORT (path ``/``) sending each frame as one JSON text message to every
    connected client. A slow client's queue drops its oldest frames instead of holding the stream up. Only
    its own origin, the ``allow``-ed ones and non-browser clients with the token connect (:class:`LocalOrigin`)."""

    def __init__(self, port: int, host: str = "127.0.0.1", queue_frames: int = 50, token: str | None = None,
                 allow: tuple[str, ...] = ()):
        from aiohttp import WSMsgType, web

        self.clients: set[asyncio.Queue] = set()
        self.queue_frames, self.report = queue_frames, Once(f"WebSocket :{port}")
        self.guard = LocalOrigin(token, allow)

        async def handler(request):
            ws = web.WebSocketResponse(heartbeat=10, max_msg_size=4096)  # it reads nothing; a big message closes it
            await ws.prepare(request)
            q: asyncio.Queue = asyncio.Queue(self.queue_frames)
            self.clients.add(q)
            sender = asyncio.ensure_future(self._send(ws, q))
            try:
                async for msg in ws:  # nothing to receive; this waits for the client to go
                    if msg.type == WSMsgType.ERROR:
                        break
            finally:
                self.clients.discard(q)
                sender.cancel()
            return ws

        app = web.Application(middlewares=[self.guard.middleware()])
        app.router.add_get("/", handler)
        self.io = LoopThread("paindiffusion-websocket")
        try:
            self.runner = self.io.run(start_site(app, host, port, f"--websocket {port}"))
        except BaseException:
            self.io.stop()
            raise
        self.port = self.runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{self.port}/?token={self.guard.token}"  # for non-browser clients

    async def _send(self, ws, q: asyncio.Queue) -> None:
        try:
            while True:
                await ws.send_str(await q.get())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return

    def _push(self, text: str) -> None:
        for q in list(self.clients):
            if q.full():
                q.get_nowait()  # a stalled client loses its oldest frame, not the others theirs
            q.put_nowait(text)

    def __call__(self, f: Frame) -> None:
        if self.clients:
            self.io.loop.call_soon_threadsafe(self._push, json.dumps(frame_json(f), separators=(",", ":")))

    def close(self) -> None:
        try:
            self.io.run(self.runner.cleanup(), timeout=5)
        finally:
            self.io.stop()
