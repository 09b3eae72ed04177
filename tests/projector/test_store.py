"""The backends' shared pure helpers: batch planning and the exact time encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.position import Position
from domain.projection import Key, TechnicianState, apply
from projector.store import from_micros, plan_batch, to_micros
from schemas.events import Event
from tests.domain.test_projection import fix, profile

batches = st.lists(
    st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 6), st.sampled_from(["fix", "status"]), st.integers(0, 9)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(batches, batches)
def test_planning_a_batch_equals_applying_each_event_in_log_order(
    earlier: list[tuple[str, int, str, int]], batch: list[tuple[str, int, str, int]]
) -> None:
    def events(spec: list[tuple[str, int, str, int]], start: int) -> list[tuple[Event, Position]]:
        made: list[Event] = [
            fix(seconds, float(value), tech=tech) if kind == "fix" else profile(seconds, status=f"s{value}")
            for tech, seconds, kind, value in spec
        ]
        return [(event, Position(0, start + i)) for i, event in enumerate(made)]

    sequential: dict[Key, TechnicianState] = {}
    for event, position in events(earlier, 0):
        key = (event.tenant_id, event.technician_id)
        sequential[key] = apply(sequential.get(key), event, position)
    before, current = dict(sequential), dict(sequential)
    fresh = events(batch, len(earlier))
    for event, position in fresh:
        key = (event.tenant_id, event.technician_id)
        sequential[key] = apply(sequential.get(key), event, position)

    changed = plan_batch(current, fresh)
    assert current == sequential
    assert changed == {key: state for key, state in sequential.items() if before.get(key) != state}


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_microseconds_round_trip_exactly(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_microseconds_are_taken_in_utc_whatever_the_offset() -> None:
    lagos = timezone(timedelta(hours=1))
    assert to_micros(datetime(2026, 1, 1, 1, 0, tzinfo=lagos)) == to_micros(datetime(2026, 1, 1, tzinfo=UTC))
