"""The Kafka event envelope on topic ``locations.v1`` (key = tenant_id, value = JSON).

Every event carries the same envelope fields; ``data`` holds what is specific to its ``type``.
Events are frozen: an event is a fact, never edited after it was appended.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1

# Strict, finite numbers: no "12.5" strings or booleans coerced into floats, no NaN or Infinity.
Latitude = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-90, le=90)]
Longitude = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-180, le=180)]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Identifier = Annotated[str, Field(strict=True, min_length=1, max_length=128)]
ShortText = Annotated[str, Field(strict=True, max_length=256)]


class LocationData(BaseModel):
    """A position fix as the seed's ``POST .../location`` body carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latitude: Latitude
    longitude: Longitude
    accuracy_meters: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=100_000)] | None = None
    altitude: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1_000, le=20_000)] | None = None
    speed_kmh: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1_500)] | None = None
    heading: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, lt=360)] | None = None
    activity: ShortText | None = None
    job_id: ShortText | None = None


class TechnicianData(BaseModel):
    """Name and status of a technician; a field left out stays as it was."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(strict=True, min_length=1, max_length=200)] | None = None
    status: Annotated[str, Field(strict=True, min_length=1, max_length=64)] | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    schema_version: Literal[1] = 1
    tenant_id: Identifier
    technician_id: Identifier
    recorded_at: AwareDatetime  # device time, UTC
    received_at: AwareDatetime  # server time, UTC


class LocationRecorded(_Envelope):
    type: Literal["location_recorded"] = "location_recorded"
    data: LocationData


class TechnicianUpdated(_Envelope):
    type: Literal["technician_updated"] = "technician_updated"
    data: TechnicianData


Event = Annotated[LocationRecorded | TechnicianUpdated, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def decode_event(value: bytes) -> Event:
    """Parse one Kafka record value; raises ``pydantic.ValidationError`` on anything malformed."""
    return EVENT_ADAPTER.validate_json(value)


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()
