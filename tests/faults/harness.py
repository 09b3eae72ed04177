"""The steady load of the fault suite and what it checks after each fault.

- ``Load``: one worker per technician (a device of its own) POSTs fixes round robin over both ingest processes, the
  next only once the last was acknowledged; a fix that fails
  (an error status or no answer) is sent again, same ``event_id``, to the other process, until one answers 202.
  Every attempt is kept (when sent, when answered, how).
- ``MapClient``: a dispatcher's map on one edge; when its socket drops, or when told to ``hop``, it connects to the
  other edge with its cursor. Every frame is kept with its arrival time.
- ``ReadinessWatch``: every service's ``/readyz``, twice a second.
- ``Verdict``: after the load stopped and everything caught up, what must hold, and the case's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus

from domain.position import Position
from domain.projection import TechnicianState
from locstream.settings import DataSettings
from projector.backends import make_store
from projector.rebuild import rebuild
from projector.settings import ProjectorSettings
from projector.store import Snapshot
from schemas.cursor import decode_cursor
from schemas.events import Event
from tests.support.kafka_io import end_offsets, read_all
from tests.support.maps import MapView, connect
from tests.support.stack import Service, Stack, eventually
from ws_edge.view import LiveView

FIX_PATH = "/api/v1/field-service/technicians/{}/location"


@dataclass
class Attempt:
    event_id: str
    tenant: str
    target: int
    sent: float
    answered: float
    status: int  # 0: no answer (connection refused or reset, or the client's timeout)


@dataclass
class Acked:
    tenant: str
    technician: str
    event_id: str
    latitude: float


# Each fix's latitude is the next of these (a millionth of a degree each): unique, so a fix is known by where it is.
# One count for every load of the process: started again for the next fault case, a technician's first fix would lie
# a few hundred metres behind its last one, seconds later, which the quality rule rightly flags as a jump.
SERIAL = itertools.count(1)


@dataclass
class Load:
    api: list[Service]
    tokens: dict[str, str]  # tenant -> a device gateway's token
    technicians: list[tuple[str, str]]
    per_device_rate: float = 2.5
    attempts: list[Attempt] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=lambda: SERIAL)

    def start(self) -> None:
        for device, (tenant, technician) in enumerate(self.technicians):
            self._tasks.append(asyncio.create_task(self._work(device, tenant, technician), name=f"load-{device}"))

    async def stop(self) -> None:
        """Let every worker finish the fix in hand (until it is acknowledged), then stop."""
        self._stopping = True
        await asyncio.gather(*self._tasks)
        self._tasks.clear()
        self._stopping = False

    async def cancel(self) -> None:
        """Stop at once, fixes in hand or not (a test that failed midway)."""
        await cancel_all(self._tasks)
        self._tasks.clear()

    async def _work(self, device: int, tenant: str, technician: str) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(8.0)) as client:
            for turn in itertools.count():
                if self._stopping:
                    return
                began = time.monotonic()
                await self._deliver(client, device + turn, tenant, technician)
                await asyncio.sleep(max(0.0, 1 / self.per_device_rate - (time.monotonic() - began)))

    async def _deliver(self, client: httpx.AsyncClient, first: int, tenant: str, technician: str) -> None:
        latitude = round(next(self._serial) / 1_000_000, 6)
        event_id = str(uuid.uuid4())
        body = {
            "latitude": latitude,
            "longitude": 3.0,
            "event_id": event_id,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        headers = {"Authorization": f"Bearer {self.tokens[tenant]}"}
        for attempt in itertools.count():
            target = (first + attempt) % len(self.api)
            sent = time.monotonic()
            try:
                answer = await client.post(
                    f"{self.api[target].url}{FIX_PATH.format(technician)}", json=body, headers=headers
                )
                status = answer.status_code
            except httpx.HTTPError:
                status = 0
            self.attempts.append(Attempt(event_id, tenant, target, sent, time.monotonic(), status))
            if status == 202:
                self.acked.append(Acked(tenant, technician, event_id, latitude))
                return
            assert status in (0, 503), f"a fix refused with {status}, not a fault's 503"
            await asyncio.sleep(0.1 if status else 0.5)  # a device's own pause before trying again


@dataclass
class Frame:
    at: float
    kind: str
    offset: int | None  # the cursor's offset for initial_state and location_update


@dataclass
class MapClient:
    """A dispatcher's map that reconnects to the other edge with its cursor whenever its socket drops: what it
    shows (``map``, which also records offsets received twice) and when each frame came (``frames``)."""

    tenant: str
    token: str
    edge: int
    frames: list[Frame] = field(default_factory=list)
    map: MapView = field(default_factory=MapView)
    connects: int = 0
    _socket: Any = None

    @property
    def cursor(self) -> str | None:
        return self.map.cursor

    async def run(self, edges: list[Service]) -> None:
        while True:
            query = f"cursor={self.cursor}" if self.cursor else ""
            try:
                self._socket = await connect(edges[self.edge], self.token, query)
                self.connects += 1
                async for raw in self._socket:
                    self._take(json.loads(raw))
            except (ConnectionClosed, InvalidStatus, OSError):
                pass
            self.edge = 1 - self.edge  # to the other node, with the cursor
            await asyncio.sleep(0.2)  # a client's own pause between attempts

    def hop(self) -> None:
        """Drop the socket without a close (a phone changing networks): the client resumes on the other edge."""
        if self._socket is not None:
            self._socket.transport.abort()

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        offset = decode_cursor(frame["cursor"]).offset if kind in ("initial_state", "location_update") else None
        if kind == "location_batch":  # v1 clients get one update per record; a batch would hide offsets
            raise AssertionError("the fault suite's clients expect one location_update per record")
        self.frames.append(Frame(time.monotonic(), kind, offset))
        self.map.take(frame)

    @property
    def last_offset(self) -> int | None:
        offsets = [f.offset for f in self.frames if f.offset is not None]
        return offsets[-1] if offsets else None


@dataclass
class Reading:
    at: float
    service: str
    status: int
    body: dict[str, Any]

    @property
    def reports_outage(self) -> bool:
        kafka = self.body.get("kafka") or {}
        return self.status != 200 or bool(kafka.get("under_replicated")) or bool(kafka.get("offline"))


@dataclass
class ReadinessWatch:
    services: list[Service]
    readings: list[Reading] = field(default_factory=list)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                for service in self.services:
                    try:
                        answer = await client.get(f"{service.url}/readyz")
                        body = answer.json()
                        status = answer.status_code
                    except (httpx.HTTPError, ValueError):
                        body, status = {}, 0
                    self.readings.append(Reading(time.monotonic(), f"{service.name}:{service.port}", status, body))
                await asyncio.sleep(0.5)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Until ``condition()`` holds (AssertionError naming ``what`` after ``timeout`` s)."""

    async def probe() -> bool | None:
        return condition() or None

    await eventually(probe, timeout=timeout, what=what)


def tenant_updates(records: list[tuple[Event, Position]]) -> dict[str, list[int]]:
    """Per tenant, the offsets of the records that change its map, as the edge's own view decides (a retried
    event, or one older than the technician's position, changes nothing)."""
    view = LiveView()
    changes: dict[str, list[int]] = {}
    for event, position in records:
        if view.apply(event, position) is not None:
            changes.setdefault(event.tenant_id, []).append(position.offset)
    return changes


def stream_faults(client: MapClient, changes: list[int]) -> list[str]:
    """What is wrong with one client's stream: an offset twice or out of order, or a change missing between two
    frames it received (a fresh initial_state starts over: a snapshot may skip what it already includes)."""
    wrong: list[str] = []
    previous: int | None = None
    for frame in client.frames:
        if frame.offset is None:
            continue
        if frame.kind == "initial_state":
            previous = frame.offset
            continue
        if previous is not None:
            if frame.offset <= previous:
                wrong.append(f"offset {frame.offset} after {previous}")
            missing = [o for o in changes if previous < o < frame.offset]
            if missing:
                wrong.append(f"missing {missing} between {previous} and {frame.offset}")
        previous = frame.offset
    last = changes[-1] if changes else None
    if last is not None and previous is not None and previous < last:
        wrong.append(f"stopped at {previous}, the tenant's last change is {last}")
    return wrong


@dataclass
class CaseFigures:
    case: str
    first_202_after_fault_s: float | None
    longest_without_202_s: float
    answered_503: int
    first_frame_after_fault_s: float | None
    longest_without_frames_s: float  # the worst client's
    readyz_reported: bool
    stuck_consumer_reported: bool  # aiokafka #1154 (or a stall as long as its threshold) seen by a canary
    fresh_initial_states: int  # resumes that could not resume (a snapshot instead)
    acked: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def longest_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


async def settle_and_check(
    stack: Stack,
    load: Load,
    clients: list[MapClient],
    dsn: str,
    scratch: Path,
) -> tuple[list[tuple[Event, Position]], dict[str, list[int]]]:
    """Once the load stopped: the projectors and every client caught up; every acknowledged fix in the history
    exactly once; the table equal to a fresh replay; every client's stream whole and in order."""
    ends = await end_offsets(stack.kafka)

    async def applied() -> bool | None:
        offsets = (await stack.snapshot()).offsets
        return all(offsets.get(p, 0) >= end for p, end in ends.items()) or None

    await eventually(applied, timeout=90, what="the projectors to apply the whole topic")
    records = await read_all(stack.kafka)
    changes = tenant_updates(records)

    async def clients_caught_up() -> bool | None:
        return all(c.last_offset is not None and c.last_offset >= changes[c.tenant][-1] for c in clients) or None

    await eventually(clients_caught_up, timeout=60, what="every map client to reach its tenant's last change")

    store = make_store(DataSettings(database_url=dsn), stack.kafka.topic)
    await store.open()
    try:
        by_technician: dict[tuple[str, str], set[str]] = {}
        for fix in load.acked:
            by_technician.setdefault((fix.tenant, fix.technician), set()).add(fix.event_id)
        for (tenant, technician), acked in by_technician.items():
            points = await store.history(tenant, technician, None, None, 1_000_000, "all")
            assert points is not None
            ids = [str(p.event_id) for p in points]
            assert len(ids) == len(set(ids)), f"an event twice in {technician}'s history"
            assert acked <= set(ids), f"acknowledged fixes missing from the history: {acked - set(ids)}"
            flagged = {str(p.event_id): (p.recorded_at.isoformat(), p.latitude, p.quality) for p in points if p.quality}
            assert not flagged, f"{technician}: plausible fixes flagged: {flagged} among {len(points)}"
        live = await store.snapshot()
    finally:
        await store.close()

    replay_dir = scratch / f"replay-{uuid.uuid4().hex[:8]}"
    settings = ProjectorSettings(kafka=stack.kafka, data=DataSettings(data_dir=replay_dir), auth=stack.auth)
    await rebuild(settings, out=io.StringIO())
    fresh = make_store(settings.data, stack.kafka.topic)
    await fresh.open()
    try:
        replayed = await fresh.snapshot()
    finally:
        await fresh.close()
    assert _table(live) == _table(replayed), "the table differs from a fresh replay of the topic"
    assert live.offsets == replayed.offsets

    for client in clients:
        wrong = stream_faults(client, changes[client.tenant])
        assert not wrong, (client.tenant, client.edge, wrong[:5])
    return records, changes


def _table(snapshot: Snapshot) -> dict[tuple[str, str], TechnicianState]:
    return {(s.tenant_id, s.technician_id): s for s in snapshot.states}


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
