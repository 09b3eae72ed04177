"""Resume with a cursor and slow clients, against a real broker and the edge as its own process."""

from __future__ import annotations

import asyncio
import itertools
import socket

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from schemas.cursor import decode_cursor
from schemas.events import Event
from tests.support.kafka_io import produce
from tests.support.maps import connect, fix, open_map, recv_json, updates_until
from tests.support.stack import Stack, eventually
from ws_edge.metrics import tenant_label

pytestmark = pytest.mark.integration


def _offset(cursor: str) -> int:
    return decode_cursor(cursor).offset


async def test_a_client_back_with_its_cursor_gets_exactly_the_updates_it_missed_in_order(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    reference, _ = await open_map(edge, token)  # stays connected: what every client of tenant-a should see
    client, initial = await open_map(edge, token)
    assert initial["type"] == "initial_state" and initial["cursor"]
    events: list[Event] = []
    for i in range(300):
        events.append(fix("tenant-a", f"tech-{i}", i, latitude=i / 1000))  # one each: nothing to conflate
        events.append(fix("tenant-b", f"tech-{i % 5}", i, latitude=i / 1000))  # shares the partition or not
    producing = asyncio.create_task(produce(stack.kafka, events, per_second=200))  # ~3 s
    before = await updates_until(client, lambda got: len(got) >= 40)
    cursor = before[-1]["cursor"]
    await client.close()
    await asyncio.sleep(2)  # the client is away for 2 s while the stream goes on
    client, resumed = await open_map(edge, token, f"cursor={cursor}")
    assert resumed["type"] == "resumed" and resumed["cursor"] == cursor and resumed["missed"] > 0
    await producing
    everything = await updates_until(reference, lambda got: len(got) >= 300)
    last = everything[-1]["cursor"]
    after = await updates_until(client, lambda got: bool(got) and got[-1].get("cursor") == last)
    index = next(i for i, update in enumerate(everything) if update["cursor"] == cursor)
    assert after == everything[index + 1 :]  # every missed update, in order, then the live ones; nothing twice
    assert len(before) + len(after) == 300
    assert all(_offset(a["cursor"]) < _offset(b["cursor"]) for a, b in itertools.pairwise(after))


async def test_a_cursor_older_than_the_resume_buffer_gets_a_fresh_initial_state(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_RESUME_BUFFER_SIZE"] = "10"
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    client, _ = await open_map(edge, token)
    await produce(stack.kafka, [fix("tenant-a", "tech-1", 0, latitude=1.0)])
    (first,) = await updates_until(client, lambda got: len(got) >= 1)
    await client.close()
    await produce(stack.kafka, [fix("tenant-a", f"tech-{i}", i, latitude=2.0 + i) for i in range(1, 30)])

    async def applied_all() -> bool:  # the polling endpoint answers from the edge's view
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            answer = await http.get(f"{edge.url}/api/v1/field-service/technicians/locations/active")
        return len(answer.json()) == 29 and 31.0 in {loc["latitude"] for loc in answer.json()}  # the last one

    await eventually(applied_all, timeout=30, what="the edge to apply the 29 fixes")
    _, current = await open_map(edge, token)
    assert len(current["data"]) == 29  # tech-1 .. tech-29 (tech-1 moved)
    client, fresh = await open_map(edge, token, f"cursor={first['cursor']}")
    assert fresh["type"] == "initial_state" and fresh["resumed"] is False
    assert fresh["data"] == current["data"] and fresh["cursor"] == current["cursor"]
    client, garbage = await open_map(edge, token, "cursor=not-a-cursor")
    assert garbage["type"] == "initial_state" and garbage["resumed"] is False


async def test_a_client_that_stops_reading_is_closed_4008_and_harms_no_one(stack: Stack) -> None:
    stack.env["LOCSTREAM_EDGE_SLOW_CONSUMER_SECONDS"] = "1"
    stack.env["LOCSTREAM_EDGE_SLOW_CONSUMER_BYTES"] = str(2 * 1024 * 1024)
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    fast = await connect(edge, token, subprotocols=["locstream.v2"])  # batches: keeps up however the load comes
    stalled_socket = socket.socket()  # a small receive window: the kernel holds little for it
    stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    stalled_socket.connect(("127.0.0.1", edge.port))
    stalled, _ = await open_map(edge, token, sock=stalled_socket)  # reads nothing from here on
    # Distinct technicians: nothing to conflate; ~13 MB for each client, more than the kernel buffers between them.
    total = 30_000
    events: list[Event] = [fix("tenant-a", f"tech-{i:0>100}", i, latitude=(i % 1000) / 100) for i in range(total)]
    producing = asyncio.create_task(produce(stack.kafka, events, per_second=4_000))
    received = await updates_until(fast, lambda got: len(got) >= total, timeout=120)
    await producing
    assert len({update["data"]["technician_id"] for update in received}) == total

    async def slow_disconnects() -> int | None:
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{edge.url}/api/v1/field-service/ws/stats", headers=stack.admin_headers())).json()
        return stats["slow_disconnects"] or None

    assert await eventually(slow_disconnects, timeout=10, what="the stalled client to be closed") == 1

    async def only_the_fast_one() -> bool:  # the close frame waits behind what the stalled client does not read:
        async with httpx.AsyncClient() as http:  # after the write deadline (1 s here) the edge drops the connection
            stats = (await http.get(f"{edge.url}/api/v1/field-service/ws/stats", headers=stack.admin_headers())).json()
        return bool(stats["active_connections"] == 1)

    await eventually(only_the_fast_one, timeout=10, what="the stalled client's connection to be gone")
    with pytest.raises(ConnectionClosed) as closed:
        while True:  # what was already on its way, then the end: dropped, as it did not read its close frame
            await recv_json(stalled)
    assert closed.value.rcvd is None or closed.value.rcvd.code == 4008
    await fast.send("ping")
    assert await recv_json(fast) == {"type": "pong"}  # the fast one is still served
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{edge.url}/metrics", headers=stack.admin_headers())).text
    assert "locstream_edge_slow_disconnects_total 1.0" in metrics
    assert f'locstream_edge_connections{{tenant="{tenant_label("tenant-a")}"}} 1.0' in metrics
    assert "tenant-a" not in metrics  # tenant names are customer data: metrics carry a hash
    assert "locstream_edge_delivery_seconds_count" in metrics
