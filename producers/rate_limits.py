"""Rate limits of the ingest API: token buckets per token and per tenant, counted in fixes.

Pure: every call takes ``now`` (monotonic seconds), so the tests drive time. Buckets live in each API process; with
N processes behind a load balancer a client gets up to N times the rate, which the docs say.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from starlette.requests import HTTPConnection

from locstream.token_bucket import TokenBucket


class RateLimiter:
    """Buckets by key (a token, a tenant), the least recently used dropped beyond ``max_keys``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        # Until when each key was told to wait (its last 429's Retry-After), for the keys told lately.
        self._told: OrderedDict[str, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def bucket(self, key: str, now: float) -> TokenBucket:
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(self.rate, self.burst, float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return found

    def tell_to_wait(self, key: str, until: float) -> None:
        """``key`` was refused and told to come back at ``until`` (monotonic seconds)."""
        self._told[key] = until
        self._told.move_to_end(key)
        if len(self._told) > self.max_keys:
            self._told.popitem(last=False)

    def told_to_wait(self, key: str, now: float) -> float:
        """Seconds left of the wait ``key`` was last told (0: none): a client that comes back sooner can be refused
        before its request is even read."""
        until = self._told.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._told[key]
            return 0.0
        return until - now


def admit(checks: list[tuple[RateLimiter, str]], amount: int, now: float) -> float:
    """Take ``amount`` from every key's bucket if all have it; otherwise take nothing and return the wait."""
    buckets = [limiter.bucket(key, now) for limiter, key in checks if limiter.enabled]
    wait = max((bucket.wait_for(amount, now) for bucket in buckets), default=0.0)
    if wait > 0:
        return wait
    for bucket in buckets:
        bucket.take(amount, now)
    return 0.0


class FailedAuthentications:
    """Failed authentications per client address, a token bucket each: an address that spent its budget is refused
    (``wait`` > 0) before its next credentials are even checked, so guessing keys or replaying a dead token costs the
    API next to nothing. Its honest requests wait too: an address is all that is known before the credentials."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self._limiter = RateLimiter(rate, burst, max_keys)

    def wait(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        if not self._limiter.enabled:
            return 0.0
        return self._limiter.bucket(address, now).wait_for(1, now)

    def failed(self, address: str, now: float) -> None:
        if self._limiter.enabled:
            self._limiter.bucket(address, now).take(1, now)


def failure_key(request: HTTPConnection) -> str:
    """Whose failures a request's count among: its client address, an IPv6 one by its /64 (a host is given a /64,
    and would otherwise get a fresh budget from each of its addresses)."""
    host = request.client.host if request.client else "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
