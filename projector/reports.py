"""The stops and trips reports, read from the projection's ``stays`` table (``projector/store.py``): a tenant's stops
or trips in a time range, page by page, as JSON or CSV; and one technician's day (``day_summary``, pure).

A range is at most ``MAX_RANGE`` long and a page at most ``MAX_LIMIT`` rows: a report costs one indexed range scan
of bounded size, whoever asks. The page cursor (``after``) holds a start time and a technician id, nothing of the
tenant's: the query is always the token's tenant's, so another tenant's cursor only says where to begin in one's
own.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel

from locstream.http import Claims, require_role
from locstream.strict_numbers import WholeText
from projector.store import ProjectionStore, StayQuery, StayRecord, Subject
from replay.formats import spreadsheet_safe
from schemas.claims import VIEWER_ROLES

router = APIRouter(prefix="/api/v1/field-service/reports", tags=["reports"])

MAX_RANGE = timedelta(days=31)
MAX_LIMIT = 1_000
DAY_LOOKBACK = timedelta(days=7)  # a stop or trip that began this long before a day and still lasts is counted in it
MAX_DAY_ROWS = 2_000  # per subject in a day's summary: a phone with a stop every 40 s all day is 2,000


class StopRow(BaseModel):
    technician_id: str
    started_at: datetime
    ended_at: datetime | None  # None: still there
    duration_seconds: float  # so far, for a stop that lasts
    latitude: float
    longitude: float
    fixes: int
    geofence_id: str | None
    job_id: str | None


class TripRow(BaseModel):
    technician_id: str
    started_at: datetime
    ended_at: datetime | None  # None: still under way
    duration_seconds: float
    distance_meters: float
    start_latitude: float
    start_longitude: float
    end_latitude: float | None
    end_longitude: float | None
    fixes: int


class StopsReport(BaseModel):
    start_time: datetime
    end_time: datetime
    technician_id: str | None
    stops: list[StopRow]  # by start, then technician
    next_cursor: str | None  # pass as ``after`` for the next page; None: the last page


class TripsReport(BaseModel):
    start_time: datetime
    end_time: datetime
    technician_id: str | None
    trips: list[TripRow]
    next_cursor: str | None


def stop_row(record: StayRecord) -> StopRow:
    data = record.data
    return StopRow(
        technician_id=record.technician_id,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_seconds=data["duration_seconds"],
        latitude=data["latitude"],
        longitude=data["longitude"],
        fixes=data["fixes"],
        geofence_id=data.get("geofence_id"),
        job_id=data.get("job_id"),
    )


def trip_row(record: StayRecord) -> TripRow:
    data = record.data
    return TripRow(
        technician_id=record.technician_id,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_seconds=data["duration_seconds"],
        distance_meters=data["distance_meters"],
        start_latitude=data["start_latitude"],
        start_longitude=data["start_longitude"],
        end_latitude=data.get("end_latitude"),
        end_longitude=data.get("end_longitude"),
        fixes=data["fixes"],
    )


def encode_cursor(record: StayRecord) -> str:
    raw = json.dumps([record.started_at.isoformat(), record.technician_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    """A page cursor's start and technician; ``ValueError`` for anything else."""
    try:
        started, technician = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        at = datetime.fromisoformat(started)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor of this report") from exc
    if at.tzinfo is None or not isinstance(technician, str):
        raise ValueError("not a cursor of this report")
    return at, technician


def _csv(
    rows: list[StopRow] | list[TripRow] | list[OfflineRow], columns: tuple[str, ...], filename: str, cursor: str | None
) -> Response:
    """A page's rows as CSV, the next page's cursor in a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = row.model_dump()
        writer.writerow([_cell(values[column]) for column in columns])
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if cursor is not None:
        headers["X-Locstream-Next-Cursor"] = cursor
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return spreadsheet_safe(value)


Format = Literal["json", "csv"]
TechnicianFilter = Annotated[
    str | None, Query(min_length=1, max_length=128, description="one technician's; all of the tenant's without")
]
Start = Annotated[AwareDatetime, Query(description="stops or trips that started at or after this (ISO 8601)")]
End = Annotated[AwareDatetime, Query(description="and before this; at most 31 days after start_time")]
Limit = Annotated[WholeText, Query(ge=1, le=MAX_LIMIT)]
After = Annotated[str | None, Query(max_length=512, description="the next_cursor of the page before")]


class ReportPage(NamedTuple):
    """The query of a page of any of the lists: its parameters, the same for each (``report_page``)."""

    start_time: datetime
    end_time: datetime
    technician_id: str | None
    limit: int
    after: str | None
    format: Format


def report_page(
    start_time: Start,
    end_time: End,
    technician_id: TechnicianFilter = None,
    limit: Limit = 500,
    after: After = None,
    format: Annotated[Format, Query(description="json, or csv (this page's rows)")] = "json",
) -> ReportPage:
    return ReportPage(start_time, end_time, technician_id, limit, after, format)


Page = Annotated[ReportPage, Depends(report_page)]


async def _page(
    request: Request, claims: Claims, subject: Subject, page: ReportPage
) -> tuple[list[StayRecord], str | None]:
    require_role(claims, VIEWER_ROLES, "read stop, trip and offline reports")
    if page.start_time >= page.end_time:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="start_time must be before end_time")
    if page.end_time - page.start_time > MAX_RANGE:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"the range is at most {MAX_RANGE.days} days: ask for it in parts",
        )
    try:
        position = decode_cursor(page.after) if page.after is not None else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"after: {exc}") from exc
    store: ProjectionStore = request.app.state.projection_store
    query = StayQuery(
        claims.tenant_id, subject, page.start_time, page.end_time, page.limit + 1, page.technician_id, position
    )
    records = await store.stays(query)
    more = len(records) > page.limit
    records = records[: page.limit]
    return records, encode_cursor(records[-1]) if more else None


STOP_COLUMNS = tuple(StopRow.model_fields)
TRIP_COLUMNS = tuple(TripRow.model_fields)


@router.get("/stops", summary="A tenant's (or one technician's) stops in a time range", response_model=StopsReport)
async def stops_report(
    request: Request,
    claims: Claims,
    page: Page,
) -> StopsReport | Response:
    records, cursor = await _page(request, claims, "stop", page)
    rows = [stop_row(record) for record in records]
    if page.format == "csv":
        return _csv(rows, STOP_COLUMNS, "stops.csv", cursor)
    return StopsReport(
        start_time=page.start_time,
        end_time=page.end_time,
        technician_id=page.technician_id,
        stops=rows,
        next_cursor=cursor,
    )


@router.get("/trips", summary="A tenant's (or one technician's) trips in a time range", response_model=TripsReport)
async def trips_report(
    request: Request,
    claims: Claims,
    page: Page,
) -> TripsReport | Response:
    records, cursor = await _page(request, claims, "trip", page)
    rows = [trip_row(record) for record in records]
    if page.format == "csv":
        return _csv(rows, TRIP_COLUMNS, "trips.csv", cursor)
    return TripsReport(
        start_time=page.start_time,
        end_time=page.end_time,
        technician_id=page.technician_id,
        trips=rows,
        next_cursor=cursor,
    )


class OfflineRow(BaseModel):
    technician_id: str
    last_seen_at: datetime  # its newest good fix before it went silent
    back_at: datetime | None  # the good fix that ended it; None: still offline
    silent_seconds: float  # how long it had not been heard from when it was said offline (watched time)
    reason: Literal["silent", "tracking_stopped"]  # silent: no good fix for the threshold; or the app said it stopped


class OfflineReport(BaseModel):
    start_time: datetime
    end_time: datetime
    technician_id: str | None
    offline: list[OfflineRow]  # by last_seen_at, then technician
    next_cursor: str | None


def offline_row(record: StayRecord) -> OfflineRow:
    return OfflineRow(
        technician_id=record.technician_id,
        last_seen_at=record.started_at,
        back_at=record.ended_at,
        silent_seconds=record.data.get("silent_seconds", 0.0),
        reason=record.data.get("reason", "silent"),
    )


OFFLINE_COLUMNS = tuple(OfflineRow.model_fields)


@router.get(
    "/offline",
    summary="A tenant's (or one technician's) offline periods that began in a time range: its availability",
    response_model=OfflineReport,
)
async def offline_report(
    request: Request,
    claims: Claims,
    page: Page,
) -> OfflineReport | Response:
    records, cursor = await _page(request, claims, "offline", page)
    rows = [offline_row(record) for record in records]
    if page.format == "csv":
        return _csv(rows, OFFLINE_COLUMNS, "offline.csv", cursor)
    return OfflineReport(
        start_time=page.start_time,
        end_time=page.end_time,
        technician_id=page.technician_id,
        offline=rows,
        next_cursor=cursor,
    )


@dataclass(frozen=True)
class DayFigures:
    driving_seconds: float
    stopped_seconds: float
    distance_meters: float
    stops_at_job_sites: int
    stops_elsewhere: int
    trips: int


def _overlap(start: datetime, end: datetime, day_start: datetime, day_end: datetime) -> float:
    return max(0.0, (min(end, day_end) - max(start, day_start)).total_seconds())


def day_summary(
    stops: list[StayRecord], trips: list[StayRecord], day_start: datetime, day_end: datetime, now: datetime
) -> DayFigures:
    """A technician's day from its stops and trips: the time of each inside the day (one that lasts, until now), the
    trips' distance (a trip's whole distance counts on the day it started), the stops that touch the day, at a job
    site or elsewhere."""
    stopped = driving = distance = 0.0
    at_sites = elsewhere = counted_trips = 0
    for stop in stops:
        seconds = _overlap(stop.started_at, stop.ended_at or now, day_start, day_end)
        if seconds <= 0 and not day_start <= stop.started_at < day_end:
            continue
        stopped += seconds
        if stop.data.get("job_id") is not None or stop.data.get("geofence_id") is not None:
            at_sites += 1
        else:
            elsewhere += 1
    for trip in trips:
        seconds = _overlap(trip.started_at, trip.ended_at or now, day_start, day_end)
        driving += seconds
        if day_start <= trip.started_at < day_end:
            distance += trip.data["distance_meters"]
            counted_trips += 1
    return DayFigures(round(driving, 1), round(stopped, 1), round(distance, 1), at_sites, elsewhere, counted_trips)


class DaySummary(BaseModel):
    technician_id: str
    date: date
    timezone: str
    driving_seconds: float
    stopped_seconds: float
    distance_meters: float
    stops_at_job_sites: int
    stops_elsewhere: int
    trip_count: int
    stops: list[StopRow]  # that touch the day, by start
    trips: list[TripRow]


@router.get(
    "/technicians/{technician_id}/day",
    summary="A technician's day: driving and stopped time, distance, stops at job sites and elsewhere",
)
async def technician_day(
    request: Request,
    claims: Claims,
    technician_id: Annotated[str, Path(min_length=1, max_length=128)],
    day: Annotated[date, Query(alias="date", description="the day, YYYY-MM-DD")],
    timezone: Annotated[str, Query(max_length=64, description="IANA time zone of the day, e.g. Africa/Lagos")] = "UTC",
) -> DaySummary:
    require_role(claims, VIEWER_ROLES, "read a technician's day")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="timezone: not an IANA time zone") from exc
    day_start = datetime.combine(day, time(), zone)
    day_end = datetime.combine(day + timedelta(days=1), time(), zone)
    store: ProjectionStore = request.app.state.projection_store
    found: dict[str, list[StayRecord]] = {}
    for subject in ("stop", "trip"):
        query = StayQuery(
            claims.tenant_id, subject, day_start - DAY_LOOKBACK, day_end, MAX_DAY_ROWS, technician_id=technician_id
        )
        found[subject] = [record for record in await store.stays(query) if (record.ended_at or day_end) > day_start]
    figures = day_summary(found["stop"], found["trip"], day_start, day_end, datetime.now(UTC))
    return DaySummary(
        technician_id=technician_id,
        date=day,
        timezone=timezone,
        driving_seconds=figures.driving_seconds,
        stopped_seconds=figures.stopped_seconds,
        distance_meters=figures.distance_meters,
        stops_at_job_sites=figures.stops_at_job_sites,
        stops_elsewhere=figures.stops_elsewhere,
        trip_count=figures.trips,
        stops=[stop_row(record) for record in found["stop"]],
        trips=[trip_row(record) for record in found["trip"]],
    )
