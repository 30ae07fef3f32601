"""Per-key hourly budgets for the ballot relay (per voter, per client, per governor, per node).

A budget is a token bucket of ``per_hour`` tokens refilled continuously. Keys are held in an LRU
of at most ``max_keys``: forgetting a key hands it a fresh budget, so the keys that cost
something to make (client addresses, gossip peers, recognised governors) are what bounds an
attacker, and the per-node budget bounds everything. Thread-safe (the relay's worker thread and
the trio thread both charge it).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

_HOUR = 3600.0


class HourlyBudget:
    """``take(key)`` spends one unit of ``key``'s budget if it has one."""

    def __init__(self, per_hour: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self.max_keys = max(1, max_keys)
        self.clock = clock
        self._rate = per_hour / _HOUR
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()
        self.refused = 0

    def take(self, key: str) -> bool:
        """True (and one unit spent) if ``key`` is within its budget; False otherwise."""
        if self.per_hour <= 0:
            self.refused += 1
            return False
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.per_hour), now))
            tokens = min(float(self.per_hour), tokens + (now - at) * self._rate)
            ok = tokens >= 1.0
            if ok:
                tokens -= 1.0
            else:
                self.refused += 1
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return ok

    def refund(self, key: str) -> None:
        """Give back one unit (the work it paid for did not happen)."""
        with self._lock:
            if key in self._buckets:
                tokens, at = self._buckets[key]
                self._buckets[key] = (min(float(self.per_hour), tokens + 1.0), at)

    def __len__(self) -> int:
        return len(self._buckets)
