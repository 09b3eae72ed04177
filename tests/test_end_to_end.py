"""The seed's live-location flow end to end, against a real broker, with each service its own process."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets

from domain.projection import fold
from schemas.claims import Role
from schemas.events import Event
from tests.support.events import location, profile
from tests.support.kafka_io import end_offsets, produce, read_all
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration

WS_PATH = "/api/v1/field-service/ws/technician-locations"


def location_path(technician_id: str) -> str:
    return f"/api/v1/field-service/technicians/{technician_id}/location"


async def post_fix(api: Service, token: str, technician_id: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=10.0) as client:
        return await client.post(location_path(technician_id), json=body, headers={"Authorization": f"Bearer {token}"})


async def recv_json(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def open_map(edge: Service, token: str) -> tuple[Any, list[dict[str, Any]]]:
    """Connect as a dispatcher; returns the socket and its initial_state data."""
    ws = await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={token}")
    connected = await recv_json(ws)
    assert connected["type"] == "connected"
    initial = await recv_json(ws)
    assert initial["type"] == "initial_state"
    return ws, initial["data"]


@pytest.mark.serial
async def test_dispatcher_gets_own_tenants_update_within_a_second_and_nothing_else(stack: Stack) -> None:
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    ws_a, initial_a = await open_map(edge, stack.token("tenant-a"))
    ws_b, initial_b = await open_map(edge, stack.token("tenant-b"))
    assert initial_a == [] and initial_b == []

    sent = time.monotonic()
    response = await post_fix(
        api,
        stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1"),
        "tech-1",
        latitude=6.5244,
        longitude=3.3792,
        activity="on_site",
    )
    assert response.status_code == 202, response.text
    update = await recv_json(ws_a, timeout=1.0)
    assert time.monotonic() - sent < 1.0
    assert update["type"] == "location_update"
    assert update["data"] == {
        "technician_id": "tech-1",
        "technician_name": "tech-1",
        "latitude": 6.5244,
        "longitude": 3.3792,
        "last_update": update["data"]["last_update"],
        "status": "unknown",
        "stale": False,
    }

    # Tenant B's first frame after A's update must be B's own: it never saw A's.
    response = await post_fix(
        api, stack.token("tenant-b", Role.TECHNICIAN, sub="tech-9"), "tech-9", latitude=52.52, longitude=13.405
    )
    assert response.status_code == 202, response.text
    first_for_b = await recv_json(ws_b)
    assert first_for_b["type"] == "location_update"
    assert first_for_b["data"]["technician_id"] == "tech-9"

    await ws_a.send("ping")
    assert await recv_json(ws_a) == {"type": "pong"}
    await ws_a.close()
    await ws_b.close()


async def test_acknowledged_fix_survives_kill9_of_projector_and_edge(stack: Stack) -> None:
    api = await stack.start("producers")
    projector = await stack.start("projector")
    edge = await stack.start("ws-edge")
    gateway = stack.token("tenant-a", Role.DEVICE_GATEWAY, sub="gw-1")
    async with httpx.AsyncClient(base_url=api.url, timeout=10.0) as client:
        named = await client.put(
            "/api/v1/field-service/technicians/tech-7",
            json={"name": "Ada", "status": "on_job"},
            headers={"Authorization": f"Bearer {gateway}"},
        )
    assert named.status_code == 202, named.text
    response = await post_fix(api, gateway, "tech-7", latitude=-33.8688, longitude=151.2093)
    assert response.status_code == 202, response.text
    projector.kill9()  # right after the 202: the projector may or may not have applied it
    edge.kill9()

    await stack.start("projector")
    edge = await stack.start("ws-edge")
    ws, initial = await open_map(edge, stack.token("tenant-a"))
    await ws.close()
    async with httpx.AsyncClient(base_url=edge.url) as client:  # the seed's polling fallback: the same list
        active = await client.get(
            "/api/v1/field-service/technicians/locations/active",
            headers={"Authorization": f"Bearer {stack.token('tenant-a')}"},
        )
    assert active.status_code == 200 and active.json() == initial
    assert [
        (t["technician_id"], t["technician_name"], t["latitude"], t["longitude"], t["status"]) for t in initial
    ] == [("tech-7", "Ada", -33.8688, 151.2093, "on_job")]
    # The restarted projector catches up too, from its stored offsets.
    ends = await end_offsets(stack.kafka)
    await eventually(lambda: _offsets_reached(stack, ends), timeout=30, what="projector to catch up")
    assert [(s.technician_id, s.fix.latitude if s.fix else None) for s in (await stack.snapshot()).states] == [
        ("tech-7", -33.8688)
    ]


async def _offsets_reached(stack: Stack, ends: dict[int, int]) -> bool:
    stored = (await stack.snapshot()).offsets
    return all(stored.get(partition, 0) >= end for partition, end in ends.items())


def _stream(count: int, tenants: int = 8, technicians: int = 5) -> list[Event]:
    """Fixes and profile updates for several tenants, with late fixes mixed in (device clocks disagree)."""
    rng = random.Random(20261126)
    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    events: list[Event] = []
    for i in range(count):
        tenant = f"tenant-{rng.randrange(tenants)}"
        technician = f"tech-{rng.randrange(technicians)}"
        recorded = start + timedelta(seconds=i) - timedelta(seconds=rng.choice([0, 0, 0, 5, 30]))  # some late
        received = start + timedelta(seconds=i)
        if rng.random() < 0.05:
            status = rng.choice(["on_job", "off"])
            events.append(profile(tenant, technician, recorded, status=status, received_at=received))
        else:
            latitude, longitude = rng.uniform(-80, 80), rng.uniform(-170, 170)
            events.append(location(tenant, technician, recorded, latitude, longitude, received_at=received))
    return events


async def test_kill9_projector_mid_stream_then_table_equals_fresh_replay(stack: Stack) -> None:
    total = 4_000
    events = _stream(total)
    projector = await stack.start("projector")
    killed = asyncio.Event()

    async def stream() -> None:
        # The last 1,000 are appended only after the kill, so that it falls mid-stream however slow the machine is
        # (under load, the whole stream was once applied before the kill came).
        await produce(stack.kafka, events[:3_000], per_second=1_000)
        await killed.wait()
        await produce(stack.kafka, events[3_000:], per_second=1_000)

    producing = asyncio.create_task(stream())

    async def applied_some() -> bool:
        return sum((await stack.snapshot()).offsets.values()) >= 1_000

    await eventually(applied_some, timeout=60, what="projector to apply 1000 events")
    projector.kill9()
    killed.set()
    stored_at_kill = sum((await stack.snapshot()).offsets.values())
    await producing

    restarted = await stack.start("projector")
    ends = await end_offsets(stack.kafka)
    assert sum(ends.values()) == total
    await eventually(lambda: _offsets_reached(stack, ends), timeout=60, what="restarted projector to catch up")

    expected = fold(await read_all(stack.kafka))
    actual = {(s.tenant_id, s.technician_id): s for s in (await stack.snapshot()).states}
    assert actual == expected

    async def applied_after_restart() -> int:  # its counter is bumped just after the last commit
        async with httpx.AsyncClient() as client:
            applied: int = (await client.get(f"{restarted.url}/healthz")).json()["applied"]
        return applied if applied >= total - stored_at_kill else 0

    # Resumed at the stored offsets: exactly the records after them were applied, none again.
    assert await eventually(applied_after_restart, timeout=10, what="the counter") == total - stored_at_kill


async def test_backfilled_fixes_reach_the_map_flagged_and_a_single_fix_retry_is_a_duplicate(stack: Stack) -> None:
    api, edge = await stack.start("producers"), await stack.start("ws-edge")
    ws, _ = await open_map(edge, stack.token("tenant-a"))
    token = stack.token("tenant-a", Role.TECHNICIAN, sub="tech-1")
    recorded = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
    fix = {"event_id": str(uuid.uuid4()), "recorded_at": recorded, "latitude": 1.5, "longitude": 2.5}
    async with httpx.AsyncClient(base_url=api.url) as client:
        batch = await client.post(
            "/api/v1/field-service/locations/batch",
            headers={"Authorization": f"Bearer {token}"},
            json={"fixes": [{**fix, "technician_id": "tech-1", "backfill": True}]},
        )
    assert batch.status_code == 202 and batch.json()["accepted"] == 1, batch.text
    update = await recv_json(ws)
    assert update["type"] == "location_update" and update["data"]["backfill"] is True  # maps jump, not animate

    live = {
        "event_id": str(uuid.uuid4()),
        "recorded_at": datetime.now(UTC).isoformat(),
        "latitude": 1.501,  # 157 m in 3 minutes from the backfilled fix: a walk
        "longitude": 2.501,
    }
    first = await post_fix(api, token, "tech-1", **live)
    retry = await post_fix(api, token, "tech-1", **live)  # the same fix again, after a client timeout
    assert first.status_code == retry.status_code == 202, (first.text, retry.text)
    assert (first.json()["status"], retry.json()["status"]) == ("accepted", "duplicate")
    assert retry.json()["cursor"] == first.json()["cursor"]
    update = await recv_json(ws)
    assert update["data"]["latitude"] == 1.501 and "backfill" not in update["data"]
    await ws.close()


@pytest.mark.integration
async def test_the_origins_timestamp_and_metadata_are_taken(stack: Stack) -> None:
    api = await stack.start("producers")
    at = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
    body = {"latitude": 6.5, "longitude": 3.4, "timestamp": at.isoformat(), "metadata": {"battery": 81}}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        posted = await http.post(
            "/api/v1/field-service/technicians/tech-ada/location",
            json=body,
            headers={"Authorization": f"Bearer {stack.token('tenant-a', Role.TECHNICIAN, sub='tech-ada')}"},
        )
    assert posted.status_code == 202, posted.text
    ((event, _),) = await read_all(stack.kafka)
    assert event.recorded_at == at and event.data.metadata == {"battery": 81}  # type: ignore[union-attr]
