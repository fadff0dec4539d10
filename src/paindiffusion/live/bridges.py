"""Where live frames go: OSC (FACS addresses or the VMC protocol's ARKit blendshapes), a WebSocket server
(one JSON object per frame) and stdout (JSON lines). Several at once; each is a sink of
:class:`~paindiffusion.live.session.LiveGenerator` and never blocks it: a lost client or receiver is
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
import logging
import math
import socket
import sys
import threading

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from ..errors import PainDiffusionError
from ..facespace import FACS_AUS
from ..render.exports import ARKIT_NAMES, arkit_from_facs
from .session import Frame

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


class Once:
    """Report each kind of trouble once (to stderr), not at 25 lines per second. At most ``keep`` kinds are
    remembered, so keys that come from outside (a new OSC address per message) cannot grow memory or flood
    stderr: past that, one last line says that further kinds go unreported."""

    def __init__(self, name: str, keep: int = 64, prefix: str = "paindiffusion stream"):
        self.name, self.seen, self.keep, self.prefix = name, set(), keep, prefix

    def __call__(self, key: str, message: str) -> None:
        if key in self.seen or len(self.seen) > self.keep:
            return
        self.seen.add(key)
        if len(self.seen) > self.keep:
            message = f"{self.keep} kinds of trouble reported; further kinds are not"
        print(f"{self.prefix}: {self.name}: {message}", file=sys.stderr, flush=True)


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PainDiffusionError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:39539")
    return host, int(port)


class OscOut:
    """Frames as OSC bundles over UDP (python-osc's message builders; one datagram per frame)."""

    def __init__(self, target: str, fmt: str = "facs", batch: int = 1, space=None):
        if fmt not in FORMATS:
            raise PainDiffusionError(f"unknown --format {fmt!r}; use facs or arkit")
        if space is not None and space.name != "facs":
            raise PainDiffusionError(f"OSC output needs the facs face space; this model's is {space.name!r}")
        if fmt == "arkit" and batch > 1:
            raise PainDiffusionError("--format arkit drives one avatar; use --batch 1 (or --format facs)")
        self.host, self.port = parse_host_port(target, "--osc")
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


class LoopThread:
    """An asyncio loop in a daemon thread (for aiohttp servers beside the generator thread)."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def one_line_http_log(prefix: str) -> logging.Logger:
    """The logger an aiohttp server reports request errors to (a malformed request, a client that broke off):
    one line each, no traceback, each kind once (aiohttp answers a malformed request with 400 by itself)."""
    log = logging.getLogger(f"paindiffusion.live.http.{prefix}")
    if not log.handlers:
        report = Once("http", prefix=prefix)

        class OneLine(logging.Handler):
            def emit(self, record):
                exc = record.exc_info[1] if record.exc_info else None
                if exc is None:
                    report(record.getMessage()[:40], " ".join(record.getMessage().split())[:200])
                    return
                why = " ".join(str(getattr(exc, "message", "") or exc).split())[:120]
                report(type(exc).__name__, f"a bad request from {record.args[0] if record.args else 'a client'} "
                       f"was refused ({type(exc).__name__}: {why})")

        log.addHandler(OneLine())
        log.propagate = False
    return log


async def start_site(app, host: str, port: int, what: str, log_prefix: str = "paindiffusion stream",
                     reuse_address: bool = False):
    """Serve an aiohttp app; a port that is taken or not ours to bind gives a one-line error. Request errors
    go to :func:`one_line_http_log` under ``log_prefix``. ``reuse_address`` lets a restarted server bind its
    port again at once, beside connections of the last run still in TIME_WAIT (on Linux a port another
    process listens on is still refused)."""
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, access_log=None, logger=one_line_http_log(log_prefix))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=reuse_address).start()
    except OSError as e:
        await runner.cleanup()
        raise PainDiffusionError(f"{what} cannot listen on {host}:{port} ({e.strerror or e}); "
                                 "is the port in use? choose another") from None
    return runner


class WebSocketOut:
    """A WebSocket server on 127.0.0.1:PORT (path ``/``) sending each frame as one JSON text message to every
    connected client. A slow client's queue drops its oldest frames instead of holding the stream up. Only
    its own origin, the ``allow``-ed ones and non-browser clients with the token connect (:class:`LocalOrigin`)."""

    def __init__(self, port: int, host: str = "127.0.0.1", queue_frames: int = 50, token: str | None = None,
                 allow: tuple[str, ...] = ()):
        from aiohttp import WSMsgType, web

        from .guard import LocalOrigin

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
