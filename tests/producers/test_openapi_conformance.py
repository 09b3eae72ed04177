"""schemathesis against the ingest API's own OpenAPI document: 500 generated requests per operation against the
real process and broker; no server error, and every answer conforms to the document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.claims import Role
from tests.support.stack import Service, Stack

pytestmark = pytest.mark.integration

EXAMPLES = 500
# Each operation, the role of the token it is called with, and the answers that show a generated request was taken
# by the route itself (not only refused by validation): a random device or fence id is none, so DELETE's is a 404.
OPERATIONS = [
    ("/api/v1/field-service/technicians/{technician_id}/location", "POST", Role.DEVICE_GATEWAY, {202}),
    ("/api/v1/field-service/locations/batch", "POST", Role.DEVICE_GATEWAY, {202}),
    ("/api/v1/field-service/technicians/{technician_id}", "PUT", Role.DEVICE_GATEWAY, {202}),
    ("/api/v1/field-service/devices", "POST", Role.ADMIN, {201}),
    ("/api/v1/field-service/devices", "GET", Role.ADMIN, {200}),
    ("/api/v1/field-service/devices/{device_id}", "DELETE", Role.ADMIN, {204, 404}),
    ("/api/v1/field-service/geofences/{geofence_id}", "PUT", Role.DISPATCHER, {200}),
    ("/api/v1/field-service/geofences", "GET", Role.DISPATCHER, {200}),
    ("/api/v1/field-service/geofences/{geofence_id}", "DELETE", Role.DISPATCHER, {204, 404}),
    ("/api/v1/field-service/rules", "PUT", Role.ADMIN, {200}),
    ("/api/v1/field-service/rules", "GET", Role.DISPATCHER, {200}),
    ("/api/v1/field-service/alert-rules/{rule_id}", "PUT", Role.DISPATCHER, {200}),
    ("/api/v1/field-service/alert-rules", "GET", Role.ANALYST, {200}),
    ("/api/v1/field-service/alert-rules/{rule_id}", "GET", Role.ANALYST, {200, 404}),
    ("/api/v1/field-service/alert-rules/{rule_id}", "DELETE", Role.DISPATCHER, {204, 404}),
    ("/api/v1/field-service/webhook-endpoints/{endpoint_id}", "PUT", Role.ADMIN, {200}),
    ("/api/v1/field-service/webhook-endpoints", "GET", Role.DISPATCHER, {200}),
    ("/api/v1/field-service/webhook-endpoints/{endpoint_id}", "GET", Role.DISPATCHER, {200, 404}),
    ("/api/v1/field-service/webhook-endpoints/{endpoint_id}/secrets", "POST", Role.ADMIN, {200, 404}),
    ("/api/v1/field-service/webhook-endpoints/{endpoint_id}/secrets/previous", "DELETE", Role.ADMIN, {204, 404}),
    ("/api/v1/field-service/webhook-endpoints/{endpoint_id}", "DELETE", Role.ADMIN, {204, 404}),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Service]:
    # Rate limits off: 1,500 requests from one token are the point here (they have their own test).
    stack.env.update({"LOCSTREAM_PRODUCERS_TOKEN_RATE": "0", "LOCSTREAM_PRODUCERS_TENANT_RATE": "0"})
    yield await stack.start("producers")


def _exercise(operation: Any, url: str, token: str) -> dict[int, int]:
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    check()
    return statuses


async def test_every_documented_operation_is_exercised(api: Service) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        document = (await client.get("/openapi.json")).json()
    documented = {(p, m.upper()) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(path, method) for path, method, _, _ in OPERATIONS}


# One test per operation, so that parallel test processes share them out (4,500 requests in one took 3 minutes).
@pytest.mark.parametrize(("path", "method", "role", "taken"), OPERATIONS, ids=[f"{m} {p}" for p, m, _, _ in OPERATIONS])
async def test_generated_requests_get_no_server_error_and_answers_match_the_document(
    api: Service, stack: Stack, path: str, method: str, role: Role, taken: set[int]
) -> None:
    token = stack.token("tenant-a", role)

    def run() -> dict[int, int]:  # blocking: schemathesis drives hypothesis synchronously
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        return _exercise(schema[path][method], api.url, token)

    statuses = await asyncio.to_thread(run)
    assert sum(statuses.values()) >= EXAMPLES, statuses
    assert all(status < 500 for status in statuses), statuses
    assert taken & set(statuses), statuses  # valid requests were generated and taken
