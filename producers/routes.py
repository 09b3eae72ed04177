"""The ingest endpoints (the seed's URLs). The tenant comes only from the verified token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Path, status

from producers.deps import Claims, Publisher
from producers.models import Accepted, LocationFixRequest, TechnicianUpdateRequest
from producers.publisher import PublishTimeoutError
from schemas.claims import WRITER_ROLES, Role, TokenClaims
from schemas.events import Event, LocationRecorded, TechnicianUpdated

router = APIRouter(prefix="/api/v1/field-service", tags=["ingest"])

TechnicianId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing, malformed, forged or expired token"},
    403: {"description": "The token's role may not write for this technician"},
    422: {"description": "The body is invalid; the message names the field"},
    503: {"description": "Kafka did not acknowledge in time; retry after Retry-After seconds"},
}


# Dispatchers name technicians and set their status, but never post positions.
_PROFILE_WRITER_ROLES = WRITER_ROLES | {Role.DISPATCHER}


def _authorize_write(claims: TokenClaims, technician_id: str, allowed: frozenset[Role] = WRITER_ROLES) -> None:
    if claims.role not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {claims.role.value} may not do this")
    if claims.role is Role.TECHNICIAN and claims.sub != technician_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a technician may post only for itself")


def _envelope(claims: TokenClaims, technician_id: str, recorded_at: datetime | None) -> dict[str, Any]:
    """The fields every event shares; the tenant comes from the verified token only."""
    now = datetime.now(UTC)
    return {
        "event_id": uuid.uuid4(),
        "tenant_id": claims.tenant_id,
        "technician_id": technician_id,
        "recorded_at": recorded_at or now,
        "received_at": now,
    }


async def _publish(publisher: Publisher, event: Event) -> Accepted:
    try:
        await publisher.publish(event)
    except (PublishTimeoutError, KafkaError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"event not acknowledged by Kafka: {exc}",
            headers={"Retry-After": "5"},
        ) from exc
    return Accepted(event_id=event.event_id, technician_id=event.technician_id)


@router.post(
    "/technicians/{technician_id}/location",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
    summary="Record a technician's location fix",
)
async def post_location(
    technician_id: TechnicianId, body: LocationFixRequest, claims: Claims, publisher: Publisher
) -> Accepted:
    _authorize_write(claims, technician_id)
    event = LocationRecorded(
        **_envelope(claims, technician_id, body.recorded_at),
        data=body.data(),
    )
    return await _publish(publisher, event)


@router.put(
    "/technicians/{technician_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
    summary="Set a technician's name and/or status",
)
async def put_technician(
    technician_id: TechnicianId, body: TechnicianUpdateRequest, claims: Claims, publisher: Publisher
) -> Accepted:
    _authorize_write(claims, technician_id, _PROFILE_WRITER_ROLES)
    event = TechnicianUpdated(
        **_envelope(claims, technician_id, body.recorded_at),
        data=body.data(),
    )
    return await _publish(publisher, event)
