"""The backends' shared pure helpers: batch planning and the exact time encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.position import Position
from domain.projection import Key, TechnicianState, apply, fix_verdict
from projector.store import from_micros, plan_batch, to_micros
from schemas.events import Event, FixQuality, LocationRecorded
from tests.domain.test_projection import profile
from tests.support.events import T0, location

batches = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2"]),
        st.integers(0, 6),
        st.sampled_from(["fix", "flagged", "status"]),
        st.integers(0, 9),
    ),
    max_size=30,
)


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
    def events(spec: list[tuple[str, int, str, int]], start: int) -> list[tuple[Event, Position]]:
        made: list[Event] = [
            _fix(seconds, value, tech, kind == "flagged") if kind != "status" else profile(seconds, status=f"s{value}")
            for tech, seconds, kind, value in spec
        ]
        return [(event, Position(0, start + i)) for i, event in enumerate(made)]

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

    plan = plan_batch(current, fresh)
    assert current == sequential
    assert plan.changed == {key: state for key, state in sequential.items() if before.get(key) != state}
    assert plan.flags == flags


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_microseconds_round_trip_exactly(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_microseconds_are_taken_in_utc_whatever_the_offset() -> None:
    lagos = timezone(timedelta(hours=1))
    assert to_micros(datetime(2026, 1, 1, 1, 0, tzinfo=lagos)) == to_micros(datetime(2026, 1, 1, tzinfo=UTC))
