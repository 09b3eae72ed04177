"""The reports' pure parts (``projector/reports.py``): a technician's day from its stops and trips, and the page
cursor, which a client may forge."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from projector.reports import day_summary, decode_cursor, encode_cursor
from projector.store import StayRecord

DAY = datetime(2026, 12, 7, tzinfo=UTC)
END = DAY + timedelta(days=1)


def _stop(start: float, end: float | None, job: str | None = None) -> StayRecord:
    return StayRecord(
        "t1",
        "stop",
        "stop_ended" if end is not None else "stop_started",
        DAY + timedelta(hours=start),
        DAY + timedelta(hours=end) if end is not None else None,
        {"job_id": job},
    )


def _trip(start: float, end: float | None, metres: float) -> StayRecord:
    ended = DAY + timedelta(hours=end) if end is not None else None
    return StayRecord("t1", "trip", "trip_ended", DAY + timedelta(hours=start), ended, {"distance_meters": metres})


def test_a_day_counts_the_time_inside_it_and_a_trips_distance_on_the_day_it_started() -> None:
    stops = [
        _stop(-10, 8),  # the night at home: 8 hours of it are today's
        _stop(8.5, 10, job="job-1"),
        _stop(23.5, None),  # still there: until now (past the day's end, so until midnight)
    ]
    trips = [_trip(8, 8.5, 12_000.0), _trip(10, 23.5, 80_000.0), _trip(-1, -0.5, 5_000.0)]
    figures = day_summary(stops, trips, DAY, END, now=END + timedelta(hours=2))
    assert figures.stopped_seconds == (8 + 1.5 + 0.5) * 3600
    assert figures.driving_seconds == (0.5 + 13.5) * 3600
    assert figures.distance_meters == 92_000.0 and figures.trips == 2  # yesterday's trip is yesterday's
    assert (figures.stops_at_job_sites, figures.stops_elsewhere) == (1, 2)


def test_a_stop_that_lasts_counts_until_now() -> None:
    figures = day_summary([_stop(9, None)], [], DAY, END, now=DAY + timedelta(hours=9, minutes=23))
    assert figures.stopped_seconds == 23 * 60


def test_a_cursor_round_trips_and_anything_else_is_refused() -> None:
    record = _stop(9, 10)
    assert decode_cursor(encode_cursor(record)) == (record.started_at, "t1")
    naive = base64.urlsafe_b64encode(b'["2026-12-07T09:00:00","t1"]').decode()
    for forged in ("not-a-cursor", "", "e30", naive, base64.urlsafe_b64encode(b'["2026-12-07T09:00:00Z",7]').decode()):
        with pytest.raises(ValueError):
            decode_cursor(forged)
