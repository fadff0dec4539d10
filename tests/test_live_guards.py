"""No page on the web can drive the demo, no input kills a live stream (docs/bad-inputs.md, "Live demo and
stream"): the demo and ``stream --websocket`` answer only their own origin on this machine (or a non-browser
client with the token), each tab has a message budget and its "new patient" requests are coalesced, and every
message is bounded and refused in one line while the tab keeps working.

Real servers on 127.0.0.1 (tiny model: the guards, not the model, are under test), real sockets and pipes;
no wall-clock assertions (the budget's clock is injected); the timed checks are marked slow. The stream's
inputs (stdin, OSC, --map) are in tests/test_stream_inputs_bounded.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
import torch

from conftest import tiny_model
from paindiffusion.errors import PainDiffusionError
from paindiffusion.live.generator import LiveGenerator

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def header(data: bytes) -> dict:
    """The JSON header of a demo frame: [u32 length][JSON][JPEG]."""
    n = struct.unpack("<I", data[:4])[0]
    return json.loads(data[4:4 + n])


class Demo:
    """A real DemoServer (tiny model) on a free port of 127.0.0.1."""

    def __init__(self, **kw):
        from paindiffusion.live.server import DemoServer

        self.server = DemoServer(tiny_model(), port=0, size=128, **kw)
        self.url = self.server.start()
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.origin = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop()


async def try_socket(url: str, headers: dict, frames: int = 1) -> list | int:
    """Open a WebSocket: the status it was refused with, or the headers of its first ``frames`` frames."""
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(url, headers=headers) as ws:
                got = []
                while len(got) < frames:
                    msg = await ws.receive(timeout=20)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got.append(header(msg.data))
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        got.append(json.loads(msg.data))
                    else:
                        return got
                return got
        except aiohttp.WSServerHandshakeError as e:
            return e.status


# ---- the guards themselves -------------------------------------------------------------------------------
def test_local_origin_answers_only_its_own_page():
    from paindiffusion.live.guard import LocalOrigin

    g = LocalOrigin(token="secret-token", allow=("http://localhost:3000/",))
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000"):
        assert g.refusal(host, f"http://{host}", 8000, True, None) is None
    assert g.refusal("127.0.0.1:8000", "http://localhost:3000", 8000, True, None) is None  # allowed on the command line
    refusals = [
        ("evil.example:8000", "http://evil.example:8000", False, None),  # DNS rebinding: the page's own name
        ("127.0.0.1:8001", None, False, None),  # another port's name
        ("127.0.0.1:8000", "http://evil.example", True, None),  # a page of another site
        ("127.0.0.1:8000", "http://127.0.0.1:9000", True, None),  # another server on this machine
        ("127.0.0.1:8000", "null", True, None),  # a file:// page or a sandboxed frame
        ("127.0.0.1:8000", None, True, None), ("127.0.0.1:8000", None, True, "wrong"),  # no Origin, no token
        (None, None, False, None),
    ]
    for host, origin, websocket, token in refusals:
        assert g.refusal(host, origin, 8000, websocket, token), (host, origin, token)
    assert g.refusal("127.0.0.1:8000", None, 8000, True, "secret-token") is None  # a robot with the token
    assert g.refusal("127.0.0.1:8000", None, 8000, False, None) is None  # a plain page load sends no Origin


def test_message_budget_with_an_injected_clock():
    from paindiffusion.live.guard import MessageBudget

    now = [0.0]
    b = MessageBudget(rate=50, burst=100, clock=lambda: now[0])
    assert all(b.take() for _ in range(100)) and not b.take()
    now[0] += 0.1  # 5 more
    assert sum(b.take() for _ in range(20)) == 5 and not b.flooding
    assert not any(b.take() for _ in range(100)) and b.flooding
    now[0] += 10.0  # refilled, capped at the burst
    assert sum(b.take() for _ in range(300)) == 100


def test_bounded_json_refuses_in_one_line():
    from paindiffusion.live.guard import parse_bounded_json

    assert parse_bounded_json('{"stimulus": 45.5, "seq": 12, "emotion": "Fear [x]"}') == {
        "stimulus": 45.5, "seq": 12, "emotion": "Fear [x]"}
    for text, words in (('{"stimulus": ' + "1" * 400 + "}", "400 digits"), ("[" * 100_000, "more than"),
                        ("[" * 3000, "nests deeper"), ('{"stimulus": 1e999}', "too large"),
                        ('{"stimulus": NaN}', "NaN"), ('{"a": "' + "x" * 5000 + '"}', "more than"),
                        ("{oops", "not valid JSON")):
        with pytest.raises(PainDiffusionError, match=words) as e:
            parse_bounded_json(text)
        assert "\n" not in str(e.value)


def test_a_long_line_is_skipped_in_bounded_memory_and_the_next_one_read():
    """32 MB without a newline on a real pipe, then a control: the reader never holds more than a few KiB."""
    from paindiffusion.live.guard import TOO_LONG, BoundedLines

    r, w = os.pipe()
    chunk = b"7" * (1 << 20)  # made before tracing: only the reader's memory is measured

    def write():
        with os.fdopen(w, "wb") as f:
            for _ in range(32):
                f.write(chunk)
            f.write(b"\n45\n")

    threading.Thread(target=write, daemon=True).start()
    tracemalloc.start()
    with os.fdopen(r, "rb") as f:
        lines = list(BoundedLines(f))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == [TOO_LONG, "45\n"] and peak < 1 << 20, peak


# ---- the demo: own origin only ---------------------------------------------------------------------------
def test_the_demo_answers_only_its_own_page():
    with Demo() as d:
        ws = f"ws://127.0.0.1:{d.port}/ws"

        async def probe():
            evil = await try_socket(ws, {"Origin": "http://evil.example"})
            other_port = await try_socket(ws, {"Origin": "http://127.0.0.1:1"})
            rebinding = await try_socket(ws, {"Host": f"evil.example:{d.port}", "Origin": f"http://evil.example:{d.port}"})
            no_origin = await try_socket(ws, {})
            async with aiohttp.ClientSession() as s:
                async with s.get(d.url, headers={"Host": f"evil.example:{d.port}"}) as r:
                    page = r.status, await r.text()
                async with s.get(d.url + "api/info", headers={"Origin": "http://evil.example"}) as r:
                    info = r.status
            refused_patients = len(d.server.generator.patients) + d.server.generator.preparations_pending()
            own = await try_socket(ws, {"Origin": d.origin})
            robot = await try_socket(d.server.client_url, {})
            return evil, other_port, rebinding, no_origin, page, info, refused_patients, own, robot

        evil, other_port, rebinding, no_origin, page, info, refused_patients, own, robot = asyncio.run(probe())
    assert evil == other_port == rebinding == no_origin == 403 and info == 403
    assert page[0] == 403 and "is not this server" in page[1]
    assert refused_patients == 0  # no slot was taken by a refused page
    assert isinstance(own, list) and "channels" in own[0] and isinstance(robot, list) and "channels" in robot[0]


def test_stream_websocket_answers_only_its_own_origin_and_the_allowed_ones():
    from paindiffusion.live.outputs import WebSocketOut

    out = WebSocketOut(0, token="robot-token-1", allow=("http://localhost:3000",))

    async def probe():
        url = f"ws://127.0.0.1:{out.port}/"
        async with aiohttp.ClientSession() as s:
            statuses = []
            for q, h in (("", {"Origin": "http://evil.example"}), ("", {}), ("?token=nope", {}),
                         ("", {"Host": f"evil.example:{out.port}"}), ("?token=robot-token-1", {}),
                         ("", {"Origin": "http://localhost:3000"}), ("", {"Origin": f"http://localhost:{out.port}"})):
                try:
                    async with s.ws_connect(url + q, headers=h):
                        statuses.append(101)
                except aiohttp.WSServerHandshakeError as e:
                    statuses.append(e.status)
            return statuses

    try:
        assert asyncio.run(probe()) == [403, 403, 403, 403, 101, 101, 101]
        assert out.url == f"ws://127.0.0.1:{out.port}/?token=robot-token-1"
    finally:
        out.close()


# ---- the demo: bad messages, floods, "new patient" -------------------------------------------------------
def test_bad_messages_are_refused_in_one_line_and_the_tab_keeps_working(capfd):
    with Demo() as d:
        async def session():
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(f"ws://127.0.0.1:{d.port}/ws", headers={"Origin": d.origin}) as ws:
                    for text in ('{"stimulus": ' + "1" * 400 + "}", "[" * 60_000, "{" * 3000, '{"stimulus": 1e999}',
                                 '{"stimulus": 45, "seq": ' + "9" * 40 + "}", '{"emotion": 3}', "[1, 2]"):
                        await ws.send_str(text)
                    await ws.send_bytes(b"\x00\xff")
                    await ws.send_str('{"stimulus": 44.5, "seq": 7}')
                    errors, made = [], []
                    while not made:
                        msg = await ws.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            errors.append(json.loads(msg.data)["error"])
                        elif msg.type == aiohttp.WSMsgType.BINARY:
                            h = header(msg.data)
                            if h["control_seq"] == 7:
                                made.append(h)
                        else:
                            raise AssertionError(f"the tab was dropped: {msg.type}")
                    return errors, made[0]

        errors, frame = asyncio.run(session())
    assert len(errors) == 8 and all("\n" not in e for e in errors), errors
    assert "400 digits" in errors[0] and "4096" in errors[1] and "nests deeper" in errors[2] and "binary" in errors[7]
    assert frame["stimulus"] == 44.5  # the valid control after them was applied
    assert "Traceback" not in capfd.readouterr().err


def test_a_message_flood_is_dropped_then_closed_and_other_tabs_go_on():
    frozen = [0.0]
    with Demo(clock=lambda: frozen[0]) as d:
        async def flood():
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(f"ws://127.0.0.1:{d.port}/ws", headers={"Origin": d.origin}) as ws:
                    for i in range(1000):
                        await ws.send_str(json.dumps({"new_patient": i}))
                    texts = []
                    while True:
                        msg = await ws.receive(timeout=20)
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            texts.append(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                            return texts, ws.close_code

        texts, code = asyncio.run(flood())
        assert code == 1008 and len(texts) == 1 and "messages per second" in texts[0]  # one notice, then closed
        assert d.server.closed_floods == 1 and d.server.generator.preparations_pending() <= 1
        other = asyncio.run(try_socket(f"ws://127.0.0.1:{d.port}/ws", {"Origin": d.origin}, frames=3))
        assert isinstance(other, list) and len(other) == 3


def test_new_patient_requests_are_coalesced_and_dropped_with_their_tab():
    gen = LiveGenerator(tiny_model())
    calls = []
    real = gen._factory.prepare
    gen._factory.prepare = lambda *a, **k: calls.append(a) or real(*a, **k)
    a, b = gen.join(lambda f: None), gen.join(lambda f: None)
    for seed in range(1000):
        gen.new_patient(a, seed)
    assert gen.preparations_pending() == 3  # two joins and ONE restart of a, with the latest seed
    gen.new_patient(b, 5)
    gen.leave(b)  # its join and its restart go with it
    assert gen.preparations_pending() == 2 and a.seed == 999
    gen.start()
    try:
        for _ in range(200):
            if len(calls) >= 2 and gen.preparations_pending() == 0:
                break
            time.sleep(0.05)
    finally:
        gen.stop()
    assert len(calls) == 2 and calls[1][0] == 999  # a's join, then a's one restart (b never prepared)


def test_malformed_http_requests_are_one_line_each(capfd):
    with Demo() as d:
        for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n"):  # the same kind again: no line
            with socket.create_connection(("127.0.0.1", d.port)) as s:
                s.sendall(raw)
                assert s.recv(64).startswith(b"HTTP/1.0 400")
        time.sleep(0.2)
    err = capfd.readouterr().err
    lines = [x for x in err.splitlines() if "bad request" in x]
    assert "Traceback" not in err and len(lines) == 2 and all(x.startswith("paindiffusion demo: http:") for x in lines), err


# ---- timed, with the shipped model (slow) -------------------------------------------------------------------
@pytest.mark.slow
def test_after_1000_new_patient_messages_a_new_tab_gets_its_first_frame_within_5_s():
    from paindiffusion.checkpoint import PainModel
    from paindiffusion.live.server import DemoServer

    server = DemoServer(PainModel.load(), port=0, size=256)
    url = server.start()
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    origin = {"Origin": f"http://127.0.0.1:{port}"}

    async def scenario():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"ws://127.0.0.1:{port}/ws", headers=origin) as ws:
                while (await ws.receive(timeout=30)).type != aiohttp.WSMsgType.BINARY:
                    pass  # this tab is live
                for i in range(1000):
                    await ws.send_str(json.dumps({"new_patient": i}))
                t0 = time.monotonic()
                first = await try_socket(f"ws://127.0.0.1:{port}/ws", origin)
                return time.monotonic() - t0, first

    try:
        waited, first = asyncio.run(scenario())
    finally:
        server.stop()
    assert isinstance(first, list) and "channels" in first[0] and waited < 5.0, waited


@pytest.mark.slow
def test_abuse_soak_short():
    """benchmarks/bench_abuse.py for 30 s (its 10-minute figures are in the README): while other clients flood,
    probe and garble, the well-behaved tab keeps 24 frames/s or more and the server's memory grows < 5%."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_abuse.py"), "--minutes", "0.5", "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert not figures["tab_closed"] and figures["fps_median"] >= 24, figures
    assert figures["rss_growth_pct"] < 5 and figures["server"]["refused_handshakes"] > 100, figures
    assert "Traceback" not in r.stderr
