"""A paced replay of a tenant's history onto a map: the map feed's URL with ``replay_from``, ``replay_to`` and
``speed`` (docs/replay.md).

The range is checked before the upgrade (HTTP 422 with the reason); the token as for the live feed
(``ws_edge/auth_handshake.py``), and then its role: an analyst or admin (else 1008). The client gets
``connected``, the map as it was at ``replay_from`` as ``initial_state`` (every event appended before it, applied
by the projector's rule), then the range's events as ``location_update`` when the replay clock reaches their
device time (``replay/pacing.py``), and ``replay_done`` when it reaches ``replay_to``. It may send ``pause``,
``resume``, ``speed`` and ``seek`` (a fresh ``initial_state`` of that moment, then on from there), and ``ping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from locstream.settings import KafkaSettings
from projector.apply import Position
from replay.history_record import HistoryRecord
from replay.pacing import MAX_SPEED, ReplayClock
from replay.reader import HistoryReader
from replay.time_range import RangeError, TimeRange, time_range, to_ms
from schemas.claims import HISTORY_ROLES
from schemas.cursor import Cursor
from schemas.events import InvalidEventError, LocationRecorded
from schemas.ws import CLOSE_POLICY_VIOLATION, PING_TEXT, ReplayControl
from ws_edge import frames
from ws_edge.auth_handshake import handshake
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView

log = logging.getLogger(__name__)

REPLAY_PARAMETERS = ("replay_from", "replay_to", "speed")


@dataclass(frozen=True)
class ReplayRequest:
    range: TimeRange
    speed: float


def is_replay(query: QueryParams) -> bool:
    return any(name in query for name in REPLAY_PARAMETERS)


def replay_request(query: QueryParams, kafka: KafkaSettings) -> ReplayRequest:
    """The replay asked for in the URL; ``RangeError`` with the reason when it cannot be played."""
    start, end = query.get("replay_from"), query.get("replay_to")
    if not start or not end:
        raise RangeError("a replay needs both replay_from and replay_to (ISO 8601 with offset)")
    try:
        speed = float(query.get("speed", "1"))
    except ValueError as exc:
        raise RangeError(f"speed: {query.get('speed')!r} is not a number") from exc
    if not 0 <= speed <= MAX_SPEED:
        raise RangeError(f"speed must be between 0 and {MAX_SPEED:g} (0: as fast as the client reads)")
    return ReplayRequest(time_range(start, end, timedelta(days=kafka.retention_days)), speed)


class _SeekError(Exception):
    def __init__(self, to: datetime) -> None:
        self.to = to


class ReplaySession:
    def __init__(self, websocket: WebSocket, settings: EdgeSettings) -> None:
        self.websocket = websocket
        self.settings = settings
        self.connection_id = str(uuid.uuid4())
        self._changed = asyncio.Event()  # a control message came
        self._seek: datetime | None = None
        self._clock: ReplayClock | None = None
        self._range: TimeRange | None = None
        self._gone = False  # the client left: the player stops at its next wait

    async def run(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            await self._run()

    async def _run(self) -> None:
        try:
            request = replay_request(self.websocket.query_params, self.settings.kafka)
        except RangeError as exc:  # before the upgrade: a plain HTTP answer says why
            await self.websocket.send_denial_response(JSONResponse({"detail": str(exc)}, status_code=422))
            return
        hello = await handshake(self.websocket, self.settings)
        if hello is None:
            return
        if hello.claims.role not in HISTORY_ROLES:
            await self.websocket.close(CLOSE_POLICY_VIOLATION, f"role {hello.claims.role.value} may not replay")
            return
        tenant_id = hello.claims.tenant_id
        await self.websocket.send_text(frames.connected(self.connection_id, tenant_id, 1))
        self._clock = ReplayClock(request.range.start, request.speed, time.monotonic())
        self._range = request.range
        controls = asyncio.create_task(self._read_controls())
        try:
            start: datetime | None = request.range.start
            while True:
                if start is not None:
                    try:
                        sent = await self._play(tenant_id, start, request.range)
                        await self.websocket.send_text(frames.replay_done(sent))
                        start = None
                    except _SeekError as seek:
                        start = seek.to
                        continue
                await self._changed.wait()  # done: only a seek plays again
                self._changed.clear()
                if self._gone:
                    return
                start, self._seek = self._seek, None
        finally:
            controls.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await controls

    async def _play(self, tenant_id: str, start: datetime, whole: TimeRange) -> int:
        """The map at ``start``, then the events up to the range's end, paced; how many updates were sent. One
        pass over the tenant's partition, from its oldest record: what was appended before ``start`` is applied
        silently, the rest is played."""
        clock = self._clock
        assert clock is not None
        view = LiveView(timedelta(seconds=self.settings.stale_after_seconds), clock=lambda: clock.at(time.monotonic()))
        epoch, start_ms = self.settings.kafka.topic_epoch, to_ms(start)
        sent, played = 0, False
        async with HistoryReader(self.settings.kafka) as reader:
            span = await reader.span(tenant_id, None, whole.end)
            partition = span.partition.partition
            last_before = span.first - 1
            async for batch in reader.batches(span, tenant_id):
                for record in batch:
                    if record.appended_ms < start_ms:
                        last_before = record.offset
                        with contextlib.suppress(InvalidEventError):
                            view.apply(record.event(), Position(partition, record.offset))
                        continue
                    if not played:
                        played = await self._begin(view, tenant_id, Cursor(epoch, partition, last_before), start)
                    sent += await self._send_paced(view, record, Cursor(epoch, partition, record.offset))
            if not played:
                await self._begin(view, tenant_id, Cursor(epoch, partition, last_before), start)
        await self._until(whole.end)
        return sent

    async def _begin(self, view: LiveView, tenant_id: str, cursor: Cursor, start: datetime) -> bool:
        """The map at ``start`` as ``initial_state`` (stale as of ``start``); the replay clock starts there."""
        assert self._clock is not None
        self._clock.seek(start, time.monotonic())
        await self.websocket.send_text(frames.initial_state(view.locations(tenant_id), cursor.encode()))
        return True

    async def _send_paced(self, view: LiveView, record: HistoryRecord, cursor: Cursor) -> int:
        """When the clock reaches the event's device time, its update, if it changes the map (1 sent, else 0)."""
        try:
            event = record.event()
        except InvalidEventError:
            return 0
        await self._until(event.recorded_at)
        location = view.apply(event, Position(cursor.partition, record.offset))
        if location is None:
            return 0
        backfill = isinstance(event, LocationRecorded) and event.data.backfill
        await self.websocket.send_text(frames.update(location, record.offset, cursor.encode(), backfill=backfill).v1)
        return 1

    async def _until(self, moment: datetime) -> None:
        """Until the replay clock reaches ``moment``; raises ``_SeekError`` when the client seeks meanwhile."""
        clock = self._clock
        assert clock is not None
        while True:
            if self._gone:
                raise WebSocketDisconnect(1000)
            if self._seek is not None:
                to, self._seek = self._seek, None
                raise _SeekError(to)
            delay = clock.due_in(moment, time.monotonic())
            if delay <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), None if delay == float("inf") else delay)

    async def _read_controls(self) -> None:
        clock, whole = self._clock, self._range
        assert clock is not None and whole is not None
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self._gone = True
                self._changed.set()
                return
            text = message.get("text") or ""
            if text.strip() == PING_TEXT:
                await self.websocket.send_text(frames.PONG)
                continue
            try:
                control = ReplayControl.model_validate(json.loads(text))
                now = time.monotonic()
                if control.type == "pause":
                    clock.pause(now)
                elif control.type == "resume":
                    clock.resume(now)
                elif control.type == "speed":
                    if control.speed is None:
                        raise ValueError("speed: give the new speed")
                    clock.set_speed(control.speed, now)
                else:
                    if control.to is None or not whole.start <= control.to < whole.end:
                        raise ValueError("seek: give a time in [replay_from, replay_to)")
                    self._seek = control.to
            except (ValueError, ValidationError) as exc:
                message_text = str(exc).splitlines()[0][:200]
                await self.websocket.send_text(frames.error(f"replay control: {message_text}"))
                continue
            self._changed.set()
