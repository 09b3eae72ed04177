"""Job sites as fences on the ingest API (``/api/v1/field-service/geofences``; dispatcher or admin, tenant from the
token): ``PUT .../{geofence_id}`` defines one (a circle, or a GeoJSON Polygon), ``DELETE`` removes it, ``GET``
lists them. Each change is a record on the compacted fences topic (``locstream/fences.py``), which the geofence
processor, the edge and the projector follow; the answer comes once this process has applied it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from msgspec import Meta, Struct

from domain.fence_shapes import circle_problem, polygon_problem
from domain.geofencing import Fence
from locstream.http import require_role
from producers.deps import Claims
from producers.device_routes import table_unavailable_is_503
from producers.models import technician_id_problem
from producers.openapi import body_of
from producers.routes import PREFIX, ingest_of, problem_doc
from schemas.claims import Role
from schemas.events import LIMITS
from schemas.geofences import (
    DEFAULT_RADIUS_M,
    MIN_FENCE_COST,
    RADIUS_LIMITS,
    Circle,
    GeofenceDefined,
    Polygon,
    fence_cost,
    fence_wire,
    ring_problem,
)

FENCE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN})
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("Only a dispatcher or an admin manages fences", "role technician may not define geofences"),
    404: problem_doc("No such fence in the token's tenant", "geofence_id: no geofence 'cabinet-12'"),
    413: problem_doc("Body larger than allowed", "body: 2000100 bytes, at most 1048576"),
    415: problem_doc("Content-Type is not application/json", "body: Content-Type must be application/json"),
    422: problem_doc("The body is invalid; `message` names the field", "radius_meters: Expected `float` <= 50000"),
    503: problem_doc("Kafka did not take the change in time; retry", "the geofences topic did not take it in time"),
}
geofences_router = APIRouter(prefix=PREFIX, tags=["geofences"], responses=_ERRORS)
FenceId = Annotated[str, Path(min_length=1, max_length=128)]


class GeofenceBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """A circle (``latitude``, ``longitude``, ``radius_meters``: 100 m unless given) or a GeoJSON ``Polygon`` in
    ``geometry``: one of the two."""

    latitude: Annotated[float, Meta(**LIMITS["latitude"])] | None = None
    longitude: Annotated[float, Meta(**LIMITS["longitude"])] | None = None
    radius_meters: Annotated[float, Meta(**RADIUS_LIMITS)] | None = None
    geometry: Polygon | None = None
    name: Annotated[str, Meta(max_length=200)] | None = None
    job_id: Annotated[str, Meta(**LIMITS["job_id"])] | None = None
    title: Annotated[str, Meta(max_length=200)] | None = None
    status: Annotated[str, Meta(max_length=64)] | None = None
    assigned_technician_id: str | None = None


def shape_of(body: GeofenceBody) -> Circle | Polygon:
    """The fence's shape, or 422 with the reason."""
    circle = body.latitude is not None or body.longitude is not None or body.radius_meters is not None
    if circle == (body.geometry is not None):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail="body: give latitude and longitude (a circle, radius_meters optional) or geometry (a Polygon)",
        )
    if body.geometry is not None:
        if (problem := ring_problem(body.geometry)) is not None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"geometry: {problem}")
        ring = [(position[0], position[1]) for position in body.geometry.coordinates[0]]
        if (problem := polygon_problem(ring)) is not None:  # round a pole, past 85 degrees, too wide
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"geometry: {problem}")
        if Fence.polygon_of("", "", ring).radius_m < 1.0:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="geometry: the polygon encloses no area")
        return body.geometry
    if body.latitude is None or body.longitude is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="body: a circle needs latitude and longitude")
    radius = body.radius_meters or DEFAULT_RADIUS_M
    if (problem := circle_problem(body.latitude, radius)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"body: {problem}")
    return Circle(latitude=body.latitude, longitude=body.longitude, radius_meters=radius)


_EXAMPLE = {"latitude": 6.5244, "longitude": 3.3792, "radius_meters": 100, "name": "Cabinet 12", "job_id": "job-12"}


@geofences_router.put(
    "/geofences/{geofence_id}",
    summary="Define a job site's fence (a circle or a GeoJSON Polygon)",
    openapi_extra=body_of(GeofenceBody, _EXAMPLE),
)
async def put_geofence(geofence_id: FenceId, request: Request, claims: Claims) -> dict[str, object]:
    require_role(claims, FENCE_ROLES, "define geofences")
    ingest = ingest_of(request)
    body = await ingest.read(request, GeofenceBody)
    shape = shape_of(body)
    if body.assigned_technician_id is not None and (problem := technician_id_problem(body.assigned_technician_id)):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"assigned_{problem}")
    # One definition of a tenant at a time in this process, from its budget check until it is applied here: the
    # checks of concurrent definitions would otherwise all pass against the same book and overshoot the budget.
    async with ingest.fence_definitions.setdefault(claims.tenant_id, asyncio.Lock()):
        book, settings = ingest.fences.book, ingest.settings
        held = book.summaries.get(claims.tenant_id, {}).get(geofence_id)
        if held is None and book.count(claims.tenant_id) >= settings.max_geofences_per_tenant:
            detail = f"geofence_id: at most {settings.max_geofences_per_tenant} fences per tenant"
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=detail)
        positions = len(shape.coordinates[0]) if isinstance(shape, Polygon) else 1
        cost = book.cost.get(claims.tenant_id, 0) - (fence_cost(held.positions) if held else 0) + fence_cost(positions)
        if cost > settings.max_fence_positions_per_tenant:
            detail = (
                f"geometry: the tenant's fences would hold {cost:,} positions (each fence counts {MIN_FENCE_COST} at "
                f"least); the budget is {settings.max_fence_positions_per_tenant:,}"
            )
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=detail)
        definition = GeofenceDefined(
            tenant_id=claims.tenant_id,
            geofence_id=geofence_id,
            at=datetime.now(UTC),
            shape=shape,
            name=body.name,
            job_id=body.job_id,
            title=body.title,
            status=body.status,
            assigned_technician_id=body.assigned_technician_id,
        )
        async with table_unavailable_is_503(request, "geofences"):
            await ingest.fences.put(definition)
    return fence_wire(definition)


@geofences_router.delete(
    "/geofences/{geofence_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a job site's fence"
)
async def delete_geofence(geofence_id: FenceId, request: Request, claims: Claims) -> Response:
    require_role(claims, FENCE_ROLES, "remove geofences")
    async with table_unavailable_is_503(request, "geofences"):
        removed = await ingest_of(request).fences.remove(claims.tenant_id, geofence_id)
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"geofence_id: no geofence {geofence_id[:40]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@geofences_router.get("/geofences", summary="The tenant's fences")
async def list_geofences(request: Request, claims: Claims) -> list[dict[str, object]]:
    require_role(claims, FENCE_ROLES | {Role.ANALYST}, "list geofences")
    return [fence_wire(fence) for fence in ingest_of(request).fences.book.of(claims.tenant_id)]


def wire_schema() -> dict[str, Any]:
    """JSON Schema of a fence's body (for docs/contracts)."""
    return msgspec.json.schema(GeofenceBody)
