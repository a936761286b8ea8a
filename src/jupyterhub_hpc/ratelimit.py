"""Per-caller rate limits of the hub API endpoints, in the hub process.

A token bucket per key: ``limit`` requests at once, refilled at ``limit / window`` per second,
so that a steady ``limit`` per ``window`` always passes and a burst beyond it waits. One
:class:`RateLimiter` per hub process serves every spawner (:func:`get_rate_limiter`); it keeps
at most ``max_keys`` buckets, forgetting the least recently used (a forgotten bucket is full,
as for a caller idle for a whole window).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tornado import web

__all__ = ["RateLimiter", "check_caller_rate", "get_rate_limiter"]


class RateLimiter:
    """Token buckets keyed by caller."""

    def __init__(self, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        #: key -> (tokens left, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str, limit: int, window: float) -> int:
        """Count one request of ``key``: 0 when it may proceed, else the whole seconds to wait
        before the next one will (a ``Retry-After``). ``limit`` or ``window`` 0: no limit."""
        if limit <= 0 or window <= 0:
            return 0
        now = self._clock()
        rate = limit / window
        tokens, then = self._buckets.pop(key, (float(limit), now))
        tokens = min(float(limit), tokens + (now - then) * rate)
        wait = 0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = max(1, math.ceil((1.0 - tokens) / rate))
        self._buckets[key] = (tokens, now)  # the most recently used last
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


_LIMITER = RateLimiter()


def get_rate_limiter() -> RateLimiter:
    """The hub process's limiter (shared by all spawners and handlers)."""
    return _LIMITER


def check_caller_rate(caller: Any, limit: int, window: float, what: str = "profile API") -> None:
    """HTTP 429 with ``Retry-After`` when ``caller`` (a user or a service) is over ``limit``
    requests per ``window`` seconds, counted with every other endpoint that uses the same limit."""
    key = f"{getattr(caller, 'kind', 'user')}:{caller.name}"
    wait = get_rate_limiter().acquire(key, limit, window)
    if wait:
        error = web.HTTPError(429, "too many %s requests, retry in %d s", what, wait)
        # JupyterHub's write_error sets the headers an HTTPError carries
        error.headers = {"Retry-After": str(wait)}  # type: ignore[attr-defined]
        raise error
