"""A tenant's alert rules on the ingest API (``/api/v1/field-service/alert-rules``, tenant from the token):
``PUT .../{rule_id}`` defines one (a dispatcher or an admin), ``DELETE`` removes it, ``GET`` reads one or lists them
(those who watch the fleet). Each change is a record on the compacted alert rules topic (``locstream/alert_rules.py``);
the answer comes once this process has applied it (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from msgspec import Meta, Struct

from locstream.http import require_role
from producers.deps import Claims
from producers.device_routes import table_unavailable_is_503
from producers.openapi import body_of
from producers.routes import PREFIX, ingest_of, problem_doc
from schemas.alert_rules import (
    MAX_CHANNELS,
    AlertRuleDefined,
    Channel,
    Condition,
    OutsideWorkingHours,
    Technicians,
    rule_problems,
)
from schemas.claims import VIEWER_ROLES, Role
from schemas.events import LIMITS

ALERT_RULE_WRITERS = frozenset({Role.DISPATCHER, Role.ADMIN})
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("Only a dispatcher or an admin manages alert rules", "role analyst may not define alert rules"),
    404: problem_doc("No such rule in the token's tenant", "rule_id: no alert rule 'speeding'"),
    413: problem_doc("Body larger than allowed", "body: 2000100 bytes, at most 1048576"),
    415: problem_doc("Content-Type is not application/json", "body: Content-Type must be application/json"),
    422: problem_doc("The body is invalid; `message` names the field", "condition.above_kmh: Expected `float` >= 5"),
    503: problem_doc("Kafka did not take the change in time; retry", "the alert rules topic did not take it in time"),
}
alert_rules_router = APIRouter(prefix=PREFIX, tags=["alert rules"], responses=_ERRORS)
RuleId = Annotated[str, Path(min_length=1, max_length=128)]


class AlertRuleBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """A rule: its condition (``kind`` says which), whom it watches, where its alerts go, its quiet period."""

    name: Annotated[str, Meta(**LIMITS["name"])]
    condition: Condition
    technicians: Technicians = Technicians()
    channels: Annotated[tuple[Channel, ...], Meta(max_length=MAX_CHANNELS)] = ()
    quiet_seconds: Annotated[float, Meta(ge=0, le=86_400)] = 900.0
    enabled: bool = True


def rule_wire(rule: AlertRuleDefined) -> dict[str, Any]:
    wire: dict[str, Any] = msgspec.to_builtins(rule)
    wire.pop("type", None)
    return wire


def _time_zone_problem(rule: AlertRuleDefined) -> str | None:
    condition = rule.condition
    if not isinstance(condition, OutsideWorkingHours):
        return None
    try:
        zoneinfo.ZoneInfo(condition.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"condition.time_zone: {condition.time_zone[:64]!r} is no IANA time zone"
    return None


_EXAMPLE = {
    "name": "Speeding on the ring road",
    "condition": {"kind": "overspeed", "above_kmh": 90, "for_seconds": 30},
    "technicians": {"status": "on_job"},
    "channels": [{"type": "email", "to": "dispatch@example.com"}],
    "quiet_seconds": 900,
}


@alert_rules_router.put(
    "/alert-rules/{rule_id}",
    summary="Define an alert rule (dispatcher or admin)",
    openapi_extra=body_of(AlertRuleBody, _EXAMPLE),
)
async def put_alert_rule(rule_id: RuleId, request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, ALERT_RULE_WRITERS, "define alert rules")
    ingest = ingest_of(request)
    body = await ingest.read(request, AlertRuleBody)
    rule = AlertRuleDefined(
        tenant_id=claims.tenant_id,
        rule_id=rule_id,
        at=datetime.now(UTC),
        name=body.name,
        condition=body.condition,
        technicians=body.technicians,
        channels=body.channels,
        quiet_seconds=body.quiet_seconds,
        enabled=body.enabled,
    )
    problems = rule_problems(rule)
    if (zone := _time_zone_problem(rule)) is not None:
        problems.append(zone)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="; ".join(problems))
    # One definition of a tenant at a time in this process, from the count's check until it is applied here.
    async with ingest.alert_rule_definitions.setdefault(claims.tenant_id, asyncio.Lock()):
        limit = ingest.settings.max_alert_rules_per_tenant
        held = ingest.alert_rules.get(claims.tenant_id, rule_id)
        if held is None and ingest.alert_rules.count(claims.tenant_id) >= limit:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"rule_id: at most {limit} alert rules per tenant"
            )
        async with table_unavailable_is_503(request, "alert rules"):
            await ingest.alert_rules.put(rule)
    return rule_wire(rule)


@alert_rules_router.get("/alert-rules/{rule_id}", summary="One of the tenant's alert rules")
async def get_alert_rule(rule_id: RuleId, request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, VIEWER_ROLES, "read alert rules")
    rule = ingest_of(request).alert_rules.get(claims.tenant_id, rule_id)
    if rule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"rule_id: no alert rule {rule_id[:40]!r}")
    return rule_wire(rule)


@alert_rules_router.get("/alert-rules", summary="The tenant's alert rules")
async def list_alert_rules(request: Request, claims: Claims) -> list[dict[str, Any]]:
    require_role(claims, VIEWER_ROLES, "read alert rules")
    return [rule_wire(rule) for rule in ingest_of(request).alert_rules.of(claims.tenant_id)]


@alert_rules_router.delete(
    "/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an alert rule"
)
async def delete_alert_rule(rule_id: RuleId, request: Request, claims: Claims) -> Response:
    require_role(claims, ALERT_RULE_WRITERS, "remove alert rules")
    async with table_unavailable_is_503(request, "alert rules"):
        removed = await ingest_of(request).alert_rules.remove(claims.tenant_id, rule_id)
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"rule_id: no alert rule {rule_id[:40]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
