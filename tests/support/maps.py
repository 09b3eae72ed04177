"""A dispatcher map as the tests see it: a WebSocket client of the edge and a source of fixes on the topic."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from schemas.events import LocationRecorded
from tests.support.events import T0, location
from tests.support.stack import Service

WS_PATH = "/api/v1/field-service/ws/technician-locations"


def fix(tenant: str, technician: str, second: float, latitude: float, longitude: float = 3.0) -> LocationRecorded:
    return location(tenant, technician, T0 + timedelta(seconds=second), latitude, longitude)


_OPENED: list[ClientConnection] = []


async def connect(edge: Service, token: str | None = None, query: str = "", **options: Any) -> ClientConnection:
    """A client of the edge; ``close_all`` (run after every test of ws_edge) closes it if the test did not."""
    url = f"{edge.ws_url}{WS_PATH}?{f'token={token}&' if token else ''}{query}"
    ws = await websockets.connect(url, **options)
    _OPENED.append(ws)
    return ws


async def close_all() -> None:
    while _OPENED:
        ws = _OPENED.pop()
        ws.transport.abort()  # no close handshake: the edge may be gone, or the client stalled on purpose
        await ws.wait_closed()


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def open_map(
    edge: Service, token: str, query: str = "", **options: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """A connected map and its first frame after ``connected`` (initial_state, or resumed)."""
    ws = await connect(edge, token, query, **options)
    assert (await recv_json(ws))["type"] == "connected"
    return ws, await recv_json(ws)


async def updates_until(ws: ClientConnection, done: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """``location_update`` frames (and the entries of ``location_batch`` frames, each given its batch's cursor when
    it is the last) until ``done(received)`` is true."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(received):
            message = await recv_json(ws, timeout)
            if message["type"] == "location_update":
                received.append(message)
            elif message["type"] == "location_batch":
                items = message["data"]
                received.extend({"type": "location_update", "data": item} for item in items[:-1])
                received.append({"type": "location_update", "data": items[-1], "cursor": message["cursor"]})
    return received
