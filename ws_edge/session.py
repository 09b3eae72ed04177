"""One dispatcher connection, from the auth handshake to its close.

Order on the wire: ``connected``, then either ``initial_state`` (the tenant's map and its cursor) or, for a client
back with a cursor the resume buffer still covers, ``resumed`` and exactly the updates it missed; then every update
of the tenant that matches its filter. Subscribing and taking the snapshot (or the missed updates) happen in one
step with no await between them, and the live feed applies and publishes in one step too, so every change is
either in what the client got first or queued after it.

Two tasks per connection: this one reads (pings, ``subscribe``, ``auth`` refreshes) and a writer writes the first
frames, then what the connection has yet to get (``ws_edge/outbox.py``), to the wire (``ws_edge/wire.py``). The
reader runs from the moment the connection is subscribed, so what a client sends and when its token expires count
even while it has not read its first frames. Closing for the edge's reasons (slow consumer, token expired, a policy
violation, shutdown) cancels the writer, which then sends the close frame; a client that does not read it within
the slow-consumer deadline is dropped, so a close always ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from fastapi import WebSocket, WebSocketDisconnect
from prometheus_client import Histogram

from domain.geofencing import FenceBook
from locstream import bounded_json
from locstream.auth import TokenVerifier
from schemas.claims import TokenClaims
from schemas.cursor import Cursor, InvalidCursorError, decode_cursor
from schemas.geofences import fence_wire
from schemas.ws import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    PING_TEXT,
)
from ws_edge import messages
from ws_edge.auth_handshake import Handshake, ViewerRefusedError, expires_in, handshake, refreshed_claims
from ws_edge.fanout import Fanout, Subscriber, TooManyConnectionsError
from ws_edge.filters import EVERYTHING, FilterError, described, parse_subscribe
from ws_edge.framing import text_frame
from ws_edge.inbound import InboundRule
from ws_edge.live_feed import LiveFeed
from ws_edge.outbox import Frame
from ws_edge.settings import EdgeSettings
from ws_edge.view import LiveView
from ws_edge.wire import RawWire, close_within, encode, wire_of

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_CHARS = 64 * 1024


class ClientSession:
    def __init__(
        self,
        websocket: WebSocket,
        settings: EdgeSettings,
        feed: LiveFeed,
        fanout: Fanout,
        view: LiveView,
        verifier: TokenVerifier,
        latency: Histogram | None = None,
        fences: FenceBook | None = None,
    ) -> None:
        self.websocket = websocket
        self.verifier = verifier
        self.latency = latency  # a sampled connection observes each write's end-to-end latency
        self.settings = settings
        self.feed = feed
        self.fanout = fanout
        self.view = view
        self.connection_id = str(uuid.uuid4())
        self.log = logging.LoggerAdapter(log, {"connection_id": self.connection_id})  # JSON logs carry it
        self.wire = wire_of(websocket)
        self.fences = fences  # the tenant's fences are sent after the first frames
        self.batched = False  # protocol v2, as the handshake agreed
        self._writer: asyncio.Task[None] | None = None
        self._writer_running = False
        self._expiry: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Serve the connection until the client leaves or must be closed; a client vanishing is not an error."""
        with contextlib.suppress(WebSocketDisconnect):
            await self._run()

    async def _run(self) -> None:
        hello = await handshake(self.websocket, self.settings, self.verifier)
        if hello is None:
            return
        tenant_id, self.batched = hello.claims.tenant_id, hello.protocol == 2
        if not self.feed.serves(tenant_id):
            await self.websocket.close(code=CLOSE_POLICY_VIOLATION, reason="tenant served by another edge node")
            return
        await self.websocket.send_text(messages.connected(self.connection_id, tenant_id, hello.protocol))
        try:
            await asyncio.wait_for(self.feed.ready.wait(), self.settings.bootstrap_timeout_seconds)
        except TimeoutError:
            await self.websocket.close(code=CLOSE_INTERNAL_ERROR, reason="edge not caught up with the topic")
            return
        cursor = await self._resumable_cursor(hello)
        try:
            with self.fanout.subscribe(tenant_id, self.feed.floor_of(tenant_id), self._on_close) as subscriber:
                self._watch_expiry(subscriber, hello.claims)
                first = self._first_frames(subscriber, tenant_id, hello.cursor, cursor)
                for fence in self.fences.of(tenant_id) if self.fences is not None else ():  # after the first frames
                    subscriber.outbox.add(messages.geofence_updated(fence_wire(fence)))
                self._writer = asyncio.create_task(self._write(subscriber, first))
                del first  # the writer drops it once written: a big tenant's map is not kept per connection
                self.log.info(
                    "connection %s of tenant %s subscribed (protocol %d)", self.connection_id, tenant_id, hello.protocol
                )
                try:
                    await self._read(subscriber, hello.claims)
                finally:
                    if self._expiry is not None:
                        self._expiry.cancel()
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                        await self._writer
                self.log.info("connection %s closed (code %s)", self.connection_id, subscriber.close_code)
        except TooManyConnectionsError as exc:
            await self.websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=str(exc)[:120])

    async def _resumable_cursor(self, hello: Handshake) -> Cursor | None:
        """The client's cursor, decoded, once this edge has applied up to it (None: no cursor or not one of ours)."""
        if hello.cursor is None:
            return None
        try:
            cursor = decode_cursor(hello.cursor)
        except InvalidCursorError:
            return None
        with contextlib.suppress(TimeoutError):  # not caught up in time: missed_since says it cannot resume
            async with asyncio.timeout(self.settings.resume_wait_seconds):
                await self.feed.reach(hello.claims.tenant_id, cursor.offset)
        return cursor

    def _first_frames(self, subscriber: Subscriber, tenant_id: str, asked: str | None, cursor: Cursor | None) -> bytes:
        """What the client gets before the live stream, as WebSocket frames; positions it for a resume. No await
        here. An initial_state is the view's encoding, shared with every client connecting meanwhile."""
        position = self.feed.resume_position(tenant_id, cursor) if cursor is not None else None
        if position is None:
            resumed = False if asked is not None else None
            return self.view.initial_state_frame(tenant_id, self.feed.cursor_of(tenant_id), resumed)
        missed = subscriber.log.next_seq - position
        subscriber.outbox.position = position  # every update it missed comes next, none left out
        subscriber.outbox.exact_until = subscriber.log.next_seq
        return text_frame(messages.resumed(asked or "", missed).encode())

    def _refreshed(self, subscriber: Subscriber) -> list[Frame]:
        """Its own frames, then a fresh initial_state (``resumed: false``); it goes on from the end of the stream."""
        tenant_id, own = subscriber.tenant_id, list(subscriber.outbox.extras)
        shown = subscriber.refilter(subscriber.filter, self.view.locations(tenant_id))
        return [*own, messages.initial_state(shown, self.feed.cursor_of(tenant_id), resumed=False)]

    def _on_close(self) -> None:
        # A writer that has not run yet finds the close by itself: cancelled before its first step, it would skip its
        # whole body, the close frame included (the reader can decide a close before the writer ever ran).
        if self._writer is not None and self._writer_running:
            self._writer.cancel()

    def _watch_expiry(self, subscriber: Subscriber, claims: TokenClaims) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = expires_in(claims, self.settings.token_expiry_leeway_seconds, time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, subscriber.close, CLOSE_UNAUTHENTICATED, "token expired"
        )

    def write_now(self, data: bytes, received_at: float) -> bool:
        """For the fan-out (``Subscriber.write_through``): False when the socket's buffer is full or it is gone;
        the writer then waits for it to drain (or finds it gone)."""
        try:
            writable = self.wire.write_now(data)  # type: ignore[union-attr]  # only a RawWire is written through
        except (WebSocketDisconnect, RuntimeError, OSError):  # gone or closing: the writer finds out and ends
            return False
        self._observe(received_at)
        return writable

    def _observe(self, received_at: float) -> None:
        if self.latency is not None and received_at:
            self.latency.observe(time.time() - received_at)

    async def _write(self, subscriber: Subscriber, first: bytes) -> None:
        """Write the first frames, then what the connection has yet to get as fast as the socket takes it
        (``ws_edge/wire.py``), when the fan-out could not write it through; v2 writes the updates of one take as one
        batch. A client whose first frames (megabytes for a big tenant) make no progress for the slow-consumer
        deadline is a slow consumer like any other (the sweep's deadline on ``writing_since``, moved on as each piece
        is taken: a slow link that keeps reading is not one)."""
        self._writer_running = True
        outbox, wire = subscriber.outbox, self.wire

        def progressed() -> None:
            outbox.writing_since = time.monotonic()

        try:
            if subscriber.close_code is None:
                outbox.writing_since = time.monotonic()
                await wire.write(first, progressed)
                outbox.writing_since = None
                if isinstance(wire, RawWire):
                    subscriber.direct = self  # from now on the fan-out may write through
            first = b""  # not kept while the connection lives
            while subscriber.close_code is None:  # it may have been closed while its first frames went out
                await subscriber.wait()
                if outbox.writing_since is not None:  # written through, yet to drain
                    await wire.drained()
                    outbox.writing_since = None
                taken = subscriber.take_wire(time.monotonic(), self.batched)
                if taken is None:  # what it had yet to get was evicted: the map as it is now, then on from there
                    taken = encode(self._refreshed(subscriber), self.batched), 0.0
                data, received_at = taken
                if not data:
                    continue
                outbox.writing_since = time.monotonic()
                await wire.write(data)
                outbox.writing_since = None
                self._observe(received_at)
        except asyncio.CancelledError:
            if subscriber.close_code is None:
                raise
        await self._close(subscriber.close_code, subscriber.close_reason)

    async def _close(self, code: int, reason: str) -> None:
        if not await close_within(self.websocket, self.wire, code, reason, self.settings.slow_consumer_seconds):
            self.log.info(
                "connection %s dropped: it did not take its close frame (%d) in time", self.connection_id, code
            )

    async def _read(self, subscriber: Subscriber, claims: TokenClaims) -> None:
        rule = InboundRule(self.settings.client_message_rate, time.monotonic())
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            if (refused := rule.refusal(message, now)) is not None:
                subscriber.close(*refused)
                continue
            text: str = message["text"]
            if text.strip() == PING_TEXT:
                subscriber.send(messages.PONG)
            else:
                await self._handle(subscriber, claims, text, now)

    async def _handle(self, subscriber: Subscriber, claims: TokenClaims, text: str, now: float) -> None:
        """A client message other than ping: ``subscribe`` or a fresh ``auth``; anything else gets an error frame."""
        try:
            message = bounded_json.loads(text) if len(text) <= MAX_CLIENT_MESSAGE_CHARS else None
        except bounded_json.TooDeepError as exc:
            subscriber.close(CLOSE_INVALID_PAYLOAD, str(exc))
            return
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":  # the origin's clients send {"type": "ping"}; the seed's send "ping"
            subscriber.send(messages.PONG)
        elif kind == "subscribe":
            assert isinstance(message, dict)
            try:
                wanted = parse_subscribe(message)
            except FilterError as exc:
                subscriber.send(messages.error(str(exc)))
                return
            tenant_id = subscriber.tenant_id
            shown = subscriber.refilter(None if wanted == EVERYTHING else wanted, self.view.locations(tenant_id))
            answer = messages.initial_state(shown, self.feed.cursor_of(tenant_id), answers=described(wanted))
            subscriber.send(answer)
        elif kind == "auth":
            try:
                fresh = await refreshed_claims(text, claims, self.verifier)
            except bounded_json.TooDeepError as exc:
                subscriber.close(CLOSE_INVALID_PAYLOAD, str(exc))
                return
            except ViewerRefusedError as exc:
                subscriber.close(CLOSE_POLICY_VIOLATION, exc.reason)
                return
            self._watch_expiry(subscriber, fresh)
        else:
            subscriber.send(messages.error('expected "ping", {"type":"subscribe"} or {"type":"auth"}'))
