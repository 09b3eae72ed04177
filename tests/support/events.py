"""The one event factory of the tests: every test's events are built here (its helpers only pick the arguments)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from schemas.events import (
    LocationData,
    LocationRecorded,
    OfflineData,
    OnlineData,
    RetractionData,
    StayRetracted,
    StopData,
    StopEnded,
    StopStarted,
    TechnicianData,
    TechnicianOffline,
    TechnicianOnline,
    TechnicianUpdated,
    TrackingStopped,
    TrackingStoppedData,
    TripData,
    TripEnded,
    TripStarted,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # the tests' fixed device time, when they need no real clock


def location(
    tenant: str,
    technician: str,
    recorded_at: datetime,
    latitude: float,
    longitude: float = 3.0,
    *,
    received_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    **data: Any,
) -> LocationRecorded:
    """A ``location_recorded`` event; ``received_at`` defaults to the device time, ``data`` takes the fix's other
    fields (``accuracy_meters``, ``backfill``...)."""
    return LocationRecorded(
        event_id=event_id or uuid.uuid4(),
        tenant_id=tenant,
        technician_id=technician,
        recorded_at=recorded_at,
        received_at=received_at or recorded_at,
        data=LocationData(latitude=latitude, longitude=longitude, **data),
    )


def profile(
    tenant: str,
    technician: str,
    recorded_at: datetime,
    name: str | None = None,
    status: str | None = None,
    *,
    received_at: datetime | None = None,
) -> TechnicianUpdated:
    """A ``technician_updated`` event (name and/or status)."""
    return TechnicianUpdated(
        event_id=uuid.uuid4(),
        tenant_id=tenant,
        technician_id=technician,
        recorded_at=recorded_at,
        received_at=received_at or recorded_at,
        data=TechnicianData(name=name, status=status),
    )


def stay(
    kind: str, tenant: str, technician: str, started_at: datetime, ended_at: datetime | None = None
) -> StopStarted | StopEnded | TripStarted | TripEnded:
    """A ``stop_started``/``stop_ended``/``trip_started``/``trip_ended`` at (6.5, 3.4), known at its end or start."""
    known = ended_at or started_at
    duration = (known - started_at).total_seconds()
    if kind.startswith("stop"):
        stop = StopData(
            started_at=started_at, ended_at=ended_at, latitude=6.5, longitude=3.4, duration_seconds=duration, fixes=3
        )
        if kind == "stop_started":
            return _fact(StopStarted, tenant, technician, known, stop)
        return _fact(StopEnded, tenant, technician, known, stop)
    trip = TripData(
        started_at=started_at,
        ended_at=ended_at,
        start_latitude=6.5,
        start_longitude=3.4,
        duration_seconds=duration,
        distance_meters=900.0,
        fixes=5,
    )
    if kind == "trip_started":
        return _fact(TripStarted, tenant, technician, known, trip)
    return _fact(TripEnded, tenant, technician, known, trip)


def retracted(tenant: str, technician: str, subject: str, started_at: datetime, at: datetime) -> StayRetracted:
    data = RetractionData(subject="stop" if subject == "stop" else "trip", started_at=started_at)
    return _fact(StayRetracted, tenant, technician, at, data)


def offline(tenant: str, technician: str, last_seen_at: datetime, silent_seconds: float = 600.0) -> TechnicianOffline:
    """A ``technician_offline`` for the silence after a fix at ``last_seen_at``."""
    data = OfflineData(last_seen_at=last_seen_at, silent_seconds=silent_seconds, fix_event_id=uuid.uuid4())
    return _fact(TechnicianOffline, tenant, technician, last_seen_at, data)


def online(tenant: str, technician: str, last_seen_at: datetime, back_at: datetime) -> TechnicianOnline:
    data = OnlineData(last_seen_at=last_seen_at, back_at=back_at, fix_event_id=uuid.uuid4())
    return _fact(TechnicianOnline, tenant, technician, back_at, data)


def tracking_stopped(tenant: str, technician: str, at: datetime, reason: str = "paused") -> TrackingStopped:
    """An app's saying it stopped tracking at ``at`` (Overland's ``paused_location_updates`` by default)."""
    data = TrackingStoppedData(reason="terminated" if reason == "terminated" else "paused", app="overland")
    return _fact(TrackingStopped, tenant, technician, at, data)


F = TypeVar("F")


def _fact(kind: Callable[..., F], tenant: str, technician: str, at: datetime, data: Any) -> F:
    """A derived fact (or an app's saying) of ``kind`` at device and server time ``at``, with a fresh id."""
    return kind(
        event_id=uuid.uuid4(), tenant_id=tenant, technician_id=technician, recorded_at=at, received_at=at, data=data
    )
