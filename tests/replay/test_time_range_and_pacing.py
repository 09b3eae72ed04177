"""Time ranges and the replay clock, without I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from replay.pacing import ReplayClock
from replay.time_range import RangeError, parse_time, time_range

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MONTH = timedelta(days=30)


def test_times_need_an_offset_and_are_kept_in_utc() -> None:
    assert parse_time("2026-11-26T08:00:00+02:00", "from") == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert parse_time("2026-11-26T08:00:00.250Z", "from").microsecond == 250_000
    with pytest.raises(RangeError, match="no UTC offset"):
        parse_time("2026-11-26T08:00:00", "from")
    with pytest.raises(RangeError, match="not an ISO 8601 time"):
        parse_time("yesterday", "to")


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"])
def test_a_time_that_leaves_the_calendar_in_utc_is_refused_not_an_overflow(text: str) -> None:
    with pytest.raises(RangeError, match="outside the years 1 to 9999"):
        parse_time(text, "to")


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        ("2026-11-26T10:00:00Z", "2026-11-26T09:00:00Z", "must be before"),
        ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z", "must be before"),
        ("2026-10-01T00:00:00Z", "2026-11-26T10:00:00Z", "outside the topic's retention"),
        ("2026-11-26T10:00:00", "2026-11-26T11:00:00Z", "no UTC offset"),
    ],
)
def test_ranges_that_cannot_be_read_are_refused_with_the_reason(start: str, end: str, reason: str) -> None:
    with pytest.raises(RangeError, match=reason):
        time_range(start, end, MONTH, now=NOW)


def test_a_range_within_retention_is_half_open_in_milliseconds() -> None:
    checked = time_range("2026-11-26T10:00:00Z", "2026-11-26T10:02:00Z", MONTH, now=NOW)
    assert checked.seconds == 120 and checked.end_ms - checked.start_ms == 120_000


def test_the_clock_runs_at_its_speed_pauses_and_seeks() -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    clock = ReplayClock(start, speed=60, now=100.0)
    assert clock.at(101.0) == start + timedelta(minutes=1)
    assert clock.due_in(start + timedelta(minutes=2), 101.0) == pytest.approx(1.0)
    assert clock.due_in(start, 101.0) == 0.0  # already passed: due now
    clock.pause(101.0)
    assert clock.at(500.0) == start + timedelta(minutes=1) and math.isinf(clock.due_in(start + timedelta(hours=1), 500))
    clock.resume(500.0)
    assert clock.at(501.0) == start + timedelta(minutes=2)
    clock.set_speed(120, 501.0)
    assert clock.at(502.0) == start + timedelta(minutes=4)
    clock.seek(start, 502.0)
    assert clock.at(503.0) == start + timedelta(minutes=2)


def test_speed_zero_makes_every_event_due_at_once_and_speeds_are_bounded() -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert ReplayClock(start, speed=0, now=0.0).due_in(start + timedelta(days=1), 0.0) == 0.0
    with pytest.raises(ValueError, match="speed"):
        ReplayClock(start, speed=1001, now=0.0)
