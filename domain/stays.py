"""Stops and trips, pure: the rule that turns a technician's good fixes, in device-time order, into stops and the
trips between them (docs/stops-and-trips.md), and the track that keeps the rule's answer right when fixes arrive
late or out of order.

**The rule** (``step``; the stay point of Li et al., 2008, kept as a state machine):

- a *stop*: the technician stays within ``stop_radius_meters`` of a fix (the stop's anchor) for at least
  ``stop_min_seconds``; it runs from its first fix to its last fix within the radius, and its place is the mean of
  those fixes. A gap in the data longer than ``gap_seconds`` across which the technician moved less than the
  radius is a stay at the fix before the gap;
- a *trip* runs from one stop's last fix to the next stop's first fix. Leaving a stop ends it only once the
  technician is ``min_trip_meters`` from the stop's anchor, as the crow flies: a shorter move (across a car park,
  round a job site, to the shop next door and back) and any stop it makes are merged into the stop around it.
  Before the first stop there is no trip;
- the facts (``StayFact``) come out as they become known: ``stop_started`` when a stay has lasted its minimum,
  ``stop_ended`` and ``trip_started`` when the technician is far enough away, ``trip_ended`` with the next
  ``stop_started``. Each is keyed by what it is about (``fact_key``: a stop or a trip, and its start time); the
  last fact of a key is what a consumer keeps.

The rule takes the quality rule's good fixes, and judges them again in device-time order: a fix that the technician
could not have reached from the fix before it in time (``fix_quality.is_jump``) is passed over. In log order, a late
fix is never judged a jump (it never moves a position); here it could break a stop in two.

**Late fixes** (``StayTrack``): the track keeps the sorted good fixes of a recent span (its *tail*) and the rule's
state every ``SNAPSHOT_EVERY`` fixes. A fix newer than every other is one ``step``. A fix that belongs earlier is
inserted, the rule runs again from the snapshot before it, and the track answers the difference: the keys whose
last fact changed (their new last fact) and the keys that are gone (``Retraction``). A consumer that applies them
in order holds exactly the facts a batch computation over the sorted fixes gives (``stays_of``), whatever order
the fixes came in, as long as none is older than the start of the tail: the revision horizon (``prune``), past
which a fix is history only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from domain.fence_shapes import METRES_PER_DEGREE
from domain.fix_quality import JUMP_WINDOW, is_jump
from schemas.events import DEFAULT_MAX_SPEED_KMH
from schemas.tenant_rules import StayRules

FactKind = Literal["stop_started", "stop_ended", "trip_started", "trip_ended"]
Subject = Literal["stop", "trip"]
_JUMP_WINDOW_S: Final = JUMP_WINDOW.total_seconds()
SNAPSHOT_EVERY: Final = 16  # fixes between two snapshots of the rule's state: a late fix replays at most this many more


class Point(NamedTuple):
    """A good fix as the rule sees it; sorted by time, then place, so that fixes of one instant have one order."""

    at: float  # device time, seconds since the Unix epoch
    latitude: float
    longitude: float


class _Stay(NamedTuple):
    """A stay: a candidate until it has lasted the minimum, then a stop."""

    start: Point  # its first fix
    anchor: Point  # distances are measured from here (the latest merged stay's first fix)
    cos_anchor: float  # cos(anchor latitude): the radius test without trigonometry
    last: Point  # its last fix within the radius
    latitude_sum: float  # of the fixes within the radius: the place is their mean
    longitude_sum: float
    inside: int
    fixes: int  # every fix from ``start`` to ``last``
    path_at_start: float  # the trip's path and fixes up to ``start`` (a candidate's: where the trip would end)
    fixes_at_start: int


class RuleState(NamedTuple):
    """The rule's whole state after some fixes; immutable, so a snapshot is the object itself."""

    prev: Point | None = None
    stop: _Stay | None = None  # the stop the technician is at (or has left by less than a trip)
    away: bool = False  # left ``stop``, not yet far enough for a trip
    candidate: _Stay | None = None  # a stay not yet long enough
    trip_start: Point | None = None  # the open trip's first point (a stop's last fix)
    path: float = 0.0  # metres and fixes since the trip started (or since the stop was left)
    path_fixes: int = 0


_tuple_new: Final = tuple.__new__


def new_point(at: float, latitude: float, longitude: float) -> Point:
    """``Point(at, latitude, longitude)``, made as a tuple is: a NamedTuple's own constructor is Python code (a
    ``lambda`` of ``collections.namedtuple``), which the compiled rules would call for each fix (4% of the derived-facts
    processor's time, with the two below)."""
    return _tuple_new(Point, (at, latitude, longitude))


def _new_stay(
    start: Point,
    anchor: Point,
    cos_anchor: float,
    last: Point,
    latitude_sum: float,
    longitude_sum: float,
    inside: int,
    fixes: int,
    path_at_start: float,
    fixes_at_start: int,
) -> _Stay:
    return _tuple_new(
        _Stay,
        (start, anchor, cos_anchor, last, latitude_sum, longitude_sum, inside, fixes, path_at_start, fixes_at_start),
    )


def _new_state(
    prev: Point | None,
    stop: _Stay | None,
    away: bool,
    candidate: _Stay | None,
    trip_start: Point | None,
    path: float,
    path_fixes: int,
) -> RuleState:
    return _tuple_new(RuleState, (prev, stop, away, candidate, trip_start, path, path_fixes))


class StayFact(NamedTuple):
    kind: FactKind
    started_at: float
    ended_at: float | None  # None while it lasts
    latitude: float  # a stop's place, a trip's start
    longitude: float
    end_latitude: float | None  # a trip's end, once known
    end_longitude: float | None
    distance_m: float  # a trip's path (0 for a stop)
    fixes: int
    known_at: float  # the device time of the fix at which the rule knew it

    @property
    def subject(self) -> Subject:
        return "stop" if self.kind.startswith("stop") else "trip"


FactKey = tuple[Subject, float]  # (stop or trip, its start time)


class Retraction(NamedTuple):
    """A stop or trip that a late fix showed never was."""

    subject: Subject
    started_at: float


def fact_key(fact: StayFact) -> FactKey:
    return (fact.subject, fact.started_at)


def _stay_at(point: Point, path: float, fixes: int) -> _Stay:
    cos = math.cos(math.radians(point.latitude))
    return _new_stay(point, point, cos, point, point.latitude, point.longitude, 1, 1, path, fixes)


_M2: Final = METRES_PER_DEGREE * METRES_PER_DEGREE


def _near(stay: _Stay, point: Point, metres: float) -> bool:
    """Within ``metres`` of the stay's anchor (equirectangular: exact enough at a few hundred metres)."""
    anchor = stay.anchor
    dy = point.latitude - anchor.latitude
    dx = ((point.longitude - anchor.longitude + 180.0) % 360.0 - 180.0) * stay.cos_anchor
    return (dx * dx + dy * dy) * _M2 <= metres * metres


def step_metres(a: Point, b: Point) -> float:
    """The distance between two fixes one after the other (equirectangular at their mean latitude: within 0.1% of
    the great circle up to 100 km), what a trip's path adds up."""
    dy = b.latitude - a.latitude
    dx = ((b.longitude - a.longitude + 180.0) % 360.0 - 180.0) * math.cos(math.radians((a.latitude + b.latitude) * 0.5))
    return math.sqrt(dx * dx + dy * dy) * METRES_PER_DEGREE


def _extend(stay: _Stay, point: Point) -> _Stay:
    """``point`` within the radius: the stay's last fix."""
    return _new_stay(
        stay.start,
        stay.anchor,
        stay.cos_anchor,
        point,
        stay.latitude_sum + point.latitude,
        stay.longitude_sum + point.longitude,
        stay.inside + 1,
        stay.fixes + 1,
        stay.path_at_start,
        stay.fixes_at_start,
    )


def _centre(stay: _Stay) -> tuple[float, float]:
    return stay.latitude_sum / stay.inside, stay.longitude_sum / stay.inside


def _stop_fact(kind: FactKind, stay: _Stay, known_at: float, ended: bool) -> StayFact:
    latitude, longitude = _centre(stay)
    end = stay.last.at if ended else None
    return StayFact(kind, stay.start.at, end, latitude, longitude, None, None, 0.0, stay.fixes, known_at)


def _trip_fact(kind: FactKind, start: Point, end: Point | None, path: float, fixes: int, at: float) -> StayFact:
    return StayFact(
        kind,
        start.at,
        end.at if end is not None else None,
        start.latitude,
        start.longitude,
        end.latitude if end is not None else None,
        end.longitude if end is not None else None,
        path,
        fixes,
        at,
    )


def _unreachable(prev: Point, point: Point, max_speed_kmh: float) -> bool:
    """``fix_quality.is_jump`` between two fixes in device-time order, its cheap bound first (most fixes end there)."""
    seconds = point.at - prev.at
    if seconds <= 0 or seconds > _JUMP_WINDOW_S:
        return False
    across = abs(point.longitude - prev.longitude)
    if across <= 180 and (
        abs(point.latitude - prev.latitude) + across
    ) * METRES_PER_DEGREE <= max_speed_kmh / 3.6 * max(seconds, 1.0):
        return False
    return is_jump(prev.latitude, prev.longitude, point.latitude, point.longitude, seconds, max_speed_kmh)


def step(
    state: RuleState, point: Point, rules: StayRules, max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH
) -> tuple[RuleState, tuple[StayFact, ...]]:
    """The rule's state after one more fix (newer than every fix before it), and the facts it makes known. A fix
    the technician could not have reached from the one before it (``fix_quality.is_jump``, in device-time order:
    a late fix far from its neighbours) changes nothing."""
    radius = rules.stop_radius_meters
    prev = state.prev
    stop = state.stop
    if prev is None:
        return _new_state(point, None, False, _stay_at(point, 0.0, 1), None, 0.0, 1), ()
    seconds = point.at - prev.at
    if 0 < seconds <= _JUMP_WINDOW_S:  # ``_unreachable``, its cheap bound inline: this runs for every fix
        across = abs(point.longitude - prev.longitude)
        bound = (abs(point.latitude - prev.latitude) + across) * METRES_PER_DEGREE
        if (across > 180 or bound > max_speed_kmh / 3.6 * (seconds if seconds > 1.0 else 1.0)) and _unreachable(
            prev, point, max_speed_kmh
        ):
            return state, ()
    if stop is not None and not state.away:  # at the stop (``_near``, inline): most fixes of a day
        anchor = stop.anchor
        dy = point.latitude - anchor.latitude
        dx = ((point.longitude - anchor.longitude + 180.0) % 360.0 - 180.0) * stop.cos_anchor
        if (dx * dx + dy * dy) * _M2 <= radius * radius:
            return _new_state(point, _extend(stop, point), False, None, None, 0.0, 0), ()
    moved = step_metres(prev, point)
    # A long gap with little displacement: the technician stayed at the fix before it.
    rested = seconds > rules.gap_seconds and moved <= radius
    if stop is not None and not state.away:
        if rested:  # ``prev`` is the stop's last fix: the stay goes on from there
            extended = _extend(stop, point)
            cos = math.cos(math.radians(prev.latitude))
            moved_stop = _Stay(extended.start, prev, cos, *extended[3:])
            return _new_state(point, moved_stop, False, None, None, 0.0, 0), ()
        state = _new_state(prev, stop, True, None, None, 0.0, 0)  # leaving it
    facts: list[StayFact] = []
    if stop is not None and _near(stop, point, radius):  # away from the stop, and back
        back = _new_stay(
            stop.start,
            stop.anchor,
            stop.cos_anchor,
            point,
            stop.latitude_sum + point.latitude,
            stop.longitude_sum + point.longitude,
            stop.inside + 1,
            stop.fixes + state.path_fixes + 1,
            stop.path_at_start,
            stop.fixes_at_start,
        )
        return _new_state(point, back, False, None, None, 0.0, 0), ()
    path, path_fixes = state.path + moved, state.path_fixes + 1
    candidate = state.candidate
    if candidate is not None and _near(candidate, point, radius):
        candidate = _extend(candidate, point)
    elif rested:  # the gap was a stay at ``prev``
        candidate = _extend(_stay_at(prev, state.path, state.path_fixes), point)
    else:
        candidate = _stay_at(point, path, path_fixes)
    lasted = candidate.last.at - candidate.start.at >= rules.stop_min_seconds
    trip_start = state.trip_start
    if stop is not None:
        if _near(stop, point, rules.min_trip_meters):
            if lasted:  # a short move and a stay: one stop still
                merged = _new_stay(
                    stop.start,
                    candidate.anchor,
                    candidate.cos_anchor,
                    point,
                    stop.latitude_sum + candidate.latitude_sum,
                    stop.longitude_sum + candidate.longitude_sum,
                    stop.inside + candidate.inside,
                    stop.fixes + path_fixes,
                    stop.path_at_start,
                    stop.fixes_at_start,
                )
                return _new_state(point, merged, False, None, None, 0.0, 0), ()
            return _new_state(point, stop, True, candidate, None, path, path_fixes), ()
        # Far enough: the stop ended at its last fix, and a trip began there.
        facts.append(_stop_fact("stop_ended", stop, point.at, ended=True))
        trip_start = stop.last
        facts.append(_trip_fact("trip_started", trip_start, None, path, path_fixes, point.at))
    if lasted:  # a new stop
        if trip_start is not None:
            facts.append(
                _trip_fact(
                    "trip_ended",
                    trip_start,
                    candidate.start,
                    candidate.path_at_start,
                    candidate.fixes_at_start,
                    point.at,
                )
            )
        facts.append(_stop_fact("stop_started", candidate, point.at, ended=False))
        return _new_state(point, candidate, False, None, None, 0.0, 0), tuple(facts)
    return _new_state(point, None, False, candidate, trip_start, path, path_fixes), tuple(facts)


def stays_of(
    points: Iterable[Point], rules: StayRules, max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH
) -> dict[FactKey, StayFact]:
    """The batch computation: every fix in sorted order, each key's last fact."""
    state = RuleState()
    last: dict[FactKey, StayFact] = {}
    for point in sorted(set(points)):
        state, facts = step(state, point, rules, max_speed_kmh)
        for fact in facts:
            last[fact_key(fact)] = fact
    return last


Change = StayFact | Retraction


@dataclass(slots=True)
class StayTrack:
    """One technician's stops and trips as fixes arrive, in any order (see the module's docstring).

    ``base`` is the rule's state before the tail's first fix and ``settled`` the last fact of each key still open
    there (a stop or trip that started before it and may yet change); ``horizon`` the newest fix folded into
    ``base``: a fix not newer than it is too late to change anything."""

    base: RuleState = field(default_factory=RuleState)
    settled: dict[FactKey, StayFact] = field(default_factory=dict)
    horizon: Point | None = None
    tail: list[Point] = field(default_factory=list)
    # Derived from the above by ``replay`` (never stored): the state after tail[:k] for some k, the facts of the
    # tail's fixes by index, and the state after the whole tail.
    snapshots: list[tuple[int, RuleState]] = field(default_factory=list)
    log: list[tuple[int, StayFact]] = field(default_factory=list)
    state: RuleState = field(default_factory=RuleState)

    def __post_init__(self) -> None:
        if not self.snapshots:
            self.snapshots = [(0, self.base)]
        self.state = self.base

    @classmethod
    def restore(
        cls,
        base: RuleState,
        settled: dict[FactKey, StayFact],
        horizon: Point | None,
        tail: Iterable[Point],
        rules: StayRules,
        max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH,
    ) -> StayTrack:
        """From what is stored: the tail replayed from the base (the same facts as before, so none is answered)."""
        track = cls(base=base, settled=dict(settled), horizon=horizon, tail=sorted(tail))
        track._replay(0, rules, max_speed_kmh)
        return track

    def add(
        self, point: Point, rules: StayRules, max_speed_kmh: float = DEFAULT_MAX_SPEED_KMH
    ) -> Sequence[Change] | None:
        """One good fix; the changes it makes, or None when it is past the horizon or already held."""
        tail = self.tail
        if (tail and point > tail[-1]) or (not tail and (self.horizon is None or point > self.horizon)):
            index = len(tail)
            tail.append(point)
            self.state, facts = step(self.state, point, rules, max_speed_kmh)
            if facts:
                self.log.extend((index, fact) for fact in facts)
            if not (index + 1) % SNAPSHOT_EVERY:
                self.snapshots.append((index + 1, self.state))
            return facts
        if self.horizon is not None and point <= self.horizon:
            return None
        index = bisect.bisect_left(tail, point)
        if index < len(tail) and tail[index] == point:
            return None
        # The last snapshot taken before the insertion (its state saw only fixes older than ``point``).
        keep = bisect.bisect_right(self.snapshots, index, key=lambda snapshot: snapshot[0])
        start, state = self.snapshots[keep - 1]
        for older in range(start, index):
            state, _ = step(state, tail[older], rules, max_speed_kmh)
        if step(state, point, rules, max_speed_kmh)[0] is state:  # passed over (unreachable): nothing after changes
            tail.insert(index, point)
            self.snapshots = [(k + 1 if k > index else k, kept) for k, kept in self.snapshots]
            self.log = [(i + 1 if i >= index else i, fact) for i, fact in self.log]
            return ()
        before = self.facts()
        tail.insert(index, point)
        del self.snapshots[keep:]
        self._replay(start, rules, max_speed_kmh)
        return _difference(before, self.facts())

    def _replay(self, start: int, rules: StayRules, max_speed_kmh: float) -> None:
        """The rule again over tail[start:], from the snapshot at ``start``."""
        while self.snapshots and self.snapshots[-1][0] > start:
            self.snapshots.pop()
        if not self.snapshots:
            self.snapshots = [(0, self.base)]
        start, state = self.snapshots[-1]
        self.log = [entry for entry in self.log if entry[0] < start]
        for index in range(start, len(self.tail)):
            state, facts = step(state, self.tail[index], rules, max_speed_kmh)
            for fact in facts:
                self.log.append((index, fact))
            if (index + 1) % SNAPSHOT_EVERY == 0:
                self.snapshots.append((index + 1, state))
        self.state = state

    def facts(self) -> dict[FactKey, StayFact]:
        """Each key's last fact, of what the track still holds (the settled ones and the tail's)."""
        last = dict(self.settled)
        for _, fact in self.log:
            last[fact_key(fact)] = fact
        return last

    def prune(self, keep_seconds: float, max_fixes: int) -> bool:
        """Fold the tail's older part into the base: keep the fixes of the last ``keep_seconds`` of device time and
        at most ``max_fixes`` (about: the cut falls on a snapshot). True when anything was folded."""
        tail = self.tail
        if not tail:
            return False
        oldest_kept = tail[-1].at - keep_seconds
        cut = 0
        for index, state in self.snapshots:
            if index == 0:
                continue
            if tail[index - 1].at < oldest_kept or len(tail) - index > max_fixes:
                cut, base = index, state
        if cut == 0:
            return False
        settled = dict(self.settled)
        for index, fact in self.log:
            if index < cut:
                settled[fact_key(fact)] = fact
        # A stop or trip that ended before the cut cannot change: only the open ones stay settled.
        self.settled = {key: fact for key, fact in settled.items() if fact.ended_at is None}
        self.horizon = tail[cut - 1]
        self.base = base
        del tail[:cut]
        self.snapshots = [(index - cut, state) for index, state in self.snapshots if index >= cut]
        self.log = [(index - cut, fact) for index, fact in self.log if index >= cut]
        return True


@dataclass(slots=True)
class TailAdditions:
    """The fixes some tracks took in one batch, per technician (``points``), and the partition they were read from:
    what a commit stores as each track's next tail chunk (``geofencer/state.py``)."""

    points: dict[tuple[str, str], list[Point]] = field(default_factory=dict)
    partition: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, key: tuple[str, str], point: Point, partition: int = 0) -> None:
        """A fix the technician's track took, read from ``partition``."""
        held = self.points.get(key)
        if held is None:
            self.points[key] = [point]
            self.partition[key] = partition
        else:
            held.append(point)


def _difference(before: dict[FactKey, StayFact], after: dict[FactKey, StayFact]) -> list[Change]:
    """What turns a consumer's ``before`` into ``after``: the retractions, then the changed last facts in the order
    they started, so a consumer that keeps only the latest (the map's ``domain/projection.py``) ends on the latest."""
    changes: list[Change] = [Retraction(*key) for key in sorted(before) if key not in after]
    changed: list[StayFact] = [fact for key, fact in after.items() if before.get(key) != fact]
    in_start_order: list[StayFact] = sorted(changed, key=lambda fact: (fact.started_at, fact.kind))
    changes.extend(in_start_order)
    return changes


def apply_changes(held: dict[FactKey, StayFact], changes: Iterable[Change]) -> None:
    """What a consumer does with a track's changes (the projector's table; the property tests)."""
    for change in changes:
        if isinstance(change, Retraction):
            held.pop((change.subject, change.started_at), None)
        else:
            held[fact_key(change)] = change


# What the processor stores of a track (``base``, ``settled``, ``horizon``; the tail is stored fix by fix), as JSON
# values. Floats survive JSON exactly, so a restored track answers exactly as the stored one would have.


def state_to_json(state: RuleState) -> list[Any]:
    return [None if value is None else list(value) if isinstance(value, tuple) else value for value in state]


def _point(value: Any) -> Point | None:
    return None if value is None else Point(*value)


def _stay(value: Any) -> _Stay | None:
    if value is None:
        return None
    start, anchor, cos, last, *sums = value
    return _Stay(Point(*start), Point(*anchor), cos, Point(*last), *sums)


def state_from_json(value: list[Any]) -> RuleState:
    prev, stop, away, candidate, trip_start, path, path_fixes = value
    return RuleState(_point(prev), _stay(stop), away, _stay(candidate), _point(trip_start), path, path_fixes)


def facts_to_json(facts: dict[FactKey, StayFact]) -> list[list[Any]]:
    return [list(fact) for _, fact in sorted(facts.items())]


def facts_from_json(value: list[list[Any]]) -> dict[FactKey, StayFact]:
    facts = [StayFact(*fact) for fact in value]
    return {fact_key(fact): fact for fact in facts}
