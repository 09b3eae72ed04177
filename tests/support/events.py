"""The one event factory of the tests: every test's events are built here (its helpers only pick the arguments)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.events import LocationData, LocationRecorded, TechnicianData, TechnicianUpdated

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
