"""A malformed-request corpus for the tracking apps' endpoints, against the ingest API as a process: every request
gets a 4xx with a reason (or, for an Overland batch, its bad fix named in ``rejected``), never a 5xx, and not one
fix reaches the topic."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from schemas.claims import Role
from tests.support.kafka_io import end_offsets
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

OSMAND, OWNTRACKS, OVERLAND = "/api/v1/ingest/osmand", "/api/v1/ingest/owntracks", "/api/v1/ingest/overland"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


BAD_NUMBERS = {
    # 6_5 was stored as 65.0 (Python's float reads underscores), and other scripts' digits read as ASCII ones
    "lat": ["91", "-90.5", "abc", "nan", "inf", "-inf", "1e999", "0x10", "1,5", "6_5", "\u0666", "+-6"],
    "lon": ["181", "-180.01", "x", "NaN", "3_4"],
    "speed": ["fast", "nan", "1_0"],
    "bearing": ["north", "inf"],
    "accuracy": ["-1", "precise", "200000"],
    "altitude": ["99999", "-5000", "high"],
    "batt": ["full", "5_0", "nan"],
    "timestamp": [
        "yesterday",
        "2099-01-01 00:00:00",
        "946684800",
        "99999999999999999999",
        "2026-13-45T00:00:00Z",
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",  # 1700000000 in Arabic-Indic digits
    ],
}


def corpus(key: str) -> list[Case]:
    now = int(time.time())
    good = {"id": key, "lat": "6.5", "lon": "3.4", "timestamp": str(now)}
    cases = [
        Case("osmand no key", "GET", f"{OSMAND}?lat=1&lon=2"),
        Case("osmand unknown key", "GET", f"{OSMAND}?id=not-a-device&lat=1&lon=2"),
        Case("osmand empty key", "POST", f"{OSMAND}?id=&lat=1&lon=2"),
        Case("osmand location with 3 parts", "GET", f"{OSMAND}?id={key}&location=1,2,3"),
        Case("osmand location not numbers", "GET", f"{OSMAND}?id={key}&location=a,b"),
        Case("osmand huge form", "POST", OSMAND, b"id=" + b"x" * 2_000_000, FORM),
        Case("osmand json broken", "POST", OSMAND, b'{"device_id": "', JSON),
        Case("osmand json not an object", "POST", OSMAND, b"[1, 2]", JSON),
        Case("osmand json nested", "POST", OSMAND, b"[" * 60 + b"]" * 60, JSON),
        Case("osmand json no device", "POST", OSMAND, json.dumps({"location": {}}).encode(), JSON),
        Case("osmand json device a number", "POST", OSMAND, json.dumps({"device_id": 7}).encode(), JSON),
        Case(
            "osmand json NaN",
            "POST",
            OSMAND,
            b'{"device_id": "%s", "location": {"coords": {"latitude": NaN, "longitude": 1}}}' % key.encode(),
            JSON,
        ),
        Case("osmand form not utf-8", "POST", OSMAND, b"id=\xff\xfe&lat=1&lon=2", FORM),
    ]
    for name, values in BAD_NUMBERS.items():
        for value in values:
            query = {**good, name: value}
            text = "&".join(f"{k}={v}" for k, v in query.items())
            cases.append(Case(f"osmand query {name}={value}", "POST", f"{OSMAND}?{text}"))
            cases.append(Case(f"osmand form {name}={value}", "POST", OSMAND, text.encode(), FORM))
    bad: object
    for name, bad in [
        ("latitude", 91),
        ("latitude", "6.5"),
        ("longitude", -181),
        ("longitude", True),
        ("accuracy", -3),
        ("altitude", 1e6),
        ("speed", 1e6),
    ]:
        coords = {"latitude": 6.5, "longitude": 3.4, name: bad}
        document = {"device_id": key, "location": {"timestamp": "2026-11-30T08:00:00Z", "coords": coords}}
        cases.append(Case(f"osmand json {name}={bad}", "POST", OSMAND, json.dumps(document).encode(), JSON))
    for stamp in ["soon", "2099-01-01T00:00:00Z", "2001-01-01T00:00:00Z", "20261130"]:
        document = {"device_id": key, "location": {"timestamp": stamp, "coords": {"latitude": 1, "longitude": 2}}}
        cases.append(Case(f"osmand json timestamp {stamp}", "POST", OSMAND, json.dumps(document).encode(), JSON))

    basic = {"Authorization": "Basic " + base64.b64encode(f"ada:{key}".encode()).decode(), **JSON}
    location = {"_type": "location", "lat": 52.5, "lon": 13.4, "tst": now}
    cases += [
        Case("owntracks no auth", "POST", OWNTRACKS, json.dumps(location).encode(), JSON),
        Case(
            "owntracks wrong password",
            "POST",
            OWNTRACKS,
            json.dumps(location).encode(),
            {"Authorization": "Basic " + base64.b64encode(b"ada:wrong").decode(), **JSON},
        ),
        Case(
            "owntracks broken base64",
            "POST",
            OWNTRACKS,
            json.dumps(location).encode(),
            {"Authorization": "Basic !!!", **JSON},
        ),
        Case(
            "owntracks bearer instead of basic",
            "POST",
            OWNTRACKS,
            json.dumps(location).encode(),
            {"Authorization": f"Bearer {key}", **JSON},
        ),
        Case("owntracks form body", "POST", OWNTRACKS, b"lat=1&lon=2", {**basic, **FORM}),
        Case("owntracks broken json", "POST", OWNTRACKS, b'{"_type": "location", "lat": ', basic),
        Case("owntracks not an object", "POST", OWNTRACKS, b'"location"', basic),
        Case("owntracks nested", "POST", OWNTRACKS, b"[" * 60 + b"]" * 60, basic),
        Case("owntracks huge", "POST", OWNTRACKS, b" " * 2_000_000, basic),
    ]
    for name, bad in [
        ("lat", 100),
        ("lat", "52.5"),
        ("lat", None),
        ("lon", 200),
        ("lon", False),
        ("acc", -1),
        ("alt", 50_000),
        ("vel", -4),
        ("vel", 9_999),
        ("cog", 400),
        ("tst", "noon"),
        ("tst", 4_102_444_800),
        ("tst", 946_684_800),
        ("batt", "full"),
    ]:
        message = {**location, name: bad}
        cases.append(Case(f"owntracks {name}={bad}", "POST", OWNTRACKS, json.dumps(message).encode(), basic))

    bearer = {"Authorization": f"Bearer {key}", **JSON}

    def feature(coordinates: Any, **properties: Any) -> dict[str, Any]:
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": coordinates},
            "properties": {"timestamp": "2026-11-30T08:00:00Z", **properties},
        }

    batches = {
        "overland not an object": b"[]",
        "overland no locations": b'{"current": {}}',
        "overland locations not a list": b'{"locations": {}}',
        "overland feature not an object": b'{"locations": [7]}',
        "overland one coordinate": json.dumps({"locations": [feature([1.0])]}).encode(),
        "overland broken json": b'{"locations": [',
        "overland nested": b'{"locations": ' + b"[" * 60 + b"]" * 60 + b"}",
        "overland bad timestamp": json.dumps({"locations": [feature([1.0, 2.0], timestamp="later")]}).encode(),
        "overland timestamp true": json.dumps({"locations": [feature([1.0, 2.0], timestamp=True)]}).encode(),
        "overland properties a list": json.dumps(
            {
                "locations": [
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": [1]}
                ]
            }
        ).encode(),
        "overland a string for a feature": b'{"locations": ["Feature"]}',
    }
    cases += [Case(name, "POST", OVERLAND, body, bearer) for name, body in batches.items()]
    cases += [
        Case("overland no token", "POST", OVERLAND, json.dumps({"locations": []}).encode(), JSON),
        Case(
            "overland unknown token",
            "POST",
            OVERLAND,
            json.dumps({"locations": []}).encode(),
            {"Authorization": "Bearer nope", **JSON},
        ),
        Case("overland form", "POST", OVERLAND, b"locations=1", {"Authorization": f"Bearer {key}", **FORM}),
        Case("overland huge", "POST", OVERLAND, b" " * 2_000_000, bearer),
    ]
    overland_bad: list[tuple[str, list[Any], dict[str, Any]]] = [
        ("latitude 91", [1.0, 91.0], {}),
        ("longitude -200", [-200.0, 1.0], {}),
        ("lat a string", [1.0, "2"], {}),
        ("future", [1.0, 2.0], {"timestamp": "2099-01-01T00:00:00Z"}),
        ("too old", [1.0, 2.0], {"timestamp": "2001-01-01T00:00:00Z"}),
        ("speed 2000 m/s", [1.0, 2.0], {"speed": 2000}),
    ]
    for name, coordinates, properties in overland_bad:
        body = json.dumps({"locations": [feature(coordinates, **properties)]}).encode()
        cases.append(Case(f"overland fix {name}", "POST", OVERLAND, body, bearer))
    return cases


async def test_every_malformed_request_to_the_apps_endpoints_is_refused_with_a_reason_and_records_nothing(
    stack: Stack,
) -> None:
    api = await stack.start("producers")
    admin = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        registered = await http.post("/api/v1/field-service/devices", json={"technician_id": "t1"}, headers=admin)
        key = registered.json()["key"]
        cases = corpus(key)
        assert len(cases) >= 100
        before = await end_offsets(stack.kafka)
        wrong = []
        for case in cases:
            answer = await http.request(case.method, case.path, content=case.body, headers=case.headers)
            reason = _reason(answer)
            if not (400 <= answer.status_code < 500 or (answer.status_code == 200 and case.path == OVERLAND)) or not (
                reason
            ):
                wrong.append(f"{case.name}: {answer.status_code} {answer.text[:120]}")
            elif key in answer.text:
                wrong.append(f"{case.name}: the key is in the answer")
    assert wrong == []
    assert await end_offsets(stack.kafka) == before  # not one fix of the corpus
    assert "Traceback" not in api.log() and key not in api.log()


def _reason(answer: httpx.Response) -> str:
    """The refusal's message, or for a 200 Overland answer the reasons of its rejected fixes."""
    try:
        body = answer.json()
    except ValueError:
        return ""
    if answer.status_code == 200:
        return "; ".join(body.get("rejected", [])) if isinstance(body, dict) else ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""
