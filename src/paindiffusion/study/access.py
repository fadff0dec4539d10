"""The study's access code, for a server on a room's network: compared in constant time; an address that gets it
wrong :attr:`AttemptLimiter.limit` times within :attr:`AttemptLimiter.period_s` is refused until the period
passes. Host and Origin are checked by the guard every local server shares
(:class:`paindiffusion.live.guard.LocalOrigin`)."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque


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
