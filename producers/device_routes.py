"""Devices and the tracking apps' own protocols on the ingest API.

- ``/api/v1/field-service/devices`` (admin, tenant from the token): register a device for a technician (its key is
  shown once, with the settings to type into each app), list them, revoke one (``producers/device_registry.py``).
- ``/api/v1/ingest/osmand`` (GET and POST): Traccar Client's OsmAnd protocol (``producers/osmand.py``). The device
  key is the app's device identifier; the fix becomes the same ``location_recorded`` event as a native one, with
  the same validation, rate limits and acks=all before the answer (200, empty). Its event id is derived from the
  device and the fix, so a resend after a timeout is recorded once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from domain.devices import Device, fix_event_id
from domain.identity import identity
from locstream.http import Claims, require_role
from producers.body import BodyError, field_message, read_body
from producers.checks import fix_problem
from producers.models import LocationFixBody, technician_id_problem
from producers.osmand import OsmAndError, parse
from producers.routes import PREFIX, EventHeader, ingest_of, location_event
from schemas.claims import Role

ADMIN = frozenset({Role.ADMIN})
devices_router = APIRouter(prefix=PREFIX, tags=["devices"])
protocols_router = APIRouter(prefix="/api/v1/ingest", tags=["device protocols"])


class NewDevice(BaseModel):
    technician_id: Annotated[str, Field(min_length=1, max_length=128)]
    label: Annotated[str, Field(max_length=200)] = ""


class DeviceInfo(BaseModel):
    device_id: str
    technician_id: str
    label: str
    registered_at: datetime


class RegisteredDevice(DeviceInfo):
    """The key is shown here only: store it in the app (``setup`` says where), it cannot be read back."""

    key: str
    setup: dict[str, dict[str, str]]


def _info(device: Device) -> DeviceInfo:
    return DeviceInfo(
        device_id=device.device_id,
        technician_id=device.technician_id,
        label=device.label,
        registered_at=device.registered_at,
    )


def setup(base_url: str, key: str) -> dict[str, dict[str, str]]:
    """What to type into each supported app."""
    return {
        "traccar_client": {"server_url": f"{base_url}/api/v1/ingest/osmand", "device_identifier": key},
    }


@devices_router.post("/devices", status_code=status.HTTP_201_CREATED, summary="Register a device (admin)")
async def register_device(body: NewDevice, request: Request, claims: Claims) -> RegisteredDevice:
    require_role(claims, ADMIN, "register devices")
    if (problem := technician_id_problem(body.technician_id)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    device, key = await ingest_of(request).devices.register(claims.tenant_id, body.technician_id, body.label)
    base = str(request.base_url).rstrip("/")
    return RegisteredDevice(**_info(device).model_dump(), key=key, setup=setup(base, key))


@devices_router.get("/devices", summary="The tenant's active devices (never their keys)")
async def list_devices(request: Request, claims: Claims) -> list[DeviceInfo]:
    require_role(claims, ADMIN, "list devices")
    return [_info(device) for device in ingest_of(request).devices.book.of_tenant(claims.tenant_id)]


@devices_router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a device")
async def revoke_device(device_id: str, request: Request, claims: Claims) -> Response:
    require_role(claims, ADMIN, "revoke devices")
    if not await ingest_of(request).devices.revoke(claims.tenant_id, device_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"device_id: no active device {device_id[:40]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@protocols_router.api_route("/osmand", methods=["GET", "POST"], summary="Traccar Client (OsmAnd protocol)")
async def osmand(request: Request) -> Response:
    ingest = ingest_of(request)
    try:
        raw = await read_body(request, ingest.settings.max_body_bytes, ingest.settings.body_timeout_seconds)
        parsed = parse(request.query_params, request.headers.get("content-type", ""), raw)
    except BodyError as exc:
        raise HTTPException(exc.status, detail=exc.message) from exc
    except OsmAndError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
    device = ingest.devices.device(parsed.key) if parsed.key else None
    if device is None:
        reason = "id: unknown or revoked device key" if parsed.key else "id: the device identifier is missing"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=reason)
    if parsed.fields is not None:
        await _record(request, device, parsed.fields)
    return Response(status_code=status.HTTP_200_OK)


async def _record(request: Request, device: Device, fields: dict[str, Any]) -> None:
    """The fix of a device, validated as a native one, appended (acks=all) unless it is a resend."""
    ingest = ingest_of(request)
    try:
        fix = msgspec.convert(fields, LocationFixBody, strict=True)
    except msgspec.ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=field_message(exc)) from exc
    now = datetime.now(UTC)
    recorded_at = fix.recorded_at or now
    if (problem := fix_problem(recorded_at, fix.metadata, now, ingest.max_future, ingest.max_age)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    ingest.limit_for(f"device:{device.device_id}", device.tenant_id, 1)
    event_id = fix_event_id(device.device_id, recorded_at, fix.latitude, fix.longitude)
    event = location_event(EventHeader(device.tenant_id, device.technician_id, recorded_at, now, event_id), fix)
    if ingest.recent.cursor_of(identity(event)) is not None:
        return  # a resend of a fix already acknowledged
    (acked,) = await ingest.publish([event])
    ingest.recent.remember(identity(event), acked)
