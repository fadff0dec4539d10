"""No page on the web can drive the demo, no input kills a live stream (docs/bad-inputs.md, "Live demo and
stream"): the demo and ``stream --websocket`` answer only their own origin on this machine (or a non-browser
client with the token), each tab has a message budget and its "new patient" requests are coalesced, and every
message, line, number and OSC address is bounded and refused in one line while the input keeps working.

Real servers on 127.0.0.1 (tiny model: the guards, not the model, are under test), real sockets, pipes and
UDP; no wall-clock assertions (the budget's clock is injected); the timed checks are marked slow."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
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
from paindiffusion.live.session import LiveGenerator
from test_hardening_inputs import refused

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
    from paindiffusion.live.bridges import WebSocketOut

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


# ---- stream inputs ----------------------------------------------------------------------------------------
def test_stdin_survives_a_400_digit_number_and_applies_the_next_control(capfd):
    from paindiffusion.live.inputs import StdinIn

    got = []
    lines = ('{"stimulus": ' + "1" * 400 + "}\n" + "1" * 400 + "\n@" + "9" * 400 + " 40\n"
             + "[" * 5000 + "\n" + "45\n").encode()
    src = StdinIn(lambda patient, **c: got.append(c) or _check(c), io.BytesIO(lines)).start()
    src.thread.join(timeout=10)
    assert got[-1] == {"stimulus": 45.0}
    err = capfd.readouterr().err
    assert "Traceback" not in err and "stopped" not in err and "stdin closed" in err


def _check(controls):
    from paindiffusion.controls import Controls

    Controls(tiny_model().spec, 1).set(**controls)  # raises for bad values, as a patient would


def test_osc_flood_of_new_addresses_and_bad_datagrams_stay_bounded(capfd):
    from pythonosc.udp_client import SimpleUDPClient

    from paindiffusion.live.inputs import OscIn

    got = []
    src = OscIn(lambda patient, **c: got.append(c), 0)
    port = src.server.server_address[1]
    src.start()
    client = SimpleUDPClient("127.0.0.1", port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(3000):
            client.send_message(f"/paindiffusion/x{i}", 1.0)
            if i % 500 == 0:
                raw.sendto(b"/paindiffusion/stim\xffulus\x00\x00\x00\x00,f\x00\x00B4\x00\x00", ("127.0.0.1", port))
            if i % 100 == 0:
                time.sleep(0.02)  # let the server keep up: UDP drops what a full socket buffer cannot hold
        for _ in range(100):  # the input still works (resent: a datagram may still be dropped by a full buffer)
            client.send_message("/paindiffusion/stimulus", 44.0)
            time.sleep(0.05)
            if got:
                break
    finally:
        src.stop()
        raw.close()
    err = capfd.readouterr().err
    assert got and got[0] == {"stimulus": 44.0}
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err  # one line per kind
    assert len(src.report.seen) <= src.report.keep + 1


def test_map_to_anything_but_temperatures_is_refused_at_start(capsys):
    refused(capsys, "stream", "--stdout", "--input", "serial:/dev/null", "--map", "0:150:0:1000",
            words=["--map", "0-1000 °C", "20-55"])


def test_the_same_warning_is_printed_once_per_run(capsys):
    import warnings

    from paindiffusion import cli

    spec = tiny_model().spec
    with warnings.catch_warnings():
        cli.route_warnings()
        for x in [9.0] * 700 + [10.0, 11.0]:
            spec.expressiveness_value(x)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: expressiveness 9 is outside"), err


def test_ctrl_c_stops_a_live_command_with_one_true_line(tiny_checkpoint):
    p = subprocess.Popen([sys.executable, "-m", "paindiffusion.cli", "stream", "--stdout", "--checkpoint",
                          str(tiny_checkpoint)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    try:
        assert p.stdout.readline().startswith("{")  # streaming
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    lines = err.strip().splitlines()
    assert p.returncode == 130 and lines[-1] == "stopped" and "partial output" not in err, err


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


def _stream(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "paindiffusion.cli", "stream", "--stdout", "--input", "stdin", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}, **kw)


@pytest.mark.slow
def test_stream_stdin_a_400_digit_number_then_a_valid_control():
    p = _stream("--seconds", "12", text=True)
    try:
        assert p.stdout.readline().startswith("{")
        p.stdin.write('{"stimulus": ' + "1" * 400 + "}\n" + "1" * 400 + "\n")
        p.stdin.flush()
        time.sleep(0.5)
        p.stdin.write("45\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    stim = [json.loads(x)["stimulus"] for x in out.splitlines()]
    assert p.returncode == 0 and 45.0 in stim and "Traceback" not in err and "stopped (" not in err, err


@pytest.mark.slow
def test_stream_stdin_a_64_mb_line_keeps_memory_flat_and_frames_coming():
    """64 MB without a newline on stdin: the stream's peak memory barely moves (it held the whole line and
    more: 275 → 815 MB for 300 MB) and the frames keep coming while it arrives."""
    p = _stream("--seconds", "14")
    try:
        assert p.stdout.readline().startswith(b"{")
        time.sleep(1.0)
        hwm0 = _peak_rss_mb(p.pid)
        chunk = b"9" * (1 << 20)

        def write():
            for _ in range(64):
                p.stdin.write(chunk)
            p.stdin.write(b"\n44\n")
            p.stdin.flush()

        writer = threading.Thread(target=write)
        writer.start()
        n0 = _count_lines(p, 1.0)  # frames while the line arrives
        writer.join(timeout=60)
        hwm1 = _peak_rss_mb(p.pid)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    stim = [json.loads(x)["stimulus"] for x in out.splitlines()]
    assert p.returncode == 0 and 44.0 in stim and b"Traceback" not in err, err
    assert hwm1 - hwm0 < 32, (hwm0, hwm1)  # well below the 64 MB the line would take
    assert n0 >= 15  # frames kept coming (about 25 in that second)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024


def _count_lines(p, seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        p.stdout.readline()
        n += 1
    return n
