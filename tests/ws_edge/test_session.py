"""A client session: pings get pongs, frames outside the protocol close the connection."""

from __future__ import annotations

import asyncio
import signal

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

WS_PATH = "/api/v1/field-service/ws/technician-locations"


async def test_a_binary_frame_is_closed_with_1003_and_pings_get_pongs(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") as ws:
        assert '"connected"' in str(await ws.recv())
        assert '"initial_state"' in str(await ws.recv())
        await ws.send("ping")
        assert str(await ws.recv()) == '{"type":"pong"}'
        await ws.send('{"type": "ping"}')  # the origin's clients' spelling
        assert str(await ws.recv()) == '{"type":"pong"}'
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


async def test_sigterm_closes_every_socket_with_1012_and_the_edge_exits_within_10_s(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    clients = [await websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") for _ in range(3)]
    for ws in clients:
        assert '"connected"' in str(await ws.recv()) and '"initial_state"' in str(await ws.recv())
    edge.process.send_signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    # uvicorn re-raises the signal once it has shut down: -15 is the exit of a clean shutdown on SIGTERM
    assert await asyncio.to_thread(edge.process.wait, 10) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in edge.log()
