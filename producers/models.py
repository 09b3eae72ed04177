"""Bodies of the ingest API and its answers.

Request bodies are msgspec structs with the event schema's bounds (``schemas.events.LIMITS``): decoding and
validating them is the hot path of every POST, and a batch is validated item by item, so one bad fix does not
reject its neighbours. Their JSON Schema goes into the OpenAPI document (``producers/openapi.py``). Answers are
pydantic models, which FastAPI documents by itself.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Raw, Struct
from pydantic import BaseModel, Field

from schemas.events import LIMITS, AwareDatetime

TECHNICIAN_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
_TECHNICIAN_ID = re.compile(r"[A-Za-z0-9._:@-]+")
_MAX_TECHNICIAN_ID = LIMITS["identifier"]["max_length"]
TECHNICIAN_ID_RULE = f"1 to {_MAX_TECHNICIAN_ID} letters, digits or . _ : @ -, and not '.' or '..'"


def technician_id_problem(technician_id: str) -> str | None:
    """Why ``technician_id`` cannot name a technician, or None: the one rule of every write (path or body).

    Matched whole: Python's ``$`` also matches before a final newline, which let ``tech\n`` through. ``.`` and
    ``..`` are path segments that clients and proxies resolve: such a technician could never be addressed by URL.
    """
    if (
        len(technician_id) > _MAX_TECHNICIAN_ID
        or _TECHNICIAN_ID.fullmatch(technician_id) is None
        or technician_id in (".", "..")
    ):
        return f"technician_id: {TECHNICIAN_ID_RULE}"
    return None


TechnicianId = Annotated[str, Meta(pattern=TECHNICIAN_ID_PATTERN, **LIMITS["identifier"])]
Latitude = Annotated[float, Meta(**LIMITS["latitude"], examples=[6.5244])]
Longitude = Annotated[float, Meta(**LIMITS["longitude"], examples=[3.3792])]
Accuracy = Annotated[float, Meta(**LIMITS["accuracy_meters"], description="metres")]
Altitude = Annotated[float, Meta(**LIMITS["altitude"], description="metres above sea level")]
Speed = Annotated[float, Meta(**LIMITS["speed_kmh"], description="km/h")]
Heading = Annotated[float, Meta(**LIMITS["heading"], description="degrees clockwise from north")]
Activity = Annotated[str, Meta(**LIMITS["activity"])]
JobId = Annotated[str, Meta(**LIMITS["job_id"])]
Metadata = Annotated[dict[str, Any], Meta(description="the client's own fields; at most 4 KiB as compact JSON")]


class _Body(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False):
    pass


class _Fix(_Body, frozen=True, kw_only=True, gc=False):
    """The fields of a position fix, shared by the single and the batch bodies."""

    latitude: Latitude
    longitude: Longitude
    accuracy_meters: Accuracy | None = None
    altitude: Altitude | None = None
    speed_kmh: Speed | None = None
    heading: Heading | None = None
    activity: Activity | None = None
    job_id: JobId | None = None
    backfill: bool = False
    metadata: Metadata | None = None
    # The phone's system marked the position as mock or simulated (Android's Location.isMock()): the fix is kept,
    # flagged "mock", and never moves the technician (docs/fix-quality.md). A client cannot flag a fix good.
    mock: bool = False


class LocationFixBody(_Fix, frozen=True, kw_only=True, gc=False):
    """The seed's ``POST .../technicians/{id}/location`` body, plus an optional client ``event_id``.

    ``recorded_at`` (or the origin's name for it, ``timestamp``) defaults to the time of receipt. Re-sending a fix
    with the same ``event_id`` and ``recorded_at`` (a retry after a timeout) never records it twice.
    """

    recorded_at: AwareDatetime | None = None
    timestamp: AwareDatetime | None = None  # the origin's field: device time, stored as recorded_at
    event_id: uuid.UUID | None = None

    def device_time(self) -> datetime | None:
        """``recorded_at`` or ``timestamp``; ValueError when both are given and differ."""
        if self.recorded_at is not None and self.timestamp is not None and self.recorded_at != self.timestamp:
            raise ValueError("recorded_at and timestamp: give one (they name the same device time)")
        return self.recorded_at or self.timestamp


class BatchFix(_Fix, frozen=True, kw_only=True, gc=False):
    """One fix of a batch: a client-generated ``event_id``, the technician, and the device time it was taken."""

    event_id: uuid.UUID
    technician_id: TechnicianId
    recorded_at: AwareDatetime


class BatchBody(_Body, frozen=True, gc=False):
    """Up to ``LOCSTREAM_PRODUCERS_MAX_BATCH_ITEMS`` fixes (1,000 by default); a technician's keep their order."""

    fixes: Annotated[list[BatchFix], Meta(min_length=1, max_length=1_000)]


class RawBatchBody(Struct, frozen=True, forbid_unknown_fields=True):
    """How a batch is first read: the items stay raw JSON until each is validated on its own."""

    fixes: list[Raw]


class TechnicianUpdateBody(_Body, frozen=True, gc=False):
    """Name and/or status of a technician (at least one)."""

    name: Annotated[str, Meta(**LIMITS["name"], examples=["Ada Obi"])] | None = None
    status: Annotated[str, Meta(**LIMITS["status"], examples=["on_job"])] | None = None
    recorded_at: AwareDatetime | None = None


class Accepted(BaseModel):
    """Kafka acknowledged the event (acks=all): it is durable and will reach the table and the map.

    ``duplicate``: this fix (same ``event_id`` and ``recorded_at``) was acknowledged before; nothing was added.
    """

    status: Literal["accepted", "duplicate"] = "accepted"
    event_id: uuid.UUID
    technician_id: str
    cursor: str | None = Field(default=None, description="position of the event in the topic (opaque)")


class ItemResult(BaseModel):
    index: int = Field(description="position of the fix in the request's `fixes`")
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: uuid.UUID | None = None
    technician_id: str | None = None
    reason: str | None = Field(default=None, description="why a fix was rejected, naming the field")


class BatchAccepted(BaseModel):
    """Per-fix results; the valid fixes of a batch are acknowledged by Kafka whatever their neighbours were."""

    accepted: int
    duplicates: int
    rejected: int
    cursor: str | None = Field(default=None, description="position of the last accepted fix in the topic (opaque)")
    results: list[ItemResult]


class Problem(BaseModel):
    """Every 4xx/5xx answer: ``message`` names the field or the reason."""

    message: str
    detail: Any = None
