"""Hundreds of malformed requests, hand-written classes and generated ones: every one gets a 4xx with a reason,
none a 5xx, and the topic's end offsets do not move."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from schemas.claims import Role
from tests.support.kafka_io import end_offsets
from tests.support.stack import Service, Stack

pytestmark = pytest.mark.integration

SINGLE = "/api/v1/field-service/technicians/tech-1/location"
BATCH = "/api/v1/field-service/locations/batch"
PROFILE = "/api/v1/field-service/technicians/tech-1"
NUMBERS = {  # field: (just below its range, just above it)
    "latitude": (-90.000001, 90.000001),
    "longitude": (-180.000001, 180.000001),
    "accuracy_meters": (-0.1, 100_000.1),
    "altitude": (-1_000.1, 20_000.1),
    "speed_kmh": (-0.1, 1_500.1),
    "heading": (-0.1, 360),
}
WRONG_TYPES: list[Any] = ["12.5", True, [], {}, "NaN"]


@dataclass
class Request:
    what: str
    path: str
    body: bytes
    content_type: str | None = "application/json"
    token: str = "writer"  # a key of the tokens fixture, or a literal token
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


def _fix(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    item: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "technician_id": "tech-1",
        "recorded_at": now.isoformat(),
        "latitude": 6.5,
        "longitude": 3.4,
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not _DROP}


_DROP = object()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def corpus() -> list[Request]:
    cases: list[Request] = []
    single = {"latitude": 6.5, "longitude": 3.4}
    now = datetime.now(UTC)
    for name, (low, high) in NUMBERS.items():
        for bad in (low, high):
            cases.append(Request(f"single {name}={bad}", SINGLE, _json({**single, name: bad})))
            cases.append(Request(f"batch {name}={bad}", BATCH, _json({"fixes": [_fix(**{name: bad})]})))
        for literal in ("NaN", "Infinity", "-Infinity", "1e999"):  # JSON has no NaN; 1e999 decodes as infinity
            others = json.dumps({k: v for k, v in single.items() if k != name})
            cases.append(Request(f"single {name}={literal}", SINGLE, f'{others[:-1]}, "{name}": {literal}}}'.encode()))
        for wrong in WRONG_TYPES:
            cases.append(Request(f"single {name}={wrong!r}", SINGLE, _json({**single, name: wrong})))
            cases.append(Request(f"batch {name}={wrong!r}", BATCH, _json({"fixes": [_fix(**{name: wrong})]})))
    for name in ("activity", "job_id"):
        for wrong in (1, True, [], {}, "x" * 257):
            cases.append(Request(f"single {name}={str(wrong)[:10]}", SINGLE, _json({**single, name: wrong})))
    for required in ("latitude", "longitude"):
        cases.append(
            Request(f"single without {required}", SINGLE, _json({k: v for k, v in single.items() if k != required}))
        )
    for required in ("event_id", "technician_id", "recorded_at", "latitude", "longitude"):
        cases.append(Request(f"batch without {required}", BATCH, _json({"fixes": [_fix(**{required: _DROP})]})))
    times = {
        "naive": "2026-11-26T08:00:00",
        "garbage": "yesterday",
        "number": 1764144000,
        "empty": "",
        "future": (now + timedelta(minutes=3)).isoformat(),
        "far future": "2999-01-01T00:00:00Z",
        "past retention": (now - timedelta(days=31)).isoformat(),
        "epoch": "1970-01-01T00:00:00Z",
    }
    for what, value in times.items():
        cases.append(Request(f"single recorded_at {what}", SINGLE, _json({**single, "recorded_at": value})))
        cases.append(Request(f"batch recorded_at {what}", BATCH, _json({"fixes": [_fix(recorded_at=value)]})))
        cases.append(
            Request(f"profile recorded_at {what}", PROFILE, _json({"status": "x", "recorded_at": value}), method="PUT")
        )
    for wrong in ("not-a-uuid", 12, "", None, "0b7e7f8e-3c55-4d1c-9a53"):
        if wrong is not None:  # the single endpoint's event_id is optional: null means "none"
            cases.append(Request(f"single event_id {wrong!r}", SINGLE, _json({**single, "event_id": wrong})))
        cases.append(Request(f"batch event_id {wrong!r}", BATCH, _json({"fixes": [_fix(event_id=wrong)]})))
    for wrong in ("", "has space", "x" * 129, "semi;colon", 7, None):
        cases.append(Request(f"batch technician_id {wrong!r}", BATCH, _json({"fixes": [_fix(technician_id=wrong)]})))
    big = {"notes": "x" * 5_000}
    cases.append(Request("single metadata > 4 KiB", SINGLE, _json({**single, "metadata": big})))
    cases.append(Request("batch metadata > 4 KiB", BATCH, _json({"fixes": [_fix(metadata=big)]})))
    cases.append(Request("single metadata not an object", SINGLE, _json({**single, "metadata": [1, 2]})))
    cases.append(Request("single backfill not a boolean", SINGLE, _json({**single, "backfill": "yes"})))
    cases.append(Request("single unknown field", SINGLE, _json({**single, "colour": "red"})))
    cases.append(Request("batch unknown field", BATCH, _json({"fixes": [_fix(colour="red")]})))
    cases.append(Request("batch unknown top-level field", BATCH, _json({"fixes": [_fix()], "tenant_id": "other"})))
    cases.append(Request("batch tenant in an item", BATCH, _json({"fixes": [_fix(tenant_id="other")]})))
    valid_single, valid_batch = _json(single), _json({"fixes": [_fix()]})
    for cut in range(1, len(valid_single) - 1, 3):  # bad JSON: every third truncation of a valid body
        cases.append(Request(f"single truncated at {cut}", SINGLE, valid_single[:cut]))
    for cut in range(1, len(valid_batch) - 1, 9):
        cases.append(Request(f"batch truncated at {cut}", BATCH, valid_batch[:cut]))
    for raw in (b"", b"null", b"[]", b"42", b'"fix"', b"{}", b"\xff\xfe", b'{"latitude": 1, "latitude": }'):
        cases.append(Request(f"single body {raw[:12]!r}", SINGLE, raw))
        cases.append(Request(f"batch body {raw[:12]!r}", BATCH, raw))
    cases.append(Request("batch fixes not a list", BATCH, _json({"fixes": _fix()})))
    cases.append(Request("batch with no fix", BATCH, _json({"fixes": []})))
    cases.append(Request("batch of 1,001 fixes", BATCH, _json({"fixes": [_fix() for _ in range(1_001)]})))
    cases.append(Request("body over 1 MiB", SINGLE, _json({**single, "metadata": {"x": "y" * 1_100_000}})))
    cases.append(Request("batch over 1 MiB", BATCH, _json({"fixes": [_fix(activity="a" * 200)] * 4_000})))
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        None,
        "application/jsonp",
    ):
        cases.append(Request(f"content type {content_type}", SINGLE, valid_single, content_type=content_type))
        cases.append(Request(f"batch content type {content_type}", BATCH, valid_batch, content_type=content_type))
    for body in (b"{}", _json({"name": ""}), _json({"status": "s" * 65}), _json({"name": 5}), _json({"x": 1})):
        cases.append(Request(f"profile body {body[:20]!r}", PROFILE, body, method="PUT"))
    for token in (
        "missing",
        "empty",
        "garbage",
        "expired",
        "forged",
        "alg-none",
        "no-tenant",
        "dispatcher",
        "analyst",
        "other-technician",
    ):
        cases.append(Request(f"single token {token}", SINGLE, valid_single, token=token))
        cases.append(Request(f"batch token {token}", BATCH, valid_batch, token=token))
    cases.append(
        Request(
            "batch for another technician with a technician token",
            BATCH,
            _json({"fixes": [_fix(technician_id="tech-2")]}),
            token="technician",
        )
    )
    rng = random.Random(5)
    fields = [*NUMBERS, "activity", "job_id", "recorded_at", "event_id", "backfill", "metadata"]
    junk: list[Any] = [None, -1, 10**20, 1e308, "", "🛰", [None], {"a": []}, False, "2026-13-40T99:99:99Z"]
    for i in range(60):  # generated: a valid batch item with one to three fields made junk (never all valid)
        item = _fix()
        made_junk = rng.sample(fields, rng.randint(1, 3))
        for name in made_junk:
            item[name] = rng.choice(junk)
        if all(_plausible(name, item[name]) for name in made_junk):
            item["latitude"] = "junk"
        cases.append(Request(f"generated batch item {i}", BATCH, _json({"fixes": [item]})))
    return cases


def _plausible(name: str, value: Any) -> bool:
    """Could ``value`` be valid for ``name``? (Generated cases must be invalid for sure.)"""
    if value is None:
        return name not in ("latitude", "longitude", "recorded_at", "event_id", "backfill")
    if name == "backfill":
        return isinstance(value, bool)
    if name in ("activity", "job_id"):
        return isinstance(value, str) and len(value) <= 256
    if name == "metadata":
        return isinstance(value, dict)
    if name in NUMBERS:
        low, high = NUMBERS[name]
        return isinstance(value, (int, float)) and not isinstance(value, bool) and low < value < high
    return False  # recorded_at and event_id: no junk value is a valid time or UUID


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Service]:
    yield await stack.start("producers")


def _tokens(stack: Stack) -> dict[str, str | None]:
    writer = stack.token("tenant-a", Role.DEVICE_GATEWAY)
    claims = jwt.decode(writer, options={"verify_signature": False})
    return {
        "writer": writer,
        "technician": stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"),
        "missing": None,
        "empty": "",
        "garbage": "not.a.jwt",
        "expired": stack.token("tenant-a", Role.DEVICE_GATEWAY, ttl=-60),
        "forged": jwt.encode(claims, "another-secret-that-is-long-enough-for-hs256!!", algorithm="HS256"),
        "alg-none": jwt.encode(claims, "", algorithm="none"),
        "no-tenant": stack.sign({k: v for k, v in claims.items() if k != "tenant_id"}),
        "dispatcher": stack.token("tenant-a", Role.DISPATCHER),
        "analyst": stack.token("tenant-a", Role.ANALYST),
        "other-technician": stack.token("tenant-b", Role.TECHNICIAN, sub="tech-9"),
    }


@pytest.mark.parametrize("stack", ["hs256", "jwks"], indirect=True)
async def test_every_malformed_request_gets_a_4xx_with_a_reason_and_nothing_reaches_kafka(
    api: Service, stack: Stack
) -> None:
    cases = corpus()
    assert len(cases) >= 300
    tokens = _tokens(stack)
    before = await end_offsets(stack.kafka)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        for case in cases:
            headers = dict(case.headers)
            if case.content_type is not None:
                headers["Content-Type"] = case.content_type
            token = tokens[case.token]
            if token is not None:
                headers["Authorization"] = f"Bearer {token}".strip()
            response = await client.request(case.method, case.path, content=case.body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            reason = (
                response.json().get("message") if response.headers.get("content-type") == "application/json" else None
            )
            if not 400 <= response.status_code < 500 or not reason:
                failures.append(f"{case.what}: {response.status_code} {response.text[:200]}")
    assert failures == [], failures
    assert await end_offsets(stack.kafka) == before
    assert {413, 415, 401, 403, 422} <= set(statuses)
    # The same client and token with a valid batch does reach Kafka: the checks above could have failed.
    async with httpx.AsyncClient(base_url=api.url) as client:
        ok = await client.post(BATCH, json={"fixes": [_fix()]}, headers={"Authorization": f"Bearer {tokens['writer']}"})
    assert ok.status_code == 202, ok.text
    assert sum((await end_offsets(stack.kafka)).values()) == sum(before.values()) + 1
