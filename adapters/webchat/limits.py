"""Chat limits: messages per minute per visitor and per client address, open connections per
client address. Abuse gets an `error` frame with `retry_after`, never a silent drop.

Counted per `hub serve` process (a visitor's socket and its messages stay on one process; with
several processes behind a balancer an address may get up to that many times the limit, which is
what a limit against floods needs, not an exact quota).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable

WINDOW = 60.0  # seconds: the limits are "per minute"
SWEEP_EVERY = 1024  # hits between sweeps of keys whose window is empty


class SlidingWindow:
    """At most `limit` hits per key within the last `WINDOW` seconds."""

    def __init__(self, limit: int, *, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._since_sweep = 0

    def wait(self, key: str) -> int:
        """Whole seconds until `key` may hit again (0: now), counting nothing."""
        hits = self._current(key)
        if len(hits) < self.limit:
            return 0
        return max(1, math.ceil(hits[0] + self.window - self._clock()))

    def hit(self, key: str) -> None:
        self._current(key).append(self._clock())
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep()

    def _current(self, key: str) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        cutoff = self._clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits

    def _sweep(self) -> None:
        self._since_sweep = 0
        cutoff = self._clock() - self.window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]


class MessageLimits:
    """Per visitor and per address; a message counts against both only when both allow it."""

    def __init__(self, per_visitor: int, per_address: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.visitors = SlidingWindow(per_visitor, clock=clock)
        self.addresses = SlidingWindow(per_address, clock=clock)

    def take(self, visitor: str, address: str) -> int:
        """0 when the message may go (and it is counted), else seconds to wait."""
        wait = max(self.visitors.wait(visitor), self.addresses.wait(address))
        if wait == 0:
            self.visitors.hit(visitor)
            self.addresses.hit(address)
        return wait


class ConnectionLimit:
    """Open connections (sockets and waiting long-polls) per client address."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        if self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


class FrameBudget:
    """Frames per second on one socket: a token bucket of `burst` frames refilled at `rate`
    per second. Counted before a frame is parsed, so a flood of typing, pings or hellos (each
    of which may read the database) costs the server nothing past the budget."""

    def __init__(self, rate: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        """True when the frame may be handled (and it is counted)."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
