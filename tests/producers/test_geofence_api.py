"""The fences API under attack: tokens and roles, malformed and hostile bodies, another tenant's ids, the
per-tenant cap; every refusal a 4xx with a reason, and nothing of a refused request on the fences topic."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from schemas.claims import Role
from tests.support.kafka_io import compacted_records
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

PATH = "/api/v1/field-service/geofences"
CIRCLE = {"latitude": 6.5, "longitude": 3.4, "radius_meters": 100, "name": "Cabinet 12", "job_id": "j12"}
POLAR = [[0, 80], [120, 80], [-120, 80], [0, 80]]
NORTH = [[10, 86], [10.1, 86], [10.1, 86.1], [10, 86]]
WIDE = [[3, 6], [4.5, 6], [4.5, 6.5], [3, 6]]
ACROSS_180 = [[179.99, 0], [-179.99, 0], [-179.99, 0.01], [179.99, 0.01], [179.99, 0]]  # the box


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_fences_refuse_bad_tokens_roles_bodies_and_other_tenants_and_write_nothing_then(stack: Stack) -> None:
    api = await stack.start("producers", env={"LOCSTREAM_PRODUCERS_MAX_GEOFENCES_PER_TENANT": "2"})
    dispatcher = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}
    open_ring = [[3.4, 6.5], [3.41, 6.5], [3.41, 6.51], [3.4, 6.52]]
    line = [[3.4, 6.5], [3.41, 6.5], [3.42, 6.5], [3.4, 6.5]]
    big_ring = [[3.4 + i * 1e-5, 6.5 + (i % 2) * 1e-5] for i in range(1_001)] + [[3.4, 6.5]]
    bodies: list[tuple[str, Any, int, str]] = [
        ("both shapes", {**CIRCLE, "geometry": {"type": "Polygon", "coordinates": [line]}}, 422, "give latitude"),
        ("no shape", {"name": "x"}, 422, "give latitude"),
        ("latitude alone", {"latitude": 6.5}, 422, "latitude and longitude"),
        ("radius 0", {**CIRCLE, "radius_meters": 0}, 422, "radius_meters"),
        ("radius 60 km", {**CIRCLE, "radius_meters": 60_000}, 422, "radius_meters"),
        ("latitude 91", {**CIRCLE, "latitude": 91}, 422, "latitude"),
        ("unknown field", {**CIRCLE, "colour": "red"}, 422, "colour"),
        ("open ring", {"geometry": {"type": "Polygon", "coordinates": [open_ring]}}, 422, "closed"),
        ("no area", {"geometry": {"type": "Polygon", "coordinates": [line]}}, 422, "no area"),
        ("1,002 positions", {"geometry": {"type": "Polygon", "coordinates": [big_ring]}}, 422, "geometry"),
        ("a hole", {"geometry": {"type": "Polygon", "coordinates": [line, line]}}, 422, "geometry"),
        (
            "a point of 4 numbers",
            {"geometry": {"type": "Polygon", "coordinates": [[[1, 2, 3, 4]] * 4]}},
            422,
            "geometry",
        ),
        ("another type", {"geometry": {"type": "MultiPolygon", "coordinates": []}}, 422, "geometry"),
        ("bad technician id", {**CIRCLE, "assigned_technician_id": "a b/c"}, 422, "technician_id"),
        ("round a pole", {"geometry": {"type": "Polygon", "coordinates": [POLAR]}}, 422, "winds round a pole"),
        ("past 85 degrees", {"geometry": {"type": "Polygon", "coordinates": [NORTH]}}, 422, "beyond 85 degrees"),
        ("a circle at the pole", {**CIRCLE, "latitude": 89.9}, 422, "beyond 85 degrees"),
        ("a region", {"geometry": {"type": "Polygon", "coordinates": [WIDE]}}, 422, "more than 1 degree"),
        ("nested 5,000 deep", '{"geometry": {"type": "Polygon", "coordinates": ' + _nested(5_000) + "}}", 422, "geo"),
        ("2 MB", {**CIRCLE, "name": "x" * 2_000_000}, 413, "bytes"),
        ("not JSON", "{", 422, "body"),
    ]
    before = await compacted_records(stack.kafka, stack.kafka.geofences_topic)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.put(f"{PATH}/f1", json=CIRCLE)).status_code == 401
        forged = {"Authorization": f"Bearer {stack.token('tenant-a')[:-3]}AAA"}
        assert (await http.put(f"{PATH}/f1", json=CIRCLE, headers=forged)).status_code == 401
        for role in (Role.TECHNICIAN, Role.DEVICE_GATEWAY, Role.ANALYST):
            refused = await http.put(
                f"{PATH}/f1", json=CIRCLE, headers={"Authorization": f"Bearer {stack.token('tenant-a', role)}"}
            )
            assert refused.status_code == 403 and "may not define geofences" in refused.json()["message"], role
        for case, body, status, reason in bodies:
            content = body if isinstance(body, str) else json.dumps(body)
            answer = await http.put(
                f"{PATH}/f1", content=content, headers={**dispatcher, "Content-Type": "application/json"}
            )
            assert answer.status_code == status and reason in answer.json()["message"], (case, answer.text[:200])
        assert (
            await compacted_records(stack.kafka, stack.kafka.geofences_topic) == before
        )  # nothing of a refused request on the topic
        assert (await http.put(f"{PATH}/f1", json=CIRCLE, headers=dispatcher)).status_code == 200
        assert (await http.put(f"{PATH}/f2", json=CIRCLE, headers=dispatcher)).status_code == 200
        capped = await http.put(f"{PATH}/f3", json=CIRCLE, headers=dispatcher)
        assert capped.status_code == 422 and "at most 2 fences" in capped.json()["message"]
        assert (
            await http.put(f"{PATH}/f2", json={**CIRCLE, "radius_meters": 50}, headers=dispatcher)
        ).status_code == 200
        other = {"Authorization": f"Bearer {stack.token('tenant-b', Role.ADMIN)}"}
        assert (await http.delete(f"{PATH}/f1", headers=other)).status_code == 404  # tenant-a's id, tenant-b's token
        assert (await http.get(PATH, headers=other)).json() == []
        analyst = {"Authorization": f"Bearer {stack.token('tenant-a', Role.ANALYST)}"}
        listed = (await http.get(PATH, headers=analyst)).json()
        assert [(f["geofence_id"], f["geometry"]["radius_meters"]) for f in listed] == [("f1", 100), ("f2", 50)]
        assert (await http.delete(f"{PATH}/f1", headers=dispatcher)).status_code == 204
        assert (await http.delete(f"{PATH}/f1", headers=dispatcher)).status_code == 404
        assert [f["geofence_id"] for f in (await http.get(PATH, headers=dispatcher)).json()] == ["f2"]


async def test_a_tenants_fences_are_held_to_its_budget_of_positions_and_a_box_across_180_is_taken(
    stack: Stack,
) -> None:
    api = await stack.start("producers", env={"LOCSTREAM_PRODUCERS_MAX_FENCE_POSITIONS_PER_TENANT": "450"})
    dispatcher = {"Authorization": f"Bearer {stack.token('tenant-a', Role.DISPATCHER)}"}
    ring = [[3.4 + 0.001 * math.cos(i / 40 * math.tau), 6.5 + 0.001 * math.sin(i / 40 * math.tau)] for i in range(200)]
    ring.append(ring[0])
    polygon = {"geometry": {"type": "Polygon", "coordinates": [ring]}}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.put(f"{PATH}/site-1", json=polygon, headers=dispatcher)).status_code == 200  # 201
        assert (await http.put(f"{PATH}/cabinet", json=CIRCLE, headers=dispatcher)).status_code == 200  # counts 100
        box = {"geometry": {"type": "Polygon", "coordinates": [ACROSS_180]}}  # 5 positions, counts 100: at 401
        taken = await http.put(f"{PATH}/dateline", json=box, headers=dispatcher)
        assert taken.status_code == 200, taken.text
        over = await http.put(f"{PATH}/site-2", json=polygon, headers=dispatcher)
        assert over.status_code == 422 and "would hold 602 positions" in over.json()["message"]
        assert "the budget is 450" in over.json()["message"]
        again = await http.put(f"{PATH}/site-1", json=polygon, headers=dispatcher)  # redefined: counted once
        assert again.status_code == 200
        other = {"Authorization": f"Bearer {stack.token('tenant-b', Role.DISPATCHER)}"}
        assert (await http.put(f"{PATH}/site-2", json=polygon, headers=other)).status_code == 200  # its own budget
