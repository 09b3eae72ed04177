"""A big tenant's initial_state: encoded once per snapshot for the clients connecting meanwhile, in slices with the
event loop free between them, compressed once for permessage-deflate; what comes after the snapshot is not in it."""

from __future__ import annotations

import asyncio
import json
import zlib
from datetime import timedelta

from domain.position import Position
from tests.support.events import T0, location
from ws_edge import framing
from ws_edge.initial_state import SLICE, InitialStates
from ws_edge.messages import encode
from ws_edge.view import LiveView

TENANT = "acme"


def _view(technicians: int) -> LiveView:
    view = LiveView()
    for i in reversed(range(technicians)):  # applied out of id order: the initial_state is sorted by id
        event = location(TENANT, f"tech-{i:06d}", T0 - timedelta(seconds=i), latitude=40 + (i % 997) / 1000)
        view.apply(event, Position(0, i))
    return view


def _payload(pieces: tuple[bytes, ...]) -> bytes:
    """The frame's payload, its pieces joined as they go on the wire."""
    frame = b"".join(pieces)
    return frame[framing.header_size(frame) :]


async def test_a_big_map_is_encoded_once_in_slices_with_the_loop_running_between_them() -> None:
    technicians = SLICE * 5 + 17
    view = _view(technicians)
    states = InitialStates(view, clock=lambda: 1.0)  # one second for the whole test
    shared = states.at_snapshot(TENANT, "c1", None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    first, second = await asyncio.gather(shared.frame(deflate=False), shared.frame(deflate=False))
    running.cancel()
    assert first is second  # one encoding for both clients
    assert ticks >= technicians // SLICE  # the loop ran between the slices
    message = json.loads(_payload(first))
    assert message["type"] == "initial_state" and message["cursor"] == "c1"
    assert [loc["technician_id"] for loc in message["data"]] == [f"tech-{i:06d}" for i in range(technicians)]
    assert message["data"] == json.loads(encode(view.locations(TENANT)))  # what the polling fallback lists
    assert states.at_snapshot(TENANT, "c1", None) is shared  # the next client of the same snapshot shares it
    late = await shared.frame(deflate=False)  # after the encoding ended: the same bytes, not a new encoding
    assert late is first


async def test_what_changes_after_the_snapshot_is_not_in_it_and_makes_a_new_one() -> None:
    view = _view(SLICE * 2)
    states = InitialStates(view)
    shared = states.at_snapshot(TENANT, "c1", False)
    view.apply(location(TENANT, "tech-999999", T0, latitude=1.0), Position(0, 10**6))  # after the snapshot
    message = json.loads(_payload(await shared.frame(deflate=False)))
    assert len(message["data"]) == SLICE * 2 and message["resumed"] is False
    fresh = states.at_snapshot(TENANT, "c2", False)
    assert fresh is not shared and len(json.loads(_payload(await fresh.frame(deflate=False)))["data"]) == SLICE * 2 + 1


async def test_the_deflated_frame_is_made_once_and_inflates_to_the_same_message() -> None:
    view = _view(SLICE * 3)
    shared = InitialStates(view).at_snapshot(TENANT, "c1", None)
    plain, deflated = await asyncio.gather(shared.frame(deflate=False), shared.frame(deflate=True))
    again = await shared.frame(deflate=True)
    assert again is deflated
    assert deflated[0][0] == 0xC1 and plain[0][0] == 0x81  # RSV1: compressed (RFC 7692)
    inflated = zlib.decompressobj(-15).decompress(_payload(deflated) + b"\x00\x00\xff\xff")
    assert inflated == _payload(plain) and len(b"".join(deflated)) * 4 < len(b"".join(plain))
    reader = framing.FrameReader(len(inflated), inflate=True)  # the edge's own reader takes it back too
    masked = bytes((0xC1, 0x80 | 127)) + len(_payload(deflated)).to_bytes(8, "big") + b"\x00" * 4 + _payload(deflated)
    assert reader.feed(masked) == [(framing.OP_TEXT, inflated.decode())]


async def test_a_small_map_is_not_compressed_and_needs_no_task() -> None:
    view = _view(3)
    shared = InitialStates(view).at_snapshot(TENANT, "c1", None)
    before = len(asyncio.all_tasks())
    frame = shared.frame(deflate=True)
    assert len(asyncio.all_tasks()) == before
    assert (await frame)[0][0] == 0x81
