"""A batch re-sent after client timeouts is recorded once: in the table's history, on the live stream and in the
topic as its consumers see it, whichever API process the retries land on."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.identity import identity
from schemas.claims import Role
from schemas.events import LocationRecorded
from tests.support.kafka_io import read_all
from tests.support.stack import Service, Stack, eventually
from tests.test_end_to_end import open_map, recv_json

pytestmark = pytest.mark.integration

BATCH = "/api/v1/field-service/locations/batch"


async def post_batch(api: Service, token: str, fixes: list[dict[str, Any]]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        response = await client.post(BATCH, json={"fixes": fixes}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def history(projector: Service, token: str, technician: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=projector.url) as client:
        response = await client.get(
            f"/api/v1/field-service/technicians/{technician}/location-history",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code == 404:
        return []
    points: list[dict[str, Any]] = response.json()["locations"]
    return points


async def test_a_batch_resent_three_times_is_recorded_once_everywhere(stack: Stack) -> None:
    first_api, second_api = await stack.start("producers"), await stack.start("producers")
    projector, edge = await stack.start("projector"), await stack.start("ws-edge")
    dispatcher = stack.token("tenant-a")
    ws, initial = await open_map(edge, dispatcher)
    assert initial == []
    gateway = stack.token("tenant-a", Role.DEVICE_GATEWAY)
    start = datetime.now(UTC) - timedelta(minutes=5)
    fixes = [
        {
            "event_id": str(uuid.uuid4()),
            "technician_id": f"tech-{i % 5}",
            "recorded_at": (start + timedelta(seconds=i)).isoformat(),
            "latitude": 6.5 + i / 10_000,  # a technician's fixes 5 s and 55 m apart: driving, not jumps
            "longitude": 3.0,
        }
        for i in range(40)
    ]

    original = await post_batch(first_api, gateway, fixes)
    assert (original["accepted"], original["duplicates"]) == (40, 0)
    # A client that timed out re-sends the whole batch: to the same process, then twice through a load balancer
    # that picks the other one, which does not remember the fixes and appends them again.
    same_process = await post_batch(first_api, gateway, fixes)
    assert (same_process["accepted"], same_process["duplicates"]) == (0, 40)
    assert same_process["cursor"] is None and all(r["status"] == "duplicate" for r in same_process["results"])
    other_process = await post_batch(second_api, gateway, fixes)
    assert other_process["accepted"] == 40
    again = await post_batch(second_api, gateway, fixes)
    assert again["duplicates"] == 40
    # A new fix after all of them: once it is seen, every copy before it (same tenant, same partition) was too.
    sentinel = {
        "event_id": str(uuid.uuid4()),
        "technician_id": "tech-sentinel",
        "recorded_at": datetime.now(UTC).isoformat(),
        "latitude": 1.0,
        "longitude": 1.0,
    }
    await post_batch(first_api, gateway, [sentinel])

    updates: list[dict[str, Any]] = []
    while not updates or updates[-1]["technician_id"] != "tech-sentinel":
        message = await recv_json(ws, timeout=10)
        if message["type"] == "location_update":
            updates.append(message["data"])
    await ws.close()
    live = Counter((u["technician_id"], u["latitude"]) for u in updates[:-1])
    assert sorted(live) == sorted((f["technician_id"], f["latitude"]) for f in fixes)
    assert set(live.values()) == {1}  # each fix once on the live stream

    async def sentinel_in_history() -> bool:
        return bool(await history(projector, dispatcher, "tech-sentinel"))

    await eventually(sentinel_in_history, timeout=60, what="the projector to reach the sentinel")
    recorded = [p for t in range(5) for p in await history(projector, dispatcher, f"tech-{t}")]
    assert Counter(p["event_id"] for p in recorded) == Counter(f["event_id"] for f in fixes)  # once in history

    topic = [event for event, _ in await read_all(stack.kafka) if isinstance(event, LocationRecorded)]
    ours = [event for event in topic if event.technician_id != "tech-sentinel"]
    assert len(ours) == 80  # the other process really appended the copies ...
    assert len({identity(event) for event in ours}) == 40  # ... which every consumer recognises as one fix each
