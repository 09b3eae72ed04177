"""Stops and trips (``domain/stays.py``) on traces that look like a phone's (``tests/support/traces.py``): each
trace is built from legs whose truth is known (parked here from then to then, driven so far), and the rule is held
to that truth; then any arrival order of a trace is held to the batch computation over the sorted fixes."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fix_quality import Spot, against_last_good
from domain.geodesy import distance_m
from domain.stays import (
    SNAPSHOT_EVERY,
    FactKey,
    Point,
    Retraction,
    StayFact,
    StayTrack,
    apply_changes,
    stays_of,
    step_metres,
)
from schemas.events import DEFAULT_MAX_SPEED_KMH
from schemas.tenant_rules import StayRules
from tests.support.events import T0
from tests.support.traces import TracePoint, drive, offset, parked, recorded, walk_around

RULES = StayRules()
DEPOT = (6.5244, 3.3792)


def _points(trace: list[TracePoint]) -> list[Point]:
    return [Point(p.at.timestamp(), p.latitude, p.longitude) for p in trace if p.truth == "good"]


def _seconds(at: datetime) -> float:
    return at.timestamp()


def _stops(facts: dict[FactKey, StayFact]) -> list[StayFact]:
    return sorted((fact for key, fact in facts.items() if key[0] == "stop"), key=lambda fact: fact.started_at)


def _trips(facts: dict[FactKey, StayFact]) -> list[StayFact]:
    return sorted((fact for key, fact in facts.items() if key[0] == "trip"), key=lambda fact: fact.started_at)


class Day:
    """A technician's day, leg by leg, with the truth of each leg."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.trace: list[TracePoint] = []
        self.place = DEPOT
        self.at = T0
        self.parkings: list[tuple[datetime, datetime, tuple[float, float]]] = []
        self.drives: list[float] = []  # metres

    def park(self, minutes: float, every: float = 5.0) -> Day:
        legs = parked(self.rng, self.at, *self.place, minutes * 60, every)
        self.parkings.append((legs[0].at, legs[-1].at, self.place))
        return self._then(legs, self.place)

    def drive(self, km: float, kmh: float = 40.0, bearing: float = 60.0, spikes: int = 0) -> Day:
        seconds = km * 1000 / (kmh / 3.6)
        legs = drive(self.rng, self.at, *self.place, bearing_deg=bearing, kmh=kmh, seconds=seconds, spike_every=spikes)
        self.drives.append(km * 1000)
        return self._then(legs, offset(*self.place, *_north_east(km * 1000, bearing)))

    def walk(self, minutes: float, radius_m: float) -> Day:
        # Its first fix is on the circle, ``radius_m`` from where the technician was: half a minute's walk later.
        legs = walk_around(
            self.rng, self.at + timedelta(seconds=30), *self.place, radius_m=radius_m, seconds=minutes * 60
        )
        self.parkings.append((legs[0].at, legs[-1].at, self.place))
        return self._then(legs, self.place)

    def gap(self, minutes: float, km: float = 0.0, bearing: float = 60.0) -> Day:
        """No fix for ``minutes``, in which the technician went ``km`` on."""
        self.at += timedelta(minutes=minutes)
        self.place = offset(*self.place, *_north_east(km * 1000, bearing))
        return self

    def _then(self, legs: list[TracePoint], place: tuple[float, float]) -> Day:
        self.trace.extend(legs)
        self.place = place
        self.at = legs[-1].at + (legs[-1].at - legs[-2].at)
        return self

    def points(self) -> list[Point]:
        return _points(self.trace)


def _north_east(metres: float, bearing: float) -> tuple[float, float]:
    import math

    return metres * math.cos(math.radians(bearing)), metres * math.sin(math.radians(bearing))


def test_parked_with_jitter_is_one_stop_that_lasts() -> None:
    day = Day(1).park(40)
    (stop,) = _stops(stays_of(day.points(), RULES))
    assert stop.kind == "stop_started" and stop.ended_at is None
    assert stop.started_at == day.points()[0].at
    assert distance_m(stop.latitude, stop.longitude, *DEPOT) < 15  # the mean of 5-30 m of jitter round it
    assert not _trips(stays_of(day.points(), RULES))


def test_a_stay_shorter_than_the_minimum_is_no_stop() -> None:
    day = Day(2).park(4).drive(3).park(3)
    assert stays_of(day.points(), RULES) == {}


def test_a_drive_between_two_parkings_is_a_trip_from_the_first_stops_last_fix_to_the_seconds_first() -> None:
    day = Day(3).park(20).drive(6).park(15)
    facts = stays_of(day.points(), RULES)
    first, second = _stops(facts)
    (trip,) = _trips(facts)
    (left_at, _, _), (arrived_at, _, site) = day.parkings
    assert first.kind == "stop_ended" and second.kind == "stop_started"
    assert first.started_at == _seconds(left_at)
    assert trip.kind == "trip_ended"
    assert trip.started_at == first.ended_at
    assert trip.ended_at == second.started_at
    # The stop begins at the first fix within the radius of where the car came to rest: the drive's last metres.
    assert _seconds(arrived_at) - 30 <= second.started_at <= _seconds(arrived_at) + 5
    assert abs(trip.distance_m - day.drives[0]) < 0.05 * day.drives[0] + 200
    assert distance_m(second.latitude, second.longitude, *site) < 30
    assert trip.fixes == sum(1 for p in day.points() if first.ended_at < p.at <= second.started_at)


def test_a_short_hop_and_a_walk_round_a_site_wider_than_the_radius_are_one_stop() -> None:
    # 300 m to the shop next door and 10 minutes there, then back; a 40-minute walk on a 70 m circle (140 m across);
    # then 2 km away.
    day = Day(4).park(20).drive(0.3, kmh=20).park(10).drive(0.3, kmh=20, bearing=240).walk(40, radius_m=70)
    facts = stays_of(day.drive(2).park(10).points(), RULES)
    first, _ = _stops(facts)
    (trip,) = _trips(facts)
    assert first.kind == "stop_ended" and first.started_at == day.points()[0].at
    assert first.ended_at is not None and first.ended_at >= _seconds(day.parkings[-2][1]) - 60  # the walk's end
    assert first.fixes == sum(1 for p in day.points() if p.at <= first.ended_at)
    assert trip.started_at == first.ended_at


def test_a_long_gap_in_one_place_is_a_stop_and_a_long_gap_with_a_big_move_is_a_trip_with_a_gap() -> None:
    # The phone off for two hours at the depot: one stop across the gap.
    day = Day(5).drive(2).park(2).gap(120).park(3)
    (stop,) = _stops(stays_of(day.points(), RULES))
    assert stop.started_at == _seconds(day.parkings[0][0])
    # A two-hour tunnel-like gap while driving, 80 km further on: no stop in it; the trip spans it.
    tunnel = Day(6).park(10).drive(5, kmh=60).gap(120, km=80).drive(60, kmh=90).park(10)
    facts = stays_of(tunnel.points(), RULES)
    assert len(_stops(facts)) == 2
    (trip,) = _trips(facts)
    assert trip.ended_at is not None and trip.ended_at - trip.started_at > 2 * 3600


def test_a_drive_with_urban_canyon_spikes_seen_through_the_quality_rule_gives_the_true_stops() -> None:
    day = Day(7).park(15).drive(8, spikes=20).park(15)
    good: list[Point] = []
    for p in day.trace:  # as the processor does: only the fixes the quality rule lets through reach the stays rule
        last = Spot(good[-1].latitude, good[-1].longitude, datetime.fromtimestamp(good[-1].at, UTC)) if good else None
        if not against_last_good(last, p.latitude, p.longitude, p.at, DEFAULT_MAX_SPEED_KMH):
            good.append(Point(p.at.timestamp(), p.latitude, p.longitude))
    assert len(good) == len(day.points())  # every spike refused, every other fix taken
    first, second = _stops(stays_of(good, RULES))
    assert first.started_at == _seconds(day.parkings[0][0])
    assert _seconds(day.parkings[1][0]) - 30 <= second.started_at <= _seconds(day.parkings[1][0]) + 5


def _a_day(seed: int) -> list[Point]:
    rng = random.Random(seed)
    day = Day(seed).park(rng.uniform(6, 30))
    for _ in range(rng.randint(1, 4)):
        km = rng.choice([0.2, 0.4, 1.5, 4.0])
        day.drive(km, kmh=rng.uniform(15, 70), bearing=rng.uniform(0, 360))
        if rng.random() < 0.3:
            day.gap(rng.uniform(16, 120), km=rng.choice([0.0, 0.05, 30.0]))
        day.park(rng.uniform(2, 25)) if rng.random() < 0.7 else day.walk(rng.uniform(5, 30), radius_m=60)
    points = day.points()
    for _ in range(rng.randint(0, 3)):  # a fix 1-2 km off, between two others: the device-time jump check's work
        at = rng.choice(points).at + 0.5
        points.append(Point(at, *offset(*DEPOT, rng.uniform(1_000, 2_000), rng.uniform(-500, 500))))
    return points


def _arrived(track: StayTrack, points: list[Point]) -> dict[FactKey, StayFact]:
    """What a consumer holds after the track answered each point in turn."""
    held: dict[FactKey, StayFact] = {}
    for point in points:
        changes = track.add(point, RULES)
        assert changes is not None
        apply_changes(held, changes)
    return held


def _arrival(points: list[Point], shuffle: random.Random) -> list[Point]:
    """An order the fixes may arrive in: shuffled, an hour held back and sent last, or neighbours swapped."""
    arrival = list(points)
    style = shuffle.choice(["shuffled", "backfilled", "swapped"])
    if style == "shuffled":
        shuffle.shuffle(arrival)
    elif style == "backfilled":  # a span of an hour's fixes held back by an offline phone, sent after the rest
        start = shuffle.randrange(len(arrival))
        held_back = [p for p in arrival if arrival[start].at <= p.at < arrival[start].at + 3600]
        arrival = [p for p in arrival if p not in held_back] + held_back
    else:  # neighbours swapped now and then: two requests in flight at once
        for i in range(0, len(arrival) - 1, 7):
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    return arrival


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle=st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_stops_and_trips_of_the_sorted_fixes(seed: int, shuffle: random.Random) -> None:
    points = _a_day(seed)
    expected = stays_of(points, RULES)
    assert _arrived(StayTrack(), _arrival(points, shuffle)) == expected


RECORDED_TRACE = _points(recorded("cerknicko-jezero.gpx"))


@settings(max_examples=25, deadline=None)
@given(shuffle=st.randoms(use_true_random=False))
def test_a_recorded_trace_in_any_arrival_order_gives_the_stops_and_trips_of_its_sorted_fixes(
    shuffle: random.Random,
) -> None:
    assert _arrived(StayTrack(), _arrival(RECORDED_TRACE, shuffle)) == stays_of(RECORDED_TRACE, RULES)


def test_a_recorded_trace_gives_stops_and_trips_that_meet_the_rules_definitions() -> None:
    """A real receiver's log (tests/data/traces/README.md): whatever the rule finds in it alternates stop, trip,
    stop..., each trip from its stop's last fix to the next stop's first, each ended stop at least the minimum long
    (or a gap in place), each trip's length along its fixes at least its chord."""
    facts = sorted(stays_of(RECORDED_TRACE, RULES).values(), key=lambda fact: (fact.started_at, fact.subject))
    assert facts and facts[0].subject == "stop", facts  # it begins with a walk by the lake: a stop wider than 100 m
    assert [fact.subject for fact in facts] == ["stop", "trip"] * (len(facts) // 2) + ["stop"] * (len(facts) % 2)
    for before, after in itertools.pairwise(facts):
        assert before.ended_at == after.started_at, (before, after)
    for fact in facts:
        if fact.subject == "stop" and fact.ended_at is not None:
            assert fact.ended_at - fact.started_at >= RULES.stop_min_seconds
        if fact.subject == "trip":
            assert fact.end_latitude is not None and fact.end_longitude is not None
            start = Point(fact.started_at, fact.latitude, fact.longitude)
            end = Point(fact.ended_at or fact.started_at, fact.end_latitude, fact.end_longitude)
            assert fact.distance_m >= step_metres(start, end) >= 0  # along its fixes: never shorter than the chord
            assert fact.fixes >= 2
    # The walk round Rakov Škocjan (the last 18 minutes, about 130 m across) is the stop the log ends in.
    assert facts[-1].subject == "stop" and facts[-1].ended_at is None


def test_a_late_fix_that_shows_a_stop_was_two_short_stays_retracts_it() -> None:
    # A phone saving power (a fix a minute) parked 6 minutes between two drives: a stop, with 7 fixes.
    day = Day(8).park(20).drive(3).park(6, every=60).drive(3, bearing=150).park(20)
    points = day.points()
    track = StayTrack()
    held = _arrived(track, points)
    assert held == stays_of(points, RULES) and len(_stops(held)) == 3
    # Then a fix from the phone's buffer: half-way through that stop, 1.5 km off, 30 s after the fix before it
    # (180 km/h: plausible). The stay was two of 3 minutes, each too short for a stop.
    middle = _stops(held)[1]
    parked_at = _seconds(day.parkings[1][0])
    late = Point(parked_at + 3 * 60 + 30, *offset(middle.latitude, middle.longitude, 1_500, 0))
    changes = track.add(late, RULES)
    assert changes is not None
    assert Retraction("stop", middle.started_at) in changes
    apply_changes(held, changes)
    assert held == stays_of([*points, late], RULES)
    assert len(_stops(held)) == 2 and middle.started_at not in {stop.started_at for stop in _stops(held)}


def test_the_horizon_bounds_what_a_late_fix_can_change_and_pruning_changes_no_answer() -> None:
    points = _a_day(11) + [Point(p.at + 6 * 3600, p.latitude, p.longitude) for p in _a_day(12)]
    track = StayTrack()
    held: dict[FactKey, StayFact] = {}
    for point in points:
        changes = track.add(point, RULES)
        assert changes is not None
        apply_changes(held, changes)
        track.prune(keep_seconds=3600, max_fixes=2_000)
    assert held == stays_of(points, RULES)
    assert track.horizon is not None and len(track.tail) < len(points)
    assert track.add(points[0], RULES) is None  # older than the horizon: history only
    assert track.horizon.at < points[-1].at - 3600
    assert sum(1 for p in track.tail if p.at < points[-1].at - 3600) < SNAPSHOT_EVERY  # the cut falls on a snapshot


def test_a_track_restored_from_its_base_and_tail_answers_as_the_one_it_was_stored_from() -> None:
    points = _a_day(13)
    live = StayTrack()
    first, rest = points[: len(points) // 2], points[len(points) // 2 :]
    _arrived(live, first)
    live.prune(keep_seconds=600, max_fixes=2_000)
    restored = StayTrack.restore(live.base, live.settled, live.horizon, list(live.tail), RULES)
    assert restored.facts() == live.facts()
    for point in rest:
        assert restored.add(point, RULES) == live.add(point, RULES)
