"""The aiohttp plumbing of the package's local web servers (the demo, ``stream --websocket``, the study): an
asyncio loop in its own thread beside the generator, a site that binds or says in one line why not, request
errors logged as one line each, and the page with its scripts and styles from the package."""

from __future__ import annotations

import asyncio
import logging
import threading

from ..errors import PainDiffusionError
from .guard import Once


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


STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def serve_page(app, folder, page_headers: dict | None = None) -> None:
    """``GET /`` (``folder``'s index.html) and ``GET /static/NAME`` (a script, style or picture of ``folder``,
    nothing else: no sub-folder, no other type); every page and script comes from the package, none from a CDN."""
    from aiohttp import web

    async def page(_):
        return web.Response(body=(folder / "index.html").read_bytes(), content_type="text/html",
                            headers=page_headers)

    async def static(request):
        name = request.match_info["name"]
        ext = name[name.rfind("."):]
        f = folder / name
        if "/" in name or ext not in STATIC_TYPES or not f.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=f.read_bytes(), content_type=STATIC_TYPES[ext])

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)

