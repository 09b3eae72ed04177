"""Fences on the map, against a real broker and edge: a tenant with few gets them all after its first frames; a
tenant with many gets none up front and asks for its view's (a new dispatcher got 53 MB of fence frames before),
across the antimeridian too, at most one answer every half second."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.claims import Role
from schemas.geofences import Circle, GeofenceDefined, Polygon
from tests.support.kafka_io import define_fences
from tests.support.maps import open_map, recv_json
from tests.support.stack import Stack
from ws_edge.fence_views import UP_FRONT_POSITIONS, VIEW_POSITIONS

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 30, tzinfo=UTC)


def _ring(lat: float, lon: float, positions: int) -> list[list[float]]:
    ring = [
        [lon + 0.002 * math.cos(i / positions * math.tau), lat + 0.002 * math.sin(i / positions * math.tau)]
        for i in range(positions - 1)
    ]
    return [*ring, ring[0]]


def _polygon(tenant: str, fence_id: str, lat: float, lon: float) -> GeofenceDefined:
    return GeofenceDefined(
        tenant_id=tenant, geofence_id=fence_id, at=AT, shape=Polygon(coordinates=[_ring(lat, lon, 1_000)])
    )


async def _until_pong(ws: Any) -> list[dict[str, Any]]:
    """What the edge sent before the pong to a ping sent now (whatever was queued before it comes first)."""
    await ws.send("ping")
    seen = []
    while (message := await recv_json(ws)).get("type") != "pong":
        seen.append(message)
    return seen


async def test_a_big_tenant_gets_fences_by_view_and_a_small_one_all_of_them_up_front(stack: Stack) -> None:
    many = UP_FRONT_POSITIONS // 1_000 + 10  # more positions than go up front
    lagos = [_polygon("big", f"lagos-{i:03d}", 6.5 + i * 0.001, 3.4) for i in range(many)]
    berlin = [_polygon("big", f"berlin-{i:03d}", 52.5, 13.4 + i * 0.001) for i in range(5)]
    dateline = [_polygon("big", "dateline", 0.0, 179.999)]  # its box crosses 180
    small = [
        GeofenceDefined(tenant_id="small", geofence_id=f"c{i}", at=AT, shape=Circle(latitude=6.5, longitude=3.4))
        for i in range(3)
    ]
    await define_fences(stack.kafka, lagos + berlin + dateline + small)
    edge = await stack.start("ws-edge")

    ws, first = await open_map(edge, stack.token("small", Role.DISPATCHER))
    assert first["type"] == "initial_state"
    up_front = await _until_pong(ws)
    assert sorted(m["data"]["geofence_id"] for m in up_front if m["type"] == "geofence_updated") == ["c0", "c1", "c2"]

    ws, first = await open_map(edge, stack.token("big", Role.DISPATCHER))
    assert first["type"] == "initial_state"
    assert [m for m in await _until_pong(ws) if m["type"] == "geofence_updated"] == []  # none up front
    # Two requests back to back: the second comes too soon after the first, however long the answers take to
    # arrive here (waiting for the first's answer before sending it once took longer than the interval, under load).
    await ws.send('{"type": "fences", "bbox": [13.3, 52.4, 13.5, 52.6]}')
    await ws.send('{"type": "fences", "bbox": [179.9, -1, -179.9, 1]}')
    answers = await _until_pong(ws)
    berlin_ids = [m["data"]["geofence_id"] for m in answers if m["type"] == "geofence_updated"]
    assert berlin_ids == [f"berlin-{i:03d}" for i in range(5)]  # only the view's, by id
    refused = [m for m in answers if m["type"] != "geofence_updated"]
    assert [m["type"] for m in refused] == ["error"] and "at most one request" in refused[0]["message"]
    await asyncio.sleep(0.5)  # the documented interval between two answers
    await ws.send('{"type": "fences", "bbox": [179.9, -1, -179.9, 1]}')  # west > east: across the antimeridian
    across = [m["data"]["geofence_id"] for m in await _until_pong(ws) if m["type"] == "geofence_updated"]
    assert across == ["dateline"]
    await asyncio.sleep(0.5)
    await ws.send('{"type": "fences", "bbox": [3.3, 6.4, 3.5, 6.7]}')
    lagos_ids = [m["data"]["geofence_id"] for m in await _until_pong(ws) if m["type"] == "geofence_updated"]
    assert lagos_ids == [f"lagos-{i:03d}" for i in range(VIEW_POSITIONS // 1_000)]  # one answer's worth at most
    await asyncio.sleep(0.5)
    for bad in ('{"type": "fences"}', '{"type": "fences", "bbox": [1, 2, 3]}', '{"type": "fences", "bbox": "x"}'):
        await ws.send(bad)
        answer = await _until_pong(ws)
        assert [m["type"] for m in answer] == ["error"] and answer[0]["message"].startswith("fences"), answer
        await asyncio.sleep(0.5)
