"""A small in-process token bucket per client address (citizen result lookups).

Each client address owns a bucket of ``burst`` tokens refilled at ``rate`` per second; a
lookup takes one token or is refused with the seconds until one is back. Buckets live in an
LRU map of at most ``max_clients`` entries, so a flood of addresses cannot grow memory without
bound (an evicted client simply starts again with a full bucket).

Per process: with N API processes behind a load balancer a client gets up to N times the
rate. That is acceptable here because the limiter protects the database and the log of the
lookup route; enumeration of lookup codes is already infeasible (80-bit codes). The clock is
injected for tests.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Token buckets keyed by client; ``take`` answers the wait in seconds (0: allowed)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be positive, burst and max_clients at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take one token for ``client``: 0.0 if allowed, else seconds until one is back."""
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> int:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(wait))

    def __len__(self) -> int:
        return len(self._buckets)
