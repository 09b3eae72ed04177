"""Inbound limits, dead peers, and several edge nodes, against a real broker with each edge its own process."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from schemas.events import Event
from tests.support.kafka_io import produce
from tests.support.maps import connect, fix, open_map, recv_json, updates_until
from tests.support.stack import Service, Stack, eventually

pytestmark = pytest.mark.integration


async def _closed(ws: object) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv_json(ws)  # type: ignore[arg-type]
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _connections(edge: Service) -> int:
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{edge.url}/api/v1/field-service/ws/stats", headers=edge.admin_headers)).json()
    return int(stats["active_connections"])


async def test_inbound_size_rate_and_connection_limits(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_CLIENT_MESSAGE_RATE"] = "5"  # burst 20
    stack.env["LOCSTREAM_EDGE_MAX_CONNECTIONS_PER_TENANT"] = "2"
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    big, _ = await open_map(edge, token)
    await big.send(json.dumps({"type": "subscribe", "technician_ids": ["x" * 70_000]}))
    assert (await _closed(big))[0] == 1009
    chatty, _ = await open_map(edge, token)
    for _ in range(40):
        await chatty.send("ping")
    assert await _closed(chatty) == (1008, "messages sent too fast")
    _first, _ = await open_map(edge, token)
    _second, _ = await open_map(edge, token)
    third = await connect(edge, token)
    assert (await recv_json(third))["type"] == "connected"
    assert (await _closed(third))[0] == 1013
    _other_tenant, initial = await open_map(edge, stack.token("tenant-b"))  # the cap is per tenant
    assert initial["type"] == "initial_state"


@pytest.mark.serial
async def test_a_peer_that_stops_answering_pings_is_closed_within_interval_plus_timeout(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_PING_INTERVAL_SECONDS"] = "1"
    stack.env["LOCSTREAM_EDGE_PING_TIMEOUT_SECONDS"] = "1"
    edge = await stack.start("ws-edge")
    dead, _ = await open_map(edge, stack.token("tenant-a"))
    alive, _ = await open_map(edge, stack.token("tenant-a"))
    dead.transport.pause_reading()  # as a vanished phone: no pong ever comes back
    assert await eventually(lambda: _one_left(edge), timeout=2 + 2, what="the dead peer to be closed")
    await alive.send("ping")
    assert await recv_json(alive) == {"type": "pong"}


async def _one_left(edge: Service) -> bool:
    return await _connections(edge) == 1


async def test_clients_of_a_killed_edge_resume_on_another_with_their_cursors_and_miss_nothing(stack: Stack) -> None:
    first, second = await stack.start("ws-edge"), await stack.start("ws-edge")
    token = stack.token("tenant-a")
    reference, _ = await open_map(edge=second, token=token)
    client, _ = await open_map(edge=first, token=token)
    events: list[Event] = [fix("tenant-a", f"tech-{i}", i, latitude=i / 1000) for i in range(600)]
    producing = asyncio.create_task(produce(stack.kafka, events, per_second=200))  # 3 s
    before = await updates_until(client, lambda got: len(got) >= 100)
    first.kill9()
    client, resumed = await open_map(second, token, f"cursor={before[-1]['cursor']}")
    assert resumed["type"] == "resumed"
    await producing
    everything = await updates_until(reference, lambda got: len(got) >= 600)
    after = await updates_until(client, lambda got: bool(got) and got[-1].get("cursor") == everything[-1]["cursor"])
    seen = [u["data"]["technician_id"] for u in before + after]
    assert seen == [u["data"]["technician_id"] for u in everything]  # all 600, in order, none twice


async def test_an_edge_of_a_tenant_shard_serves_its_tenants_only(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_TENANTS"] = '["tenant-a"]'
    edge = await stack.start("ws-edge")
    served, _ = await open_map(edge, stack.token("tenant-a"))
    await produce(stack.kafka, [fix("tenant-b", "tech-1", 0, 1.0), fix("tenant-a", "tech-1", 0, 2.0)])
    (update,) = await updates_until(served, lambda got: len(got) >= 1)
    assert update["data"]["latitude"] == 2.0
    other = await connect(edge, stack.token("tenant-b"))
    assert await _closed(other) == (1008, "tenant served by another edge node")
