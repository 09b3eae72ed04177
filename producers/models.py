"""HTTP bodies of the ingest API (the seed's shapes) and their answers."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from schemas.events import LocationData, TechnicianData


class LocationFixRequest(LocationData):
    """The seed's ``POST .../technicians/{id}/location`` body; ``recorded_at`` defaults to receipt time."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"latitude": 6.5244, "longitude": 3.3792, "accuracy_meters": 8.0, "activity": "on_site"}]
        },
    )

    recorded_at: AwareDatetime | None = None


class TechnicianUpdateRequest(TechnicianData):
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra={"examples": [{"name": "Ada Obi", "status": "on_job"}]}
    )

    recorded_at: AwareDatetime | None = None

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
