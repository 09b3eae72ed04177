"""Token buckets, driven by an explicit clock."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import cast

from starlette.requests import HTTPConnection

from producers.rate_limits import FailedAuthentications, RateLimiter, admit, failure_key


def test_a_bucket_admits_its_burst_then_the_rate() -> None:
    token = RateLimiter(rate=10, burst=20)
    assert admit([(token, "t")], 20, now=0.0) == 0.0
    assert admit([(token, "t")], 1, now=0.0) == 0.1  # empty: one fix more in a tenth of a second
    assert admit([(token, "t")], 5, now=0.5) == 0.0  # refilled 5 in half a second
    assert admit([(token, "other")], 20, now=0.5) == 0.0  # keys are independent


def test_nothing_is_taken_unless_every_bucket_has_it() -> None:
    token, tenant = RateLimiter(rate=100, burst=100), RateLimiter(rate=1, burst=10)
    assert admit([(token, "t"), (tenant, "a")], 10, now=0.0) == 0.0
    assert admit([(token, "t"), (tenant, "a")], 5, now=0.0) == 5.0  # the tenant's bucket is the one short
    assert token.bucket("t", 0.0).tokens == 90  # and the token's was not charged for the refused request


def test_more_than_a_burst_never_fits_and_a_zero_rate_disables() -> None:
    assert math.isinf(admit([(RateLimiter(rate=10, burst=20), "t")], 21, now=0.0))
    assert admit([(RateLimiter(rate=0, burst=1), "t")], 1_000, now=0.0) == 0.0


def test_a_key_told_to_wait_is_remembered_until_then() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    assert limiter.told_to_wait("a", now=0.0) == 0.0
    limiter.tell_to_wait("a", until=2.0)
    assert limiter.told_to_wait("a", now=0.5) == 1.5
    assert limiter.told_to_wait("b", now=0.5) == 0.0  # keys are independent
    assert limiter.told_to_wait("a", now=2.0) == 0.0  # the wait is over
    for key in ("x", "y", "z"):
        limiter.tell_to_wait(key, until=9.0)
    assert limiter.told_to_wait("x", now=0.0) == 0.0  # beyond max_keys, the oldest is forgotten
    assert limiter.told_to_wait("z", now=0.0) == 9.0


def test_the_least_recently_used_keys_are_forgotten_beyond_the_limit() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    admit([(limiter, "a")], 1, now=0.0)
    admit([(limiter, "b")], 1, now=0.0)
    admit([(limiter, "c")], 1, now=0.0)
    assert admit([(limiter, "a")], 1, now=0.0) == 0.0  # "a" was dropped: a full bucket again
    assert admit([(limiter, "c")], 1, now=0.0) == 1.0


def test_an_address_that_failed_its_burst_waits_and_others_do_not() -> None:
    failures = FailedAuthentications(rate=2.0, burst=3)
    for _ in range(3):
        assert failures.wait("10.0.0.1", 0.0) == 0
        failures.failed("10.0.0.1", 0.0)
    assert failures.wait("10.0.0.1", 0.0) == 0.5  # one failure's worth refills at 2 a second
    assert failures.wait("10.0.0.2", 0.0) == 0
    assert failures.wait("10.0.0.1", 0.5) == 0
    off = FailedAuthentications(rate=0, burst=1)
    off.failed("a", 0.0)
    off.failed("a", 0.0)
    assert off.wait("a", 0.0) == 0


def test_failures_count_by_address_and_an_ipv6_host_by_its_64() -> None:
    def key(host: str) -> str:
        return failure_key(cast(HTTPConnection, SimpleNamespace(client=SimpleNamespace(host=host))))

    assert key("203.0.113.7") == "203.0.113.7"
    assert key("2001:db8:1:2:aaaa::1") == key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:203.0.113.7") == "203.0.113.7"
