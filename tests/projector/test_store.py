"""The backends' shared pure helpers: batch planning (fixes, profiles and the derived facts' marks) and the exact time
encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.position import Position
from domain.projection import Key, TechnicianState, Verdicts, apply, fix_verdict
from projector.store import from_micros, marks, plan_batch, to_micros
from schemas.events import MARK_EVENTS, Event, FixQuality, LocationRecorded, Mark
from tests.domain.test_projection import profile
from tests.support.events import T0, location, offline, online, retracted, stay, tracking_stopped

MARKS = ("offline", "online", "stopped", "stop_started", "stop_ended", "trip_started", "trip_ended", "retract_stop")

batches = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2"]),
        st.integers(0, 6),
        st.sampled_from(["fix", "flagged", "status", *MARKS]),
        st.integers(0, 9),
    ),
    max_size=30,
)


def _mark(kind: str, tech: str, value: int) -> Mark:
    """A derived fact about the technician, of times 0-9 s after T0 like the fixes': a stay starting at ``value``
    (ending a second later), a silence after a fix at ``value``."""
    at = T0 + timedelta(seconds=value)
    if kind == "offline":
        return offline("a", tech, at)
    if kind == "online":
        return online("a", tech, at, at + timedelta(seconds=1))
    if kind == "stopped":  # the app said it stopped tracking
        return tracking_stopped("a", tech, at)
    if kind == "retract_stop":
        return retracted("a", tech, "stop", at, at)
    return stay(kind, "a", tech, at, at + timedelta(seconds=1) if kind.endswith("ended") else None)


def _fix(seconds: int, value: int, tech: str, flagged: bool) -> LocationRecorded:
    """Steps of 22 m a second apart: some good, some jumps (up to 720 km/h), some repeats; or a fix flagged at
    ingest."""
    quality = FixQuality(flags=("accuracy",) if flagged else ())
    return location("a", tech, T0 + timedelta(seconds=seconds), 6.5 + value * 0.0002, 3.0, quality=quality)


@settings(max_examples=300, deadline=None)
@given(batches, batches)
def test_planning_a_batch_equals_applying_each_event_in_log_order(
    earlier: list[tuple[str, int, str, int]], batch: list[tuple[str, int, str, int]]
) -> None:
    def made(tech: str, seconds: int, kind: str, value: int) -> Event:
        if kind in MARKS:
            return _mark(kind, tech, value)
        if kind == "status":
            return profile(seconds, status=f"s{value}")
        return _fix(seconds, value, tech, kind == "flagged")

    def events(spec: list[tuple[str, int, str, int]], start: int) -> list[tuple[Event, Position]]:
        return [(made(*item), Position(0, start + i)) for i, item in enumerate(spec)]

    sequential: dict[Key, TechnicianState] = {}
    for event, position in events(earlier, 0):
        key = (event.tenant_id, event.technician_id)
        sequential[key] = apply(sequential.get(key), event, position)
    before, current = dict(sequential), dict(sequential)
    fresh = events(batch, len(earlier))
    flags = {}
    for event, position in fresh:
        key = (event.tenant_id, event.technician_id)
        state = sequential.get(key)
        if isinstance(event, LocationRecorded) and (found := fix_verdict(event, state.fix if state else None)):
            flags[position] = found
        sequential[key] = apply(state, event, position)

    # As the stores call it: the derived facts come apart from the fixes (the runner splits them), after them.
    plan = plan_batch(current, [e for e in fresh if not isinstance(e[0], MARK_EVENTS)], marks(fresh))  # type: ignore[arg-type]
    assert current == sequential
    # Every row that differs is written, and what is written is right (a mark and its undoing in one batch, say
    # offline then online, may write a row as it was).
    assert {key for key, state in sequential.items() if before.get(key) != state} <= plan.changed.keys()
    assert all(sequential[key] == state for key, state in plan.changed.items())
    assert plan.flags == flags
    # A reader that keeps no table (an export) judges the same: ``Verdicts`` over the whole log, in order.
    verdicts = Verdicts()
    judged = {
        position: found
        for event, position in [*events(earlier, 0), *fresh]
        if isinstance(event, LocationRecorded)
        and (
            found := verdicts.judge(
                (event.tenant_id, event.technician_id),
                event.recorded_at,
                event.data.latitude,
                event.data.longitude,
                event.data.quality,
                position,
            )
        )
    }
    assert {position: found for position, found in judged.items() if position.offset >= len(earlier)} == flags


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_microseconds_round_trip_exactly(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_microseconds_are_taken_in_utc_whatever_the_offset() -> None:
    lagos = timezone(timedelta(hours=1))
    assert to_micros(datetime(2026, 1, 1, 1, 0, tzinfo=lagos)) == to_micros(datetime(2026, 1, 1, tzinfo=UTC))
