"""When a webhook delivery is tried again, pure: exponential backoff with jitter for up to ``RETRY_WINDOW_SECONDS``
from the first attempt, a receiver's ``Retry-After`` honoured, then a dead letter (docs/alerts.md).

- An answer says whether to try again (``verdict``): a 2xx is delivered; a 408, 425, 429 or 5xx, a timeout or a
  connection that failed is worth another try; any other answer (400, 401, 403, 404, 410, 413, 422, ...) is the
  receiver refusing this delivery, and trying again would be refused again: a dead letter at once.
- The n-th retry waits ``min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (n - 1))``, of which a random half
  (equal jitter: never less than half the step, so a receiver that is down is not hammered, and retries of many
  deliveries spread out instead of arriving together). A ``Retry-After`` longer than that is waited for instead.
- A retry that would fall after the window's end is not made: the delivery is a dead letter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal

FIRST_DELAY_SECONDS: Final = 5.0
MAX_DELAY_SECONDS: Final = 2 * 3_600.0
RETRY_WINDOW_SECONDS: Final = 24 * 3_600.0
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})

Verdict = Literal["delivered", "retry", "refused"]


def verdict(status: int | None) -> Verdict:
    """What an attempt's answer means: ``status`` None when there was none (a timeout, a refused connection)."""
    if status is None or status in _RETRYABLE_STATUSES or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    return "refused"


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """A ``Retry-After`` header's wait in seconds (delay-seconds or an HTTP date), None when absent or unreadable."""
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A delivery's retries: when its first attempt was made, how many attempts so far."""

    first_attempt_at: float
    attempts: int = 1

    @property
    def deadline(self) -> float:
        return self.first_attempt_at + RETRY_WINDOW_SECONDS

    def next_attempt_at(self, now: float, retry_after: float | None, rng: random.Random) -> float | None:
        """When to try again after a failed attempt at ``now``; None when that would be past the window (a dead
        letter)."""
        step = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (self.attempts - 1))
        delay = step / 2 + rng.uniform(0.0, step / 2)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        at = now + delay
        return at if at <= self.deadline else None

    def tried_again(self) -> Schedule:
        return Schedule(self.first_attempt_at, self.attempts + 1)
