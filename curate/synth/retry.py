"""The retry policy: which failures are retried, how long to wait, and how fast to send.

The SDK's own retries are off; every decision to retry, back off, honour a
server's ``Retry-After`` or hold back under ``--rpm``/``--tpm`` is made here
and in ``LLMClient._send``, and counted.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from typing import Any

#: Statuses worth retrying: timeout, conflict, rate limit, server errors.
RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
#: Statuses that will fail every request of the run the same way: stop at once.
FATAL_STATUSES = frozenset({401, 403, 404})
#: The longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 300.0


class RateLimiter:
    """A token bucket refilled at ``per_minute / 60`` per second, holding one second's worth.

    A minute-sized bucket would let a whole minute's budget go out in one burst
    and trip the server's own finer-grained limiter; one second of burst keeps
    the flow smooth. Waiters queue in order behind the lock.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` may be spent; a request larger than the bucket waits for a full one."""
        async with self._lock:
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, correction: float) -> None:
        """Charge (or refund) the difference between the estimate and the real amount."""
        self.level = min(self.capacity, self.level - correction)


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, so clients spread out."""
    delay = min(cap, base * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)
