"""Viewport and list filters, and protocol v2's batched frames, against a real broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.cursor import decode_cursor
from tests.support.kafka_io import produce
from tests.support.maps import connect, fix, open_map, recv_json, updates_until
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

LAGOS = (3.0, 6.0, 4.0, 7.0)  # west, south, east, north


async def test_a_filtered_map_gets_only_matching_technicians_and_a_removal_when_one_leaves(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    watcher, _ = await open_map(edge, token)
    await produce(stack.kafka, [fix("tenant-a", "inside", 0, 6.5, 3.4), fix("tenant-a", "outside", 0, 52.5, 13.4)])
    await updates_until(watcher, lambda got: len(got) >= 2)
    client, everything = await open_map(edge, token)
    assert {loc["technician_id"] for loc in everything["data"]} == {"inside", "outside"}
    await client.send(json.dumps({"type": "subscribe", "bbox": list(LAGOS)}))
    filtered = await recv_json(client)
    assert filtered["type"] == "initial_state" and [loc["technician_id"] for loc in filtered["data"]] == ["inside"]
    assert filtered["filter"] == {"bbox": list(LAGOS)}  # what it answers
    await produce(
        stack.kafka,
        [
            fix("tenant-a", "outside", 1, 52.6, 13.4),  # still outside: nothing
            fix("tenant-a", "inside", 2, 9.0, 7.0),  # leaves the box
            fix("tenant-a", "outside", 3, 6.6, 3.5),  # enters it
        ],
    )
    removed = await recv_json(client)
    assert removed == {"type": "technician_removed", "technician_id": "inside"}
    entered = await recv_json(client)
    assert entered["type"] == "location_update" and entered["data"]["technician_id"] == "outside"
    await client.send(json.dumps({"type": "subscribe", "bbox": [0, 0, 1], "status": ["on_job"]}))
    assert (await recv_json(client))["type"] == "error"  # a bad filter is answered, the connection stays
    await client.send(json.dumps({"type": "subscribe", "technician_ids": ["inside"]}))
    by_id = await recv_json(client)
    assert [loc["technician_id"] for loc in by_id["data"]] == ["inside"]
    await client.send(json.dumps({"type": "subscribe"}))  # no field: the whole tenant again
    assert len((await recv_json(client))["data"]) == 2


async def test_protocol_v2_sends_each_flush_as_one_batch_ending_at_the_same_state(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    token = stack.token("tenant-a")
    v1, _ = await open_map(edge, token)
    v2 = await connect(edge, token, subprotocols=["locstream.v2"])
    assert v2.subprotocol == "locstream.v2"
    connected = await recv_json(v2)
    assert connected["protocol"] == 2 and (await recv_json(v2))["type"] == "initial_state"
    await produce(stack.kafka, [fix("tenant-a", f"tech-{i % 20}", i, latitude=i / 100) for i in range(2_000)])
    # The topic holds only these, so the last is at offset 1,999; a client behind may get fewer (conflated).
    seen_v1 = await updates_until(v1, lambda got: bool(got) and decode_cursor(got[-1]["cursor"]).offset == 1_999)
    frames: list[dict[str, Any]] = []
    while not frames or decode_cursor(frames[-1]["cursor"]).offset != 1_999:
        frames.append(await recv_json(v2))
    assert {frame["type"] for frame in frames} == {"location_batch"}
    assert len(frames) < 2_000  # coalesced
    final_v1 = {u["data"]["technician_id"]: u["data"] for u in seen_v1}
    final_v2 = {item["technician_id"]: item for frame in frames for item in frame["data"]}
    assert final_v2 == final_v1
    also_v2 = await connect(edge, token, query="protocol=2")
    assert (await recv_json(also_v2))["protocol"] == 2
