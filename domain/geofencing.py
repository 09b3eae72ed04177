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

from domain.fence_shapes import EARTH_RADIUS_M as EARTH_RADIUS_M
from domain.fence_shapes import METRES_PER_DEGREE, PolygonShape, longitude_offset, ring_frame
from domain.geodesy import distance_m as distance_m
from domain.identity import uuid5
from domain.projection import fix_verdict
from schemas.events import LocationRecorded
from schemas.geofences import (
    Circle,
    FenceEvent,
    GeofenceDefined,
    GeofenceRemoved,
    decode_fence_event,
    encode_fence_event,
    fence_cost,
)

EXIT_MARGIN_M = 25.0
CELL_DEGREES = 0.01  # the grid: about 1.1 km north-south
_COLUMNS = round(360 / CELL_DEGREES)  # columns wrap round the globe: -180 and 180 are neighbours
MAX_CELLS_PER_FENCE = 400  # a fence wider than this many cells is checked (by its box first) against every fix
_CROSSING_NAMESPACE = uuid.UUID("6f1f3c2e-8d4b-4f0e-9a51-3c0de5e7a001").bytes

Kind = Literal["enter", "exit"]


@dataclass(frozen=True, slots=True)
class Fence:
    """A circle (``polygon`` None) or a polygon (``fence_shapes.PolygonShape``)."""

    tenant_id: str
    geofence_id: str
    latitude: float  # the circle's centre, or the polygon's vertex centroid
    longitude: float
    radius_m: float  # the circle's radius, or the polygon's equivalent: sqrt(area / pi)
    polygon: PolygonShape | None = None
    job_id: str | None = None
    name: str | None = None
    # West, south, east, north in degrees (west and east may pass ±180: the box is continuous), and for the quick
    # look of ``evaluate``: metres per degree of longitude at the fence's poleward edge (an underestimate anywhere in
    # it, so the look never skips a fix inside), and how far the fence reaches from its centre.
    bbox: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), compare=False, repr=False)
    _metres_per_lon: float = field(default=0.0, compare=False, repr=False)
    _reach: float = field(default=0.0, compare=False, repr=False)

    def __post_init__(self) -> None:
        reach = self.radius_m if self.polygon is None else self.polygon.reach_m()
        spread = reach / METRES_PER_DEGREE
        poleward = min(90.0, abs(self.latitude) + spread)
        object.__setattr__(self, "_metres_per_lon", METRES_PER_DEGREE * math.cos(math.radians(poleward)))
        object.__setattr__(self, "_reach", reach)
        if self.polygon is not None:
            object.__setattr__(self, "bbox", self.polygon.bbox())
        else:
            across = spread / max(1e-6, math.cos(math.radians(poleward)))
            box = (self.longitude - across, self.latitude - spread, self.longitude + across, self.latitude + spread)
            object.__setattr__(self, "bbox", box)

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
    def polygon_of(
        tenant_id: str,
        geofence_id: str,
        ring: Iterable[tuple[float, float]],
        job_id: str | None = None,
        name: str | None = None,
    ) -> Fence:
        """From GeoJSON positions (longitude, latitude), closed or not."""
        shape = PolygonShape([(float(lon), float(lat)) for lon, lat in ring])
        radius = math.sqrt(shape.area_m2() / math.pi)
        return Fence(tenant_id, geofence_id, shape.latitude, shape.longitude, radius, shape, job_id, name)

    def contains(self, latitude: float, longitude: float) -> bool:
        """Inside the fence (the entry test): a quick look first, without trigonometry."""
        dy = (latitude - self.latitude) * METRES_PER_DEGREE
        dx = longitude_offset(longitude, self.longitude) * self._metres_per_lon
        reach = self._reach * 1.01 + 1.0
        if dx * dx + dy * dy > reach * reach:
            return False
        if self.polygon is not None:
            return self.polygon.contains(latitude, longitude)
        return distance_m(self.latitude, self.longitude, latitude, longitude) <= self.radius_m

    def outside_beyond(self, latitude: float, longitude: float, margin: float) -> bool:
        """Outside by more than ``margin`` metres (the exit test)."""
        if self.polygon is not None:
            return self.polygon.outside_beyond(latitude, longitude, margin)
        return distance_m(self.latitude, self.longitude, latitude, longitude) > self.radius_m + margin

    def reach_m(self) -> float:
        """How far from the centre the fence reaches (the circle's radius, the polygon's farthest vertex)."""
        return self._reach


class FenceIndex:
    """A tenant's fences by grid cell of their boxes: a fix is checked against the fences whose box overlaps its
    cell (and the few too wide to grid, by their box first), not against all of them. Columns wrap at ±180°."""

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
        west, south, east, north = fence.bbox
        rows = range(_cell(south), _cell(north) + 1)
        columns = range(_cell(west), _cell(east) + 1)
        if len(rows) * len(columns) > MAX_CELLS_PER_FENCE:
            self._wide.add(fence.geofence_id)
            return
        cells = [(row, column % _COLUMNS) for row in rows for column in columns]
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
        found = self._cells.get((_cell(latitude), _cell(longitude) % _COLUMNS))
        if not self._wide:
            return found or _NONE
        wide = {
            geofence_id for geofence_id in self._wide if _in_box(self.fences[geofence_id].bbox, latitude, longitude)
        }
        return (found | wide) if found else wide


def _in_box(bbox: tuple[float, float, float, float], latitude: float, longitude: float) -> bool:
    west, south, east, north = bbox
    return south <= latitude <= north and (longitude - west) % 360.0 <= east - west


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
    """What the rule remembers of one technician: the fences it is inside, and its latest good fix's device time and
    place, by which ``domain.fix_quality`` judges the next fix (as the projection does with its current fix): the
    state is its own anchor (``fix_quality.Anchor``), so judging a fix makes no object."""

    inside: set[str] = field(default_factory=set)
    latest: datetime | None = None
    latitude: float = math.nan  # NaN: no place yet, or a state stored before places were
    longitude: float = math.nan

    @property
    def recorded_at(self) -> datetime:
        assert self.latest is not None, "no good fix yet"
        return self.latest

    def last_good(self) -> TechnicianFences | None:
        return self if self.latest is not None and self.latitude == self.latitude else None  # NaN != NaN


def crossing_id(fix_event_id: uuid.UUID, geofence_id: str, kind: Kind) -> uuid.UUID:
    return uuid5(_CROSSING_NAMESPACE, f"{fix_event_id}/{geofence_id}/{kind}")


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
    for geofence_id in (near | inside) if inside else near:
        fence = fences[geofence_id]
        if accuracy_m is not None and accuracy_m > fence.radius_m:
            continue
        if geofence_id not in inside:
            if fence.contains(latitude, longitude):  # entry asks "inside?" only: no distance to every edge
                centre = distance_m(fence.latitude, fence.longitude, latitude, longitude)
                crossings.append(Crossing(crossing_id(fix_event_id, geofence_id, "enter"), "enter", fence, centre))
        elif fence.outside_beyond(latitude, longitude, max(EXIT_MARGIN_M, accuracy_m or 0.0)):
            centre = distance_m(fence.latitude, fence.longitude, latitude, longitude)
            crossings.append(Crossing(crossing_id(fix_event_id, geofence_id, "exit"), "exit", fence, centre))
    if len(crossings) > 1:
        crossings.sort(key=lambda crossing: crossing.fence.geofence_id)  # a fence's id decides the order
    for crossing in crossings:
        if crossing.kind == "enter":
            inside.add(crossing.fence.geofence_id)
        else:
            inside.discard(crossing.fence.geofence_id)
    return crossings


def fix_crossings(
    state: TechnicianFences, index: FenceIndex | None, fix: LocationRecorded
) -> Sequence[Crossing] | None:
    """A fix as the geofence processor takes it: None when the quality rule flags it (``fix_verdict``, judged beside
    the technician's last good fix as the projection judges it: it then triggers and moves nothing), else the
    crossings it makes (``evaluate``; none when its tenant has no fence and it is inside none)."""
    data, at = fix.data, fix.recorded_at
    if fix_verdict(fix, state.last_good()):
        return None
    crossings: Sequence[Crossing] = ()
    if index is not None and (len(index) or state.inside):
        crossings = evaluate(state, index, fix.event_id, at, data.latitude, data.longitude, data.accuracy_meters)
    if state.latest is None or at >= state.latest:  # the newest (evaluate moved ``latest``), or a tie later in the log
        state.latest, state.latitude, state.longitude = at, data.latitude, data.longitude
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
    return Fence.polygon_of(
        definition.tenant_id, definition.geofence_id, ring, definition.job_id, definition.name or definition.title
    )


@dataclass(frozen=True, slots=True)
class FenceSummary:
    """What every service keeps of a fence: the record as the topic holds it (decoded only when the whole definition
    is asked for: a ring of 1,000 positions is about 22 KB so, and ten times that decoded), the fields the APIs
    read, its centre, its box and how many positions it has."""

    raw: bytes
    geofence_id: str
    job_id: str | None
    title: str | None
    name: str | None
    status: str | None
    assigned_technician_id: str | None
    latitude: float
    longitude: float
    bbox: tuple[float, float, float, float]  # west, south, east, north; west and east may pass ±180
    positions: int  # 1 for a circle

    def definition(self) -> GeofenceDefined:
        event = decode_fence_event(self.raw)
        assert isinstance(event, GeofenceDefined)
        return event


def _summary(definition: GeofenceDefined, raw: bytes, fence: Fence | None) -> FenceSummary:
    shape = definition.shape
    if fence is not None:
        latitude, longitude, bbox = fence.latitude, fence.longitude, fence.bbox
    elif isinstance(shape, Circle):
        latitude, longitude = shape.latitude, shape.longitude
        bbox = Fence.circle("", "", latitude, longitude, shape.radius_meters).bbox
    else:
        latitude, longitude, bbox = ring_frame([(position[0], position[1]) for position in shape.coordinates[0]])
    positions = 1 if isinstance(shape, Circle) else len(shape.coordinates[0])
    return FenceSummary(
        raw,
        definition.geofence_id,
        definition.job_id,
        definition.title,
        definition.name,
        definition.status,
        definition.assigned_technician_id,
        latitude,
        longitude,
        bbox,
        positions,
    )


def boxes_meet(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two boxes (west, south, east, north; west and east continuous, maybe past ±180) overlap."""
    if a[1] > b[3] or b[1] > a[3]:
        return False
    if a[2] - a[0] >= 360 or b[2] - b[0] >= 360:
        return True
    start = (b[0] - a[0]) % 360.0  # how far east of a's west b begins
    return start <= a[2] - a[0] or start + (b[2] - b[0]) >= 360.0


class FenceBook:
    """Every tenant's fences as the fences topic has them: a summary of each (``FenceSummary``), what each tenant's
    fences count against its budget of positions (``schemas.geofences.fence_cost``), and, with ``geometry`` (the
    geofence processor, which evaluates fixes), each tenant's fences built for the rule and their grid."""

    def __init__(self, geometry: bool = True) -> None:
        self.geometry = geometry
        self.summaries: dict[str, dict[str, FenceSummary]] = {}
        self.cost: dict[str, int] = {}  # per tenant: the sum of its fences' costs
        self.indexes: dict[str, FenceIndex] = {}

    def apply(self, event: FenceEvent, raw: bytes | None = None) -> GeofenceDefined | None:
        """Apply one record (``raw``: its bytes on the topic); the fence's definition now (None: removed)."""
        tenant = self.summaries.setdefault(event.tenant_id, {})
        index = self.indexes.setdefault(event.tenant_id, FenceIndex()) if self.geometry else None
        held = tenant.pop(event.geofence_id, None)
        if held is not None:
            self.cost[event.tenant_id] -= fence_cost(held.positions)
        if isinstance(event, GeofenceRemoved):
            if index is not None:
                index.remove(event.geofence_id)
            return None
        fence = fence_of(event) if index is not None else None
        summary = _summary(event, raw if raw is not None else encode_fence_event(event), fence)
        tenant[event.geofence_id] = summary
        self.cost[event.tenant_id] = self.cost.get(event.tenant_id, 0) + fence_cost(summary.positions)
        if index is not None and fence is not None:
            index.put(fence)
        return event

    def of(self, tenant_id: str) -> list[GeofenceDefined]:
        """The tenant's fences, by id, decoded."""
        return [summary.definition() for _, summary in sorted(self.summaries.get(tenant_id, {}).items())]

    def summaries_of(self, tenant_id: str) -> list[FenceSummary]:
        return list(self.summaries.get(tenant_id, {}).values())

    def get(self, tenant_id: str, geofence_id: str) -> GeofenceDefined | None:
        summary = self.summaries.get(tenant_id, {}).get(geofence_id)
        return summary.definition() if summary is not None else None

    def count(self, tenant_id: str) -> int:
        return len(self.summaries.get(tenant_id, ()))

    def has(self, tenant_id: str, geofence_id: str) -> bool:
        return geofence_id in self.summaries.get(tenant_id, {})

    def in_view(self, tenant_id: str, bbox: tuple[float, float, float, float], limit: int) -> list[FenceSummary]:
        """The tenant's fences whose boxes meet ``bbox``, by id, at most ``limit``."""
        found = [s for s in self.summaries.get(tenant_id, {}).values() if boxes_meet(s.bbox, bbox)]
        found.sort(key=lambda summary: summary.geofence_id)
        return found[:limit]

    def index(self, tenant_id: str) -> FenceIndex | None:
        return self.indexes.get(tenant_id)
