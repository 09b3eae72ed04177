"""The fix quality rule (``domain/fix_quality.py``) and what it does to the projection (``domain/projection.py``),
on traces that look like a phone's (``tests/support/traces.py``)."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fix_quality import JUMP_WINDOW, MIN_INTERVAL, Spot, against_last_good, implied_speed_kmh, ingest_flags
from domain.geofencing import distance_m
from domain.position import Position
from domain.projection import TechnicianState, apply, fix_verdict
from schemas.events import DEFAULT_MAX_SPEED_KMH, FixQuality, LocationRecorded, QualityFlag
from tests.support.events import T0, location
from tests.support.traces import TracePoint, drive, offset, parked, walk_around

LAGOS = (6.5244, 3.3792)


def _events(points: list[TracePoint], max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH) -> list[LocationRecorded]:
    quality = FixQuality(max_speed_kmh=max_speed_kmh)
    return [
        location("a", "t1", p.at, p.latitude, p.longitude, accuracy_meters=p.accuracy_meters, quality=quality)
        for p in points
    ]


def _replay(events: list[LocationRecorded]) -> tuple[TechnicianState | None, list[tuple[QualityFlag, ...]]]:
    """The state after the events in log order, and each fix's flags as the rule gave them on its way."""
    state: TechnicianState | None = None
    verdicts: list[tuple[QualityFlag, ...]] = []
    for offset_, event in enumerate(events):
        verdicts.append(fix_verdict(event, state.fix if state is not None else None))
        state = apply(state, event, Position(0, offset_))
    return state, verdicts


def test_the_checks_of_a_fix_alone_are_listed_in_a_fixed_order() -> None:
    assert ingest_flags(6.5, 3.3, 8.0, False, 100.0) == ()
    assert ingest_flags(0.0, 0.0, 8.0, False, 100.0) == ("zero",)
    assert ingest_flags(0.0, 3.3, None, False, 100.0) == ()  # the equator is a place; only (0, 0) is no fix
    assert ingest_flags(6.5, 3.3, 100.0, False, 100.0) == ()  # at the limit: taken
    assert ingest_flags(6.5, 3.3, 100.5, False, 100.0) == ("accuracy",)
    assert ingest_flags(0.0, 0.0, 500.0, True, 100.0) == ("zero", "accuracy", "mock")


def test_beside_the_last_good_fix_a_repeat_is_a_duplicate_a_late_fix_is_not_judged_and_a_leap_is_a_jump() -> None:
    last = Spot(*LAGOS, T0)
    assert against_last_good(None, 0.5, 0.5, T0, 200.0) == ()  # nothing to judge by
    assert against_last_good(last, *LAGOS, T0, 200.0) == ("duplicate",)
    assert against_last_good(last, LAGOS[0] + 1, LAGOS[1], T0 - timedelta(seconds=1), 200.0) == ()  # late
    one_km = offset(*LAGOS, 1_000, 0)
    assert against_last_good(last, *one_km, T0 + timedelta(seconds=10), 200.0) == ("jump",)  # 360 km/h
    assert against_last_good(last, *one_km, T0 + timedelta(seconds=20), 200.0) == ()  # 180 km/h
    assert against_last_good(last, *one_km, T0 + timedelta(seconds=20), 150.0) == ("jump",)  # the tenant's limit
    # A fix a tenth of a second after the last is judged as if MIN_INTERVAL after it: jitter is not a flight.
    ten_m = offset(*LAGOS, 10, 0)
    assert implied_speed_kmh(last, *ten_m, T0 + timedelta(milliseconds=100)) == distance_m(*LAGOS, *ten_m) * 3.6
    assert against_last_good(last, *ten_m, T0 + MIN_INTERVAL / 10, 200.0) == ()
    # After a gap longer than the window, the fix is taken where it is.
    far = offset(*LAGOS, 500_000, 0)
    assert against_last_good(last, *far, T0 + JUMP_WINDOW, 200.0) == ("jump",)
    assert against_last_good(last, *far, T0 + JUMP_WINDOW + timedelta(seconds=1), 200.0) == ()


def test_parked_with_gps_jitter_no_fix_is_flagged_and_the_position_stays_on_the_spot() -> None:
    rng = random.Random(1)
    points = parked(rng, T0, *LAGOS, seconds=1_800)
    state, verdicts = _replay(_events(points))
    assert verdicts == [()] * len(points)
    assert state is not None and state.fix is not None
    assert distance_m(*LAGOS, state.fix.latitude, state.fix.longitude) <= 30.0


def test_urban_canyon_spikes_are_jumps_and_the_fix_after_each_spike_is_good() -> None:
    rng = random.Random(2)
    points = drive(rng, T0, *LAGOS, bearing_deg=60, kmh=50, seconds=600, spike_every=20)
    assert sum(p.truth == "spike" for p in points) == 30
    state = None
    for i, (point, event) in enumerate(zip(points, _events(points), strict=True)):
        flags = fix_verdict(event, state.fix if state is not None else None)
        assert flags == (("jump",) if point.truth == "spike" else ()), (i, point)
        state = apply(state, event, Position(0, i))
        assert state.fix is not None and state.fix.recorded_at <= point.at
        last_good = max(j for j in range(i + 1) if points[j].truth == "good")
        assert state.fix.recorded_at == points[last_good].at  # a spike never became the position, not for a fix


def test_a_two_hour_gap_far_away_is_taken_and_a_walk_around_a_job_site_is_all_good() -> None:
    rng = random.Random(3)
    before = drive(rng, T0, *LAGOS, bearing_deg=0, kmh=40, seconds=300, every=5)
    resumed_at = before[-1].at + timedelta(hours=2)
    site = offset(*LAGOS, 60_000, 20_000)  # 63 km away: 32 km/h on average, but no fix in between
    after = walk_around(rng, resumed_at, *site, radius_m=40, seconds=1_200)
    state, verdicts = _replay(_events(before + after))
    assert verdicts == [()] * (len(before) + len(after))
    assert state is not None and state.fix is not None and state.fix.recorded_at == after[-1].at


def test_a_wrong_last_good_fix_holds_real_ones_back_only_until_their_distance_is_plausible() -> None:
    rng = random.Random(4)
    wrong = TracePoint(T0, *offset(*LAGOS, 2_000, 0), 15.0, "spike")  # the first fix of the day, 2 km off
    real = parked(rng, T0 + timedelta(seconds=5), *LAGOS, seconds=120)
    state, verdicts = _replay(_events([wrong, *real]))
    refused = [p for p, v in zip(real, verdicts[1:], strict=True) if v == ("jump",)]
    assert refused and all(v in ((), ("jump",)) for v in verdicts)
    # Refused while 2 km in the time since the wrong fix is faster than 200 km/h: for 36 s at most.
    assert max(p.at for p in refused) - T0 <= timedelta(seconds=2_000 / (200 / 3.6) + 1)
    assert state is not None and state.fix is not None and state.fix.recorded_at == real[-1].at


def test_a_fix_flagged_at_ingest_never_becomes_the_position_and_a_flagged_first_fix_leaves_none() -> None:
    good = location("a", "t1", T0, *LAGOS, quality=FixQuality())
    zero = location("a", "t1", T0 + timedelta(seconds=5), 0.0, 0.0, quality=FixQuality(flags=("zero",)))
    state = apply(apply(None, good, Position(0, 0)), zero, Position(0, 1))
    assert state.fix is not None and state.fix.latitude == LAGOS[0]
    first = apply(None, zero, Position(0, 2))
    assert first.fix is None and first.technician_id == "t1"


def test_an_event_appended_before_fixes_were_judged_is_taken_as_it_was() -> None:
    start = location("a", "t1", T0, *LAGOS)
    far = location("a", "t1", T0 + timedelta(seconds=10), *offset(*LAGOS, 1_000, 0))  # 360 km/h
    state = apply(apply(None, start, Position(0, 0)), far, Position(0, 1))
    assert far.data.quality is None and fix_verdict(far, state.fix) == ()
    assert state.fix is not None and state.fix.recorded_at == far.recorded_at
    judged = location("a", "t1", T0 + timedelta(seconds=10), *offset(*LAGOS, 1_000, 0), quality=FixQuality())
    assert fix_verdict(judged, apply(None, start, Position(0, 0)).fix) == ("jump",)


@settings(max_examples=500, deadline=None)
@given(
    st.floats(-85, 85),
    st.floats(-180, 180),
    st.floats(-0.05, 0.05),
    st.floats(-0.05, 0.05),
    st.floats(0.01, JUMP_WINDOW.total_seconds()),
    st.floats(5, 1_500),
)
def test_the_bound_that_spares_the_trigonometry_never_changes_a_verdict(
    lat: float, lon: float, north: float, east: float, seconds: float, limit: float
) -> None:
    last = Spot(lat, lon, T0)
    to_lat, to_lon = max(-90.0, min(90.0, lat + north)), (lon + east + 180) % 360 - 180
    at = T0 + timedelta(seconds=seconds)
    speed = implied_speed_kmh(last, to_lat, to_lon, at)
    found = against_last_good(last, to_lat, to_lon, at, limit)
    if speed > limit * (1 + 1e-9):
        assert found == ("jump",)
    elif speed < limit * (1 - 1e-9):
        assert found == () or (found == ("duplicate",) and (to_lat, to_lon) == (lat, lon))
