"""Bad input is refused with a clear 4xx and nothing reaches Kafka (end offsets checked on the real topic)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from schemas.claims import Role
from tests.support.kafka_io import end_offsets
from tests.support.stack import Service, Stack

pytestmark = pytest.mark.integration

PATH = "/api/v1/field-service/technicians/tech-1/location"
BATCH = "/api/v1/field-service/locations/batch"
GOOD = {"latitude": 6.5, "longitude": 3.4}


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Service]:
    yield await stack.start("producers")


# (raw JSON body, field the 422 message must name)
BAD_BODIES = [
    ('{"latitude": 91, "longitude": 3.4}', "latitude"),
    ('{"latitude": -90.0001, "longitude": 3.4}', "latitude"),
    ('{"latitude": 6.5, "longitude": -181}', "longitude"),
    ('{"latitude": NaN, "longitude": 3.4}', "latitude"),
    ('{"latitude": 6.5, "longitude": Infinity}', "longitude"),
    ('{"latitude": 6.5, "longitude": 3.4, "speed_kmh": -Infinity}', "speed_kmh"),
    ('{"latitude": 6.5, "longitude": 3.4, "accuracy_meters": NaN}', "accuracy_meters"),
    ('{"latitude": "6.5", "longitude": 3.4}', "latitude"),
    ('{"latitude": true, "longitude": 3.4}', "latitude"),
    ('{"latitude": 6.5, "longitude": 3.4, "heading": 360}', "heading"),
    ('{"longitude": 3.4}', "latitude"),
    ('{"latitude": 6.5, "longitude": 3.4, "altitude": "high"}', "altitude"),
    ('{"latitude": 6.5, "longitude": 3.4, "recorded_at": "yesterday"}', "recorded_at"),
    ('{"latitude": 6.5, "longitude": 3.4, "recorded_at": "2026-11-26T08:00:00"}', "recorded_at"),
    ('{"latitude": 6.5, "longitude": 3.4, "colour": "red"}', "colour"),
    (
        '{"latitude": 6.5, "longitude": 3.4, "recorded_at": "2026-11-26T08:00:00Z",'
        ' "timestamp": "2026-11-26T09:00:00Z"}',
        "recorded_at and timestamp",
    ),
    ('{"latitude": 6.5, "longitude": ', "body"),
    ("[]", "body"),
]


async def test_invalid_bodies_get_422_naming_the_field_and_nothing_reaches_kafka(api: Service, stack: Stack) -> None:
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
    before = await end_offsets(stack.kafka)
    async with httpx.AsyncClient(base_url=api.url) as client:
        for raw, field in BAD_BODIES:
            response = await client.post(
                PATH, content=raw, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            )
            assert response.status_code == 422, (raw, response.text)
            assert field in response.json()["message"], (raw, response.json())
    assert await end_offsets(stack.kafka) == before
    # The same client and token with a valid body does reach Kafka: the check above could have failed.
    async with httpx.AsyncClient(base_url=api.url) as client:
        ok = await client.post(PATH, json=GOOD, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 202, ok.text
    assert sum((await end_offsets(stack.kafka)).values()) == sum(before.values()) + 1


def _forged(stack: Stack) -> str:
    claims = jwt.decode(stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"), options={"verify_signature": False})
    return jwt.encode(claims, "another-secret-that-is-long-enough-for-hs256!!", algorithm="HS256")


def _alg_none(stack: Stack) -> str:
    claims = jwt.decode(stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"), options={"verify_signature": False})
    return jwt.encode(claims, "", algorithm="none")


def _without(stack: Stack, claim: str) -> str:
    claims = jwt.decode(stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"), options={"verify_signature": False})
    del claims[claim]
    return jwt.encode(claims, stack.env["LOCSTREAM_JWT_SECRET"], algorithm="HS256")


async def test_bad_tokens_get_401_and_wrong_roles_403_and_nothing_reaches_kafka(api: Service, stack: Stack) -> None:
    cases: list[tuple[dict[str, str], int]] = [
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": f"Bearer {stack.token('tenant-a', Role.TECHNICIAN, sub='tech-1', ttl=-60)}"}, 401),
        ({"Authorization": f"Bearer {_forged(stack)}"}, 401),
        ({"Authorization": f"Bearer {_alg_none(stack)}"}, 401),
        ({"Authorization": f"Bearer {_without(stack, 'tenant_id')}"}, 401),
        ({"Authorization": f"Bearer {_without(stack, 'exp')}"}, 401),
        ({"Authorization": f"Bearer {_without(stack, 'role')}"}, 401),
        # A technician may post only for its own sub; viewers may not post at all.
        ({"Authorization": f"Bearer {stack.token('tenant-a', Role.TECHNICIAN, sub='tech-2')}"}, 403),
        ({"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}, 403),
        ({"Authorization": f"Bearer {stack.token('tenant-a', Role.ANALYST)}"}, 403),
    ]
    before = await end_offsets(stack.kafka)
    async with httpx.AsyncClient(base_url=api.url) as client:
        for headers, expected in cases:
            response = await client.post(PATH, json=GOOD, headers=headers)
            assert response.status_code == expected, (headers, response.text)
            body: dict[str, Any] = response.json()
            assert body["detail"], body
    assert await end_offsets(stack.kafka) == before


async def test_batch_roles_come_from_the_token_and_limits_answer_429_with_retry_after(stack: Stack) -> None:
    stack.env.update({"LOCSTREAM_PRODUCERS_TOKEN_RATE": "0.5", "LOCSTREAM_PRODUCERS_TOKEN_BURST": "3"})
    api = await stack.start("producers")
    now = datetime.now(UTC).isoformat()

    def fix(technician: str) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "technician_id": technician,
            "recorded_at": now,
            "latitude": 1.0,
            "longitude": 2.0,
        }

    async with httpx.AsyncClient(base_url=api.url) as client:

        async def post(token: str, fixes: list[dict[str, Any]]) -> httpx.Response:
            return await client.post(BATCH, json={"fixes": fixes}, headers={"Authorization": f"Bearer {token}"})

        technician = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
        mixed = await post(technician, [fix("tech-1"), fix("tech-2")])
        assert mixed.status_code == 202, mixed.text
        results = mixed.json()["results"]
        assert [r["status"] for r in results] == ["accepted", "rejected"]
        assert "technician_id" in results[1]["reason"]
        for role in (Role.DISPATCHER, Role.ANALYST):
            refused = await post(stack.token("tenant-a", role), [fix("tech-1")])
            assert refused.status_code == 403 and refused.json()["message"], refused.text
        gateway = stack.token("tenant-a", Role.DEVICE_GATEWAY)
        assert (await post(gateway, [fix("tech-3"), fix("tech-4"), fix("tech-5")])).status_code == 202  # the burst
        limited = await post(gateway, [fix("tech-6")])
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1, limited.text
        # Back before its Retry-After: refused before its body is read (a body that would be a 422 gets the 429).
        early = await client.post(BATCH, content=b"{not json", headers={"Authorization": f"Bearer {gateway}"})
        assert early.status_code == 429 and "early" in early.json()["message"], early.text
        assert int(early.headers["Retry-After"]) >= 1
        other = await post(stack.token("tenant-a", Role.DEVICE_GATEWAY, sub="gateway-2"), [fix("tech-6")])
        assert other.status_code == 202  # another token of the tenant has its own bucket
