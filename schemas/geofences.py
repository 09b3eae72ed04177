"""Fence definitions on the compacted topic ``geofences.v1`` (key = tenant id and fence id, value = JSON): a job
site as a circle or a GeoJSON polygon, with the job it belongs to. Compaction keeps the latest definition (or
removal) of each fence, so the topic stays the size of the tenants' fences and every reader rebuilds them all by
reading it from its beginning.
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta, Struct

from schemas.events import LIMITS, AwareDatetime

Identifier = Annotated[str, Meta(**LIMITS["identifier"])]
Latitude = Annotated[float, Meta(**LIMITS["latitude"])]
Longitude = Annotated[float, Meta(**LIMITS["longitude"])]
RADIUS_LIMITS: Final = {"gt": 0, "le": 50_000}
DEFAULT_RADIUS_M: Final = 100.0
MAX_POLYGON_POINTS: Final = 1_000
MIN_FENCE_COST: Final = 100  # what a fence counts against its tenant's position budget at least (a circle too)


def fence_cost(positions: int) -> int:
    """What a fence of ``positions`` counts against its tenant's budget of positions: its positions, at least
    ``MIN_FENCE_COST``, since each fence costs every fix near it a test whatever its size."""
    return max(positions, MIN_FENCE_COST)


Position = Annotated[list[float], Meta(min_length=2, max_length=3)]  # GeoJSON: longitude, latitude[, altitude]


class Circle(Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="Circle", tag_field="type"):
    latitude: Latitude
    longitude: Longitude
    radius_meters: Annotated[float, Meta(**RADIUS_LIMITS)] = DEFAULT_RADIUS_M


class Polygon(Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag="Polygon", tag_field="type"):
    """A GeoJSON Polygon of one ring (no holes), closed, of 4 to ``MAX_POLYGON_POINTS`` positions."""

    coordinates: Annotated[
        list[Annotated[list[Position], Meta(min_length=4, max_length=MAX_POLYGON_POINTS)]],
        Meta(min_length=1, max_length=1),
    ]


Shape = Circle | Polygon


class _FenceEvent(Struct, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True, tag_field="type"):
    tenant_id: Identifier
    geofence_id: Identifier
    at: AwareDatetime


class GeofenceDefined(_FenceEvent, frozen=True, gc=False, tag="geofence_defined"):
    type: ClassVar[str] = "geofence_defined"
    shape: Shape
    name: Annotated[str, Meta(max_length=200)] | None = None
    job_id: Annotated[str, Meta(**LIMITS["job_id"])] | None = None
    title: Annotated[str, Meta(max_length=200)] | None = None
    status: Annotated[str, Meta(max_length=64)] | None = None
    assigned_technician_id: Identifier | None = None


class GeofenceRemoved(_FenceEvent, frozen=True, gc=False, tag="geofence_removed"):
    type: ClassVar[str] = "geofence_removed"


FenceEvent = GeofenceDefined | GeofenceRemoved

_DECODER: Final[msgspec.json.Decoder[FenceEvent]] = msgspec.json.Decoder(FenceEvent)
_ENCODER: Final = msgspec.json.Encoder()


def decode_fence_event(value: bytes) -> FenceEvent:
    """One record of the fences topic; ``msgspec.MsgspecError`` when it is not one."""
    return _DECODER.decode(value)


def encode_fence_event(event: FenceEvent) -> bytes:
    return _ENCODER.encode(event)


def fence_key(tenant_id: str, geofence_id: str) -> bytes:
    """The record key: unambiguous whatever characters the ids hold."""
    return json.dumps([tenant_id, geofence_id], separators=(",", ":")).encode()


def ring_problem(polygon: Polygon) -> str | None:
    """Why a polygon's ring is unusable (not closed, out of range), or None."""
    ring = polygon.coordinates[0]
    if ring[0][:2] != ring[-1][:2]:
        return "the polygon's ring must be closed (its last position equal to its first)"
    for position in ring:
        longitude, latitude = position[0], position[1]
        if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
            return f"position {position[:2]} is out of range (longitude, latitude)"
    if len({tuple(p[:2]) for p in ring}) < 3:
        return "the polygon needs at least 3 distinct positions"
    return None


def fence_wire(event: GeofenceDefined) -> dict[str, object]:
    """A fence as the API and the map show it."""
    shape = event.shape
    geometry: dict[str, object]
    if isinstance(shape, Circle):
        geometry = {
            "type": "Circle",
            "latitude": shape.latitude,
            "longitude": shape.longitude,
            "radius_meters": shape.radius_meters,
        }
    else:
        geometry = {"type": "Polygon", "coordinates": shape.coordinates}
    return {
        "geofence_id": event.geofence_id,
        "name": event.name,
        "job_id": event.job_id,
        "title": event.title,
        "status": event.status,
        "assigned_technician_id": event.assigned_technician_id,
        "geometry": geometry,
        "updated_at": event.at.isoformat(),
    }
