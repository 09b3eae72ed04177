"""The pure projection rule: late fixes never regress, replays change nothing, order does not matter (but for the
quality rule's jumps, judged in log order: ``tests/domain/test_fix_quality.py``)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.position import Position
from domain.projection import Offline, Stay, TechnicianState, apply, fold
from schemas.events import Event, FixQuality, LocationRecorded, TechnicianUpdated
from tests.support.events import T0, location, offline, online, retracted, stay, tracking_stopped
from tests.support.events import profile as technician_profile


def fix(seconds: int, lat: float, tech: str = "t1", tenant: str = "a") -> LocationRecorded:
    return location(tenant, tech, T0 + timedelta(seconds=seconds), lat, 0.0, received_at=T0)


def profile(seconds: int, name: str | None = None, status: str | None = None) -> TechnicianUpdated:
    return technician_profile("a", "t1", T0 + timedelta(seconds=seconds), name, status, received_at=T0)


def apply_all(events: list[tuple[Event, Position]]) -> TechnicianState | None:
    state: TechnicianState | None = None
    for event, position in events:
        state = apply(state, event, position)
    return state


def test_a_technician_exists_from_its_first_event_and_is_named_by_its_id() -> None:
    state = apply(None, fix(0, 10.0), Position(0, 0))
    assert state.display_name == "t1" and state.status == "unknown"
    assert state.fix is not None and state.fix.latitude == 10.0


def test_a_late_fix_does_not_regress_the_position_and_returns_the_same_object() -> None:
    newer = apply(None, fix(10, 1.0), Position(0, 0))
    assert apply(newer, fix(5, 2.0), Position(0, 1)) is newer


def test_equal_device_times_are_broken_by_log_position() -> None:
    first = apply(None, fix(10, 1.0), Position(0, 5))
    later_in_log = apply(first, fix(10, 2.0), Position(0, 6))
    assert later_in_log.fix is not None and later_in_log.fix.latitude == 2.0
    assert apply(later_in_log, fix(10, 3.0), Position(0, 4)) is later_in_log


def test_replaying_the_winning_event_changes_nothing() -> None:
    event = fix(10, 1.0)
    state = apply(None, event, Position(0, 3))
    assert apply(state, event, Position(0, 3)) is state


def test_profile_updates_set_name_and_status_field_by_field_without_touching_position() -> None:
    state = apply(None, fix(0, 1.0), Position(0, 0))
    state = apply(state, profile(20, name="Ada"), Position(0, 1))
    state = apply(state, profile(10, name="Old name", status="on_job"), Position(0, 2))  # late: status only wins
    assert (state.display_name, state.status) == ("Ada", "on_job")
    assert state.fix is not None and state.fix.latitude == 1.0


events_strategy = st.lists(
    st.tuples(
        st.integers(0, 20),  # device time
        st.sampled_from(["fix", "name", "status"]),
        st.integers(-80, 80),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False), st.integers(0, 5))
def test_any_permutation_with_duplicates_gives_the_recorded_order_state(
    spec: list[tuple[int, str, int]], rnd: object, duplicates: int
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    log: list[tuple[Event, Position]] = []
    for offset, (seconds, kind, value) in enumerate(spec):
        event: Event
        if kind == "fix":
            event = fix(seconds, float(value))
        elif kind == "name":
            event = profile(seconds, name=f"n{value}")
        else:
            event = profile(seconds, status=f"s{value}")
        log.append((event, Position(0, offset)))
    in_recorded_order = sorted(log, key=lambda item: (item[0].recorded_at, item[1]))
    shuffled = log + [rnd.choice(log) for _ in range(duplicates)]
    rnd.shuffle(shuffled)
    assert apply_all(shuffled) == apply_all(in_recorded_order)


def test_a_jump_is_judged_by_what_came_before_it_in_the_log() -> None:
    """Why every reader follows the log's order: of two fixes 111 km and 10 s apart, the one that comes second in the
    log is refused (a jump, or late), whichever it is."""
    near = location("a", "t1", T0, 6.5, 0.0, quality=FixQuality())
    far = location("a", "t1", T0 + timedelta(seconds=10), 7.5, 0.0, quality=FixQuality())
    in_order = apply(apply(None, near, Position(0, 0)), far, Position(0, 1))
    assert in_order.fix is not None and in_order.fix.latitude == 6.5  # the far one is a jump from the near one
    far_first = apply(apply(None, far, Position(0, 0)), near, Position(0, 1))
    assert far_first.fix is not None and far_first.fix.latitude == 7.5  # nothing before it; then the near one is late


def test_a_retry_appended_later_does_not_win_over_what_came_between() -> None:
    original = fix(10, 1.0)
    between = fix(10, 2.0)  # same device time, later in the log: it wins the tie
    retry = msgspec.structs.replace(original)  # same event_id, appended again after a client timeout
    states = fold([(original, Position(0, 0)), (between, Position(0, 1)), (retry, Position(0, 2))])
    fixed = states[("a", "t1")].fix
    assert fixed is not None and fixed.latitude == 2.0


@settings(max_examples=300, deadline=None)
@given(events_strategy, st.lists(st.integers(0, 24), max_size=8))
def test_retries_anywhere_later_in_the_log_change_nothing(spec: list[tuple[int, str, int]], retried: list[int]) -> None:
    log: list[tuple[Event, Position]] = []
    for seconds, kind, value in spec:
        event: Event = fix(seconds, float(value)) if kind == "fix" else profile(seconds, name=f"n{value}")
        log.append((event, Position(0, len(log))))
    with_retries = list(log)
    for index in retried:
        if index < len(log):
            with_retries.append((log[index][0], Position(0, len(with_retries))))  # same event, a new offset
    assert fold(with_retries) == fold(log)


def test_the_latest_stop_or_trip_marks_the_state_and_a_revision_of_an_earlier_one_does_not() -> None:
    state = apply(None, fix(0, 1.0), Position(0, 0))
    at = T0 + timedelta(minutes=10)
    stopped = apply(state, stay("stop_started", "a", "t1", at), Position(0, 1))
    assert stopped.stay is not None and stopped.stay.motion() == ("stopped", at)
    earlier = apply(stopped, stay("trip_ended", "a", "t1", T0, at), Position(0, 2))
    assert earlier is stopped  # the trip before it, revised: still stopped
    # A late fix showed the stop never was: the revision retracts it, then says what the technician did instead.
    retraction = apply(stopped, retracted("a", "t1", "stop", at, at), Position(0, 3))
    assert retraction.stay is None
    assert apply(retraction, stay("trip_started", "a", "t1", T0), Position(0, 4)).stay == Stay("trip", T0, None)
    assert apply(stopped, retracted("a", "t1", "trip", at, at), Position(0, 5)) is stopped  # not its stay


def test_an_offline_period_lasts_until_a_newer_fix_or_its_online_and_an_older_one_is_not_said_again() -> None:
    state = apply(None, fix(60, 1.0), Position(0, 0))
    seen = T0 + timedelta(seconds=60)
    silent = apply(state, offline("a", "t1", seen), Position(0, 1))
    assert silent.offline == Offline(seen)
    assert apply(silent, offline("a", "t1", T0), Position(0, 2)) is silent  # an earlier silence: not this one
    assert apply(state, offline("a", "t1", T0), Position(0, 3)) is state  # its fix is newer than that silence
    assert apply(silent, fix(30, 1.0), Position(0, 4)).offline == Offline(seen)  # a late fix: still offline
    assert apply(silent, fix(90, 1.0), Position(0, 5)).offline is None  # a newer fix: back
    back = online("a", "t1", seen, T0 + timedelta(seconds=30))  # said for a late fix that ended the silence
    assert apply(silent, back, Position(0, 6)).offline is None
    assert apply(silent, online("a", "t1", T0, T0), Position(0, 7)) is silent  # an earlier period's end


def test_an_app_that_stopped_tracking_is_offline_from_then_until_a_newer_fix() -> None:
    state = apply(None, fix(60, 1.0), Position(0, 0))
    paused = T0 + timedelta(seconds=90)
    stopped = apply(state, tracking_stopped("a", "t1", paused), Position(0, 1))
    assert stopped.offline == Offline(paused, "tracking_stopped")
    assert apply(state, tracking_stopped("a", "t1", T0), Position(0, 2)) is state  # its fix is newer: resumed since
    # The processor's offline for it (known by the last fix, earlier) and its online for that period leave it stopped:
    seen = T0 + timedelta(seconds=60)
    assert apply(stopped, offline("a", "t1", seen), Position(0, 3)) is stopped
    assert apply(stopped, online("a", "t1", seen, seen), Position(0, 4)) is stopped
    assert apply(stopped, fix(80, 1.0), Position(0, 5)).offline == stopped.offline  # a fix from before the pause
    assert apply(stopped, fix(120, 1.0), Position(0, 6)).offline is None  # tracking again
    silent = apply(state, offline("a", "t1", seen), Position(0, 7))
    assert apply(silent, tracking_stopped("a", "t1", paused), Position(0, 8)).offline == stopped.offline
