"""HTTP bodies of the ingest API (the seed's shapes) and their answers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.events import LIMITS, LocationData, TechnicianData


def _number(field: str) -> Any:
    return Field(strict=True, allow_inf_nan=False, **LIMITS[field])


def _text(field: str) -> Any:
    return Field(strict=True, **LIMITS[field])


class LocationFixRequest(BaseModel):
    """The seed's ``POST .../technicians/{id}/location`` body; ``recorded_at`` defaults to receipt time.

    Bounds come from the event schema's ``LIMITS``: whatever this body accepts, the topic's consumers accept.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"latitude": 6.5244, "longitude": 3.3792, "accuracy_meters": 8.0, "activity": "on_site"}]
        },
    )

    latitude: Annotated[float, _number("latitude")]
    longitude: Annotated[float, _number("longitude")]
    accuracy_meters: Annotated[float, _number("accuracy_meters")] | None = None
    altitude: Annotated[float, _number("altitude")] | None = None
    speed_kmh: Annotated[float, _number("speed_kmh")] | None = None
    heading: Annotated[float, _number("heading")] | None = None
    activity: Annotated[str, _text("activity")] | None = None
    job_id: Annotated[str, _text("job_id")] | None = None
    recorded_at: AwareDatetime | None = None

    def data(self) -> LocationData:
        return LocationData(**self.model_dump(exclude={"recorded_at"}))


class TechnicianUpdateRequest(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra={"examples": [{"name": "Ada Obi", "status": "on_job"}]}
    )

    name: Annotated[str, _text("name")] | None = None
    status: Annotated[str, _text("status")] | None = None
    recorded_at: AwareDatetime | None = None

    def data(self) -> TechnicianData:
        return TechnicianData(name=self.name, status=self.status)

    @model_validator(mode="after")
    def _something_to_set(self) -> TechnicianUpdateRequest:
        if self.name is None and self.status is None:
            raise ValueError("name or status is required")
        return self


class Accepted(BaseModel):
    """Kafka acknowledged the event (acks=all): it is durable and will reach the table and the map."""

    status: str = "accepted"
    event_id: uuid.UUID
    technician_id: str
