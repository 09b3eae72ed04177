"""When a webhook delivery is tried again (``notifier.backoff``): which answers are retried, the growing jittered
waits, ``Retry-After`` honoured in both its forms, and the dead letter once the 24-hour window would be passed."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.backoff import (
    FIRST_DELAY_SECONDS,
    MAX_DELAY_SECONDS,
    RETRY_WINDOW_SECONDS,
    Schedule,
    retry_after_seconds,
    verdict,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (408, "retry"),
        (425, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "refused"),
        (401, "refused"),
        (404, "refused"),
        (410, "refused"),
        (413, "refused"),
        (301, "refused"),  # redirects are never followed: the receiver must give the URL it answers at
    ],
)
def test_which_answers_are_tried_again(status: int | None, expected: str) -> None:
    assert verdict(status) == expected


def test_retry_after_in_seconds_or_as_a_date_and_nonsense_ignored() -> None:
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(format_datetime(datetime(2026, 12, 8, 12, 10, tzinfo=UTC), usegmt=True), now) == 600.0
    assert retry_after_seconds("Mon, 07 Dec 2026 12:00:00 GMT", now) == 0.0  # a date gone by: at once
    for nonsense in (None, "", "soon", "-5", "1.5e9", "Mon, 99 Foo 2026"):
        assert retry_after_seconds(nonsense, now) is None


def test_the_waits_double_with_jitter_up_to_the_cap_and_stop_at_the_window() -> None:
    rng = random.Random(7)
    schedule, now, waits = Schedule(first_attempt_at=0.0), 0.0, []
    while (at := schedule.next_attempt_at(now, None, rng)) is not None:
        waits.append(at - now)
        now, schedule = at, schedule.tried_again()
    steps = [min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2**n) for n in range(len(waits))]
    assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))
    assert waits[0] <= FIRST_DELAY_SECONDS and max(waits) > MAX_DELAY_SECONDS / 2
    assert RETRY_WINDOW_SECONDS - MAX_DELAY_SECONDS <= now <= RETRY_WINDOW_SECONDS  # tried until the window's end
    assert 24 <= schedule.attempts <= 28  # 23 to 27 retries after the first (docs/alerts.md)


def test_a_receivers_retry_after_is_waited_for_unless_it_ends_past_the_window() -> None:
    rng = random.Random(1)
    schedule = Schedule(first_attempt_at=1_000.0)
    assert schedule.next_attempt_at(1_000.0, 90.0, rng) == 1_090.0  # longer than the 5 s step: waited for
    at = schedule.next_attempt_at(1_000.0, 1.0, rng)
    assert at is not None and 1_002.5 <= at <= 1_005.0  # shorter: the backoff's own wait
    assert schedule.next_attempt_at(1_000.0, RETRY_WINDOW_SECONDS + 1, rng) is None  # dead letter, not a day's wait


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0, max_value=RETRY_WINDOW_SECONDS), st.integers())
def test_a_retry_is_never_before_half_its_step_nor_after_the_deadline(attempts: int, now: float, seed: int) -> None:
    schedule = Schedule(first_attempt_at=0.0, attempts=attempts)
    at = schedule.next_attempt_at(now, None, random.Random(seed))
    step = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (attempts - 1))
    if at is None:  # the drawn retry fell past the deadline: only possible when the step reaches past it
        assert now + step > schedule.deadline
    else:
        assert now + step / 2 <= at <= min(now + step, schedule.deadline)
