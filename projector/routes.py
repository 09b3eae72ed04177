"""The history endpoint (the seed's path), read from the projection's history table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import AwareDatetime, BaseModel

from domain.fix_quality import QualityFilter
from domain.geofencing import FenceBook, distance_m
from domain.visits import formatted, time_on_site
from locstream.http import Claims, require_role
from locstream.strict_numbers import DecimalText, WholeText
from projector.store import HistoryPoint, ProjectionStore
from schemas.claims import VIEWER_ROLES, Role, only_technician

router = APIRouter(prefix="/api/v1/field-service", tags=["history"])

MAX_LIMIT = 1_000


class LocationHistory(BaseModel):
    """The origin's shape (dotmac ``field_service``): ``total_points`` and ``locations``."""

    technician_id: str
    total_points: int
    locations: list[HistoryPoint]  # newest first


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
    limit: Annotated[WholeText, Query(ge=1, le=MAX_LIMIT)] = 100,
    quality: Annotated[
        QualityFilter,
        Query(description="good (the default): fixes with no quality flag; flagged: only those with one; all: both"),
    ] = "good",
) -> LocationHistory:
    require_role(claims, VIEWER_ROLES, "read history")
    if start_time and end_time and start_time >= end_time:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="start_time must be before end_time")
    store: ProjectionStore = request.app.state.projection_store
    points = await store.history(claims.tenant_id, technician_id, start_time, end_time, limit, quality)
    if points is None:  # unknown here, or another tenant's: the same answer, so ids do not leak across tenants
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="technician not found")
    return LocationHistory(technician_id=technician_id, total_points=len(points), locations=points)


class Point(BaseModel):
    latitude: float
    longitude: float


class NearbyJob(BaseModel):
    job_id: str
    title: str | None
    status: str | None
    location: Point
    distance_meters: float
    is_assigned_to_me: bool


class NearbyJobs(BaseModel):
    technician_id: str
    current_location: Point | None
    search_radius_meters: float
    nearby_jobs: list[NearbyJob]  # nearest first


class TimeOnSite(BaseModel):
    job_id: str
    time_on_site_seconds: float | None
    time_on_site_formatted: str | None


@router.get(
    "/geofence/nearby-jobs",
    tags=["geofences"],
    summary="Job sites near a technician's current position, nearest first (the origin's shape)",
)
async def nearby_jobs(
    request: Request,
    claims: Claims,
    technician_id: Annotated[str, Query(min_length=1, max_length=128)],
    radius_meters: Annotated[DecimalText, Query(gt=0, le=100_000)] = 1_000.0,
) -> NearbyJobs:
    require_role(claims, VIEWER_ROLES | {Role.TECHNICIAN}, "look for nearby jobs")
    if only_technician(claims) and claims.sub != technician_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="technician_id: a technician may look only for itself")
    store: ProjectionStore = request.app.state.projection_store
    state = await store.current(claims.tenant_id, technician_id)
    fix = state.fix if state is not None else None
    if fix is None:
        return NearbyJobs(
            technician_id=technician_id, current_location=None, search_radius_meters=radius_meters, nearby_jobs=[]
        )
    book: FenceBook = request.app.state.fences.book
    jobs = [
        NearbyJob(
            job_id=fence.job_id,
            title=fence.title or fence.name,
            status=fence.status,
            location=Point(latitude=fence.latitude, longitude=fence.longitude),
            distance_meters=round(distance, 1),
            is_assigned_to_me=fence.assigned_technician_id == technician_id,
        )
        for fence in book.summaries_of(claims.tenant_id)
        if fence.job_id is not None
        for distance in [distance_m(fix.latitude, fix.longitude, fence.latitude, fence.longitude)]
        if distance <= radius_meters
    ]
    jobs.sort(key=lambda job: (job.distance_meters, job.job_id))
    return NearbyJobs(
        technician_id=technician_id,
        current_location=Point(latitude=fix.latitude, longitude=fix.longitude),
        search_radius_meters=radius_meters,
        nearby_jobs=jobs,
    )


@router.get(
    "/geofence/job-time-on-site/{job_id}",
    tags=["geofences"],
    summary="Time spent inside a job's fences, from the recorded arrivals and departures (the origin's shape)",
)
async def job_time_on_site(
    request: Request, claims: Claims, job_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> TimeOnSite:
    require_role(claims, VIEWER_ROLES, "read time on site")
    store: ProjectionStore = request.app.state.projection_store
    seconds = time_on_site(await store.crossings(claims.tenant_id, job_id), datetime.now(UTC))
    return TimeOnSite(
        job_id=job_id,
        time_on_site_seconds=None if seconds is None else round(seconds, 1),
        time_on_site_formatted=None if seconds is None else formatted(seconds),
    )
