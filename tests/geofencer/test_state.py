"""The derived-facts processor's state store (``geofencer/state.py``): what it commits of the stops-and-trips tracks
(the tails packed per batch, a track's new start when its tail is cut) loads back into tracks that answer exactly as
the ones it was committed from, across cuts, late fixes and rows that straddle a cut."""

from __future__ import annotations

import random
from pathlib import Path

from domain.stays import Point, StayTrack
from geofencer.state import Changes, GeofencerState, StayBase
from schemas.tenant_rules import StayRules
from tests.domain.test_stays import _a_day

RULES = StayRules()
KEY = ("tenant-a", "tech-1")


def _load(path: Path) -> dict[tuple[str, str], StayTrack]:
    state = GeofencerState(path)
    state.open()
    try:
        return state.load_tracks(lambda tenant: RULES, lambda tenant: 200.0)
    finally:
        state.close()


def test_tracks_committed_batch_by_batch_with_cuts_load_back_as_they_were(tmp_path: Path) -> None:
    rng = random.Random(7)
    points = _a_day(21) + [Point(p.at + 3 * 3600, p.latitude, p.longitude) for p in _a_day(22)]
    arrival = list(points)
    for i in range(0, len(arrival) - 1, 5):  # now and then a fix comes a little late
        if rng.random() < 0.3:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    path = tmp_path / "geofencer.sqlite3"
    store = GeofencerState(path)
    store.open()
    live = StayTrack()
    cuts = 0
    try:
        for start in range(0, len(arrival), 37):  # batches of 37 fixes
            changes = Changes()
            for point in arrival[start : start + 37]:
                if live.add(point, RULES) is not None:
                    changes.tail.add(KEY, point)
                if live.prune(keep_seconds=1_800, max_fixes=400):  # as the processor cuts, mid-batch
                    changes.bases.append(StayBase(*KEY, live.base, live.settled, live.horizon))
                    cuts += 1
            store.commit(changes, {0: start + 37})
            if start % (37 * 5) == 0:  # now and then the processor restarts from what it stored
                restored = _load(path)[KEY]
                assert restored.facts() == live.facts()
                assert restored.tail == live.tail and restored.horizon == live.horizon
                assert restored.state == live.state
    finally:
        store.close()
    assert cuts >= 2  # the day is longer than the horizon: the tail was cut, and the cut was stored
    restored = _load(path)[KEY]
    assert restored.facts() == live.facts() and restored.tail == live.tail
    late = Point(live.tail[len(live.tail) // 2].at + 0.5, *points[0][1:])  # a late fix within the horizon
    assert restored.add(late, RULES) == live.add(late, RULES)
    assert restored.add(points[0], RULES) is live.add(points[0], RULES) is None  # before the horizon: history only


def test_presences_and_clocks_committed_load_back_as_they_were(tmp_path: Path) -> None:
    import uuid

    from domain.presence import PartitionClock, Presence

    path = tmp_path / "geofencer.sqlite3"
    store = GeofencerState(path)
    store.open()
    try:
        changes = Changes()
        presence = Presence(12.5, 1_800_000_000.25, uuid.uuid4(), 3, online=False, ended=uuid.uuid4())
        changes.add_presence(KEY, presence)
        changes.set_clocks({3: PartitionClock(12.5, 1_800_000_010.0), 4: PartitionClock()})
        store.commit(changes, {3: 10})
        clocks, presences = store.load_presence()
    finally:
        store.close()
    assert presences == {KEY: presence}
    assert clocks == {3: PartitionClock(12.5, 1_800_000_010.0), 4: PartitionClock()}
