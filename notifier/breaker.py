"""A webhook endpoint's circuit breaker, pure: after ``FAILURES_TO_OPEN`` failed attempts in a row the endpoint is
left alone for a cool-down (doubling from ``FIRST_COOL_DOWN_SECONDS`` up to ``MAX_COOL_DOWN_SECONDS`` while it keeps
failing), then one attempt is let through (half open): a success closes the breaker, a failure opens it again
(docs/alerts.md).

While it is open, the endpoint's deliveries wait: they are not attempted, and the waiting counts as no failure of
theirs (their retry window still runs: one that outlives it is a dead letter). One endpoint that is down thus costs
one attempt per cool-down, not one per alert, and the other endpoints of its tenant are not held up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

FAILURES_TO_OPEN: Final = 5
FIRST_COOL_DOWN_SECONDS: Final = 30.0
MAX_COOL_DOWN_SECONDS: Final = 600.0

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class Breaker:
    failures: int = 0  # failed attempts in a row
    opened_at: float | None = None  # when it last opened (None: closed)
    cool_down: float = FIRST_COOL_DOWN_SECONDS
    trial_at: float | None = None  # when the half-open trial attempt was let through, until its answer

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return "closed"
        return "half_open" if now >= self.opened_at + self.cool_down else "open"

    def allows(self, now: float) -> bool:
        """Whether an attempt may be made now: always when closed; when half open, one (the trial) until its answer
        (or, should the answer never come, once more after another cool-down)."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open":
            return False
        if self.trial_at is not None and now < self.trial_at + self.cool_down:
            return False
        self.trial_at = now
        return True

    def opens_again_at(self) -> float | None:
        """When an attempt may next be let through (None: closed, at once)."""
        return None if self.opened_at is None else self.opened_at + self.cool_down

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.cool_down, self.trial_at = 0, None, FIRST_COOL_DOWN_SECONDS, None

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.opened_at is not None:  # the trial failed: open again, for longer
            self.cool_down = min(MAX_COOL_DOWN_SECONDS, self.cool_down * 2)
            self.opened_at, self.trial_at = now, None
        elif self.failures >= FAILURES_TO_OPEN:
            self.opened_at, self.trial_at = now, None
