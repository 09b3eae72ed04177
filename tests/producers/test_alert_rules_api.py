"""A tenant's alert rules through the ingest API, on a real broker: who may define, read and remove them; bodies
refused with the field named and nothing on the topic; another tenant's rules and ids untouchable; the per-tenant
bound; a rule defined through one process read through another (the compacted topic is the table)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from schemas.alert_rules import AlertRuleDefined, decode_alert_rule_event
from schemas.claims import Role
from tests.support.kafka_io import compacted_records, compacted_values
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

RULES = "/api/v1/field-service/alert-rules"
SPEEDING = {
    "name": "Speeding",
    "condition": {"kind": "overspeed", "above_kmh": 90, "for_seconds": 30},
    "technicians": {"status": "on_job"},
    "channels": [{"type": "email", "to": "dispatch@example.com"}, {"type": "webhook", "endpoint_id": "ops"}],
    "quiet_seconds": 600,
}


async def test_dispatchers_and_admins_define_rules_others_read_or_nothing_and_tenants_are_apart(stack: Stack) -> None:
    api = await stack.start("producers", env={"LOCSTREAM_PRODUCERS_MAX_ALERT_RULES_PER_TENANT": "3"})

    def as_(role: Role, tenant: str = "tenant-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {stack.token(tenant, role)}"}

    expired = stack.sign({"sub": "x", "tenant_id": "tenant-a", "roles": ["admin"], "exp": int(time.time()) - 600})
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        for headers, code in (
            ({}, 401),
            ({"Authorization": f"Bearer {expired}"}, 401),
            ({"Authorization": "Bearer not-a-token"}, 401),
            (as_(Role.TECHNICIAN), 403),
            (as_(Role.DEVICE_GATEWAY), 403),
            (as_(Role.ANALYST), 403),
        ):
            answer = await http.put(f"{RULES}/speeding", json=SPEEDING, headers=headers)
            assert answer.status_code == code, (headers, answer.text)
        assert await compacted_records(stack.kafka, stack.kafka.alert_rules_topic) == 0

        answer = await http.put(f"{RULES}/speeding", json=SPEEDING, headers=as_(Role.DISPATCHER))
        assert answer.status_code == 200, answer.text
        made = answer.json()
        assert made["rule_id"] == "speeding" and made["tenant_id"] == "tenant-a"
        assert made["condition"] == {
            "kind": "overspeed",
            "above_kmh": 90.0,
            "for_seconds": 30.0,
            "where": "anywhere",
            "geofence_ids": [],
        }
        for role in (Role.DISPATCHER, Role.ANALYST, Role.ADMIN):
            assert (await http.get(f"{RULES}/speeding", headers=as_(role))).json() == made
        assert (await http.get(RULES, headers=as_(Role.TECHNICIAN))).status_code == 403

        # Another tenant: neither sees, reads, redefines nor removes tenant-a's rule by its id.
        assert (await http.get(RULES, headers=as_(Role.ADMIN, "tenant-b"))).json() == []
        assert (await http.get(f"{RULES}/speeding", headers=as_(Role.ADMIN, "tenant-b"))).status_code == 404
        assert (await http.delete(f"{RULES}/speeding", headers=as_(Role.ADMIN, "tenant-b"))).status_code == 404
        theirs = {**SPEEDING, "name": "Theirs"}
        assert (
            await http.put(f"{RULES}/speeding", json=theirs, headers=as_(Role.ADMIN, "tenant-b"))
        ).status_code == 200
        assert (await http.get(f"{RULES}/speeding", headers=as_(Role.ADMIN))).json()["name"] == "Speeding"

        # The per-tenant bound: a third and a redefinition pass, a fourth does not.
        for rule_id in ("offline", "battery"):
            body = {"name": rule_id, "condition": {"kind": "offline", "minutes": 30}}
            assert (await http.put(f"{RULES}/{rule_id}", json=body, headers=as_(Role.ADMIN))).status_code == 200
        answer = await http.put(f"{RULES}/fourth", json=SPEEDING, headers=as_(Role.ADMIN))
        assert answer.status_code == 422 and "at most 3 alert rules" in answer.text
        assert (await http.put(f"{RULES}/speeding", json=SPEEDING, headers=as_(Role.ADMIN))).status_code == 200
        assert [rule["rule_id"] for rule in (await http.get(RULES, headers=as_(Role.ANALYST))).json()] == [
            "battery",
            "offline",
            "speeding",
        ]

        # Removed by a dispatcher; a second removal is a 404; an analyst may not.
        assert (await http.delete(f"{RULES}/offline", headers=as_(Role.ANALYST))).status_code == 403
        assert (await http.delete(f"{RULES}/offline", headers=as_(Role.DISPATCHER))).status_code == 204
        assert (await http.delete(f"{RULES}/offline", headers=as_(Role.DISPATCHER))).status_code == 404
        assert (await http.get(f"{RULES}/offline", headers=as_(Role.ADMIN))).status_code == 404

    # Another ingest process reads the same rules from the topic.
    other = await stack.start("producers")
    async with httpx.AsyncClient(base_url=other.url, timeout=10) as http:
        listed = (await http.get(RULES, headers=as_(Role.ADMIN))).json()
        assert [(rule["rule_id"], rule["name"]) for rule in listed] == [
            ("battery", "battery"),
            ("speeding", "Speeding"),
        ]


async def test_bad_bodies_are_refused_naming_the_field_and_nothing_reaches_the_topic(stack: Stack) -> None:
    api = await stack.start("producers")
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ADMIN)}", "Content-Type": "application/json"}
    nested = "[" * 10_000 + "]" * 10_000
    hours = {"kind": "outside_working_hours", "time_zone": "Africa/Lagos"}
    bad: list[tuple[str, Any, str]] = [
        ("an unknown kind", {**SPEEDING, "condition": {"kind": "teleport"}}, "condition"),
        ("a speed of 1 km/h", {**SPEEDING, "condition": {"kind": "overspeed", "above_kmh": 1}}, "above_kmh"),
        ("a speed as text", {**SPEEDING, "condition": {"kind": "overspeed", "above_kmh": "90"}}, "above_kmh"),
        ("NaN", json.dumps(SPEEDING).replace("90", "NaN"), "above_kmh"),
        (
            "fences without where",
            {**SPEEDING, "condition": {"kind": "overspeed", "above_kmh": 90, "geofence_ids": ["depot"]}},
            "geofence_ids",
        ),
        ("no such time zone", {**SPEEDING, "condition": {**hours, "time_zone": "Mars/Olympus"}}, "time_zone"),
        ("a path as a zone", {**SPEEDING, "condition": {**hours, "time_zone": "../../etc/passwd"}}, "time_zone"),
        ("hours of no length", {**SPEEDING, "condition": {**hours, "start": "09:00", "end": "09:00"}}, "end"),
        ("25 o'clock", {**SPEEDING, "condition": {**hours, "start": "25:00"}}, "start"),
        ("a header in an address", {**SPEEDING, "channels": [{"type": "email", "to": "a@b.co\r\nBcc: x@y.z"}]}, "to"),
        ("a channel of no kind", {**SPEEDING, "channels": [{"type": "pager", "to": "1"}]}, "channels"),
        (
            "eleven channels",
            {**SPEEDING, "channels": [{"type": "webhook", "endpoint_id": f"e{i}"} for i in range(11)]},
            "channels",
        ),
        ("ids and a status", {**SPEEDING, "technicians": {"ids": ["t1"], "status": "on_job"}}, "technicians"),
        ("another tenant named", {**SPEEDING, "tenant_id": "tenant-b"}, "tenant_id"),
        ("an unknown field", {**SPEEDING, "severity": "high"}, "severity"),
        ("no name", {k: v for k, v in SPEEDING.items() if k != "name"}, "name"),
        ("a day long quiet period and more", {**SPEEDING, "quiet_seconds": 86_401}, "quiet_seconds"),
        ("nested deep", json.dumps(SPEEDING)[:-1] + f', "x": {nested}}}', "body"),
        ("not an object", "[]", ""),
    ]
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        for name, body, field in bad:
            content = body if isinstance(body, str) else json.dumps(body)
            answer = await http.put(f"{RULES}/r", content=content, headers=headers)
            assert answer.status_code == 422 and field in answer.text, (name, answer.status_code, answer.text)
        answer = await http.put(f"{RULES}/{'x' * 129}", json=SPEEDING, headers=headers)
        assert answer.status_code == 422, answer.text
        answer = await http.put(
            f"{RULES}/r", content=json.dumps(SPEEDING), headers={**headers, "Content-Type": "text/plain"}
        )
        assert answer.status_code == 415
    assert await compacted_records(stack.kafka, stack.kafka.alert_rules_topic) == 0


async def test_what_the_topic_holds_is_the_rule_as_answered(stack: Stack) -> None:
    api = await stack.start("producers")
    headers = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        hours = {"kind": "outside_working_hours", "time_zone": "Africa/Lagos", "start": "22:00", "end": "06:00"}
        answer = await http.put(
            f"{RULES}/after-hours", headers=headers, json={"name": "After hours", "condition": hours}
        )
        assert answer.status_code == 200, answer.text
    [value] = await compacted_values(stack.kafka, stack.kafka.alert_rules_topic)
    held = decode_alert_rule_event(value)
    assert isinstance(held, AlertRuleDefined)
    assert held.rule_id == "after-hours" and held.tenant_id == "tenant-a"
    assert answer.json()["condition"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
