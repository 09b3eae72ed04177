"""A token bucket, pure: every call takes ``now`` (monotonic seconds). Used for the ingest API's rate limits and the
edge's inbound message rate."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: int  # capacity
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until ``amount`` tokens are there (0: now); a request larger than the burst never fits."""
        self._refill(now)
        if amount > self.burst:
            return math.inf
        return max(0.0, (amount - self.tokens) / self.rate)

    def take(self, amount: int, now: float) -> None:
        self._refill(now)
        self.tokens -= amount
