"""The time range of a replay or an export: parsed, checked against the topic's retention, in the log's time.

The topic records ``LogAppendTime``, so a record's timestamp is when the broker appended it, and timestamps grow
with offsets within a partition: ``[start, end)`` of append time is one contiguous run of offsets. Device time
(``recorded_at``) stays in each event. Pure functions; ``replay/reader.py`` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class RangeError(ValueError):
    """A range that cannot be read; the message says why, for a person."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime  # inclusive, aware
    end: datetime  # exclusive, aware

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` or ``+02:00``); a time without one is refused, not guessed."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise RangeError(f"{name}: {text!r} is not an ISO 8601 time (e.g. 2026-11-26T08:00:00Z)") from exc
    if moment.tzinfo is None:
        raise RangeError(f"{name}: {text!r} has no UTC offset; add Z or +HH:MM")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is in year 10000 in UTC; 0001-01-01T00:00+14:00 in year 0
        raise RangeError(f"{name}: {text!r} is outside the years 1 to 9999 once in UTC") from None


def time_range(start: str, end: str, retention: timedelta, now: datetime | None = None) -> TimeRange:
    """``[start, end)`` from two ISO 8601 texts; refused when empty, reversed or reaching before retention."""
    checked = TimeRange(parse_time(start, "from"), parse_time(end, "to"))
    if checked.start >= checked.end:
        raise RangeError(f"from ({start}) must be before to ({end})")
    oldest = (now or datetime.now(UTC)) - retention
    if checked.start < oldest:
        raise RangeError(
            f"from ({start}) is outside the topic's retention ({retention.total_seconds() / 86_400:g} days): "
            f"the oldest time that can be replayed is {oldest.isoformat(timespec='seconds')}"
        )
    return checked
