"""Who may talk to a local web server: Host and Origin checks, an access code, and a limit on wrong codes.

Nothing here knows about studies; any aiohttp app can use :func:`host_origin_middleware`, :class:`AccessCode`
and :class:`AttemptLimiter`.

* **Host** (against DNS rebinding: a web page whose own name is made to resolve to 127.0.0.1 reaches the server
  with its own name in Host): the host must be an IP address literal, ``localhost`` or a name the operator
  allowed, and the port the one the request arrived on. A server bound to loopback accepts loopback hosts only.
* **Origin** (against cross-site requests: any page the user opens may POST to 127.0.0.1): a request that
  carries an Origin must come from the page's own origin, ``http://`` + Host; ``Sec-Fetch-Site: cross-site`` is
  refused too. Requests without Origin (non-browser clients, same-origin GETs) pass on Host alone.
* **Access code**, for a server on a room's network: compared in constant time; an address that gets it wrong
  :attr:`AttemptLimiter.limit` times within :attr:`AttemptLimiter.period_s` is refused until the period passes.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import deque

from aiohttp import web

def _host_port(host_header: str) -> tuple[str, int | None]:
    """``name:port`` / ``[v6]:port`` / ``name`` → (name, port or None); "" for malformed input."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            return "", None
        name, rest = h[1:end], h[end + 1:]
    else:
        name, _, port = h.partition(":")
        rest = ":" + port if port else ""
    if rest and (not rest.startswith(":") or not rest[1:].isdigit()):
        return "", None
    return name, int(rest[1:]) if rest else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """True for a name or address only this computer reaches: localhost, 127.0.0.0/8, ::1."""
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


def host_allowed(host_header: str, port: int, loopback_only: bool, names: frozenset[str] = frozenset()) -> bool:
    """A Host header naming this server: the port it listens on and a loopback host (``loopback_only``), else
    any IP literal, localhost or one of ``names``."""
    name, p = _host_port(host_header)
    if not name or (p if p is not None else 80) != port:
        return False
    if loopback_only:
        return is_loopback(name)
    return _is_ip(name) or name == "localhost" or name in names


def host_origin_middleware(loopback_only: bool, names: frozenset[str] = frozenset()):
    """aiohttp middleware refusing (403, one JSON line) a request whose Host or Origin is not this server's."""

    @web.middleware
    async def guard(request: web.Request, handler):
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        port = sock[1] if sock else None
        host = request.headers.get("Host", "")
        if port is None or not host_allowed(host, port, loopback_only, names):
            return web.json_response({"error": "this server answers only requests addressed to it by IP address "
                                               "or localhost"}, status=403)
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return web.json_response({"error": "requests from other web pages are refused"}, status=403)
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            return web.json_response({"error": "requests from other web pages are refused"}, status=403)
        return await handler(request)

    return guard


class AccessCode:
    """A code participants type in; generated as 6 digits (easy to read out in a room) unless given."""

    def __init__(self, code: str | None):
        self.code = code

    @classmethod
    def generate(cls) -> "AccessCode":
        return cls(f"{secrets.randbelow(10**6):06d}")

    @property
    def required(self) -> bool:
        return self.code is not None

    def matches(self, given) -> bool:
        if self.code is None:
            return True
        return isinstance(given, str) and hmac.compare_digest(given.strip().encode(), self.code.encode())


class AttemptLimiter:
    """At most ``limit`` failures per client address per ``period_s`` (6 digits at 10 a minute: ~70 days on
    average to guess). ``clock`` is injectable for tests."""

    def __init__(self, limit: int = 10, period_s: float = 60.0, clock=time.monotonic, max_clients: int = 4096):
        self.limit, self.period_s, self.clock, self.max_clients = limit, period_s, clock, max_clients
        self.failures: dict[str, deque] = {}

    def blocked(self, client: str) -> bool:
        q = self.failures.get(client)
        if q is None:
            return False
        t = self.clock()
        while q and t - q[0] > self.period_s:
            q.popleft()
        if not q:
            del self.failures[client]
        return bool(q) and len(q) >= self.limit

    def fail(self, client: str) -> None:
        if client not in self.failures and len(self.failures) >= self.max_clients:
            self.failures.pop(next(iter(self.failures)))  # bounded memory: the oldest address is forgotten
        self.failures.setdefault(client, deque()).append(self.clock())
