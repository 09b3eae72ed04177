"""Devices and the tracking apps' own protocols on the ingest API.

- ``/api/v1/field-service/devices`` (admin, tenant from the token): register a device for a technician (its key is
  shown once, with the settings to type into each app), list them, revoke one (``locstream/devices.py``).
- ``/api/v1/ingest/osmand`` (GET and POST): Traccar Client's OsmAnd protocol (``producers/osmand.py``), the key as
  the app's device identifier; ``/api/v1/ingest/owntracks`` (the key as the Basic auth password) and
  ``/api/v1/ingest/overland`` (the key as a bearer token or ``?token=``): ``producers/trackers.py``. A fix becomes
  the same ``location_recorded`` event as a native one, with the same validation, rate limits and acks=all before
  the answer. Its event id is derived from the device and the fix, so a resend after a timeout is recorded once.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from domain.devices import Device, fix_event_id, stop_event_id
from domain.identity import identity
from locstream.http import bearer_token, require_role
from producers.body import BodyError, field_message, read_body
from producers.checks import fix_problem
from producers.deps import Claims
from producers.models import LocationFixBody, technician_id_problem
from producers.osmand import OsmAndError, parse
from producers.routes import PREFIX, EventHeader, ingest_of, location_event, problem_doc
from producers.trackers import StopSignal, TrackerError, overland_batch, owntracks_message
from schemas.claims import Role
from schemas.events import LocationRecorded, TrackingStopped, TrackingStoppedData

log = logging.getLogger(__name__)

ADMIN = frozenset({Role.ADMIN})
# The apps say nothing of a fix being late: one recorded longer ago than this comes from the phone's offline queue,
# and maps show it without animating the marker along the way (``backfill``, as a native client would flag it).
BACKFILL_AFTER = timedelta(seconds=60)
_DEVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("Only an admin manages devices", "role dispatcher may not register devices"),
    404: problem_doc("No such active device in the token's tenant", "device_id: no active device 'd1'"),
    422: problem_doc("The body is invalid; `message` names the field", "technician_id: 1 to 128 letters..."),
    503: problem_doc("Kafka did not take the change in time; retry", "the devices topic did not take it in time"),
}
devices_router = APIRouter(prefix=PREFIX, tags=["devices"], responses=_DEVICE_ERRORS)
# The apps' protocols are not OpenAPI-shaped (one URL, a query, a form or a JSON body, the key in three places):
# docs/devices.md documents them, and tests/producers/test_device_corpus.py holds them to it.
protocols_router = APIRouter(prefix="/api/v1/ingest", tags=["device protocols"], include_in_schema=False)


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


@asynccontextmanager
async def table_unavailable_is_503(request: Request, table: str) -> AsyncIterator[None]:
    """A change of a compacted table (devices, geofences) that Kafka did not take, or this process did not see
    applied, in time: 503, nothing promised; the caller retries."""
    try:
        yield
    except (KafkaError, TimeoutError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the {table} topic did not take it in time: {exc!r}"[:200],
            headers={"Retry-After": str(ingest_of(request).settings.retry_after_seconds)},
        ) from exc


def setup(base_url: str, key: str) -> dict[str, dict[str, str]]:
    """What to type into each supported app."""
    return {
        "traccar_client": {"server_url": f"{base_url}/api/v1/ingest/osmand", "device_identifier": key},
        "owntracks": {"mode": "HTTP", "url": f"{base_url}/api/v1/ingest/owntracks", "username": "any", "password": key},
        "overland": {"receiver_endpoint": f"{base_url}/api/v1/ingest/overland", "access_token": key},
        "gpslogger": {
            "url": f"{base_url}/api/v1/ingest/osmand?id={key}&lat=%LAT&lon=%LON&timestamp=%TIMESTAMP&altitude=%ALT"
            "&accuracy=%ACC&bearing=%DIR&batt=%BATT",
            "method": "POST",
        },
    }


@devices_router.post("/devices", status_code=status.HTTP_201_CREATED, summary="Register a device (admin)")
async def register_device(body: NewDevice, request: Request, claims: Claims) -> RegisteredDevice:
    require_role(claims, ADMIN, "register devices")
    if (problem := technician_id_problem(body.technician_id)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    async with table_unavailable_is_503(request, "devices"):
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
    async with table_unavailable_is_503(request, "devices"):
        revoked = await ingest_of(request).devices.revoke(claims.tenant_id, device_id)
    if not revoked:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"device_id: no active device {device_id[:40]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _device(request: Request, key: str | None, *, basic: bool = False) -> Device:
    """The active device of ``key``, or 401 with the reason (never the key); 429 for an address that failed too
    often lately."""
    ingest = ingest_of(request)
    device = ingest.devices.device(key) if key else None  # a hash and a look-up: cheaper than refusing it
    async with ingest.authenticating(request, known=device is not None):
        if device is None:
            reason = "unknown or revoked device key" if key else "the device key is missing"
            headers = {"WWW-Authenticate": 'Basic realm="locstream"'} if basic else None
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=reason, headers=headers)
    return device


async def _body(request: Request, json_only: bool = False) -> bytes:
    """The request's body within the limits; ``json_only``: a body that is there must be ``application/json``."""
    ingest = ingest_of(request)
    try:
        raw = await read_body(request, ingest.settings.max_body_bytes, ingest.settings.body_timeout_seconds)
    except BodyError as exc:
        raise HTTPException(exc.status, detail=exc.message) from exc
    content_type = request.headers.get("content-type", "")
    if json_only and raw.strip() and content_type.split(";")[0].strip().lower() != "application/json":
        detail = f"body: Content-Type must be application/json, not {content_type or 'missing'!r}"
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=detail)
    return raw


@protocols_router.api_route("/osmand", methods=["GET", "POST"], summary="Traccar Client (OsmAnd protocol)")
async def osmand(request: Request) -> Response:
    raw = await _body(request)
    try:
        parsed = parse(request.query_params, request.headers.get("content-type", ""), raw)
    except OsmAndError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
    device = await _device(request, parsed.key)
    if parsed.fields is not None:
        events, rejected = _events(request, device, [("", parsed.fields)])
        if rejected:
            _count_rejected(request, "osmand", rejected)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=rejected[0])
        await _publish(request, device, events)
    return Response(status_code=status.HTTP_200_OK)


@protocols_router.post("/owntracks", summary="OwnTracks (HTTP mode)")
async def owntracks(request: Request) -> Response:
    device = await _device(request, _basic_password(request), basic=True)
    try:
        message = owntracks_message(await _body(request, json_only=True))
    except TrackerError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
    if isinstance(message, StopSignal):  # the app's last will: offline at once
        stops, _ = _stop_events(request, device, [message])  # said when received: always a time that is taken
        await _publish(request, device, stops)
    elif message is not None:
        events, rejected = _events(request, device, [("", message)])
        if rejected:
            _count_rejected(request, "owntracks", rejected)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=rejected[0])
        await _publish(request, device, events)
    return Response(b"[]", media_type="application/json")  # the app shows what the array holds: nothing


@protocols_router.post("/overland", summary="Overland (GeoJSON batches)")
async def overland(request: Request) -> Response:
    device = await _device(request, bearer_token(request) or request.query_params.get("token"))
    try:
        batch = overland_batch(await _body(request, json_only=True))
    except TrackerError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
    fixes, invalid = _events(request, device, batch.fixes)
    stops, late = _stop_events(request, device, batch.stops)
    events: list[LocationRecorded | TrackingStopped] = list(fixes)
    if stops:  # in time order: a paused action after the fixes it ends, a will_terminate before the next launch's
        events = sorted([*fixes, *stops], key=lambda event: event.recorded_at)
    await _publish(request, device, events)
    unreadable = batch.rejected + late
    # {"result": "ok"} is what makes the app drop the batch: only once every valid fix is acknowledged. A feature
    # that can never be taken is dropped with its reason (resending it would block the app's queue for ever).
    answer: dict[str, Any] = {"result": "ok"}
    if rejected := unreadable + invalid:
        _count_rejected(request, "overland", rejected)
        answer["rejected"] = rejected
    return Response(msgspec.json.encode(answer), media_type="application/json")


def _basic_password(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password or None


def _count_rejected(request: Request, protocol: str, reasons: list[str]) -> None:
    """Fixes an app sent that can never be taken: counted per protocol, and the first reason logged, so an operator
    sees a misbehaving app without the app's queue being blocked by them."""
    ingest_of(request).publisher.metrics.device_rejects.labels(protocol).inc(len(reasons))
    log.warning("%s: %d fix(es) rejected, the first: %s", protocol, len(reasons), reasons[0][:200])


def _events(
    request: Request, device: Device, fixes: list[tuple[str, dict[str, Any]]]
) -> tuple[list[LocationRecorded], list[str]]:
    """The device's fixes (each with its place in the request, for the reasons) validated as native ones
    (``LocationFixBody`` and ``fix_problem``), as events with ids derived from the device and the fix; the reasons
    of those that cannot be taken."""
    ingest, now = ingest_of(request), datetime.now(UTC)
    events: list[LocationRecorded] = []
    rejected: list[str] = []
    for prefix, fields in fixes:
        try:
            fix = msgspec.convert(fields, LocationFixBody, strict=True)
        except msgspec.ValidationError as exc:
            rejected.append(prefix + field_message(exc))
            continue
        recorded_at = fix.recorded_at or now
        if (problem := fix_problem(recorded_at, fix.metadata, now, ingest.max_future, ingest.max_age)) is not None:
            rejected.append(prefix + problem)
            continue
        if now - recorded_at > BACKFILL_AFTER:  # from the app's offline queue: history, not a live move
            fix = msgspec.structs.replace(fix, backfill=True)
        event_id = fix_event_id(device.device_id, recorded_at, fix.latitude, fix.longitude)
        header = EventHeader(device.tenant_id, device.technician_id, recorded_at, now, event_id)
        events.append(location_event(header, fix, ingest.rules.quality(device.tenant_id)))
    return events, rejected


def _stop_events(
    request: Request, device: Device, signals: list[StopSignal]
) -> tuple[list[TrackingStopped], list[str]]:
    """The app's sayings that it stopped tracking as ``tracking_stopped`` events (ids derived from the device, the
    reason and the time), with the reasons of those whose time cannot be taken (as a fix's would not be)."""
    ingest, now = ingest_of(request), datetime.now(UTC)
    events: list[TrackingStopped] = []
    rejected: list[str] = []
    for signal in signals:
        recorded_at = signal.at or now
        if (problem := fix_problem(recorded_at, None, now, ingest.max_future, ingest.max_age)) is not None:
            rejected.append(signal.place + problem)
            continue
        events.append(
            TrackingStopped(
                event_id=stop_event_id(device.device_id, recorded_at, signal.reason),
                tenant_id=device.tenant_id,
                technician_id=device.technician_id,
                recorded_at=recorded_at,
                received_at=now,
                data=TrackingStoppedData(reason=signal.reason, app=signal.app),
            )
        )
    return events, rejected


async def _publish(request: Request, device: Device, events: Sequence[LocationRecorded | TrackingStopped]) -> None:
    """Append the events not acknowledged before (a resend is recognised by its identity); acks=all."""
    ingest = ingest_of(request)
    fresh, seen = [], set()
    for event in events:
        key = identity(event)
        if key not in seen and ingest.recent.cursor_of(key) is None:
            seen.add(key)
            fresh.append(event)
    if not fresh:
        return
    ingest.limit_for(f"device:{device.device_id}", device.tenant_id, len(fresh))
    for event, acked in zip(fresh, await ingest.publish(fresh), strict=True):
        ingest.recent.remember(identity(event), acked)
