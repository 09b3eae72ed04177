"""A Hypothesis-drawn program of client actions against a real edge, with 100,000 events from 10 tenants.

Clients connect (v1 or v2), subscribe with random filters, disconnect, resume with their cursors, let short tokens
expire (4001) or refresh them in-band, while events stream in. Every frame a client gets must be of its tenant and
match the filter in effect; at the end every client's map equals the projector's table filtered the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from domain.projection import UNKNOWN_STATUS
from schemas.events import Event
from tests.support.events import T0, location, profile
from tests.support.kafka_io import end_offsets, produce
from tests.support.maps import MapView, connect
from tests.support.stack import Stack, eventually
from ws_edge import messages
from ws_edge.filters import Filter, parse_subscribe

pytestmark = pytest.mark.integration

TENANTS = [f"t{i}" for i in range(10)]
TECHNICIANS = 20
STATUSES = ["available", "on_job", "off", UNKNOWN_STATUS]
TOTAL_EVENTS = 100_000
CHUNKS = 20


def _technicians(tenant: str) -> list[str]:
    return [f"{tenant}-tech-{j}" for j in range(TECHNICIANS)]


def _events(rng: random.Random, first: int, count: int) -> list[Event]:
    events: list[Event] = []
    for i in range(first, first + count):
        tenant = rng.choice(TENANTS)
        technician, at = rng.choice(_technicians(tenant)), T0 + timedelta(seconds=i)
        if rng.random() < 0.05:
            events.append(profile(tenant, technician, at, status=rng.choice(STATUSES[:3])))
        else:
            latitude, longitude = rng.uniform(-60, 60), rng.uniform(-170, 170)
            events.append(location(tenant, technician, at, latitude, longitude))
    return events


@dataclass
class MapClient:
    """A dispatcher's map as the test keeps it, fed by its own reader task."""

    name: str
    tenant: str
    protocol: int
    map: MapView = field(default_factory=MapView)
    filter: Filter | None = None  # in effect: since the initial_state that answered its subscribe
    wanted: dict[str, Any] | None = None  # the last subscribe sent: sent again after every reconnect
    requested: list[Filter | None] = field(default_factory=list)  # subscribes not answered yet
    ws: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None
    token_expires: float = 0.0
    refreshed: bool = False
    closes_before_refresh = 0
    closes: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "initial_state" and "filter" in frame:
            # it answers the last of the subscribes the edge had when it took the snapshot
            applied = parse_subscribe({"type": "subscribe", **frame["filter"]})
            self.filter = None if applied == Filter() else applied
            answered = max(i for i, f in enumerate(self.requested) if f == self.filter)
            del self.requested[: answered + 1]
        for carried in self.map.take(frame):
            self._check(carried)

    def _check(self, location: dict[str, Any]) -> None:
        if not location["technician_id"].startswith(f"{self.tenant}-"):
            self.violations.append(f"{self.name}: {location['technician_id']} is not of tenant {self.tenant}")
        if self.filter is not None and not self.filter.matches(location):
            self.violations.append(f"{self.name}: {location} outside its filter {self.filter}")

    async def read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.take(json.loads(message))
        if self.ws.close_code is not None:
            self.closes.append(self.ws.close_code)


KINDS = ["connect", "subscribe", "disconnect", "resume", "refresh"]
_BBOX = st.tuples(st.floats(-170, 100), st.floats(-60, 30), st.floats(10, 200), st.floats(10, 90)).map(
    lambda b: [b[0], b[1], min(b[0] + b[2], 180.0), min(b[1] + b[3], 90.0)]
)
_IDS = st.lists(st.integers(0, TECHNICIANS - 1), max_size=10, unique=True)  # technician numbers of the tenant
_STATUS = st.lists(st.sampled_from(STATUSES), min_size=1, unique=True)
# A filter with at least one field (the simplest one drawn is a 10-degree box at 0, 0).
FILTERS = st.one_of(
    st.builds(lambda b: {"bbox": b}, _BBOX),
    st.builds(lambda i: {"technician_ids": i}, _IDS),
    st.builds(lambda s: {"status": s}, _STATUS),
    st.builds(lambda b, i, s: {"bbox": b, "technician_ids": i, "status": s}, _BBOX, _IDS, _STATUS),
)
# Per step: which client (an index into those it may apply to, shifted by how often the action ran), and for a
# new client its tenant, protocol and token lifetime, and the filter a subscribe sends. Drawn before anything runs,
# so a replay draws the same.
STEP = st.tuples(
    st.integers(0, 10**6), st.sampled_from(TENANTS), st.sampled_from([1, 2]), st.sampled_from([600, 3]), FILTERS
)


def _subscribe_message(spec: dict[str, Any], tenant: str) -> dict[str, Any]:
    message = {"type": "subscribe", **spec}
    if "technician_ids" in spec:
        message["technician_ids"] = [f"{tenant}-tech-{i}" for i in spec["technician_ids"]]
    return message


# No shrinking and no example database: each example is a minute against real processes, and timing (which
# clients are still connected when a step runs) is not part of the draw; a failure reports the program as drawn.
@settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32), order=st.permutations(KINDS * 8), steps=st.lists(STEP, min_size=40, max_size=40))
async def test_every_frame_is_of_the_clients_tenant_and_filter_and_every_final_map_is_the_table(
    stack: Stack, seed: int, order: list[str], steps: list[tuple[int, str, int, int, dict[str, Any]]]
) -> None:
    stack.env["LOCSTREAM_EDGE_TOKEN_EXPIRY_LEEWAY_SECONDS"] = "0"
    stack.env["LOCSTREAM_EDGE_CLIENT_MESSAGE_RATE"] = "0"
    edge = await stack.start("ws-edge")
    await stack.start("projector")
    rng = random.Random(seed)
    clients: list[MapClient] = []

    async def open_client(client: MapClient, ttl: int) -> None:
        query = f"cursor={client.map.cursor}" if client.map.cursor else ""
        options: dict[str, Any] = {"subprotocols": ["locstream.v2"]} if client.protocol == 2 else {}
        client.ws = await connect(edge, stack.token(client.tenant, ttl=ttl), query, **options)
        client.token_expires, client.refreshed = time.time() + ttl, False
        # A new connection watches the whole tenant until it subscribes.
        client.filter, client.requested = None, []
        client.reader = asyncio.create_task(client.read())

    async def subscribe(client: MapClient, message: dict[str, Any]) -> None:
        assert client.ws is not None
        client.wanted = message
        wanted = parse_subscribe(message)
        client.requested.append(None if wanted == Filter() else wanted)
        await client.ws.send(json.dumps(message))

    async def close(client: MapClient) -> None:
        if client.ws is not None:
            await client.ws.close()
        if client.reader is not None:
            await client.reader
        client.ws = client.reader = None

    def connected() -> list[MapClient]:
        return [c for c in clients if c.reader is not None and not c.reader.done()]

    produced = 0
    # The program: every kind of action at least 3 times, the rest drawn; spread over the stream's chunks.
    program = list(zip(order, steps, strict=True))
    done: dict[str, int] = dict.fromkeys(KINDS, 0)
    # c0 has a short token it never refreshes: it must be closed 4001 and come back with its cursor.
    expiring = MapClient("c0", TENANTS[0], 1)
    clients.append(expiring)
    await open_client(expiring, ttl=3)
    for chunk in range(CHUNKS):
        for action, (pick, tenant, protocol, ttl, spec) in program[chunk::CHUNKS]:
            live = connected()
            gone = [c for c in clients if c not in live and c is not expiring]  # c0 comes back only at the end
            if action == "connect":
                client = MapClient(f"c{len(clients)}", tenant, protocol)
                clients.append(client)
                await open_client(client, ttl=ttl)
            elif action == "subscribe" and live:
                client = live[(pick + done[action]) % len(live)]
                await subscribe(client, _subscribe_message(spec, client.tenant))
            elif action == "disconnect" and (others := [c for c in live if c is not expiring]):
                await close(others[(pick + done[action]) % len(others)])
            elif action == "resume" and gone:
                client = gone[(pick + done[action]) % len(gone)]
                await close(client)
                await open_client(client, ttl=600)
                if client.wanted is not None:  # as a map does: the filter again after reconnecting
                    await subscribe(client, client.wanted)
            elif action == "refresh" and (refreshable := [c for c in live if c is not expiring]):
                client = refreshable[(pick + done[action]) % len(refreshable)]
                if client.ws is not None and client.token_expires - time.time() > 1:
                    await client.ws.send(json.dumps({"type": "auth", "token": stack.token(client.tenant, ttl=600)}))
                    client.refreshed, client.closes_before_refresh = True, len(client.closes)
            else:
                continue
            done[action] += 1
        count = TOTAL_EVENTS // CHUNKS
        await produce(stack.kafka, _events(rng, produced, count))
        produced += count

    # Everyone still away comes back with its cursor and its filter; then every map must converge on the table.
    for client in clients:
        if client not in connected():
            await close(client)
            await open_client(client, ttl=600)
    for client in clients:
        if client.refreshed:
            later = client.closes[client.closes_before_refresh :]
            assert 4001 not in later, f"{client.name} was closed for expiry after a refresh"
        if client.wanted is not None and client.filter is None and not client.requested:
            await subscribe(client, client.wanted)
    ends = await end_offsets(stack.kafka)

    async def projector_caught_up() -> bool:
        offsets = (await stack.snapshot()).offsets
        return all(offsets.get(partition, 0) >= end for partition, end in ends.items())

    await eventually(projector_caught_up, timeout=120, what="the projector to apply every event")
    table = (await stack.snapshot()).states

    def expected(client: MapClient) -> dict[str, dict[str, Any]]:
        found = {}
        for state in table:
            location = messages.location_of(state)
            if state.tenant_id == client.tenant and location is not None:
                if client.filter is None or client.filter.matches(location):
                    found[state.technician_id] = json.loads(messages.encode(location))
        return found

    for client in clients:

        async def converged(client: MapClient = client) -> bool:
            return not client.requested and client.map.locations == expected(client)

        await eventually(converged, timeout=60, what=f"{client.name}'s map to equal the table")
        assert client.violations == []
    assert 4001 in expiring.closes  # its token lapsed mid-stream; it came back with its cursor
    assert done["subscribe"] >= 3 and done["disconnect"] >= 3 and done["resume"] >= 1, done
    assert sum(client.filter is not None for client in clients) >= 2  # the final maps are filtered ones too
    for client in clients:
        await close(client)
