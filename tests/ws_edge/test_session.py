"""A client session: pings get pongs, frames outside the protocol close the connection."""

from __future__ import annotations

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
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
