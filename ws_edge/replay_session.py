"""A paced replay of a tenant's history onto a map: the map feed's URL with ``replay_from``, ``replay_to`` and
``speed`` (docs/replay.md).

The range is checked before the upgrade (HTTP 422 with the reason); the token as for the live feed
(``ws_edge/auth_handshake.py``), and then its role: an analyst or admin (else 1008). The client gets
``connected``, the map as it was at ``replay_from`` as ``initial_state`` (every event appended before it, applied
by the projector's rule), then the range's events as ``location_update`` when the replay clock reaches their
device time (``replay/pacing.py``), and ``replay_done`` when it reaches ``replay_to``. It may send ``pause``,
``resume``, ``speed`` and ``seek`` (a fresh ``initial_state`` of that moment, then on from there), ``ping``, and a
fresh token (``{"type": "auth"}``): as on the live feed, the session is closed with 4001 at the token's expiry plus
the leeway unless a fresh one came.

Two tasks: the player (which holds a Kafka consumer while it reads the partition) and the control reader. The
session ends when either ends, whatever the reason (the client left, a policy close, the token expired, a bug in
one of them, the edge shutting down): both are then cancelled and awaited, so the consumer is always closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from domain.position import Position
from locstream import bounded_json
from locstream.auth import TokenVerifier
from locstream.settings import KafkaSettings
from locstream.strict_numbers import decimal
from locstream.work_slots import NoSlotError, WorkSlots
from replay.history_record import HistoryRecord
from replay.pacing import MAX_SPEED, ReplayClock
from replay.reader import PACED_FETCH_BYTES, PACED_RECORDS_PER_READ, HistoryReader
from replay.time_range import RangeError, TimeRange, time_range, to_ms
from schemas.claims import HISTORY_ROLES, TokenClaims, refusal
from schemas.cursor import Cursor
from schemas.events import GeofenceEntered, GeofenceExited, InvalidEventError, LocationRecorded
from schemas.ws import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    PING_TEXT,
    ReplayControl,
)
from ws_edge import messages
from ws_edge.auth_handshake import ViewerRefusedError, expires_in, handshake, refreshed_claims
from ws_edge.inbound import InboundRule
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView
from ws_edge.wire import close_within, wire_of

log = logging.getLogger(__name__)

REPLAY_PARAMETERS = ("replay_from", "replay_to", "speed")
MAX_CONTROL_CHARS = 16 * 1024


@dataclass(frozen=True)
class ReplayRequest:
    range: TimeRange
    speed: float


def is_replay(query: Mapping[str, str]) -> bool:
    return any(name in query for name in REPLAY_PARAMETERS)


def replay_request(query: QueryParams, kafka: KafkaSettings) -> ReplayRequest:
    """The replay asked for in the URL; ``RangeError`` with the reason when it cannot be played."""
    start, end = query.get("replay_from"), query.get("replay_to")
    if not start or not end:
        raise RangeError("a replay needs both replay_from and replay_to (ISO 8601 with offset)")
    try:
        speed = decimal(query.get("speed", "1"))
    except ValueError as exc:
        raise RangeError(f"speed: {exc}") from exc
    if not 0 <= speed <= MAX_SPEED:
        raise RangeError(f"speed must be between 0 and {MAX_SPEED:g} (0: as fast as the client reads)")
    return ReplayRequest(time_range(start, end, timedelta(days=kafka.retention_days)), speed)


LOOP_TURN_SECONDS = 0.005  # a replay catching up gives the edge's loop a turn at least this often


class _SeekError(Exception):
    def __init__(self, to: datetime) -> None:
        self.to = to


class ReplaySession:
    def __init__(self, websocket: WebSocket, settings: EdgeSettings, verifier: TokenVerifier, slots: WorkSlots) -> None:
        self.websocket = websocket
        self.slots = slots
        self.verifier = verifier
        self.settings = settings
        self.connection_id = str(uuid.uuid4())
        self.reader: HistoryReader | None = None  # the consumer of the play under way, if any
        self.close_code: int | None = None
        self.close_reason = ""
        self._changed = asyncio.Event()  # a control message came
        self._seek: datetime | None = None
        self._clock: ReplayClock | None = None
        self._range: TimeRange | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._expiry: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            await self._run()

    def close(self, code: int, reason: str) -> None:
        """End the session with ``code`` (the first reason given wins): its player and reader are cancelled."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._changed.set()  # a player between cancellations notices the close at its next step
        for task in self._tasks:
            task.cancel()

    async def _run(self) -> None:
        try:
            request = replay_request(self.websocket.query_params, self.settings.kafka)
        except RangeError as exc:  # before the upgrade: a plain HTTP answer says why
            await self.websocket.send_denial_response(JSONResponse({"detail": str(exc)}, status_code=422))
            return
        hello = await handshake(self.websocket, self.settings, self.verifier)
        if hello is None:
            return
        if (reason := refusal(hello.claims, HISTORY_ROLES, "replay")) is not None:
            await self.websocket.close(CLOSE_POLICY_VIOLATION, reason)
            return
        tenant_id = hello.claims.tenant_id
        try:
            slot = self.slots.take(tenant_id)
        except NoSlotError as exc:
            await self.websocket.close(CLOSE_TRY_AGAIN_LATER, f"{exc.reason}: retry in {exc.retry_after} s")
            return
        try:
            await self._replay(hello.claims, request)
        finally:
            slot.release()

    async def _replay(self, claims: TokenClaims, request: ReplayRequest) -> None:
        tenant_id = claims.tenant_id
        await self.websocket.send_text(messages.connected(self.connection_id, tenant_id, 1))
        self._clock = ReplayClock(request.range.start, request.speed, time.monotonic())
        self._range = request.range
        self._watch_expiry(claims)
        if self.close_code is None:  # not closed meanwhile (the edge shutting down)
            self._tasks = [
                asyncio.create_task(self._player(tenant_id, request.range), name=f"replay-player-{self.connection_id}"),
                asyncio.create_task(self._read_controls(claims), name=f"replay-reader-{self.connection_id}"),
            ]
        try:
            if self._tasks:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._expiry is not None:
                self._expiry.cancel()
            # Cancelled until done: aiokafka's close paths swallow a CancelledError that lands while they await their
            # own cancelled tasks, and a player cancelled there would otherwise go on waiting for its clock.
            pending = set(self._tasks)
            while pending:
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=1.0)
            ended = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, outcome in zip(self._tasks, ended, strict=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, WebSocketDisconnect):
                log.error("replay %s: %s failed", self.connection_id, task.get_name(), exc_info=outcome)
                self.close(CLOSE_INTERNAL_ERROR, "replay failed")
        if self.close_code is not None:
            wire = wire_of(self.websocket)
            await close_within(
                self.websocket, wire, self.close_code, self.close_reason, self.settings.slow_consumer_seconds
            )

    def _watch_expiry(self, claims: TokenClaims) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = expires_in(claims, self.settings.token_expiry_leeway_seconds, time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.close, CLOSE_UNAUTHENTICATED, "token expired")

    async def _player(self, tenant_id: str, whole: TimeRange) -> None:
        """Play from the range's start; after ``replay_done``, only a seek plays again."""
        start: datetime | None = whole.start
        while True:
            if start is not None:
                try:
                    sent = await self._play(tenant_id, start, whole)
                    await self.websocket.send_text(messages.replay_done(sent))
                    start = None
                except _SeekError as seek:
                    start = seek.to
                    continue
            await self._changed.wait()
            self._changed.clear()
            if self.close_code is not None:
                return
            start, self._seek = self._seek, None

    async def _play(self, tenant_id: str, start: datetime, whole: TimeRange) -> int:
        """The map at ``start``, then the events up to the range's end, paced; how many updates were sent. One
        pass over the tenant's partition, from its oldest record: what was appended before ``start`` is applied
        silently, the rest is played."""
        clock = self._clock
        assert clock is not None
        view = LiveView()
        epoch, start_ms = self.settings.kafka.topic_epoch, to_ms(start)
        sent, played = 0, False
        self.reader = HistoryReader(self.settings.kafka, PACED_FETCH_BYTES, PACED_RECORDS_PER_READ)
        async with self.reader as reader:
            span = await reader.span(tenant_id, None, whole.end)
            partition = span.partition.partition
            last_before = span.first - 1
            turn = time.perf_counter()
            async for batch in reader.batches(span, tenant_id):
                for record in batch:
                    if time.perf_counter() - turn > LOOP_TURN_SECONDS:  # the edge serves live maps meanwhile
                        await asyncio.sleep(0)
                        turn = time.perf_counter()
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
        """The map at ``start`` as ``initial_state`` (offline, stopped or moving as the facts before it said); the
        replay clock starts there."""
        assert self._clock is not None
        self._clock.seek(start, time.monotonic())
        await self.websocket.send_text(messages.initial_state(view.locations(tenant_id), cursor.encode()))
        return True

    async def _send_paced(self, view: LiveView, record: HistoryRecord, cursor: Cursor) -> int:
        """When the clock reaches the event's device time, its update, if it changes the map (1 sent, else 0)."""
        try:
            event = record.event()
        except InvalidEventError:
            return 0
        await self._until(event.recorded_at)
        if isinstance(event, GeofenceEntered | GeofenceExited):
            frame = view.crossing(event)
            if frame is not None:
                await self.websocket.send_text(frame)
            return 0 if frame is None else 1
        location = view.apply(event, Position(cursor.partition, record.offset))
        if location is None:
            return 0
        backfill = isinstance(event, LocationRecorded) and event.data.backfill
        await self.websocket.send_text(messages.update(location, record.offset, cursor.encode(), backfill=backfill).v1)
        return 1

    async def _until(self, moment: datetime) -> None:
        """Until the replay clock reaches ``moment``; raises ``_SeekError`` when the client seeks meanwhile."""
        clock = self._clock
        assert clock is not None
        while True:
            if self.close_code is not None:
                raise asyncio.CancelledError  # closed, whatever swallowed the cancellation on the way
            if self._seek is not None:
                to, self._seek = self._seek, None
                raise _SeekError(to)
            delay = clock.due_in(moment, time.monotonic())
            if delay <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), None if delay == float("inf") else delay)

    async def _read_controls(self, claims: TokenClaims) -> None:
        """Control messages until the client leaves or breaks a rule (the session is then closed with the code)."""
        rule = InboundRule(self.settings.client_message_rate, time.monotonic())
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            if (refused := rule.refusal(message, now)) is not None:
                self.close(*refused)
                return
            text: str = message["text"]
            if text.strip() == PING_TEXT:
                await self.websocket.send_text(messages.PONG)
                continue
            try:
                parsed = bounded_json.loads(text) if len(text) <= MAX_CONTROL_CHARS else None
            except bounded_json.TooDeepError as exc:
                self.close(CLOSE_INVALID_PAYLOAD, str(exc))
                return
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("type") == "ping":  # the origin's clients' ping
                await self.websocket.send_text(messages.PONG)
                continue
            if isinstance(parsed, dict) and parsed.get("type") == "auth":
                try:
                    claims = await refreshed_claims(text, claims, self.verifier, HISTORY_ROLES)
                except ViewerRefusedError as exc:
                    self.close(CLOSE_POLICY_VIOLATION, exc.reason)
                    return
                self._watch_expiry(claims)
                continue
            try:
                self._control(ReplayControl.model_validate(parsed), now)
            except (ValueError, ValidationError) as exc:
                message_text = str(exc).splitlines()[0][:200]
                await self.websocket.send_text(messages.error(f"replay control: {message_text}"))
                continue
            self._changed.set()

    def _control(self, control: ReplayControl, now: float) -> None:
        clock, whole = self._clock, self._range
        assert clock is not None and whole is not None
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
