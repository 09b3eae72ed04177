"""A tenant's webhook endpoints on the ingest API (``/api/v1/field-service/webhook-endpoints``, tenant from the
token): where its alerts' webhooks go, and the secrets they are signed with (docs/alerts.md). An admin defines,
rotates and removes them; a dispatcher may read them (to name them in a rule's channels). A secret is in an answer
once, when it is made (the endpoint's first definition, a rotation), and never again: the others show when each
was made. Each change is a record on the alert rules topic (``locstream/alert_rules.py``).

A URL is checked by ``locstream.outbound_policy`` here (https, no credentials, an address literal on the public
internet or in ``LOCSTREAM_OUTBOUND_ALLOW_NETWORKS``) and again, with its name resolved, at each delivery.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from msgspec import Meta, Struct

from locstream.http import require_role
from locstream.outbound_policy import RefusedTarget, check_url, refusal
from locstream.webhook_signing import new_secret
from producers.deps import Claims
from producers.device_routes import table_unavailable_is_503
from producers.openapi import body_of
from producers.routes import PREFIX, Ingest, ingest_of, problem_doc
from schemas.alert_rules import WebhookEndpointDefined, WebhookSecret
from schemas.claims import Role

ENDPOINT_WRITERS = frozenset({Role.ADMIN})
ENDPOINT_READERS = frozenset({Role.DISPATCHER, Role.ADMIN})
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, malformed, forged or expired token", "token expired"),
    403: problem_doc("Only an admin manages webhook endpoints", "role dispatcher may not define webhook endpoints"),
    404: problem_doc("No such endpoint in the token's tenant", "endpoint_id: no webhook endpoint 'ops'"),
    413: problem_doc("Body larger than allowed", "body: 2000100 bytes, at most 1048576"),
    415: problem_doc("Content-Type is not application/json", "body: Content-Type must be application/json"),
    422: problem_doc("The body is invalid; `message` names the field", "url: a loopback address"),
    503: problem_doc("Kafka did not take the change in time; retry", "the alert rules topic did not take it in time"),
}
webhook_endpoints_router = APIRouter(prefix=PREFIX, tags=["webhook endpoints"], responses=_ERRORS)
EndpointId = Annotated[str, Path(min_length=1, max_length=128)]


class WebhookEndpointBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the webhooks go (``url``), in which shape (``body``), and a note for people."""

    url: Annotated[str, Meta(min_length=1, max_length=2_048)]
    body: Literal["standard", "slack", "teams"] = "standard"
    description: Annotated[str, Meta(max_length=200)] | None = None


def endpoint_wire(endpoint: WebhookEndpointDefined, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it: its secrets by when they were made, and ``secret`` only when one was just
    made."""
    wire: dict[str, Any] = {
        "tenant_id": endpoint.tenant_id,
        "endpoint_id": endpoint.endpoint_id,
        "at": endpoint.at.isoformat(),
        "url": endpoint.url,
        "body": endpoint.body,
        "description": endpoint.description,
        "secrets": [{"created_at": held.created_at.isoformat()} for held in endpoint.secrets],
    }
    if secret is not None:
        wire["secret"] = secret
    return wire


def url_problem(url: str, ingest: Ingest) -> str | None:
    """Why the server will not call ``url`` (``locstream.outbound_policy``), or None. A name is resolved at each
    delivery, not here: what it resolves to then is what counts."""
    outbound = ingest.settings.outbound
    try:
        target = check_url(url, allow_http=outbound.allow_http)
    except RefusedTarget as refused:
        return refused.reason
    if target.address is not None:
        return refusal(target.address, outbound.networks())
    return None


def _held(ingest: Ingest, tenant_id: str, endpoint_id: str) -> WebhookEndpointDefined:
    endpoint = ingest.alert_rules.endpoint(tenant_id, endpoint_id)
    if endpoint is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"endpoint_id: no webhook endpoint {endpoint_id[:40]!r}")
    return endpoint


_EXAMPLE = {"url": "https://hooks.example.com/locstream", "body": "standard", "description": "Dispatch desk"}


@webhook_endpoints_router.put(
    "/webhook-endpoints/{endpoint_id}",
    summary="Define a webhook endpoint (admin); its secret is in the answer when it is new, and only then",
    openapi_extra=body_of(WebhookEndpointBody, _EXAMPLE),
)
async def put_webhook_endpoint(endpoint_id: EndpointId, request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, ENDPOINT_WRITERS, "define webhook endpoints")
    ingest = ingest_of(request)
    body = await ingest.read(request, WebhookEndpointBody)
    if (problem := url_problem(body.url, ingest)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=f"url: {problem}")
    now = datetime.now(UTC)
    async with ingest.alert_rule_definitions.setdefault(claims.tenant_id, asyncio.Lock()):
        held = ingest.alert_rules.endpoint(claims.tenant_id, endpoint_id)
        limit = ingest.settings.max_webhook_endpoints_per_tenant
        if held is None and len(ingest.alert_rules.endpoints_of(claims.tenant_id)) >= limit:
            detail = f"endpoint_id: at most {limit} webhook endpoints per tenant"
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=detail)
        secret: str | None = None
        if held is None:
            secret = new_secret()
            secrets: tuple[WebhookSecret, ...] = (WebhookSecret(secret=secret, created_at=now),)
        else:
            secrets = held.secrets  # a redefinition keeps them: the receiver goes on verifying as before
        endpoint = WebhookEndpointDefined(
            tenant_id=claims.tenant_id,
            endpoint_id=endpoint_id,
            at=now,
            url=body.url,
            body=body.body,
            description=body.description,
            secrets=secrets,
        )
        async with table_unavailable_is_503(request, "alert rules"):
            await ingest.alert_rules.put_endpoint(endpoint)
    return endpoint_wire(endpoint, secret)


@webhook_endpoints_router.post(
    "/webhook-endpoints/{endpoint_id}/secrets",
    summary="Rotate an endpoint's secret (admin): a new one, in the answer once; the newest before it stays valid",
)
async def rotate_webhook_secret(endpoint_id: EndpointId, request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, ENDPOINT_WRITERS, "rotate webhook secrets")
    ingest = ingest_of(request)
    async with ingest.alert_rule_definitions.setdefault(claims.tenant_id, asyncio.Lock()):
        held = _held(ingest, claims.tenant_id, endpoint_id)
        now, secret = datetime.now(UTC), new_secret()
        endpoint = WebhookEndpointDefined(
            tenant_id=held.tenant_id,
            endpoint_id=held.endpoint_id,
            at=now,
            url=held.url,
            body=held.body,
            description=held.description,
            secrets=(held.secrets[-1], WebhookSecret(secret=secret, created_at=now)),
        )
        async with table_unavailable_is_503(request, "alert rules"):
            await ingest.alert_rules.put_endpoint(endpoint)
    return endpoint_wire(endpoint, secret)


@webhook_endpoints_router.delete(
    "/webhook-endpoints/{endpoint_id}/secrets/previous",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a rotation (admin): only the newest secret signs from now on",
)
async def retire_previous_webhook_secret(endpoint_id: EndpointId, request: Request, claims: Claims) -> Response:
    require_role(claims, ENDPOINT_WRITERS, "rotate webhook secrets")
    ingest = ingest_of(request)
    async with ingest.alert_rule_definitions.setdefault(claims.tenant_id, asyncio.Lock()):
        held = _held(ingest, claims.tenant_id, endpoint_id)
        if len(held.secrets) < 2:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="secrets: no previous secret (no rotation under way)")
        endpoint = WebhookEndpointDefined(
            tenant_id=held.tenant_id,
            endpoint_id=held.endpoint_id,
            at=datetime.now(UTC),
            url=held.url,
            body=held.body,
            description=held.description,
            secrets=held.secrets[-1:],
        )
        async with table_unavailable_is_503(request, "alert rules"):
            await ingest.alert_rules.put_endpoint(endpoint)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@webhook_endpoints_router.get("/webhook-endpoints/{endpoint_id}", summary="One of the tenant's webhook endpoints")
async def get_webhook_endpoint(endpoint_id: EndpointId, request: Request, claims: Claims) -> dict[str, Any]:
    require_role(claims, ENDPOINT_READERS, "read webhook endpoints")
    return endpoint_wire(_held(ingest_of(request), claims.tenant_id, endpoint_id))


@webhook_endpoints_router.get("/webhook-endpoints", summary="The tenant's webhook endpoints")
async def list_webhook_endpoints(request: Request, claims: Claims) -> list[dict[str, Any]]:
    require_role(claims, ENDPOINT_READERS, "read webhook endpoints")
    return [endpoint_wire(endpoint) for endpoint in ingest_of(request).alert_rules.endpoints_of(claims.tenant_id)]


@webhook_endpoints_router.delete(
    "/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a webhook endpoint"
)
async def delete_webhook_endpoint(endpoint_id: EndpointId, request: Request, claims: Claims) -> Response:
    require_role(claims, ENDPOINT_WRITERS, "remove webhook endpoints")
    async with table_unavailable_is_503(request, "alert rules"):
        removed = await ingest_of(request).alert_rules.remove_endpoint(claims.tenant_id, endpoint_id)
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"endpoint_id: no webhook endpoint {endpoint_id[:40]!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
