"""Abuse soak of the live demo: a well-behaved tab's frame rate and the server's memory while other clients
misbehave for MINUTES (default 10), all on 127.0.0.1.

    .venv/bin/python benchmarks/bench_abuse.py                 # 10 minutes (the figures in docs/bad-inputs.md)
    .venv/bin/python benchmarks/bench_abuse.py --minutes 0.5   # a short run (tests/test_live_guards.py)

The server (DemoServer, shipped model, 320² faces) runs in this process, so its resident memory is this
process's. The clients run in two child processes (not counted): the well-behaved tab (same origin; reads every
frame, changes the heat twice a second) and the abusers, which all the while
  * open the WebSocket from another origin, under a rebinding Host name, and without Origin or token;
  * flood "new patient" (1,000 messages at once, reconnecting when closed for flooding);
  * send 400-digit numbers, JSON nested 3,000 deep, 60 KB messages, NaN/1e999 and binary frames;
  * send malformed HTTP requests (an 20 KB header line, a bad Content-Length);
  * hold a tab that never reads its frames.
It prints the tab's frames per second per 10-s window (median and lowest), frames lost, the server's resident
memory after warm-up and at the end, and what was refused. ``--json`` adds one JSON line of the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

WINDOW_S = 10.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


# ---- the clients (child processes) ---------------------------------------------------------------------------
async def well_behaved(port: int, seconds: float) -> None:
    """Read every frame; every WINDOW_S print the frames received in it (one number per line)."""
    import aiohttp

    origin = {"Origin": f"http://127.0.0.1:{port}"}
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"ws://127.0.0.1:{port}/ws", headers=origin, max_msg_size=1 << 22) as ws:
            end, heat, window_end, n = time.monotonic() + seconds, 32.0, None, 0
            next_heat = time.monotonic()
            while time.monotonic() < end:
                msg = await ws.receive(timeout=30)
                now = time.monotonic()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        continue
                    print("closed", flush=True)
                    return
                if window_end is None:
                    window_end = now + WINDOW_S
                if now >= window_end:
                    print(n, flush=True)
                    n, window_end = 0, window_end + WINDOW_S
                n += 1
                if now >= next_heat:  # like a user on the slider
                    heat = 32.0 + (heat - 30.0) % 16.0
                    await ws.send_str(json.dumps({"stimulus": heat, "seq": int(now * 1000)}))
                    next_heat = now + 0.5


async def abusers(port: int, seconds: float) -> None:
    import aiohttp

    own = {"Origin": f"http://127.0.0.1:{port}"}
    url = f"ws://127.0.0.1:{port}/ws"
    end = time.monotonic() + seconds
    count = {"handshakes": 0, "messages": 0, "http": 0}

    async def foreign(s):
        while time.monotonic() < end:
            for h in ({"Origin": "http://evil.example"}, {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, {}):
                try:
                    async with s.ws_connect(url, headers=h):
                        pass
                except aiohttp.WSServerHandshakeError:
                    pass
                count["handshakes"] += 1
            await asyncio.sleep(0.05)

    async def drain(ws):  # read what the server sends, so these clients test the bounds, not back-pressure
        async for _ in ws:
            pass

    async def flood(s):
        while time.monotonic() < end:
            try:
                async with s.ws_connect(url, headers=own) as ws:
                    reader = asyncio.ensure_future(drain(ws))
                    for i in range(1000):
                        await ws.send_str(json.dumps({"new_patient": i}))
                    count["messages"] += 1000
                    await asyncio.wait_for(reader, 30)  # closed for flooding
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                pass
            await asyncio.sleep(1.0)

    async def garbage(s):
        bad = ['{"stimulus": ' + "1" * 400 + "}", "[" * 3000, "x" * 60_000, '{"stimulus": NaN}', '{"stimulus": 1e999}',
               '{"emotion": {"a": [1, [2, [3]]]}}']
        while time.monotonic() < end:
            try:
                async with s.ws_connect(url, headers=own) as ws:
                    reader = asyncio.ensure_future(drain(ws))
                    while time.monotonic() < end:
                        for text in bad:
                            await ws.send_str(text)
                        await ws.send_bytes(b"\xff" * 100)
                        count["messages"] += len(bad) + 1
                        await asyncio.sleep(0.2)  # inside the budget: these are refused one by one
                    reader.cancel()
            except (aiohttp.ClientError, ConnectionError):
                await asyncio.sleep(0.5)

    async def stalled(s):
        try:
            async with s.ws_connect(url, headers=own):
                await asyncio.sleep(end - time.monotonic())  # never reads: its frames are dropped at the server
        except (aiohttp.ClientError, ConnectionError):
            pass

    def bad_http():
        for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", b"\x16\x03\x01 not http\r\n\r\n"):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(raw)
                    c.recv(64)
            except OSError:
                pass
            count["http"] += 1

    async def http_loop():
        while time.monotonic() < end:
            await asyncio.get_running_loop().run_in_executor(None, bad_http)
            await asyncio.sleep(0.1)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        tasks = [asyncio.ensure_future(t) for t in (foreign(s), flood(s), garbage(s), stalled(s), http_loop())]
        await asyncio.wait(tasks, timeout=seconds + 20)  # a client stuck past the end is cut off
        for t in tasks:
            t.cancel()
    print(json.dumps(count), flush=True)


# ---- the server and the report (this process) ------------------------------------------------------------------
def soak(minutes: float, size: int) -> dict:
    import torch

    from paindiffusion.checkpoint import PainModel
    from paindiffusion.live.server import DemoServer

    torch.set_num_threads(1)
    server = DemoServer(PainModel.load(), port=0, size=size)
    url = server.start()
    port = url.rstrip("/").rsplit(":", 1)[1]
    seconds = minutes * 60
    me = [sys.executable, os.path.abspath(__file__)]
    tab = subprocess.Popen(me + ["--role", "tab", port, str(seconds + WINDOW_S)], stdout=subprocess.PIPE, text=True)
    time.sleep(5.0)  # the tab is live
    bad = subprocess.Popen(me + ["--role", "abusers", port, str(seconds)], stdout=subprocess.PIPE, text=True)
    time.sleep(min(20.0, seconds / 4))  # warm-up: windows built, allocator settled
    rss0, t0 = rss_mb(), time.monotonic()
    counts = json.loads(_last_line(bad, seconds + 90) or '{"handshakes": 0, "messages": 0, "http": 0}')
    rss1 = rss_mb()
    windows = (_last_line(tab, 2 * WINDOW_S + 60, whole=True) or "").split()
    stats = {**server.generator.stats(), "refused_handshakes": server.guard.refused, "closed_floods": server.closed_floods}
    server.stop()
    fps = [int(x) / WINDOW_S for x in windows if x.isdigit()]
    return {"minutes": minutes, "load_start": os.getloadavg()[0], "fps_windows": fps, "tab_closed": "closed" in windows,
            "fps_median": sorted(fps)[len(fps) // 2] if fps else 0.0, "fps_min": min(fps) if fps else 0.0,
            "rss_start_mb": rss0, "rss_end_mb": rss1, "rss_growth_pct": 100 * (rss1 - rss0) / rss0,
            "measured_s": time.monotonic() - t0, "abuse": counts, "server": stats}


def _last_line(p: subprocess.Popen, timeout: float, whole: bool = False) -> str | None:
    """A child's last stdout line (or all of it); killed if it runs past ``timeout``."""
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0]
    lines = out.strip().splitlines()
    return out if whole else (lines[-1] if lines else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=320, help="face size in pixels (the demo's default)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--role", choices=("tab", "abusers"), help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args()
    if a.role:
        port, seconds = int(rest[0]), float(rest[1])
        asyncio.run(well_behaved(port, seconds) if a.role == "tab" else abusers(port, seconds))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    r = soak(a.minutes, a.size)
    print(f"abuse soak {a.minutes:g} min: well-behaved tab {r['fps_median']:.1f} frames/s median, "
          f"{r['fps_min']:.1f} lowest over {len(r['fps_windows'])} windows of {WINDOW_S:g} s"
          + (" (its connection was CLOSED)" if r["tab_closed"] else ""))
    print(f"server memory: {r['rss_start_mb']:.1f} → {r['rss_end_mb']:.1f} MB ({r['rss_growth_pct']:+.2f}%) "
          f"over {r['measured_s']:.0f} s after warm-up")
    s = r["server"]
    print(f"refused: {s['refused_handshakes']} handshakes (other origin, rebinding Host, no token), "
          f"{s['closed_floods']} floods closed; abusers sent {r['abuse']['messages']} bad messages, "
          f"{r['abuse']['handshakes']} handshakes, {r['abuse']['http']} malformed HTTP requests")
    print(f"generator: max frame lag {s['max_lag_ms']:.0f} ms, {s['late_frames']} frames > 40 ms late; "
          f"machine load average {os.getloadavg()[0]:.1f} at the end")
    if a.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
