"""Fence shapes: the compact polygon answers as a plain ray-cast and distance would, across the antimeridian as
anywhere, shapes that cannot be fences are refused with the reason, and the grid wraps at ±180°."""

from __future__ import annotations

import itertools
import math
import random
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.fence_shapes import METRES_PER_DEGREE, PolygonShape, circle_problem, polygon_problem
from domain.geofencing import Fence, FenceBook, FenceIndex, TechnicianFences, distance_m, evaluate
from schemas.geofences import GeofenceDefined, Polygon

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _star(rng: random.Random, lat: float, lon: float, radius_m: float, count: int) -> list[tuple[float, float]]:
    """A jagged closed ring of ``count`` positions round (lat, lon), in GeoJSON order (lon, lat)."""
    ring = []
    for i in range(count):
        angle = 2 * math.pi * i / count
        r = radius_m * rng.uniform(0.4, 1.0)
        ring.append(
            (
                lon + r * math.sin(angle) / (METRES_PER_DEGREE * math.cos(math.radians(lat))),
                lat + r * math.cos(angle) / METRES_PER_DEGREE,
            )
        )
    return [*ring, ring[0]]


def _naive_inside(ring: list[tuple[float, float]], lat: float, lon: float) -> bool:
    inside, j = False, len(ring) - 2
    for i in range(len(ring) - 1):
        (xi, yi), (xj, yj) = ring[i], ring[j]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _wrap(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def test_the_compact_polygon_answers_as_a_plain_ray_cast_and_measures_as_a_plain_distance() -> None:
    rng = random.Random(3)
    ring = _star(rng, 6.52, 3.38, 400.0, 999)
    shape = PolygonShape(ring)
    for _ in range(3_000):
        lat, lon = 6.52 + rng.uniform(-0.006, 0.006), 3.38 + rng.uniform(-0.006, 0.006)
        assert shape.contains(lat, lon) == _naive_inside(ring, lat, lon)
    for _ in range(300):  # the exit test near the edge: against the distance to every edge, measured plainly
        lat, lon = 6.52 + rng.uniform(-0.005, 0.005), 3.38 + rng.uniform(-0.005, 0.005)
        x, y = shape.local(lat, lon)
        points = [shape.local(p_lat, p_lon) for p_lon, p_lat in ring]
        nearest = min(_segment(x, y, a, b) for a, b in itertools.pairwise(points))
        expected = not _naive_inside(ring, lat, lon) and nearest > 25.0
        assert shape.outside_beyond(lat, lon, 25.0) == expected


def _segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy or 1.0)))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


def _enters(fence: Fence, lat: float, lon: float) -> bool:
    index = FenceIndex()
    index.put(fence)
    return bool(evaluate(TechnicianFences(), index, uuid.uuid4(), T0, lat, lon, 5.0))


def _exits(fence: Fence, lat: float, lon: float) -> bool:
    index = FenceIndex()
    index.put(fence)
    state = TechnicianFences(inside={fence.geofence_id}, latest=T0 - timedelta(seconds=1))
    return bool(evaluate(state, index, uuid.uuid4(), T0, lat, lon, 5.0))


def test_the_issues_box_across_the_antimeridian_is_the_small_box_from_both_sides() -> None:
    box = [(179.99, 0.0), (-179.99, 0.0), (-179.99, 0.01), (179.99, 0.01), (179.99, 0.0)]
    fence = Fence.polygon_of("t", "box", box)
    assert fence.radius_m < 2_000 and abs(abs(fence.longitude) - 180) < 1e-9  # not a box round the globe
    assert _enters(fence, 0.005, 179.995) and _enters(fence, 0.005, -179.995)  # inside, from either side
    assert not _enters(fence, 0.005, 0.0)  # 19,700 km away "arrived" before
    assert not _enters(fence, 0.005, 179.98) and not _enters(fence, 0.005, -179.98)
    assert _exits(fence, 0.005, 179.9) and not _exits(fence, 0.005, -179.995)
    assert polygon_problem(box) is None


def test_a_circle_on_the_antimeridian_is_entered_from_the_other_side() -> None:
    circle = Fence.circle("t", "c", 0.0, 179.999, 500.0)
    assert distance_m(0.0, 179.999, 0.0, -179.999) < 250
    assert _enters(circle, 0.0, -179.999) and _enters(circle, 0.0, 179.9995)
    assert not _exits(circle, 0.0, -179.999) and _exits(circle, 0.0, -179.99)


def test_a_polygon_on_the_antimeridian_answers_as_the_same_polygon_on_the_prime_meridian() -> None:
    rng = random.Random(5)
    ring = _star(rng, 10.0, 0.0, 300.0, 999)
    here = Fence.polygon_of("t", "here", ring)
    there = Fence.polygon_of("t", "there", [(_wrap(lon + 180.0), lat) for lon, lat in ring])
    for _ in range(2_000):
        lat, lon = 10.0 + rng.uniform(-0.004, 0.004), rng.uniform(-0.004, 0.004)
        assert _enters(here, lat, lon) == _enters(there, lat, _wrap(lon + 180.0))


def test_a_fix_inside_a_wide_circle_at_high_latitude_is_never_skipped_by_the_quick_look() -> None:
    rng = random.Random(11)
    for latitude in (82.0, 84.0, -84.5):
        fence = Fence.circle("t", "c", latitude, 20.0, 50_000.0)
        inside = 0
        for _ in range(3_000):
            lat, lon = latitude + rng.uniform(-0.45, 0.45), 20.0 + rng.uniform(-5.0, 5.0)
            if distance_m(latitude, 20.0, lat, lon) <= 50_000.0:
                inside += 1
                assert fence.contains(lat, lon), (latitude, lat, lon)
        assert inside > 100


@pytest.mark.parametrize(
    ("ring", "reason"),
    [
        ([(0.0, 80.0), (120.0, 80.0), (-120.0, 80.0), (0.0, 80.0)], "winds round a pole"),
        ([(10.0, 86.0), (10.1, 86.0), (10.1, 86.1), (10.0, 86.0)], "beyond 85 degrees"),
        ([(3.0, 6.0), (4.5, 6.0), (4.5, 6.5), (3.0, 6.0)], "more than 1 degree"),
        ([(179.5, 0.0), (-179.5, 0.0), (-179.5, 0.5), (179.5, 0.0)], None),  # 1 degree the short way: a fence
    ],
)
def test_shapes_that_cannot_be_fences_are_refused_with_the_reason(
    ring: list[tuple[float, float]], reason: str | None
) -> None:
    problem = polygon_problem(ring)
    assert (problem is None) if reason is None else (problem is not None and reason in problem)


def test_a_circle_reaching_past_85_degrees_is_refused() -> None:
    assert circle_problem(84.9, 100.0) is None
    assert circle_problem(84.99, 50_000.0) is not None and circle_problem(-85.01, 10.0) is not None


def test_the_grid_wraps_at_the_antimeridian() -> None:
    rng = random.Random(9)
    index = FenceIndex()
    for i in range(300):
        index.put(Fence.circle("t", f"f{i}", rng.uniform(-1, 1), _wrap(180 + rng.uniform(-0.5, 0.5)), 2_000.0))
    for _ in range(3_000):
        lat, lon = rng.uniform(-1, 1), _wrap(180 + rng.uniform(-0.5, 0.5))
        truth = {f.geofence_id for f in index.fences.values() if distance_m(f.latitude, f.longitude, lat, lon) <= 2e3}
        assert truth <= index.near(lat, lon)


def test_a_big_polygon_costs_the_services_a_few_tens_of_kilobytes() -> None:
    """About 380 KB a 1,000-position polygon in each service before (1.5 MiB in dev's four); the record itself,
    at full float precision, is about 45 KB."""
    rng = random.Random(1)
    ring = [[lon, lat] for lon, lat in _star(rng, 6.52, 3.38, 400.0, 999)]
    definitions = [
        GeofenceDefined(tenant_id="t", geofence_id=f"f{i}", at=T0, shape=Polygon(coordinates=[ring])) for i in range(50)
    ]
    for geometry, ceiling in ((False, 60_000), (True, 100_000)):
        book = FenceBook(geometry)
        tracemalloc.start()
        try:
            for definition in definitions:
                book.apply(definition)
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert held / len(definitions) < ceiling, (geometry, held / len(definitions))
        assert book.cost["t"] == 50 * 1_000 and book.get("t", "f7") == definitions[7]
