"""``paindiffusion stream`` and its parts on real sockets: OSC over UDP on 127.0.0.1 (count, VMC format, ARKit
names, FACS addresses), a WebSocket client connecting 100 times, a serial device played by a pseudo-terminal pair
(garbage lines included), stdin and CSV inputs, and bad options (one line, exit 2).

Pacing is checked on a manual clock (conftest.ManualClock): the frames' due times and the CSV's controls are exact,
and no quick test waits in wall time. The wall-clock rate (25 fps while clients come and go) is a slow test here,
and benchmarks/bench_live.py measures the rest."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from conftest import ManualClock, cli, cli_process
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS_AUS
from paindiffusion.live.outputs import OscOut, WebSocketOut
from paindiffusion.live.inputs import CsvIn, OscIn, RangeMap, parse_line
from paindiffusion.live.generator import LiveGenerator
from paindiffusion.render.exports import ARKIT_NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    import torch

    from paindiffusion.checkpoint import PainModel

    torch.set_num_threads(1)
    return PainModel.load()


class Receiver:
    """A real OSC/UDP server on 127.0.0.1 recording (arrival time, address, args)."""

    def __init__(self):
        self.got, d = [], Dispatcher()
        d.set_default_handler(lambda address, *args: self.got.append((time.monotonic(), address, args)))
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def times(self, address):
        return np.array([t for t, a, _ in self.got if a == address])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def rate(times: np.ndarray) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def until(done, what: str, timeout: float = 120.0) -> None:
    """Poll ``done()`` (a guard against a hang, not a measurement: nothing is asserted about the time taken)."""
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.01)


def paced(model, frames: int, *joins) -> tuple[LiveGenerator, list]:
    """A generator on a manual clock, stopped by its own sink after ``frames`` frames of its first patient; each
    of ``joins`` is (sink, join keywords). Returns the generator and the first patient's frames."""
    gen = LiveGenerator(model, clock=ManualClock())
    seen: list = []

    def first(f):
        seen.append(f)
        if len(seen) == frames:
            gen.stop()  # from the generator thread: nothing after this frame is handed out

    for k, (sink, kw) in enumerate(joins):
        gen.join((lambda f, sink=sink: (sink(f), first(f))) if k == 0 else sink, **kw)
    gen.start()
    until(lambda: not gen.thread.is_alive(), f"{frames} frames")
    return gen, seen


def test_frames_are_handed_out_at_exactly_25_per_second_of_clock_time(model):
    gen, frames = paced(model, 100, (lambda f: None, {"stimulus": 45.0}))
    due = np.array([f.due for f in frames])
    assert [f.index for f in frames] == list(range(100))
    np.testing.assert_allclose(np.diff(due), 1 / 25, rtol=0, atol=1e-9)
    assert all(f.lag_ms == 0.0 for f in frames) and gen.log.late_frames == 0


def test_osc_arkit_vmc_frames(model):
    rx = Receiver()
    try:  # 40 bundles of ~2.5 KB at once: well inside the receiving socket's buffer, so none is dropped
        gen, _ = paced(model, 40, (OscOut(f"127.0.0.1:{rx.port}", "arkit", space=model.space), {"stimulus": 45.0}))
        until(lambda: len(rx.times("/VMC/Ext/Blend/Apply")) >= 40, "40 VMC bundles")
    finally:
        rx.close()
    applies = rx.times("/VMC/Ext/Blend/Apply")
    vals = [(a, args) for _, a, args in rx.got if a == "/VMC/Ext/Blend/Val"]
    assert len(applies) == gen.frames_out == 40  # every frame made arrived
    assert len(vals) == 52 * len(applies)
    names = [args[0] for _, args in vals]
    assert names[:52] == list(ARKIT_NAMES) and set(names) == set(ARKIT_NAMES)
    assert all(len(args) == 2 and isinstance(args[1], float) and 0.0 <= args[1] <= 1.0 for _, args in vals)
    last = {args[0]: args[1] for _, args in vals[-52:]}
    assert last["browDownLeft"] > 0.1  # 45 °C: a pained face reaches the avatar


def test_osc_facs_addresses_for_a_batch(model):
    rx = Receiver()
    out = OscOut(f"127.0.0.1:{rx.port}", "facs", batch=2, space=model.space)
    gen, order = LiveGenerator(model, clock=ManualClock()), []

    def sink(f):
        order.append(f.patient)
        out(f)
        if order.count(1) == 50:
            gen.stop()

    try:  # patient 1 joins once its window is built, while patient 0 streams
        for k in range(2):
            gen.join(sink, stimulus=32.0 + 15 * k)
        gen.start()
        until(lambda: not gen.thread.is_alive(), "50 frames of the second patient")
        # the frames went out as fast as the model makes them, hundreds of datagrams at once: UDP may drop some,
        # so the addresses are checked on what arrived (one bundle per frame) and the order on the sinks' calls
        until(lambda: len(rx.times("/paindiffusion/0/frame")) and len(rx.times("/paindiffusion/1/frame")), "both patients' OSC")
    finally:
        rx.close()
    addresses = {a for _, a, _ in rx.got}
    for k in (0, 1):
        assert {f"/paindiffusion/{k}/{x}" for x in ("frame", "head", "pspi", "stimulus")} <= addresses
        assert {f"/paindiffusion/{k}/au/{au}" for au in FACS_AUS} <= addresses
    stim = {a: args[0] for _, a, args in rx.got if a.endswith("/stimulus")}
    assert stim == {"/paindiffusion/0/stimulus": 32.0, "/paindiffusion/1/stimulus": 47.0}
    head = [args for _, a, args in rx.got if a == "/paindiffusion/0/head"]
    assert all(len(h) == 3 for h in head)
    assert order[order.index(1) - 1:] == [0, 1] * 50  # once joined, every frame is made for both


@pytest.mark.slow
def test_websocket_clients_come_and_go_100_times_while_25_fps_holds(model):
    import aiohttp
    import asyncio

    rx = Receiver()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws_out = WebSocketOut(port)
    osc = OscOut(f"127.0.0.1:{rx.port}", "facs", space=model.space)
    gen = LiveGenerator(model).start()
    gen.join(lambda f: (osc(f), ws_out(f)), stimulus=40.0)

    async def churn():
        got = 0
        async with aiohttp.ClientSession() as session:
            for i in range(100):
                async with session.ws_connect(ws_out.url) as ws:  # a non-browser client: the token
                    if i % 10 == 0:  # every tenth client reads a frame before leaving
                        msg = await ws.receive(timeout=5)
                        doc = json.loads(msg.data)
                        assert doc["stimulus"] == 40.0 and set(doc["channels"]) == set(model.space.channels)
                        got += 1
                if i % 25 == 0:  # and some leave without a goodbye
                    await asyncio.sleep(0.01)
        return got

    try:
        time.sleep(1.5)
        t0 = time.monotonic()
        assert asyncio.run(churn()) == 10
        t1 = time.monotonic()
        time.sleep(max(0.0, 4.0 - (t1 - t0)))
    finally:
        gen.stop()
        ws_out.close()
        rx.close()
    frames = rx.times("/paindiffusion/frame")
    during = frames[frames >= t0]
    assert 24.0 <= rate(during) <= 26.0
    assert gen.log.max_lag_ms < gen.resync_s * 1e3  # never so late that the clock had to skip frames


def test_osc_input_sets_controls_and_bad_values_are_held(model, capfd):
    calls = []
    src = OscIn(lambda patient, **c: calls.append((patient, c)) or _check(model, c), 0)
    port = src.server.server_address[1]
    src.start()
    client = SimpleUDPClient("127.0.0.1", port)
    try:
        client.send_message("/paindiffusion/stimulus", 45.5)
        client.send_message("/paindiffusion/1/emotion", "Fear")
        for _ in range(3):
            client.send_message("/paindiffusion/stimulus", 90.0)  # out of range: reported once
        client.send_message("/nonsense", 1)
        time.sleep(0.5)
    finally:
        src.stop()
    assert (None, {"stimulus": 45.5}) in calls and (1, {"emotion": "Fear"}) in calls
    assert src.last_good["stimulus"] == 45.5
    err = capfd.readouterr().err
    assert err.count("90") == 1 and "unknown address /nonsense" in err


def _check(model, controls):
    from paindiffusion.stream import Controls

    Controls(model.spec, 1).set(**controls)  # raises PainDiffusionError for bad values, as a patient would


def test_lines_and_maps():
    m = RangeMap("0:150:32:50")
    assert m(0) == 32.0 and m(75) == 41.0 and m(150) == 50.0 and m(500) == 50.0 and m(-9) == 32.0
    assert parse_line("75", m) == (None, {"stimulus": 41.0})
    assert parse_line("@2 emotion Fear") == (2, {"emotion": "Fear"})
    assert parse_line('{"stimulus": 44, "patient": 1}') == (1, {"stimulus": 44})
    assert parse_line("expressiveness high") == (None, {"expressiveness": "high"})
    for bad in ("abc", "stimulus hot", "{oops", "1 2 3", "@x 40", '{"volume": 3}'):
        with pytest.raises(PainDiffusionError):
            parse_line(bad)
    for bad in ("0:150:32", "a:b:c:d", "5:5:32:50"):
        with pytest.raises(PainDiffusionError, match="--map"):
            RangeMap(bad)


def test_stdin_lines_with_garbage_hold_the_last_good_value(model, capfd):
    import io

    from paindiffusion.live.inputs import StdinIn

    gen = LiveGenerator(model)
    p = gen.join(lambda f: None)
    lines = io.BytesIO(b"44\nwarm\nwarm\n99\nemotion Fear\n@0 expressiveness high\n\nemotion Boredom\n")
    src = StdinIn(lambda patient, **c: p.set(**c), lines).start()
    src.thread.join(timeout=5)
    c = p.controls
    assert c["stimulus"].tolist() == [44.0] and c["emotion"] == ["Fear"]  # 99 °C and Boredom were refused
    assert c["expressiveness"][0] == np.float32(model.spec.expressiveness_value("high"))
    err = capfd.readouterr().err
    assert err.count("warm") == 1 and "99" in err and "Boredom" in err and "stdin closed" in err


def test_csv_input_plays_one_value_per_frame_on_the_clock(tmp_path):
    path = tmp_path / "heat.csv"
    path.write_text("time,temperature\n0,32\n1,42\n")
    got, clock = [], ManualClock()
    src = CsvIn(lambda patient, **c: got.append((clock(), c["stimulus"])), path, clock).start()
    src.thread.join(timeout=60)
    t = np.array([x for x, _ in got])
    assert len(got) == 26  # 25 fps for 1 s of file
    np.testing.assert_allclose(t - t[0], np.arange(26) / 25, rtol=0, atol=1e-9)
    assert got[0][1] == 32.0 and got[-1][1] == 42.0 and got[13][1] == pytest.approx(37.2)


@pytest.mark.slow
def test_csv_input_plays_at_wall_clock_speed(tmp_path):
    path = tmp_path / "heat.csv"
    path.write_text("time,temperature\n0,32\n1,42\n")
    got = []
    src = CsvIn(lambda patient, **c: got.append((time.monotonic(), c["stimulus"])), path).start()
    src.thread.join(timeout=5)
    t = np.array([x for x, _ in got])
    assert len(got) == 26 and abs((t[-1] - t[0]) - 1.0) < 0.15  # 25 fps for 1 s of file = about 1 s of wall time


@pytest.mark.slow
def test_cli_serial_device_on_a_pty_with_garbage_lines_to_stdout_and_osc():
    rx = Receiver()
    controller, device = pty.openpty()
    name = os.ttyname(device)
    p = cli_process("stream", "--stdout", "--osc", f"127.0.0.1:{rx.port}", "--input", f"serial:{name}", "--map",
                    "0:150:32:50", "--seconds", "9", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        first = p.stdout.readline()  # the stream is running (model loaded, window built)
        lines.append(first)
        for text in (b"75\n", b"garbage\n", b"\xff\xfe\n", b"garbage\n", b"12,5;7\n"):
            os.write(controller, text)
            time.sleep(0.4)
        os.write(controller, b"150\r\n")
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        os.close(controller)
        os.close(device)
        rx.close()
    assert p.returncode == 0, err
    frames = [json.loads(x) for x in lines + out.splitlines() if x.strip()]
    stim = [f["stimulus"] for f in frames]
    assert stim[0] == 32.0 and 41.0 in stim and stim[-1] == 50.0  # 75° → 41 °C, 150° → 50 °C, garbage held
    i41 = stim.index(41.0)
    assert set(stim[i41: stim.index(50.0)]) == {41.0}  # the garbage lines changed nothing
    assert [f["frame"] for f in frames] == list(range(frames[0]["frame"], frames[0]["frame"] + len(frames)))
    assert err.count("garbage") == 1  # reported once, not per line
    assert len(rx.times("/paindiffusion/frame")) >= len(frames) - 5  # OSC got the same frames


@pytest.mark.slow
def test_cli_bad_options_one_line_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            (["--stdout", "--format", "bvh"], "format"),
            (["--websocket", str(port)], "in use"),
            (["--stdout", "--input", "serial:/dev/no-such-device"], "serial"),
            (["--stdout", "--input", "serial:/dev/null", "--map", "0:150"], "--map"),
            (["--osc", "localhost"], "HOST:PORT"),
            ([], "output"),
            (["--stdout", "--input", "osc:notaport"], "osc"),
            (["--stdout", "--input", str(tmp_path / "missing.csv")], "missing.csv"),
            (["--stdout", "--batch", "0"], "batch"),
        ]
        for args, words in cases:
            r = cli("stream", *args, "--seconds", "1", cwd=ROOT)
            assert r.returncode == 2, (args, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0], (args, r.stderr)
            assert r.stdout == ""
        r = cli("demo", "--port", str(port), "--seconds", "1", cwd=ROOT)  # the demo's port is taken too
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "in use" in r.stderr, r.stderr
