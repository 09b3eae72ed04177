"""A tenant's rules on the ingest API (``/api/v1/field-service/rules``, tenant from the token): ``GET`` for those who
watch the fleet, ``PUT`` for an admin only. A change is a record on the compacted rules topic
(``locstream/tenant_rules.py``) that every ingest process follows; the answer comes once this process has applied it,
and fixes received from then on are judged by it (docs/fix-quality.md); the derived-facts processor finds stops and
trips by its ``stays`` thresholds from then on (docs/stops-and-trips.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from msgspec import Struct

from locstream.http import require_role
from producers.deps import Claims
from producers.device_routes import table_unavailable_is_503
from producers.openapi import body_of
from producers.routes import PREFIX, ingest_of, problem_doc
from schemas.claims import VIEWER_ROLES, Role
from schemas.tenant_rules import PresenceRules, QualityRules, StayRules, TenantRulesSet

RULES_WRITERS = frozenset({Role.ADMIN})
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("Only an admin sets the tenant's rules", "role dispatcher may not set rules"),
    413: problem_doc("Body larger than allowed", "body: 2000100 bytes, at most 1048576"),
    415: problem_doc("Content-Type is not application/json", "body: Content-Type must be application/json"),
    422: problem_doc("The body is invalid; `message` names the field", "quality.max_speed_kmh: Expected `float` >= 5"),
    503: problem_doc("Kafka did not take the change in time; retry", "the rules topic did not take it in time"),
}
rules_router = APIRouter(prefix=PREFIX, tags=["rules"], responses=_ERRORS)


class RulesBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """Every rule of the tenant: a section or a field left out is set to its default."""

    quality: QualityRules = QualityRules()
    stays: StayRules = StayRules()
    presence: PresenceRules = PresenceRules()


def rules_wire(rules: TenantRulesSet) -> dict[str, Any]:
    wire: dict[str, Any] = msgspec.to_builtins(rules)
    wire.pop("type", None)
    return wire


@rules_router.get("/rules", summary="The tenant's rules: the limits its fixes are judged by, its stops' thresholds")
async def get_rules(request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, VIEWER_ROLES, "read the rules")
    return rules_wire(ingest_of(request).rules.of(claims.tenant_id))


@rules_router.put(
    "/rules",
    summary="Set the tenant's rules (admin)",
    openapi_extra=body_of(
        RulesBody,
        {
            "quality": {"max_accuracy_meters": 50, "max_speed_kmh": 150},
            "stays": {"stop_radius_meters": 150, "stop_min_seconds": 600},
        },
    ),
)
async def put_rules(request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, RULES_WRITERS, "set rules")
    ingest = ingest_of(request)
    body = await ingest.read(request, RulesBody)
    rules = TenantRulesSet(
        tenant_id=claims.tenant_id,
        at=datetime.now(UTC),
        quality=body.quality,
        stays=body.stays,
        presence=body.presence,
    )
    async with table_unavailable_is_503(request, "rules"):
        await ingest.rules.put(rules)
    return rules_wire(rules)
