"""The geofencing rule and its grid: jitter, accuracy, late fixes, polygons, and the grid finding what a brute
force finds."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

from domain.geofencing import EARTH_RADIUS_M, Crossing, Fence, FenceIndex, TechnicianFences, distance_m, evaluate

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SITE = (6.5244, 3.3792)
METRES_PER_DEGREE = math.pi / 180 * EARTH_RADIUS_M


def north_of(point: tuple[float, float], metres: float) -> tuple[float, float]:
    return point[0] + metres / METRES_PER_DEGREE, point[1]


def drive(index: FenceIndex, distances: list[float], accuracy: float | None = 5.0) -> list[Crossing]:
    state, crossings = TechnicianFences(), list[Crossing]()
    for second, metres in enumerate(distances):
        lat, lon = north_of(SITE, metres)
        crossings += evaluate(state, index, uuid.uuid4(), T0 + timedelta(seconds=second), lat, lon, accuracy)
    return crossings


def site_index(*fences: Fence) -> FenceIndex:
    index = FenceIndex()
    for fence in fences:
        index.put(fence)
    return index


def test_jitter_across_the_edge_gives_one_enter_and_one_exit() -> None:
    index = site_index(Fence.circle("t", "cabinet-12", *SITE, 100.0, job_id="job-12", name="Cabinet 12"))
    crossings = drive(index, [105, 60, 20, 95, 110, 30, 400])
    assert [c.kind for c in crossings] == ["enter", "exit"]
    assert round(crossings[0].distance_m) == 60 and round(crossings[1].distance_m) == 400
    assert drive(index, [105, 99, 124, 99, 126]) and [c.kind for c in drive(index, [105, 99, 124, 99, 126])] == [
        "enter",
        "exit",
    ]  # 124 m is within 100 + 25: no exit; 126 m is beyond it


def test_accuracy_worse_than_the_radius_is_not_evaluated_and_widens_the_exit_margin() -> None:
    index = site_index(Fence.circle("t", "f", *SITE, 100.0))
    assert drive(index, [200, 10, 200], accuracy=150.0) == []
    assert [c.kind for c in drive(index, [200, 10, 160, 190], accuracy=80.0)] == ["enter", "exit"]  # 60 < 80 < 90


def test_a_fix_not_newer_than_the_latest_never_triggers() -> None:
    index = site_index(Fence.circle("t", "f", *SITE, 100.0))
    state = TechnicianFences()
    inside = north_of(SITE, 10)
    assert [c.kind for c in evaluate(state, index, uuid.uuid4(), T0, *inside, 5.0)] == ["enter"]
    far = north_of(SITE, 1_000)
    assert list(evaluate(state, index, uuid.uuid4(), T0 - timedelta(minutes=5), *far, 5.0)) == []  # late
    assert list(evaluate(state, index, uuid.uuid4(), T0, *far, 5.0)) == []  # not newer either
    assert [c.kind for c in evaluate(state, index, uuid.uuid4(), T0 + timedelta(seconds=1), *far, 5.0)] == ["exit"]


def test_a_polygon_is_entered_inside_and_left_25_m_beyond_its_edge() -> None:
    half = 100 / METRES_PER_DEGREE  # a square of about 200 m
    lat, lon = SITE
    k = math.cos(math.radians(lat))
    ring = [
        (lon - half / k, lat - half),
        (lon + half / k, lat - half),
        (lon + half / k, lat + half),
        (lon - half / k, lat + half),
    ]
    index = site_index(Fence.polygon_of("t", "yard", [*ring, ring[0]]))
    assert [c.kind for c in drive(index, [150, 90, 115, 140])] == ["enter", "exit"]  # edge at 100: 115 stays inside


def test_crossings_are_deterministic() -> None:
    index = site_index(Fence.circle("t", "a", *SITE, 100.0), Fence.circle("t", "b", *SITE, 150.0))
    fix = uuid.uuid4()
    first = list(evaluate(TechnicianFences(), index, fix, T0, *SITE, 5.0))
    again = list(evaluate(TechnicianFences(), index, fix, T0, *SITE, 5.0))
    assert [c.event_id for c in first] == [c.event_id for c in again] and [c.fence.geofence_id for c in first] == [
        "a",
        "b",
    ]


def test_the_grid_finds_what_a_brute_force_finds() -> None:
    rng = random.Random(7)
    index = FenceIndex()
    for i in range(2_000):
        lat, lon = SITE[0] + rng.uniform(-0.2, 0.2), SITE[1] + rng.uniform(-0.2, 0.2)
        index.put(Fence.circle("t", f"f{i}", lat, lon, rng.choice([50.0, 100.0, 400.0, 3_000.0, 60_000.0])))
    for i in range(0, 2_000, 7):
        index.remove(f"f{i}")
    for _ in range(2_000):
        lat, lon = SITE[0] + rng.uniform(-0.21, 0.21), SITE[1] + rng.uniform(-0.21, 0.21)
        truth = {
            f.geofence_id for f in index.fences.values() if distance_m(f.latitude, f.longitude, lat, lon) <= f.radius_m
        }
        assert truth <= index.near(lat, lon)
    assert len(index) == 2_000 - len(range(0, 2_000, 7))
