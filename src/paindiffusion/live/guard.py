"""Guards for the package's local web servers (the demo, ``stream --websocket``, the study): only pages of the
server's own origin may use them, each connection has a message budget, every message and line is parsed within
fixed bounds, and trouble that comes from outside is reported once per kind (:class:`Once`).

Why the origin check: a WebSocket is not covered by the browser's same-origin policy, so any page the user
opens could connect to ``ws://127.0.0.1:PORT`` and drive the face or read the stream (cross-site WebSocket
hijacking), and a page on another domain that re-resolves its name to 127.0.0.1 (DNS rebinding) reaches every
route under that name. Browsers always send ``Origin`` on a WebSocket handshake and on cross-origin requests
(RFC 6455 §4.1, the Fetch standard), and ``Host`` is the name the page used, so a server that answers only a
loopback ``Host`` at its own port and only its own ``Origin`` refuses both. Clients that are not browsers
(robots, scripts) send no ``Origin``; they present the server's token (``?token=…``) instead. A server on a
room's network (``study serve --host 0.0.0.0``) also answers a ``Host`` that is an IP address or a name the
operator allowed, with the same ``Origin`` rule.

Why the budget and the bounds: one connection must not be able to queue unbounded work (a thousand "new
patient" requests) or memory (a 300 MB line, a number with 400 digits, JSON nested 100 000 deep) and so lock
out every other viewer. Each guard is a small class or function with an injectable clock where time matters.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO, Callable

from ..errors import PainDiffusionError

MAX_LINE_BYTES = 4096  # a control line or message is a few dozen bytes; 4 KiB leaves room for any real one
MAX_JSON_DEPTH = 8  # controls are flat objects; a little nesting is tolerated, 100 000 levels are not
MAX_DIGITS = 20  # a JSON integer with more digits is not a control value (and Python would build a bignum)


def split_host_port(text: str | None) -> tuple[str, int | None]:
    """``name:port``, ``[v6]:port``, ``name`` or ``[v6]`` → (name in lower case, port or None); ("", None) when
    malformed. The one parser of a host and port: Host and Origin headers, ``--osc``, ``--input osc:``."""
    t = str(text or "").strip().lower()
    if t.startswith("["):
        name, closed, rest = t[1:].partition("]")
        if not closed or rest[:1] not in ("", ":"):
            return "", None
        port = rest[1:] if rest else None
    else:
        name, _, port = t.rpartition(":") if ":" in t else (t, "", None)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return "", None
    return name, None if port is None else int(port)


def host_port(text: str, what: str) -> tuple[str, int]:
    """A ``HOST:PORT`` option (``--osc``, ``--input osc:``): (host, port) or a one-line error."""
    name, port = split_host_port(text)
    if not name or port is None:
        raise PainDiffusionError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:39539")
    return name, port


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(name: str) -> bool:
    """True for a name or address only this computer reaches: localhost, 127.0.0.0/8, ::1."""
    return name == "localhost" or (is_ip(name) and ipaddress.ip_address(name).is_loopback)


class LocalOrigin:
    """Which requests a local server answers (see the module docstring for why).

    * ``Host`` must name this server at the port the request arrived on: a loopback name or address (localhost,
      127.0.0.0/8, ::1) or, for a server on a room's network (``network``), any IP address or one of ``names``.
    * A request that carries ``Origin`` must come from the page it addressed (``http://`` + its Host), from this
      machine's loopback names at this port, or from one of ``allow`` (e.g. a user's own dashboard, given on the
      command line); a request the browser marks ``Sec-Fetch-Site: cross-site`` is refused unless allowed.
    * A WebSocket handshake without ``Origin`` (a non-browser client) must carry ``?token=`` :attr:`token`.

    :meth:`middleware` applies this to every route of an aiohttp app and answers 403 with the reason."""

    def __init__(self, token: str | None = None, allow: tuple[str, ...] = (), network: bool = False,
                 names: tuple[str, ...] = ()):
        self.token = token or secrets.token_urlsafe(12)
        self.allow = {_origin_key(o) for o in allow}
        self.network, self.names = network, frozenset(n.lower() for n in names)
        self.refused = 0  # requests refused so far (for the page's statistics and the benchmark)

    def host_ok(self, host: str | None, port: int) -> bool:
        name, p = split_host_port(host)
        if not name or (80 if p is None else p) != port:
            return False
        return is_loopback(name) or (self.network and (is_ip(name) or name in self.names))

    def origin_ok(self, origin: str, host: str | None, port: int) -> bool:
        key = _origin_key(origin)
        scheme, _, rest = key.partition("://")
        name, p = split_host_port(rest)
        own = key == _origin_key(f"http://{host}") or (scheme == "http" and is_loopback(name) and (p or 80) == port)
        return own or key in self.allow

    def refusal(self, host: str | None, origin: str | None, port: int, websocket: bool, token: str | None,
                fetch_site: str | None = None) -> str | None:
        """Why a request is refused (one line), or None when it is let through."""
        if not self.host_ok(host, port):
            return (f"Host {host!r:.60} is not this server; open the page by this computer's IP address or "
                    f"localhost at port {port} (http://127.0.0.1:{port}/ on this computer)")
        allowed = origin is not None and _origin_key(origin) in self.allow
        if (origin is not None and not self.origin_ok(origin, host, port)) or (fetch_site == "cross-site" and not allowed):
            return f"requests from other web pages ({origin!r:.60}) are refused; only this server's own page may use it"
        if origin is None and websocket and not hmac.compare_digest(token or "", self.token):
            return "a WebSocket client without an Origin (not a browser) must add ?token=… as printed at start"
        return None

    def middleware(self):
        """An aiohttp middleware refusing what :meth:`refusal` refuses: 403 and the reason as one JSON line."""
        from aiohttp import web

        @web.middleware
        async def local_origin(request, handler):
            sock = request.transport.get_extra_info("sockname") if request.transport else None
            port = sock[1] if sock else -1
            h = request.headers
            why = self.refusal(h.get("Host"), h.get("Origin"), port, h.get("Upgrade", "").lower() == "websocket",
                               request.query.get("token"), h.get("Sec-Fetch-Site"))
            if why is not None:
                self.refused += 1
                return web.json_response({"error": why}, status=403)
            return await handler(request)

        return local_origin


def _origin_key(origin: str) -> str:
    return str(origin).strip().lower().rstrip("/")


class MessageBudget:
    """A token bucket for one connection: on average ``rate`` messages per second, in bursts of up to
    ``burst``; :meth:`take` says whether the next message may be handled. ``flooding`` turns true after more
    than ``burst`` refusals in a row: the connection is then closed (a page's own controls stay far below).
    ``clock`` is injectable, so tests need no wall-clock waits."""

    def __init__(self, rate: float = 50.0, burst: int = 100, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = float(rate), int(burst), clock
        self.tokens, self.last = float(burst), clock()
        self.refused_in_a_row, self.refused = 0, 0

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        self.refused += 1
        return False

    @property
    def flooding(self) -> bool:
        return self.refused_in_a_row > self.burst


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise PainDiffusionError(f"a number with {len(text.lstrip('-'))} digits is not a control value")
    return int(text)


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise PainDiffusionError(f"number {text:.20}… is too large for a control value")
    return x


def _no_constant(name: str):
    raise PainDiffusionError(f"{name} is not a control value; give a finite number")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for ch in re.sub(_STRING, '""', text):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_bounded_json(text: str | bytes, max_bytes: int = MAX_LINE_BYTES, max_depth: int = MAX_JSON_DEPTH) -> object:
    """``json.loads`` within bounds: at most ``max_bytes``, nesting at most ``max_depth``, integers of at most
    :data:`MAX_DIGITS` digits, finite numbers only. Anything else raises a one-line :class:`PainDiffusionError`
    (never RecursionError, OverflowError or a traceback)."""
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise PainDiffusionError(f"message of {len(text)} bytes is longer than {max_bytes}")
        text = text.decode("utf-8", "replace")
    if len(text.encode("utf-8", "replace")) > max_bytes:
        raise PainDiffusionError(f"message of more than {max_bytes} bytes is not a control")
    if json_depth(text) > max_depth:
        raise PainDiffusionError(f"message nests deeper than {max_depth} levels; controls are flat JSON objects")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as e:
        if isinstance(e, PainDiffusionError):
            raise
        raise PainDiffusionError(f"message {text!r:.40} is not valid JSON") from None


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


TOO_LONG = None  # what :class:`BoundedLines` yields for a line over its limit


class BoundedLines:
    """The lines of a byte stream (stdin, a pipe), each at most ``limit`` bytes and decoded as UTF-8 (bad
    bytes replaced). A longer line is skipped up to its newline, read in ``limit``-byte pieces so memory stays
    bounded whatever arrives, and yielded as :data:`TOO_LONG`; the lines after it are read as usual."""

    def __init__(self, stream: BinaryIO, limit: int = MAX_LINE_BYTES):
        self.stream, self.limit = stream, limit

    def __iter__(self) -> Iterator[str | None]:
        while True:
            line = self.stream.readline(self.limit + 1)
            if not line:
                return
            if len(line) > self.limit and not line.endswith(b"\n"):
                while True:  # the rest of the long line, piece by piece
                    rest = self.stream.readline(self.limit)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield TOO_LONG
                continue
            yield line.decode("utf-8", "replace")


__all__ = ["MAX_LINE_BYTES", "LocalOrigin", "MessageBudget", "parse_bounded_json", "json_depth", "BoundedLines",
           "TOO_LONG", "Once", "split_host_port", "host_port", "is_loopback"]
