"""Geofencing, the pure core: fences (circles and polygons), the grid that finds the fences near a fix, and the rule
that turns a technician's fixes into enter and exit crossings.

The rule, against GPS jitter:

- a technician enters a fence at a distance <= its radius (inside a polygon);
- it exits only beyond radius + max(25 m, the fix's accuracy) (that far outside a polygon's edge);
- a fix whose accuracy is worse than the fence's radius is not evaluated against it;
- a fix not newer (device time) than the technician's latest never triggers anything: late and backfilled fixes
  are history, not movement.

Crossings are deterministic: the same fixes and fences give the same crossings, in the same order, with the same
event ids (``crossing_id``), so a processor that repeats a batch after a crash repeats its events exactly and the
consumers' deduplication by event id removes the repeats.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from schemas.geofences import Circle, FenceEvent, GeofenceDefined, GeofenceRemoved

EARTH_RADIUS_M = 6_371_008.8
_METRES_PER_DEGREE = math.pi / 180 * EARTH_RADIUS_M
EXIT_MARGIN_M = 25.0
CELL_DEGREES = 0.01  # the grid: about 1.1 km north-south
MAX_CELLS_PER_FENCE = 400  # a fence wider than this many cells is checked against every fix of its tenant
_CROSSING_NAMESPACE = uuid.UUID("6f1f3c2e-8d4b-4f0e-9a51-3c0de5e7a001")

Kind = Literal["enter", "exit"]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Fence:
    """A circle (``ring`` None) or a polygon (``ring``: its vertices as (longitude, latitude), GeoJSON order)."""

    tenant_id: str
    geofence_id: str
    latitude: float  # the circle's centre, or the polygon's vertex centroid
    longitude: float
    radius_m: float  # the circle's radius, or the polygon's equivalent: sqrt(area / pi)
    ring: tuple[tuple[float, float], ...] | None = None
    job_id: str | None = None
    name: str | None = None
    _xy: tuple[tuple[float, float], ...] = field(default=(), compare=False, repr=False)
    # Kept for the quick look of ``evaluate``: metres per degree of longitude here, and how far the fence reaches.
    _metres_per_lon: float = field(default=0.0, compare=False, repr=False)
    _reach: float = field(default=0.0, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_metres_per_lon", _METRES_PER_DEGREE * math.cos(math.radians(self.latitude)))
        reach = self.radius_m if self.ring is None else max(math.hypot(x, y) for x, y in self._xy)
        object.__setattr__(self, "_reach", reach)

    @staticmethod
    def circle(
        tenant_id: str,
        geofence_id: str,
        latitude: float,
        longitude: float,
        radius_m: float,
        job_id: str | None = None,
        name: str | None = None,
    ) -> Fence:
        return Fence(tenant_id, geofence_id, latitude, longitude, radius_m, None, job_id, name)

    @staticmethod
    def polygon(
        tenant_id: str,
        geofence_id: str,
        ring: Iterable[tuple[float, float]],
        job_id: str | None = None,
        name: str | None = None,
    ) -> Fence:
        """From GeoJSON positions (longitude, latitude), closed or not."""
        points = tuple((float(lon), float(lat)) for lon, lat in ring)
        if points[0] == points[-1]:
            points = points[:-1]
        lat0 = sum(lat for _, lat in points) / len(points)
        lon0 = sum(lon for lon, _ in points) / len(points)
        xy = tuple(_project(lat, lon, lat0, lon0) for lon, lat in points)
        area = abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True))) / 2
        radius = math.sqrt(area / math.pi)
        return Fence(tenant_id, geofence_id, lat0, lon0, radius, points, job_id, name, xy)

    def outside_by(self, latitude: float, longitude: float) -> tuple[float, float]:
        """How far outside the fence a point is (0 inside), and its distance from the fence's centre."""
        centre = distance_m(self.latitude, self.longitude, latitude, longitude)
        if self.ring is None:
            return max(0.0, centre - self.radius_m), centre
        x, y = _project(latitude, longitude, self.latitude, self.longitude)
        if _inside(x, y, self._xy):
            return 0.0, centre
        return min(
            _segment_distance(x, y, a, b) for a, b in zip(self._xy, self._xy[1:] + self._xy[:1], strict=True)
        ), centre

    def reach_m(self) -> float:
        """How far from the centre the fence reaches (the circle's radius, the polygon's farthest vertex)."""
        return self._reach


def _project(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    """Metres east and north of (lat0, lon0): equirectangular, exact enough at a job site's scale."""
    k = math.pi / 180 * EARTH_RADIUS_M
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def _inside(x: float, y: float, ring: tuple[tuple[float, float], ...]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _segment_distance(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


class FenceIndex:
    """A tenant's fences by grid cell: a fix is checked against the fences whose reach overlaps its cell (and the
    few too wide to grid), not against all of them."""

    def __init__(self) -> None:
        self.fences: dict[str, Fence] = {}
        self._cells: dict[tuple[int, int], set[str]] = {}
        self._wide: set[str] = set()
        self._placed: dict[str, list[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.fences)

    def put(self, fence: Fence) -> None:
        self.remove(fence.geofence_id)
        self.fences[fence.geofence_id] = fence
        reach = fence.reach_m()
        dlat = math.degrees(reach / EARTH_RADIUS_M)
        dlon = dlat / max(0.01, math.cos(math.radians(fence.latitude)))
        rows = range(_cell(fence.latitude - dlat), _cell(fence.latitude + dlat) + 1)
        cols = range(_cell(fence.longitude - dlon), _cell(fence.longitude + dlon) + 1)
        if len(rows) * len(cols) > MAX_CELLS_PER_FENCE:
            self._wide.add(fence.geofence_id)
            return
        cells = [(row, col) for row in rows for col in cols]
        for cell in cells:
            self._cells.setdefault(cell, set()).add(fence.geofence_id)
        self._placed[fence.geofence_id] = cells

    def remove(self, geofence_id: str) -> Fence | None:
        fence = self.fences.pop(geofence_id, None)
        self._wide.discard(geofence_id)
        for cell in self._placed.pop(geofence_id, ()):
            ids = self._cells[cell]
            ids.discard(geofence_id)
            if not ids:
                del self._cells[cell]
        return fence

    def near(self, latitude: float, longitude: float) -> AbstractSet[str]:
        """Ids of the fences a fix at this point could be inside (a view: not to be changed)."""
        found = self._cells.get((_cell(latitude), _cell(longitude)))
        if not self._wide:
            return found or _NONE
        return (found | self._wide) if found else self._wide


_NONE: frozenset[str] = frozenset()


def _cell(degrees: float) -> int:
    return math.floor(degrees / CELL_DEGREES)


@dataclass(frozen=True, slots=True)
class Crossing:
    event_id: uuid.UUID
    kind: Kind
    fence: Fence
    distance_m: float  # from the fence's centre


@dataclass(slots=True)
class TechnicianFences:
    """What the rule remembers of one technician: the fences it is inside, and its latest fix's device time."""

    inside: set[str] = field(default_factory=set)
    latest: datetime | None = None


def crossing_id(fix_event_id: uuid.UUID, geofence_id: str, kind: Kind) -> uuid.UUID:
    return uuid.uuid5(_CROSSING_NAMESPACE, f"{fix_event_id}/{geofence_id}/{kind}")


def evaluate(
    state: TechnicianFences,
    index: FenceIndex,
    fix_event_id: uuid.UUID,
    recorded_at: datetime,
    latitude: float,
    longitude: float,
    accuracy_m: float | None,
) -> Sequence[Crossing]:
    """The crossings one fix makes (and ``state`` updated); none for a fix not newer than the latest."""
    if state.latest is not None and recorded_at <= state.latest:
        return ()
    state.latest = recorded_at
    inside = state.inside
    fences = index.fences
    if inside:
        gone = {geofence_id for geofence_id in inside if geofence_id not in fences}
        inside -= gone  # a removed fence is left without an exit
    near = index.near(latitude, longitude)
    crossings: list[Crossing] = []
    metres_north = latitude * _METRES_PER_DEGREE
    for geofence_id in (near | inside) if inside else near:
        fence = fences[geofence_id]
        radius = fence.radius_m
        if accuracy_m is not None and accuracy_m > radius:
            continue
        if geofence_id not in inside:
            # A cheap look first (no trigonometry): most fences near a fix are not reached by it.
            dy = metres_north - fence.latitude * _METRES_PER_DEGREE
            dx = (longitude - fence.longitude) * fence._metres_per_lon
            reach = fence._reach * 1.01 + 1.0
            if dx * dx + dy * dy > reach * reach:
                continue
            outside_by, centre = fence.outside_by(latitude, longitude)
            if outside_by == 0.0:
                crossings.append(Crossing(crossing_id(fix_event_id, geofence_id, "enter"), "enter", fence, centre))
        else:
            outside_by, centre = fence.outside_by(latitude, longitude)
            if outside_by > max(EXIT_MARGIN_M, accuracy_m or 0.0):
                crossings.append(Crossing(crossing_id(fix_event_id, geofence_id, "exit"), "exit", fence, centre))
    if len(crossings) > 1:
        crossings.sort(key=lambda crossing: crossing.fence.geofence_id)  # a fence's id decides the order
    for crossing in crossings:
        if crossing.kind == "enter":
            inside.add(crossing.fence.geofence_id)
        else:
            inside.discard(crossing.fence.geofence_id)
    return crossings


def fence_of(definition: GeofenceDefined) -> Fence:
    shape = definition.shape
    if isinstance(shape, Circle):
        return Fence.circle(
            definition.tenant_id,
            definition.geofence_id,
            shape.latitude,
            shape.longitude,
            shape.radius_meters,
            definition.job_id,
            definition.name or definition.title,
        )
    ring = [(position[0], position[1]) for position in shape.coordinates[0]]
    return Fence.polygon(
        definition.tenant_id, definition.geofence_id, ring, definition.job_id, definition.name or definition.title
    )


class FenceBook:
    """Every tenant's fences as the fences topic has them: their definitions, and each tenant's grid."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict[str, GeofenceDefined]] = {}
        self.indexes: dict[str, FenceIndex] = {}

    def apply(self, event: FenceEvent) -> GeofenceDefined | None:
        """Apply one record; the fence's definition now (None: removed)."""
        tenant = self.definitions.setdefault(event.tenant_id, {})
        index = self.indexes.setdefault(event.tenant_id, FenceIndex())
        if isinstance(event, GeofenceRemoved):
            tenant.pop(event.geofence_id, None)
            index.remove(event.geofence_id)
            return None
        tenant[event.geofence_id] = event
        index.put(fence_of(event))
        return event

    def of(self, tenant_id: str) -> list[GeofenceDefined]:
        """The tenant's fences, by id."""
        return [fence for _, fence in sorted(self.definitions.get(tenant_id, {}).items())]

    def get(self, tenant_id: str, geofence_id: str) -> GeofenceDefined | None:
        return self.definitions.get(tenant_id, {}).get(geofence_id)

    def index(self, tenant_id: str) -> FenceIndex | None:
        return self.indexes.get(tenant_id)
