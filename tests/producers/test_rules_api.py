"""A tenant's rules through the ingest API: who may read and set them, what bodies are refused (a 4xx with the reason,
nothing on the rules topic), another tenant's untouched, and fixes judged by them from then on; a client cannot
write a fix's verdict itself."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import msgspec
import pytest

from schemas.claims import Role
from schemas.events import DEFAULT_MAX_ACCURACY_METERS, DEFAULT_MAX_SPEED_KMH
from schemas.tenant_rules import PresenceRules, StayRules
from tests.support.kafka_io import compacted_records
from tests.support.stack import Stack, eventually

pytestmark = pytest.mark.integration

RULES = "/api/v1/field-service/rules"
DEFAULTS = {"max_accuracy_meters": DEFAULT_MAX_ACCURACY_METERS, "max_speed_kmh": DEFAULT_MAX_SPEED_KMH}


async def test_only_an_admin_sets_the_rules_bad_bodies_change_nothing_and_tenants_are_apart(stack: Stack) -> None:
    api = await stack.start("producers")

    def as_(role: Role, tenant: str = "tenant-a", **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {stack.token(tenant, role, **claims)}"}

    expired = stack.sign({"sub": "x", "tenant_id": "tenant-a", "roles": ["admin"], "exp": int(time.time()) - 600})
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        answer = await http.get(RULES, headers=as_(Role.DISPATCHER))
        assert answer.status_code == 200 and answer.json()["quality"] == DEFAULTS
        assert answer.json()["tenant_id"] == "tenant-a"
        good = {
            "quality": {"max_accuracy_meters": 50, "max_speed_kmh": 120},
            "stays": {"stop_radius_meters": 150, "stop_min_seconds": 600, "gap_seconds": 1200, "min_trip_meters": 800},
            "presence": {"offline_seconds": 900},
        }
        for headers, code in (
            ({}, 401),
            ({"Authorization": f"Bearer {expired}"}, 401),
            ({"Authorization": "Bearer not-a-token"}, 401),
            (as_(Role.DISPATCHER), 403),
            (as_(Role.TECHNICIAN), 403),
            (as_(Role.DEVICE_GATEWAY), 403),
            (as_(Role.ANALYST), 403),
        ):
            answer = await http.put(RULES, json=good, headers=headers)
            assert answer.status_code == code, (headers, answer.text)
        assert (await http.get(RULES, headers=as_(Role.TECHNICIAN))).status_code == 403
        before = await compacted_records(stack.kafka, stack.kafka.rules_topic)
        nested = "[" * 10_000 + "]" * 10_000
        bad: list[tuple[str, str, int, str]] = [
            ("speed 0", json.dumps({"quality": {"max_speed_kmh": 0}}), 422, "max_speed_kmh"),
            ("speed 2,000", json.dumps({"quality": {"max_speed_kmh": 2000}}), 422, "max_speed_kmh"),
            ("accuracy 0.5", json.dumps({"quality": {"max_accuracy_meters": 0.5}}), 422, "max_accuracy_meters"),
            ("a string", json.dumps({"quality": {"max_speed_kmh": "120"}}), 422, "max_speed_kmh"),
            ("a boolean", json.dumps({"quality": {"max_speed_kmh": True}}), 422, "max_speed_kmh"),
            ("NaN", '{"quality": {"max_speed_kmh": NaN}}', 422, "max_speed_kmh"),
            ("unknown rule", json.dumps({"quality": {"min_speed_kmh": 3}}), 422, "min_speed_kmh"),
            ("unknown section", json.dumps({"stops": {}}), 422, "stops"),
            ("a stop radius of 5 m", json.dumps({"stays": {"stop_radius_meters": 5}}), 422, "stop_radius_meters"),
            ("a stop of a second", json.dumps({"stays": {"stop_min_seconds": 1}}), 422, "stop_min_seconds"),
            ("a gap as text", json.dumps({"stays": {"gap_seconds": "900"}}), 422, "gap_seconds"),
            ("offline after 1 s", json.dumps({"presence": {"offline_seconds": 1}}), 422, "offline_seconds"),
            ("another tenant named", json.dumps({**good, "tenant_id": "tenant-b"}), 422, "tenant_id"),
            ("nested deep", json.dumps({"quality": {}})[:-1] + f', "x": {nested}}}', 422, "body"),
            ("not an object", "[]", 422, ""),
        ]
        for name, body, code, reason in bad:
            answer = await http.put(
                RULES, content=body, headers={**as_(Role.ADMIN), "Content-Type": "application/json"}
            )
            assert answer.status_code == code and reason in answer.text, (name, answer.status_code, answer.text)
        assert (
            await compacted_records(stack.kafka, stack.kafka.rules_topic) == before
        )  # nothing of a refused request reached the topic

        answer = await http.put(RULES, json=good, headers=as_(Role.ADMIN))
        assert answer.status_code == 200 and answer.json()["quality"] == good["quality"]
        assert answer.json()["stays"] == good["stays"] and answer.json()["presence"] == good["presence"]
        assert (await http.get(RULES, headers=as_(Role.ANALYST))).json()["quality"] == good["quality"]
        other = await http.get(RULES, headers=as_(Role.DISPATCHER, "tenant-b"))
        assert other.json() | {"at": None} == {
            "tenant_id": "tenant-b",
            "at": None,
            "quality": DEFAULTS,
            "stays": msgspec.to_builtins(StayRules()),
            "presence": msgspec.to_builtins(PresenceRules()),
        }
        reset = await http.put(RULES, json={}, headers=as_(Role.ADMIN))  # every rule left out: the defaults
        assert reset.status_code == 200 and reset.json()["quality"] == DEFAULTS


async def test_fixes_are_judged_by_the_tenants_rules_and_a_client_cannot_write_a_verdict(stack: Stack) -> None:
    projector = await stack.start("projector")
    api = await stack.start("producers")
    admin = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}"}
    phone = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DEVICE_GATEWAY)}"}
    viewer = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}
    async with httpx.AsyncClient(timeout=10) as http:
        rules = {"quality": {"max_accuracy_meters": 50}}
        assert (await http.put(f"{api.url}{RULES}", json=rules, headers=admin)).status_code == 200
        path = f"{api.url}/api/v1/field-service/technicians/tech-1/location"
        ids = {}
        for name, fix in (
            ("within", {"latitude": 6.5, "longitude": 3.4, "accuracy_meters": 40}),
            ("coarse", {"latitude": 6.5001, "longitude": 3.4, "accuracy_meters": 60}),
            ("mock", {"latitude": 6.5002, "longitude": 3.4, "mock": True}),
        ):
            answer = await http.post(path, json=fix, headers=phone)
            assert answer.status_code == 202, answer.text
            ids[name] = answer.json()["event_id"]
        forged_fields: list[dict[str, Any]] = [{"quality": []}, {"quality": {"flags": []}}, {"quality_flags": []}]
        for forged in forged_fields:
            answer = await http.post(path, json={"latitude": 6.5, "longitude": 3.4, **forged}, headers=phone)
            assert answer.status_code == 422 and "quality" in answer.text, answer.text
        batch = {
            "fixes": [
                {
                    "event_id": "0b7e7f8e-3c55-4d1c-9a53-2d3c1f7a9b01",
                    "technician_id": "tech-1",
                    "recorded_at": "2026-11-26T08:30:00Z",
                    "latitude": 6.5,
                    "longitude": 3.4,
                    "quality": {"flags": []},
                }
            ]
        }
        answer = await http.post(f"{api.url}/api/v1/field-service/locations/batch", json=batch, headers=phone)
        assert answer.status_code == 422 and "quality" in answer.text, answer.text

        history = f"{projector.url}/api/v1/field-service/technicians/tech-1/location-history"

        async def flagged() -> dict[str, list[str]] | None:
            answer = await http.get(history, params={"quality": "flagged"}, headers=viewer)
            found = answer.json()["locations"] if answer.status_code == 200 else []
            return {p["event_id"]: p["quality"] for p in found} if len(found) == 2 else None

        assert await eventually(flagged, timeout=20, what="two flagged fixes") == {
            ids["coarse"]: ["accuracy"],
            ids["mock"]: ["mock"],
        }
        good = (await http.get(history, headers=viewer)).json()["locations"]
        assert [p["event_id"] for p in good] == [ids["within"]]
