"""A dispatcher map as the tests see it: a WebSocket client of the edge and a source of fixes on the topic."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from schemas.claims import Role
from schemas.cursor import decode_cursor
from schemas.events import LocationRecorded
from tests.support.events import T0, location
from tests.support.stack import Service, Stack

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


@dataclass
class MapView:
    """What a dispatcher's map shows, kept from the frames it receives (initial_state, location_update,
    location_batch, technician_removed), with the cursor to resume from; offsets received twice or out of order are
    recorded in ``repeated``. The one map-client double of the tests: the tests that drive clients keep theirs here."""

    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursor: str | None = None
    last_offset: int = -1
    repeated: list[int] = field(default_factory=list)

    def take(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply ``frame``; returns the locations it carried (for the caller's own checks)."""
        kind = frame["type"]
        carried: list[dict[str, Any]] = []
        if kind == "initial_state":
            carried = list(frame["data"])
            self.locations = {location["technician_id"]: location for location in carried}
            self.last_offset = decode_cursor(frame["cursor"]).offset
        elif kind in ("location_update", "location_batch"):
            carried = [frame["data"]] if kind == "location_update" else list(frame["data"])
            for location in carried:
                self.locations[location["technician_id"]] = location
            offset = decode_cursor(frame["cursor"]).offset
            if offset <= self.last_offset:
                self.repeated.append(offset)
            self.last_offset = offset
        elif kind == "technician_removed":
            self.locations.pop(frame["technician_id"], None)
        if "cursor" in frame and kind != "resumed":
            self.cursor = frame["cursor"]
        return carried

    def positions(self) -> dict[str, tuple[float, float]]:
        return {technician: (loc["latitude"], loc["longitude"]) for technician, loc in self.locations.items()}


async def one_fix_through_the_services(stack: Stack) -> str:
    """Start the projector, the ingest API and the edge on ``stack``; a device's fix (acme-fiber, tech-ada) is
    answered 202 and reaches a dispatcher's map. Returns its event id (what the tests then look for elsewhere)."""
    await stack.start("projector")
    api = await stack.start("producers")
    edge = await stack.start("ws-edge")
    client, _ = await open_map(edge, stack.token("acme-fiber"))
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{api.url}/api/v1/field-service/technicians/tech-ada/location",
            json={"latitude": 6.52, "longitude": 3.38},
            headers={"Authorization": f"Bearer {stack.token('acme-fiber', Role.DEVICE_GATEWAY)}"},
        )
    assert answer.status_code == 202, answer.text
    (update,) = await updates_until(client, lambda got: len(got) >= 1)
    assert update["data"]["technician_id"] == "tech-ada" and update["data"]["latitude"] == 6.52
    await client.close()
    return str(answer.json()["event_id"])
