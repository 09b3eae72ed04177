"""The history endpoint (the seed's path), read from the projection's history table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import AwareDatetime, BaseModel

from locstream.http import Claims, require_role
from projector.store import HistoryPoint, ProjectionStore
from schemas.claims import VIEWER_ROLES

router = APIRouter(prefix="/api/v1/field-service", tags=["history"])

MAX_LIMIT = 1_000


class LocationHistory(BaseModel):
    technician_id: str
    count: int
    data: list[HistoryPoint]  # newest first


@router.get(
    "/technicians/{technician_id}/location-history",
    summary="A technician's recorded fixes, newest first (from the projection's history)",
    responses={404: {"description": "No such technician in the token's tenant"}},
)
async def location_history(
    request: Request,
    claims: Claims,
    technician_id: Annotated[str, Path(min_length=1, max_length=128)],
    start_time: Annotated[AwareDatetime | None, Query(description="inclusive, ISO 8601 with offset")] = None,
    end_time: Annotated[AwareDatetime | None, Query(description="exclusive, ISO 8601 with offset")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> LocationHistory:
    require_role(claims, VIEWER_ROLES, "read history")
    if start_time and end_time and start_time >= end_time:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="start_time must be before end_time")
    store: ProjectionStore = request.app.state.projection_store
    points = await store.history(claims.tenant_id, technician_id, start_time, end_time, limit)
    if points is None:  # unknown here, or another tenant's: the same answer, so ids do not leak across tenants
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="technician not found")
    return LocationHistory(technician_id=technician_id, count=len(points), data=points)
