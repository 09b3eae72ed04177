"""The ingest endpoints (the seed's URLs plus the batch). The tenant comes only from the verified token.

Every write goes the same way (``Ingest``): role, body type and size, strict decoding, rate limits, per-fix
checks, then one publish that answers 202 only once Kafka acknowledged every event it carries, 503 otherwise.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import msgspec
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from starlette.requests import HTTPConnection

from domain.fix_quality import ingest_flags
from domain.identity import identity
from domain.position import Position
from locstream.alert_rules import AlertRulesRegistry
from locstream.auth import KEYS_UNAVAILABLE
from locstream.devices import DeviceRegistry
from locstream.fences import FenceRegistry
from locstream.gc_tuning import tune_for_batches
from locstream.http import bearer_token, require_role, token_verifier, verified_claims
from locstream.tenant_rules import TenantRulesRegistry
from locstream.work_slots import TurnsPerTenant
from producers.body import BodyError, decode, read_json
from producers.checks import fix_problem
from producers.deps import Claims
from producers.models import (
    TECHNICIAN_ID_PATTERN,
    Accepted,
    BatchAccepted,
    BatchBody,
    BatchFix,
    LocationFixBody,
    RawBatchBody,
    TechnicianUpdateBody,
    technician_id_problem,
)
from producers.openapi import body_of
from producers.publisher import EventPublisher, ProducerRenewedError, PublishTimeoutError
from producers.rate_limits import FailedAuthentications, RateLimiter, admit, failure_key
from producers.recent import RecentFixes
from producers.settings import ProducersSettings
from schemas.claims import WRITER_ROLES, Role, TokenClaims, only_technician
from schemas.cursor import Cursor
from schemas.events import (
    Event,
    FixQuality,
    LocationData,
    LocationRecorded,
    TechnicianData,
    TechnicianUpdated,
    fix_fields_of,
)
from schemas.tenant_rules import QualityRules

T = TypeVar("T")

PREFIX = "/api/v1/field-service"
router = APIRouter(prefix=PREFIX, tags=["ingest"])

TechnicianId = Annotated[str, Path(min_length=1, max_length=128, pattern=TECHNICIAN_ID_PATTERN)]


def problem_doc(description: str, message: str, retry_after: bool = False) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    example = {"message": message, "detail": message}
    documented: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }
    if retry_after:
        documented["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    return documented


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("The token's role may not write for this technician", "a technician may post only for itself"),
    408: problem_doc(
        "The body did not arrive within LOCSTREAM_PRODUCERS_BODY_TIMEOUT_SECONDS; the connection is closed",
        "body: not complete within 30 s (512 bytes came)",
    ),
    413: problem_doc("Body larger than allowed, or more fixes than allowed", "fixes: 1200 items, at most 1000"),
    415: problem_doc("Content-Type is not application/json", "body: Content-Type must be application/json"),
    422: problem_doc("The body is invalid; `message` names the field", "latitude: Expected `float` <= 90.0"),
    429: problem_doc(
        "Rate limit of the token or the tenant; retry after Retry-After seconds",
        "rate limit of this token or tenant: 1000 fixes must wait 1.8 s",
        retry_after=True,
    ),
    503: problem_doc(
        "Kafka did not acknowledge in time; retry after Retry-After seconds",
        "not acknowledged by Kafka, nothing was recorded as accepted",
        retry_after=True,
    ),
}

# A batch is validated this many fixes at a time, with a turn of the loop between (about 5 ms of work each): the
# noisy-neighbour test's gateways, ten 1,000-fix batches at once, otherwise held an unrelated tenant's POST for up to
# 0.2 s on a busy machine.
FIXES_PER_TURN = 250

# Dispatchers name technicians and set their status, but never post positions.
_PROFILE_WRITER_ROLES = WRITER_ROLES | {Role.DISPATCHER}


class Ingest:
    """The API process's ingest state: publisher, recently acknowledged fixes, rate limiters."""

    def __init__(self, settings: ProducersSettings) -> None:
        self.settings = settings
        self.publisher = EventPublisher(settings)
        self.devices = DeviceRegistry(settings.kafka)
        self.fences = FenceRegistry(settings.kafka)
        self.rules = TenantRulesRegistry(settings.kafka)
        self.alert_rules = AlertRulesRegistry(settings.kafka)
        self.fence_definitions: dict[str, asyncio.Lock] = {}  # per tenant: its definitions one at a time
        self.alert_rule_definitions: dict[str, asyncio.Lock] = {}  # the same for its alert rules
        self.recent = RecentFixes(settings.recent_fixes)
        self.per_token = RateLimiter(settings.token_rate, settings.token_burst)
        self.per_tenant = RateLimiter(settings.tenant_rate, settings.tenant_burst)
        self.batch_turns = TurnsPerTenant(settings.batches_per_tenant)
        self.failed_auth = FailedAuthentications(settings.failed_auth_rate, settings.failed_auth_burst)
        self.max_future = timedelta(seconds=settings.max_future_skew_seconds)
        self.max_age = timedelta(days=settings.kafka.retention_days)

    async def start(self) -> None:
        await self.publisher.start()
        await self.devices.start()
        await self.fences.start()
        await self.rules.start()
        await self.alert_rules.start()
        tune_for_batches(self.settings.gc_gen0_threshold)

    async def stop(self) -> None:
        await self.alert_rules.stop()
        await self.rules.stop()
        await self.fences.stop()
        await self.devices.stop()
        await self.publisher.stop()

    def cursor(self, acked: Position) -> str:
        return Cursor(self.settings.kafka.topic_epoch, acked.partition, acked.offset).encode()

    async def read(self, request: Request, type_: type[T], fallback: type[T] | None = None) -> T:
        """The request's JSON body, decoded strictly as ``type_`` (else as ``fallback`` when given); 413, 415 or 422
        naming the field otherwise."""
        try:
            raw = await read_json(request, self.settings.max_body_bytes, self.settings.body_timeout_seconds)
            try:
                return decode(raw, type_)
            except BodyError:
                if fallback is None:
                    raise
                return decode(raw, fallback)
        except BodyError as exc:
            raise HTTPException(
                exc.status, detail=exc.message, headers={"Connection": "close"} if exc.close else None
            ) from exc

    @asynccontextmanager
    async def authenticating(self, request: HTTPConnection, known: bool = False) -> AsyncIterator[None]:
        """Around checking a request's credentials: 429 when its address failed too often lately, unless they are
        ``known`` good (a token verified lately): clients behind one address, a NAT or a proxy, are not locked out by
        a neighbour's failures. A 401 inside counts as one more failure of the address, but not one the identity
        provider caused (its keys unavailable)."""
        address, now = failure_key(request), time.monotonic()
        wait = 0.0 if known else self.failed_auth.wait(address, now)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail="too many failed authentications from this address: wait before trying again",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        try:
            yield
        except HTTPException as exc:
            if exc.status_code == status.HTTP_401_UNAUTHORIZED and exc.detail != KEYS_UNAVAILABLE:
                self.failed_auth.failed(address, now)
            raise

    async def claims_of(self, request: HTTPConnection, token: str | None) -> TokenClaims:
        """The verified claims of ``token`` (401 with the reason), within the address's failure budget (429)."""
        async with self.authenticating(request, known=token_verifier(request).knows(token)):
            return await verified_claims(request, token)

    def refuse_early(self, request: Request) -> None:
        """429 before the body is read when this token was told to wait and came back sooner: a client that ignores
        ``Retry-After`` costs the API a header, not the decoding of its batch (the noisy-neighbour test's gateways
        made decoding refused batches the API's largest cost). Its tenant's other tokens are not affected."""
        early = self.per_token.told_to_wait(bearer_token(request) or "", time.monotonic())
        if early > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"rate limit of this token or tenant: told to wait, back {early:.1f} s early",
                headers={"Retry-After": str(max(1, int(early + 0.999)))},
            )

    def limit(self, request: Request, claims: TokenClaims, fixes: int) -> None:
        # Keyed by the token itself, as the verifier read it: spaces or a scheme spelt otherwise in the header make
        # no fresh bucket.
        self.limit_for(bearer_token(request) or "", claims.tenant_id, fixes)

    def limit_for(self, sender: str, tenant_id: str, fixes: int) -> None:
        """429 with ``Retry-After`` unless ``sender`` (a token, a device) and its tenant have ``fixes`` to spend."""
        now = time.monotonic()
        wait = admit([(self.per_token, sender), (self.per_tenant, tenant_id)], fixes, now)
        if wait > 0:
            retry_after = "3600" if wait == float("inf") else str(max(1, int(wait + 0.999)))
            if wait != float("inf"):  # a request larger than the burst never fits: a smaller one may, at once
                self.per_token.tell_to_wait(sender, now + int(retry_after))  # held to what it was told
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"rate limit of this token or tenant: {fixes} fixes must wait {min(wait, 3600):.1f} s",
                headers={"Retry-After": retry_after},
            )

    async def publish(self, events: Sequence[Event]) -> list[Position]:
        try:
            return await self.publisher.publish(events)
        except (PublishTimeoutError, ProducerRenewedError, KafkaError) as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"not acknowledged by Kafka, nothing was recorded as accepted: {exc}",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            ) from exc


def ingest_of(request: Request) -> Ingest:
    ingest: Ingest = request.app.state.ingest
    return ingest


def _may_write_for(claims: TokenClaims, technician_id: str, allowed: frozenset[Role], action: str) -> None:
    if (problem := technician_id_problem(technician_id)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    require_role(claims, allowed, action)
    if (problem := _own_technician(claims, technician_id)) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=problem)


def _own_technician(claims: TokenClaims, technician_id: str) -> str | None:
    if only_technician(claims) and claims.sub != technician_id:
        return "technician_id: a technician may post only for itself"
    return None


@dataclass(frozen=True)
class EventHeader:
    tenant_id: str
    technician_id: str
    recorded_at: datetime
    received_at: datetime
    event_id: uuid.UUID


def location_event(envelope: EventHeader, fix: LocationFixBody | BatchFix, rules: QualityRules) -> LocationRecorded:
    """The fix as an event, judged by itself under its tenant's ``rules`` (``domain.fix_quality.ingest_flags``) and
    stamped with the tenant's jump limit: every way a fix arrives comes through here."""
    flags = ingest_flags(fix.latitude, fix.longitude, fix.accuracy_meters, fix.mock, rules.max_accuracy_meters)
    quality = FixQuality(flags=flags, max_speed_kmh=rules.max_speed_kmh)
    data = LocationData(**fix_fields_of(fix), backfill=fix.backfill, metadata=fix.metadata, quality=quality)
    return LocationRecorded(
        event_id=envelope.event_id,
        tenant_id=envelope.tenant_id,
        technician_id=envelope.technician_id,
        recorded_at=envelope.recorded_at,
        received_at=envelope.received_at,
        data=data,
    )


# The two position routes are served by ``producers/hot_path.py`` (``HotPath``), which takes their paths from these
# declarations and calls these functions; FastAPI's routing of them is what the OpenAPI document shows.
@router.post(
    "/technicians/{technician_id}/location",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
    summary="Record a technician's location fix",
    openapi_extra=body_of(LocationFixBody, example={"latitude": 6.5244, "longitude": 3.3792, "accuracy_meters": 8.0}),
)
async def post_location(technician_id: TechnicianId, request: Request, claims: Claims) -> Accepted:
    ingest = ingest_of(request)
    _may_write_for(claims, technician_id, WRITER_ROLES, "post fixes")
    ingest.refuse_early(request)
    fix = await ingest.read(request, LocationFixBody)
    now = datetime.now(UTC)
    try:
        recorded_at = fix.device_time() or now
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
    if (problem := fix_problem(recorded_at, fix.metadata, now, ingest.max_future, ingest.max_age)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    ingest.limit(request, claims, 1)
    envelope = EventHeader(claims.tenant_id, technician_id, recorded_at, now, fix.event_id or uuid.uuid4())
    event = location_event(envelope, fix, ingest.rules.quality(claims.tenant_id))
    if (seen := ingest.recent.cursor_of(identity(event))) is not None:
        return Accepted(
            status="duplicate", event_id=event.event_id, technician_id=technician_id, cursor=ingest.cursor(seen)
        )
    (acked,) = await ingest.publish([event])
    ingest.recent.remember(identity(event), acked)
    return Accepted(event_id=event.event_id, technician_id=technician_id, cursor=ingest.cursor(acked))


@router.post(  # served by HotPath too
    "/locations/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=_ERRORS,
    summary="Record many fixes at once (a phone back in coverage, a gateway forwarding its fleet)",
    description=(
        "Each fix is validated on its own: the answer lists, per fix, `accepted`, `duplicate` (acknowledged before:"
        " same `event_id` and `recorded_at`) or `rejected` with the reason. 202 once Kafka acknowledged every"
        " accepted fix; 422 when no fix could be taken; 503 when Kafka did not acknowledge in time (retry the"
        " whole batch: fixes already recorded are recognised by their identity)."
    ),
    openapi_extra=body_of(
        BatchBody,
        example={
            "fixes": [
                {
                    "event_id": "0b7e7f8e-3c55-4d1c-9a53-2d3c1f7a9b01",
                    "technician_id": "tech-ada",
                    "recorded_at": "2026-11-26T08:30:00Z",
                    "latitude": 6.5244,
                    "longitude": 3.3792,
                    "backfill": True,
                },
            ]
        },
    ),
)
async def post_batch(request: Request, claims: Claims) -> Response:
    ingest = ingest_of(request)
    require_role(claims, WRITER_ROLES, "post fixes")
    ingest.refuse_early(request)
    # A batch of valid fixes decodes in one pass; otherwise the items stay raw and are validated one by one.
    envelope: BatchBody | RawBatchBody = await ingest.read(request, BatchBody, fallback=RawBatchBody)
    limit = ingest.settings.max_batch_items
    if len(envelope.fixes) > limit:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"fixes: {len(envelope.fixes)} items, at most {limit}"
        )
    ingest.limit(request, claims, max(1, len(envelope.fixes)))
    async with ingest.batch_turns.slot(claims.tenant_id):
        return await _take_batch(ingest, claims, envelope)


async def _take_batch(ingest: Ingest, claims: TokenClaims, envelope: BatchBody | RawBatchBody) -> Response:
    """Validate each fix of an admitted batch, append the valid ones, and answer per fix."""
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []  # ItemResult's fields; encoded with msgspec (1,000 pydantic models cost more)
    events: list[LocationRecorded] = []
    in_batch: set[Any] = set()
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    rules = ingest.rules.quality(claims.tenant_id)
    items: Sequence[BatchFix | msgspec.Raw] = envelope.fixes
    for index, item in enumerate(items):
        if index and index % FIXES_PER_TURN == 0:
            await asyncio.sleep(0)  # another request's turn: a batch's validation is not one long step of the loop
        try:
            fix = item if isinstance(item, BatchFix) else decode(bytes(item), BatchFix, prefix=f"fixes[{index}]")
        except BodyError as exc:
            results.append({"index": index, "status": "rejected", "reason": exc.message})
            counts["rejected"] += 1
            continue
        outcome: dict[str, Any] = {"index": index, "event_id": fix.event_id, "technician_id": fix.technician_id}
        problem = (
            technician_id_problem(fix.technician_id)
            or _own_technician(claims, fix.technician_id)
            or fix_problem(fix.recorded_at, fix.metadata, now, ingest.max_future, ingest.max_age)
        )
        if problem is not None:
            outcome.update(status="rejected", reason=f"fixes[{index}].{problem}")
        else:
            event = location_event(
                EventHeader(claims.tenant_id, fix.technician_id, fix.recorded_at, now, fix.event_id), fix, rules
            )
            seen = identity(event)
            if seen in in_batch or ingest.recent.cursor_of(seen) is not None:
                outcome["status"] = "duplicate"
            else:
                in_batch.add(seen)
                events.append(event)
                outcome["status"] = "accepted"
        counts[outcome["status"]] += 1
        results.append(outcome)
    if not events and not counts["duplicate"]:
        reasons = "; ".join(result["reason"] for result in results[:20]) or "fixes: no fix in the batch"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=reasons)
    acknowledged = await ingest.publish(events) if events else []
    for event, acked in zip(events, acknowledged, strict=True):
        ingest.recent.remember(identity(event), acked)
    answer = {
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "cursor": ingest.cursor(acknowledged[-1]) if acknowledged else None,
        "results": results,
    }
    return Response(msgspec.json.encode(answer), status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


@router.put(
    "/technicians/{technician_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
    summary="Set a technician's name and/or status",
    openapi_extra=body_of(TechnicianUpdateBody, example={"name": "Ada Obi", "status": "on_job"}),
)
async def put_technician(technician_id: TechnicianId, request: Request, claims: Claims) -> Accepted:
    ingest = ingest_of(request)
    _may_write_for(claims, technician_id, _PROFILE_WRITER_ROLES, "set a technician's name and status")
    body = await ingest.read(request, TechnicianUpdateBody)
    if body.name is None and body.status is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="body: name or status is required")
    now = datetime.now(UTC)
    recorded_at = body.recorded_at or now
    if (problem := fix_problem(recorded_at, None, now, ingest.max_future, ingest.max_age)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=problem)
    ingest.limit(request, claims, 1)
    event = TechnicianUpdated(
        event_id=uuid.uuid4(),
        tenant_id=claims.tenant_id,
        technician_id=technician_id,
        recorded_at=recorded_at,
        received_at=now,
        data=TechnicianData(name=body.name, status=body.status),
    )
    (acked,) = await ingest.publish([event])
    return Accepted(event_id=event.event_id, technician_id=technician_id, cursor=ingest.cursor(acked))
